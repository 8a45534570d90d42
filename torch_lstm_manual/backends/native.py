"""The ``"native"`` backend: the compiled loops of :mod:`torch_lstm_manual.native`,
with the arguments and results of the reference loops.

Each function calls one function of the extension; the extension is built
(or loaded from the cache) by :func:`torch_lstm_manual.native.load`, which
:func:`torch_lstm_manual.backends.select` calls before it runs these. Calls
of the plain LSTM run its own loops (``forward``, ``backward`` and the fused
``forward_input``, ``backward_input``); calls with any variant of the cell
(layer norm, peepholes, zoneout, recurrent dropout) run the variant loops
(``variant_forward``, ``variant_backward`` over given projections;
``variant_forward_input``, ``variant_backward_input`` from the inputs, a
chunk of steps at a time with the products of the chunk around it, the layer
norm of the input projections, ``ln_ih``, included).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import native as loader
from ..layer import ALL, NO_MASKS, Grads, LoopGrads, Masks, Needs, Saved, Weights
from ..reference import input_bias
from .loops import LayerGrads, Loops, backward_and_products


def _batch_sizes(batch_sizes):
    """A list or tuple of ints, as the extension takes them."""
    if isinstance(batch_sizes, torch.Tensor):
        return batch_sizes.tolist()
    return batch_sizes if isinstance(batch_sizes, (list, tuple)) else list(batch_sizes)


def _variant_loop(weights: Weights, masks: Masks) -> bool:
    """Whether the loops of a call have a variant of the cell (anything but ``ln_ih``,
    which the input projection applies)."""
    return not weights.plain or weights.ln_c is not None or any(m is not None for m in masks)


def _variant_passes(weights: Weights, masks: Masks) -> bool:
    """Whether the passes from the inputs of a call run the variants' (a variant
    of the cell, or the layer norm of the input projections)."""
    return weights.ln_ih is not None or _variant_loop(weights, masks)


def _options(weights: Weights, masks: Masks):
    """The variant tensors as the extension takes them, None where off."""
    return (weights.ln_hh, weights.ln_c, weights.ln_c_bias, weights.peephole, *masks)


def forward_loop(xw: Tensor, h0: Tensor, c0: Tensor, weights: Weights, masks: Masks, batch_sizes, reverse: bool,
                 save: bool = True):
    """:func:`~torch_lstm_manual.reference.forward_loop`, compiled."""
    masks = NO_MASKS if masks is None else masks
    sizes = _batch_sizes(batch_sizes)
    if _variant_loop(weights, masks):
        y, gates, cs, h_n, c_n, r_hat, r_rstd = loader._ext.variant_forward(
            xw, h0, c0, weights.w_hh, weights.w_hr, *_options(weights, masks), sizes, bool(reverse), bool(save)
        )
        return y, gates, cs, h_n, c_n, r_hat, r_rstd
    y, gates, cs, h_n, c_n = loader._ext.forward(xw, h0, c0, weights.w_hh, weights.w_hr, sizes, bool(reverse), bool(save))
    return y, gates, cs, h_n, c_n, None, None


def backward_loop(grads: Grads, saved: Saved, weights: Weights, masks: Masks, batch_sizes, reverse: bool):
    """:func:`~torch_lstm_manual.reference.backward_loop`, compiled."""
    masks = NO_MASKS if masks is None else masks
    d_y, d_hn, d_cn = grads
    sizes = _batch_sizes(batch_sizes)
    if _variant_loop(weights, masks):
        return LoopGrads._make(loader._ext.variant_backward(
            d_y, d_hn, d_cn, saved.gates, saved.cs, saved.c0, saved.r_hat, saved.r_rstd, weights.w_hh, weights.w_hr,
            *_options(weights, masks), sizes, bool(reverse),
        ))
    d_z, d_h, d_h0, d_c0, d_b = loader._ext.backward(
        d_y, d_hn, d_cn, saved.gates, saved.cs, saved.c0, weights.w_hh, weights.w_hr, sizes, bool(reverse)
    )
    return LoopGrads(d_z, None, d_h, d_h0, d_c0, d_b)


def input_projection(rows: Tensor, w_ih: Tensor, b_ih, b_hh) -> Tensor:
    """:func:`~torch_lstm_manual.reference.input_projection`, into a kept buffer."""
    return loader._ext.project(rows, w_ih, input_bias(b_ih, b_hh))


# The rows of a chunk of steps in the variants' passes from the inputs
# (variant_input.cpp); 0: the extension's choice (about 2 MiB of (rows, 4H)).
chunk_rows = 0


def forward_input(rows: Tensor, h0: Tensor, c0: Tensor, weights: Weights, masks: Masks, batch_sizes, reverse: bool,
                  save: bool = True):
    """:func:`~torch_lstm_manual.backends.loops.project_and_forward` with the
    native loops; in float32 without a projection or variant, one pass (the
    input projection on the same register tiles as the recurrent product);
    with a variant, a chunk of steps at a time, each after its projections,
    and nothing saved of the layer norm of the recurrent products
    (:func:`backward_input` recomputes them)."""
    masks = NO_MASKS if masks is None else masks
    if _variant_passes(weights, masks):
        y, gates, cs, h_n, c_n = loader._ext.variant_forward_input(
            rows, weights.w_ih, input_bias(weights.b_ih, weights.b_hh), weights.ln_ih, h0, c0, weights.w_hh,
            weights.w_hr, *_options(weights, masks), _batch_sizes(batch_sizes), bool(reverse), bool(save), chunk_rows,
        )
        return y, gates, cs, h_n, c_n, None, None
    w_ih, w_hh, b_ih, b_hh, w_hr = weights[:5]
    bias = input_bias(b_ih, b_hh)
    sizes = _batch_sizes(batch_sizes)
    y, gates, cs, h_n, c_n = loader._ext.forward_input(rows, w_ih, bias, h0, c0, w_hh, w_hr, sizes, bool(reverse), bool(save))
    return y, gates, cs, h_n, c_n, None, None


def backward_input(grads: Grads, saved: Saved, weights: Weights, masks: Masks, batch_sizes, reverse: bool,
                   needs: Needs = ALL):
    """:func:`~torch_lstm_manual.backends.loops.backward_and_products` with the
    native loops; in float32 without a projection or variant, one pass (the
    products a step at a time on the loop's tiles, no (N, 4H) gate gradients
    in memory); with a variant, a chunk of steps at a time, each followed by
    its products (the layer norms' backward passes compiled, the normalised
    recurrent products recomputed from the saved outputs)."""
    masks = NO_MASKS if masks is None else masks
    if _variant_passes(weights, masks):
        d_y, d_hn, d_cn = grads
        return LayerGrads._make(loader._ext.variant_backward_input(
            d_y, d_hn, d_cn, saved.gates, saved.cs, saved.c0, weights.w_hh, weights.w_hr, *_options(weights, masks),
            saved.rows, weights.w_ih, weights.ln_ih, saved.y, saved.h0, _batch_sizes(batch_sizes), bool(reverse),
            needs.x, needs.w_ih, needs.w_hh, needs.x or needs.w_ih or needs.ln_ih, chunk_rows,
        ))
    if not loader._ext.fuses_backward(saved.gates, weights.w_hr):
        return backward_and_products(LOOPS, grads, saved, weights, masks, batch_sizes, reverse, needs)
    d_y, d_hn, d_cn = grads
    gates, cs, c0, h0, rows, y = saved[:6]
    sizes = _batch_sizes(batch_sizes)
    d_x, d_h0, d_c0, d_w_ih, d_w_hh, d_b = loader._ext.backward_input(
        d_y, d_hn, d_cn, gates, cs, c0, weights.w_hh, rows, weights.w_ih, y, h0, sizes, bool(reverse),
        needs.x, needs.w_ih or needs.w_hh,
    )
    return LayerGrads(d_x, None, d_h0, d_c0, (d_w_ih if needs.w_ih else None), (d_w_hh if needs.w_hh else None), d_b)


LOOPS = Loops(forward_loop, backward_loop, forward_input, backward_input, variants=True)


# The two directions of a layer at once: each its own team of half of torch's
# threads (with two, one each, and no barrier per step), with the results of
# one after the other, bit for bit. For calls without variants of the cell
# (plain weights, no masks), in float32 and float64.

def runs_both(loops: Loops, hidden_size: int, dtype: torch.dtype) -> bool:
    """Whether :func:`forward_both` and :func:`backward_both` run the two
    directions of a layer of ``hidden_size`` units for which
    :func:`~torch_lstm_manual.backends.select` chose ``loops``: these loops,
    more than one thread to split, and loops whose results do not depend on
    the number of threads they run on (the extension's ``split_free``)."""
    return (loops is LOOPS and torch.get_num_threads() > 1
            and loader._ext.split_free(hidden_size, dtype == torch.float32))


def _input_args(rows, h0, c0, weights: Weights, masks: Masks, batch_sizes, reverse, save=True):
    """forward_input's arguments, as the extension's forward_input takes them."""
    w_ih, w_hh, b_ih, b_hh, w_hr = weights[:5]
    return (rows, w_ih, input_bias(b_ih, b_hh), h0, c0, w_hh, w_hr, _batch_sizes(batch_sizes), bool(reverse), bool(save))


def forward_both(first: tuple, second: tuple):
    """``(forward_input(*first), forward_input(*second))``, the two at once."""
    results = loader._ext.forward_input_both(_input_args(*first), _input_args(*second))
    return tuple((*result, None, None) for result in results)


def _loop_args(grads: Grads, saved: Saved, weights: Weights, masks: Masks, batch_sizes, reverse, needs=ALL):
    """backward_loop's arguments, as the extension's backward takes them."""
    return (*grads, saved.gates, saved.cs, saved.c0, weights.w_hh, weights.w_hr, _batch_sizes(batch_sizes), bool(reverse))


def _fused_args(grads: Grads, saved: Saved, weights: Weights, masks: Masks, batch_sizes, reverse, needs=ALL):
    """backward_input's arguments, as the extension's backward_input takes them."""
    gates, cs, c0, h0, rows, y = saved[:6]
    return (*grads, gates, cs, c0, weights.w_hh, rows, weights.w_ih, y, h0, _batch_sizes(batch_sizes), bool(reverse),
            needs.x, needs.w_ih or needs.w_hh)


def backward_both(first: tuple, second: tuple):
    """``(backward_input(*first), backward_input(*second))``: the two loops at
    once, and, where they are not in the loops, the products after them."""
    saved, weights = first[1], first[2]
    if loader._ext.fuses_backward(saved.gates, weights.w_hr):
        results = loader._ext.backward_input_both(_fused_args(*first), _fused_args(*second))
        return tuple(
            LayerGrads(d_x, None, d_h0, d_c0, (d_w_ih if args[6].w_ih else None), (d_w_hh if args[6].w_hh else None), d_b)
            for (d_x, d_h0, d_c0, d_w_ih, d_w_hh, d_b), args in zip(results, (first, second))
        )
    results = loader._ext.backward_both(_loop_args(*first), _loop_args(*second))
    return tuple(backward_and_products(_ran(LoopGrads(d_z, None, d_h, d_h0, d_c0, d_b)), *args)
                 for (d_z, d_h, d_h0, d_c0, d_b), args in zip(results, (first, second)))


def _ran(loop: LoopGrads) -> Loops:
    """LOOPS whose backward loop has run already: it returns ``loop``."""
    return LOOPS._replace(backward=lambda *args: loop)
