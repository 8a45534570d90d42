"""What a backend provides: :class:`Loops`, and the passes built from them.

Every backend's loops take the same arguments and return the same results as
the reference ones (:mod:`torch_lstm_manual.reference`); the tensors come in
the named structures of :mod:`torch_lstm_manual.layer`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

from torch import Tensor

from ..layer import ALL, Grads, Masks, Needs, Saved, Weights
from ..packing import recurrent_weight_grad, row_sequences
from ..reference import backward_loop, d_normalize, forward_loop, input_projection, normalize


class Loops(NamedTuple):
    """One backend's implementation of the two time loops.

    ``forward(xw, h0, c0, weights, masks, batch_sizes, reverse, save=True)`` and
    ``backward(grads, saved, weights, masks, batch_sizes, reverse)``: the
    arguments and results of :func:`~torch_lstm_manual.reference.forward_loop`
    and :func:`~torch_lstm_manual.reference.backward_loop`.
    """

    forward: Callable
    backward: Callable
    # project_and_forward's arguments (but ``loops``) and results, where a
    # backend runs the two together; None: project_and_forward.
    forward_input: Optional[Callable] = None
    # backward_and_products' arguments (but ``loops``) and results, where a
    # backend runs them together; None: backward_and_products.
    backward_input: Optional[Callable] = None
    # Whether the loops run the variants of the cell (layer norm, peepholes,
    # zoneout, recurrent dropout); calls with any go to the reference otherwise.
    variants: bool = False


class LayerGrads(NamedTuple):
    """What the backward pass of a layer returns: the gradients of its inputs
    (None where not asked for, or where the option is off)."""

    d_x: Optional[Tensor]  # (N, I)
    d_h: Optional[Tensor]  # with a projection, as LoopGrads.d_h (N, P)
    d_h0: Tensor  # (B, P)
    d_c0: Tensor  # (B, H)
    d_w_ih: Optional[Tensor]  # (G, I)
    d_w_hh: Optional[Tensor]  # (G, P)
    d_b: Tensor  # (G,)
    d_ln_ih: Optional[Tensor] = None  # (G,)
    d_ln_hh: Optional[Tensor] = None  # (G,)
    d_ln_c: Optional[Tensor] = None  # (H,)
    d_ln_c_bias: Optional[Tensor] = None  # (H,)
    d_peephole: Optional[Tensor] = None  # (3, H)


# The readable loops: where autograd records them (double backward) and under
# torch.compile and torch.func transforms.
REFERENCE = Loops(forward_loop, backward_loop, variants=True)


def project_and_forward(loops: Loops, rows: Tensor, h0: Tensor, c0: Tensor, weights: Weights, masks: Masks,
                        batch_sizes, reverse: bool, save: bool = True):
    """``loops.forward`` over ``input_projection(rows, ...)``: the forward pass
    of a layer from its inputs ``rows`` (N, I); the results of ``forward_loop``."""
    xw = input_projection(rows, weights.w_ih, weights.b_ih, weights.b_hh, weights.ln_ih)  # (N, G)
    return loops.forward(xw, h0, c0, weights, masks, batch_sizes, reverse, save=save)


def backward_and_products(loops: Loops, grads: Grads, saved: Saved, weights: Weights, masks: Masks, batch_sizes,
                          reverse: bool, needs: Needs = ALL) -> LayerGrads:
    """``loops.backward``, then the products of the backward pass over all steps.

    ``saved`` holds, besides what the loop reads, the layer's inputs ``rows``
    (N, I), outputs ``y`` (N, P) and ``h0``. Returns a :class:`LayerGrads`:
    ``d_x = dXW W_ih`` (N, I), ``dW_ih = dXW^T X`` (G, I), ``dW_hh = dR^T
    H_prev`` (G, P; ``H_prev`` times the recurrent dropout mask), each None
    where ``needs`` does not ask for it, and the rest as from ``backward_loop``.
    ``dXW`` is ``d_z``, or with layer norm its gradient through
    ``ln_ih * LN(x W_ih^T)``, recomputed here, which also gives ``d ln_ih``.
    """
    loop = loops.backward(grads, saved, weights, masks, batch_sizes, reverse)
    d_z, d_xw, d_ln_ih = loop.d_z, loop.d_z, None
    if weights.ln_ih is not None and (needs.x or needs.w_ih or needs.ln_ih):
        x_hat, rstd = normalize(saved.rows.mm(weights.w_ih.t()))  # (N, G), (N, 1)
        d_ln_ih = (d_z * x_hat).sum(0)  # (G,)
        d_xw = d_normalize(d_z * weights.ln_ih, x_hat, rstd)  # (N, G)
    d_x = d_xw.mm(weights.w_ih) if needs.x else None  # (N, I)
    d_w_ih = d_xw.t().mm(saved.rows) if needs.w_ih else None  # (G, I)
    d_r = d_z if loop.d_r is None else loop.d_r  # (N, G)
    d_w_hh = None
    if needs.w_hh:
        y, h0 = saved.y, saved.h0
        if masks.recurrent is not None:
            # Each state enters the next step of its own sequence, under that sequence's mask.
            y = masks.recurrent.index_select(0, row_sequences(batch_sizes, d_r.device)).mul_(y)  # (N, P)
            h0 = h0 * masks.recurrent  # (B, P)
        d_w_hh = recurrent_weight_grad(d_r, y, h0, batch_sizes, reverse)  # (G, P)
    return LayerGrads(d_x, loop.d_h, loop.d_h0, loop.d_c0, d_w_ih, d_w_hh, loop.d_b, d_ln_ih, loop.d_ln_hh,
                      loop.d_ln_c, loop.d_ln_c_bias, loop.d_peephole)
