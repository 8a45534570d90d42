"""One layer, one direction of an LSTM over a whole sequence: :class:`LSTMFunction`,
the autograd Function whose backward pass is the hand-derived one of
:mod:`torch_lstm_manual.reference`, and :func:`lstm_layer`, its functional form.

The Function asks :func:`torch_lstm_manual.backends.select` which loops run
each pass and hands them the layer's tensors by name
(:mod:`torch_lstm_manual.layer`); the weight gradients come from the
backend's pass or from the products over all steps
(:func:`~torch_lstm_manual.backends.backward_and_products`).
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Optional, Sequence

import torch
from torch import Tensor

from .backends import REFERENCE, LayerGrads, backward_and_products, project_and_forward, records, select
from .backends.native import backward_both, forward_both, runs_both
from .layer import Grads, Masks, Needs, Saved, Weights
from .reference import cell_outputs
from .variants import check_variants


def _forward(x, rows, h0, c0, weights, masks, batch_sizes, reverse, loops, save):
    """:class:`LSTMFunction`'s forward with ``loops`` over ``rows`` (N, I), ``x``
    flattened: ``(y, h_n, c_n, gates, cs, r_hat, r_rstd)``."""
    sizes = batch_sizes if batch_sizes is not None else (x.shape[1],) * x.shape[0]
    if loops.forward_input is None:
        result = project_and_forward(loops, rows, h0, c0, weights, masks, sizes, reverse, save=save)
    else:
        result = loops.forward_input(rows, h0, c0, weights, masks, sizes, reverse, save=save)
    return _outputs(x, batch_sizes, result)


def _outputs(x, batch_sizes, result):
    """``(y, h_n, c_n, gates, cs, r_hat, r_rstd)`` from the results of a
    forward pass, ``(y, gates, cs, h_n, c_n, r_hat, r_rstd)``; y (T, B, P)
    where ``x`` is padded."""
    y, gates, cs, h_n, c_n, r_hat, r_rstd = result
    if batch_sizes is None:
        y = y.view(x.shape[0], x.shape[1], y.shape[-1])  # (T, B, P); B may be 0
    return y, h_n, c_n, gates, cs, r_hat, r_rstd


def _rows(t: Optional[Tensor], batch_sizes) -> Optional[Tensor]:
    """A per-row tensor in the loops' layout: (T, B, .) flattened to (N, .) where the input is padded."""
    return t if t is None or batch_sizes is not None else t.reshape(-1, t.shape[-1])


def _backward_args(saved, grads, needs_input_grad, batch_sizes, reverse, backend):
    """:class:`LSTMFunction`'s backward pass up to its loops, from its saved
    tensors, the gradients of its outputs and ``needs_input_grad``: the loops
    :func:`~torch_lstm_manual.backends.select` chose, and their arguments
    ``(grads, saved, weights, masks, sizes, reverse, needs)``."""
    x, h0, c0 = saved[:3]
    weights = Weights._make(saved[3:13])
    masks = Masks(saved[13], _rows(saved[14], batch_sizes), _rows(saved[15], batch_sizes))
    y, gates, cs, r_hat, r_rstd = saved[16:]
    d_y, d_hn, d_cn = grads[:3]
    needs = Needs._make(needs_input_grad[:13])
    d_y = torch.zeros_like(y) if d_y is None else d_y
    d_hn = torch.zeros_like(h0) if d_hn is None else d_hn
    d_cn = torch.zeros_like(c0) if d_cn is None else d_cn
    padded = batch_sizes is None
    rows = x.flatten(0, 1) if padded else x  # (N, I)
    sizes = (x.shape[1],) * x.shape[0] if padded else batch_sizes
    y = y.flatten(0, 1) if padded else y  # (N, P)
    d_y = d_y.flatten(0, 1) if padded else d_y  # (N, P)
    recording = torch.is_grad_enabled()
    variants = not weights.plain or not masks.none
    _, loops = select(backend, rows, tuple(saved) + tuple(grads), recording=recording, variants=variants)
    if recording or (weights.ln_hh is not None and r_hat is None and loops.backward_input is None):
        # Double backward: recompute the intermediates with autograd watching,
        # so that the hand-derived backward below is itself differentiable.
        # Likewise where these loops read the normalised recurrent products,
        # which the native forward pass does not save (its backward recomputes them).
        y, gates, cs, _, _, r_hat, r_rstd = project_and_forward(REFERENCE, rows, h0, c0, weights, masks, sizes,
                                                                reverse)
    grads, saved = Grads(d_y, d_hn, d_cn), Saved(gates, cs, c0, h0, rows, y, r_hat, r_rstd)
    return loops, (grads, saved, weights, masks, sizes, reverse, needs)


def _run_backward(loops, args) -> LayerGrads:
    """The backward pass of ``loops`` over ``args`` (:func:`_backward_args`)."""
    backward = partial(backward_and_products, loops) if loops.backward_input is None else loops.backward_input
    return backward(*args)


def _input_grads(out: LayerGrads, x: Tensor, args, batch_sizes) -> tuple:
    """:class:`LSTMFunction`'s gradients, one per argument of ``apply``, from
    ``out``, its backward pass over ``args`` (:func:`_backward_args`)."""
    _, saved, weights, masks, sizes, reverse, needs = args
    d_b_ih = d_b_hh = d_w_hr = None
    d_x = out.d_x.view_as(x) if needs.x and batch_sizes is None else out.d_x
    if needs.b_ih or needs.b_hh:
        d_b_ih = out.d_b if needs.b_ih else None
        d_b_hh = (out.d_b.clone() if needs.b_ih else out.d_b) if needs.b_hh else None
    if needs.w_hr:
        d_w_hr = out.d_h.t().mm(cell_outputs(saved, weights, masks, sizes, reverse))  # (P, H)
    ln = (out.d_ln_ih, out.d_ln_hh, out.d_ln_c, out.d_ln_c_bias, out.d_peephole)
    return (
        d_x,
        out.d_h0 if needs.h0 else None,
        out.d_c0 if needs.c0 else None,
        out.d_w_ih,
        out.d_w_hh,
        d_b_ih,
        d_b_hh,
        d_w_hr,
        *(d if need else None for d, need in zip(ln, needs[8:])),
        None, None, None, None, None, None,
    )


class LSTMFunction(torch.autograd.Function):
    """One LSTM layer in one direction over a whole sequence; see :mod:`torch_lstm_manual.reference`.

    ``apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, ln_ih, ln_hh, ln_c, ln_c_bias, peephole,
    recurrent_mask, cell_mask, hidden_mask, batch_sizes, reverse, backend)``

    Args:
        x: input, (T, B, I) when ``batch_sizes`` is None, else packed rows (N, I).
        h0: (B, P). c0: (B, H).
        w_ih: (G, I). w_hh: (G, P). b_ih, b_hh: (G,) or None. w_hr: (P, H) or None.
        ln_ih, ln_hh: (G,), ln_c, ln_c_bias: (H,): the layer norm gains and
            bias, all four or None (no layer norm).
        peephole: (3, H) or None.
        recurrent_mask: (B, P) or None. cell_mask, hidden_mask: the zoneout
            masks, shaped like the rows of ``x`` ((T, B, H) and (T, B, P), or
            (N, H) and (N, P)), float or bool, or None. Masks get no gradient.
        batch_sizes: None, or the rows of each step (non-increasing ints).
        reverse: run from the last step to the first (each sequence from its own end).
        backend: the time-loop implementation, one of
            :data:`~torch_lstm_manual.backends.CHOICES`.

    Returns ``(y, h_n, c_n, gates, cs, r_hat, r_rstd)``: the output ((T, B, P)
    or (N, P)), the final states, and the saved intermediates, which are not
    differentiable outputs. Use :func:`lstm_layer` for the first three alone.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, ln_ih, ln_hh, ln_c, ln_c_bias, peephole,
                recurrent_mask, cell_mask, hidden_mask, batch_sizes, reverse, backend):
        rows = x if batch_sizes is not None else x.flatten(0, 1)  # (N, I)
        weights = Weights(w_ih, w_hh, b_ih, b_hh, w_hr, ln_ih, ln_hh, ln_c, ln_c_bias, peephole)
        masks = Masks(recurrent_mask, _rows(cell_mask, batch_sizes), _rows(hidden_mask, batch_sizes))
        variants = not weights.plain or not masks.none
        _, loops = select(backend, rows, (x, h0, c0) + tuple(weights) + tuple(masks), variants=variants)
        return _forward(x, rows, h0, c0, weights, masks, batch_sizes, reverse, loops, save=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        tensors, (batch_sizes, reverse, backend) = inputs[:16], inputs[16:]
        y, _, _, gates, cs, r_hat, r_rstd = output
        ctx.mark_non_differentiable(*(t for t in (gates, cs, r_hat, r_rstd) if t is not None))
        # Unused outputs get None, not zeros: no (N, G) zeros for ``gates`` in backward.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*tensors, y, gates, cs, r_hat, r_rstd)
        ctx.batch_sizes, ctx.reverse, ctx.backend = batch_sizes, reverse, backend

    @staticmethod
    def backward(ctx, *grads):
        loops, args = _backward_args(ctx.saved_tensors, grads, ctx.needs_input_grad, ctx.batch_sizes, ctx.reverse,
                                     ctx.backend)
        return _input_grads(_run_backward(loops, args), ctx.saved_tensors[0], args, ctx.batch_sizes)


# Function.apply binds the arguments to ``inspect.signature(forward)`` on every
# call (with setup_context); computed once here, that is ~60 us less per layer.
LSTMFunction.forward.__signature__ = inspect.signature(LSTMFunction.forward)


def lstm_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
    w_hr: Optional[Tensor] = None,
    batch_sizes: Optional[Sequence[int]] = None,
    reverse: bool = False,
    backend: str = "python",
    *,
    layer_norm: Optional[Sequence[Tensor]] = None,
    peephole: Optional[Tensor] = None,
    weight_hh_mask: Optional[Tensor] = None,
    recurrent_mask: Optional[Tensor] = None,
    cell_mask: Optional[Tensor] = None,
    hidden_mask: Optional[Tensor] = None,
):
    """Run :class:`LSTMFunction` and return ``(y, h_n, c_n)``.

    The variants of the cell (see :mod:`torch_lstm_manual.reference`), each off by default:

    - ``layer_norm``: ``(gamma_ih, gamma_hh, gamma_c, beta_c)``, (G,), (G,), (H,), (H,).
    - ``peephole``: (3, H), the peephole weights of i, f and o.
    - ``weight_hh_mask``: (G, P), multiplies ``w_hh`` (weight drop; scaled by the caller).
    - ``recurrent_mask``: (B, P), multiplies ``h_{t-1}`` where it enters ``W_hh`` (scaled by the caller).
    - ``cell_mask``, ``hidden_mask``: the zoneout masks ``d_c``, ``d_h`` (1 keeps
      the previous state), one row per row of ``x``: (T, B, H) and (T, B, P),
      or (N, H) and (N, P) for packed rows; of ``x``'s dtype, or bool (as
      :meth:`~torch_lstm_manual.LSTM.sample_masks` draws them in training).
    """
    sizes = None if batch_sizes is None else tuple(int(b) for b in batch_sizes)
    if (x.shape[0] if sizes is None else len(sizes)) == 0:
        what = f"x of shape {tuple(x.shape)}" if sizes is None else "batch_sizes ()"
        raise ValueError(f"lstm_layer expects at least one time step, got {what}")
    options = (layer_norm, peephole, weight_hh_mask, recurrent_mask, cell_mask, hidden_mask)
    ln = (None,) * 4 if all(o is None for o in options) else check_variants(x, h0, c0, w_hh, w_hr, sizes, *options)
    if weight_hh_mask is not None:
        w_hh = w_hh * weight_hh_mask
    tensors = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, *ln, peephole, recurrent_mask, cell_mask, hidden_mask)
    if records(tensors):
        y, h_n, c_n = LSTMFunction.apply(*tensors, sizes, bool(reverse), backend)[:3]
        return y, h_n, c_n
    rows = x if sizes is not None else x.flatten(0, 1)  # (N, I)
    weights = Weights(w_ih, w_hh, b_ih, b_hh, w_hr, *ln, peephole)
    masks = Masks(recurrent_mask, _rows(cell_mask, sizes), _rows(hidden_mask, sizes))
    _, loops = select(backend, rows, tensors, variants=not weights.plain or not masks.none)
    return _forward(x, rows, h0, c0, weights, masks, sizes, bool(reverse), loops, save=False)[:3]


def _direction(tensors, batch_sizes, reverse: bool, save: bool) -> tuple:
    """The forward pass arguments ``(rows, h0, c0, weights, masks, sizes,
    reverse, save)`` of one direction without variants, ``tensors`` its
    ``(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)``."""
    x, h0, c0, *weights = tensors
    rows = x if batch_sizes is not None else x.flatten(0, 1)  # (N, I)
    sizes = batch_sizes if batch_sizes is not None else (x.shape[1],) * x.shape[0]
    return rows, h0, c0, Weights(*weights, *(None,) * 5), Masks(None, None, None), sizes, reverse, save


# The directions of BidirectionalFunction in the order of its arguments and
# results: reverse, then forward.
_DIRECTIONS = (True, False)


class BidirectionalFunction(torch.autograd.Function):
    """Both directions of one LSTM layer without variants of the cell, on the
    native loops, each pass of the two directions at once
    (:func:`~torch_lstm_manual.backends.native.forward_both` and
    ``backward_both``); each direction computes what :class:`LSTMFunction` does.

    ``apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, x, h0, c0, ..., w_hr,
    batch_sizes, backend)``: :class:`LSTMFunction`'s first eight arguments for
    the reverse direction, then for the forward one. Returns ``(y, h_n, c_n,
    y, h_n, c_n, gates, cs, gates, cs)``, the reverse direction's first.

    Each direction takes ``x`` as an argument of its own, so that autograd adds
    up its two gradients as it does those of two :class:`LSTMFunction` calls,
    the later call's (the reverse one's) first; where ``x`` has other uses too,
    the order of the terms of its gradient is the same.

    For calls whose loops :func:`~torch_lstm_manual.backends.native.runs_both`
    (see :func:`bidirectional_layer`). The backward pass runs the two
    directions at once where that holds for it too, else one after the other
    as two :class:`LSTMFunction` calls do (double backward, torch.func
    transforms), the reverse one first.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(*args):
        tensors, batch_sizes = args[:16], args[16]
        results = forward_both(*(_direction(tensors[8 * d:8 * d + 8], batch_sizes, reverse, True)
                                 for d, reverse in enumerate(_DIRECTIONS)))
        (y, h_n, c_n, gates, cs, _, _), (y_f, h_n_f, c_n_f, gates_f, cs_f, _, _) = (
            _outputs(args[0], batch_sizes, result) for result in results
        )
        return y, h_n, c_n, y_f, h_n_f, c_n_f, gates, cs, gates_f, cs_f

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(*output[6:])
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*inputs[:16], output[0], output[3], *output[6:])
        ctx.batch_sizes, ctx.backend = inputs[16:]

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        H, dtype = saved[2].shape[-1], saved[0].dtype  # c0 (B, H)
        calls, outs = [], []
        for d, reverse in enumerate(_DIRECTIONS):
            # LSTMFunction's saved tensors and needs_input_grad of this direction.
            tensors, outputs = saved[8 * d:8 * d + 8], (saved[16 + d], *saved[18 + 2 * d:20 + 2 * d])
            needs = (*ctx.needs_input_grad[8 * d:8 * d + 8], *(False,) * 5)
            loops, args = _backward_args((*tensors, *(None,) * 8, *outputs, None, None), grads[3 * d:3 * d + 3],
                                         needs, ctx.batch_sizes, reverse, ctx.backend)
            calls.append((loops, args))
            if outs or not runs_both(loops, H, dtype):
                # One after the other, each direction's pass (recorded, in
                # double backward) in turn, as LSTMFunction's.
                outs.extend(_run_backward(*call) for call in calls[len(outs):])
        if not outs:
            outs = backward_both(calls[0][1], calls[1][1])
        d, d_f = (_input_grads(out, saved[0], args, ctx.batch_sizes)[:8] for out, (_, args) in zip(outs, calls))
        return (*d, *d_f, None, None)


BidirectionalFunction.forward.__signature__ = inspect.signature(BidirectionalFunction.forward)


def bidirectional_layer(x: Tensor, forward_args: Sequence, reverse_args: Sequence,
                        batch_sizes: Optional[Sequence[int]] = None, backend: str = "python"):
    """Both directions of a layer without variants of the cell:
    ``(lstm_layer(x, *forward_args, batch_sizes, False, backend),
    lstm_layer(x, *reverse_args, batch_sizes, True, backend))``, the ``args`` of
    each ``(h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)``.

    Where the native loops run both directions and torch has more than one
    thread (:func:`~torch_lstm_manual.backends.native.runs_both`), each pass
    of the two runs at once (:class:`BidirectionalFunction`), each direction
    on its own half of the threads; the results are the same, bit for bit.
    """
    sizes = None if batch_sizes is None else tuple(int(b) for b in batch_sizes)
    tensors = (x, *forward_args, *reverse_args)
    rows = x if sizes is not None else x.flatten(0, 1)  # (N, I)
    H = forward_args[1].shape[-1]  # c0 (B, H)
    if not runs_both(select(backend, rows, tensors)[1], H, x.dtype):
        return tuple(lstm_layer(x, *args, sizes, reverse, backend)
                     for reverse, args in ((False, forward_args), (True, reverse_args)))
    if records(tensors):
        out = BidirectionalFunction.apply(x, *reverse_args, x, *forward_args, sizes, backend)
        return out[3:6], out[:3]
    results = forward_both(*(_direction((x, *args), sizes, reverse, False)
                             for reverse, args in ((False, forward_args), (True, reverse_args))))
    return tuple(_outputs(x, sizes, result)[:3] for result in results)
