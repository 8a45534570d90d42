"""What a backend provides: :class:`Loops`, and the passes built from them.

Every backend's loops take the same arguments and return the same results as
the reference ones (:mod:`torch_lstm_manual.reference`); the tensors come in
the named structures of :mod:`torch_lstm_manual.layer`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

from torch import Tensor

from ..layer import ALL, Grads, Needs, Saved, Weights
from ..packing import recurrent_weight_grad
from ..reference import backward_loop, forward_loop, input_projection


class Loops(NamedTuple):
    """One backend's implementation of the two time loops.

    ``forward(xw, h0, c0, weights, batch_sizes, reverse, save=True)`` and
    ``backward(grads, saved, weights, batch_sizes, reverse)``: the arguments
    and results of :func:`~torch_lstm_manual.reference.forward_loop` and
    :func:`~torch_lstm_manual.reference.backward_loop`.
    """

    forward: Callable
    backward: Callable
    # project_and_forward's arguments (but ``loops``) and results, where a
    # backend runs the two together; None: project_and_forward.
    forward_input: Optional[Callable] = None
    # backward_and_products' arguments (but ``loops``) and results, where a
    # backend runs them together; None: backward_and_products.
    backward_input: Optional[Callable] = None


# The readable loops: where autograd records them (double backward) and under
# torch.compile and torch.func transforms.
REFERENCE = Loops(forward_loop, backward_loop)


def project_and_forward(loops: Loops, rows: Tensor, h0: Tensor, c0: Tensor, weights: Weights, batch_sizes, reverse: bool,
                        save: bool = True):
    """``loops.forward`` over ``input_projection(rows, ...)``: the forward pass
    of a layer from its inputs ``rows`` (N, I); the results of ``forward_loop``."""
    xw = input_projection(rows, weights.w_ih, weights.b_ih, weights.b_hh)  # (N, G)
    return loops.forward(xw, h0, c0, weights, batch_sizes, reverse, save=save)


def backward_and_products(loops: Loops, grads: Grads, saved: Saved, weights: Weights, batch_sizes, reverse: bool,
                          needs: Needs = ALL):
    """``loops.backward``, then the products of the backward pass over all steps.

    ``saved`` holds, besides what the loop reads, the layer's inputs ``rows``
    (N, I), outputs ``y`` (N, P) and ``h0``. Returns ``(d_x, d_h, d_h0, d_c0,
    d_w_ih, d_w_hh, d_b)``: ``d_x = dZ W_ih`` (N, I), ``dW_ih = dZ^T X`` (G, I),
    ``dW_hh = dZ^T H_prev`` (G, P), each None where ``needs`` does not ask for
    it, and the rest as from ``backward_loop``.
    """
    d_z, d_h, d_h0, d_c0, d_b = loops.backward(grads, saved, weights, batch_sizes, reverse)
    d_x = d_z.mm(weights.w_ih) if needs.x else None  # (N, I)
    d_w_ih = d_z.t().mm(saved.rows) if needs.w_ih else None  # (G, I)
    d_w_hh = recurrent_weight_grad(d_z, saved.y, saved.h0, batch_sizes, reverse) if needs.w_hh else None  # (G, P)
    return d_x, d_h, d_h0, d_c0, d_w_ih, d_w_hh, d_b
