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
from typing import Optional, Sequence

import torch
from torch import Tensor

from .backends import REFERENCE, backward_and_products, project_and_forward, records, select
from .layer import Grads, Needs, Saved, Weights


def _forward(x, rows, h0, c0, weights, batch_sizes, reverse, loops, save):
    """:class:`LSTMFunction`'s forward with ``loops`` over ``rows`` (N, I), ``x``
    flattened: ``(y, h_n, c_n, gates, cs)``."""
    sizes = batch_sizes if batch_sizes is not None else (x.shape[1],) * x.shape[0]
    if loops.forward_input is None:
        y, gates, cs, h_n, c_n = project_and_forward(loops, rows, h0, c0, weights, sizes, reverse, save=save)
    else:
        y, gates, cs, h_n, c_n = loops.forward_input(rows, h0, c0, weights, sizes, reverse, save=save)
    if batch_sizes is None:
        y = y.view(x.shape[0], x.shape[1], y.shape[-1])  # (T, B, P); B may be 0
    return y, h_n, c_n, gates, cs


class LSTMFunction(torch.autograd.Function):
    """One LSTM layer in one direction over a whole sequence; see :mod:`torch_lstm_manual.reference`.

    ``apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, backend)``

    Args:
        x: input, (T, B, I) when ``batch_sizes`` is None, else packed rows (N, I).
        h0: (B, P). c0: (B, H).
        w_ih: (G, I). w_hh: (G, P). b_ih, b_hh: (G,) or None. w_hr: (P, H) or None.
        batch_sizes: None, or the rows of each step (non-increasing ints).
        reverse: run from the last step to the first (each sequence from its own end).
        backend: the time-loop implementation, one of
            :data:`~torch_lstm_manual.backends.CHOICES`.

    Returns ``(y, h_n, c_n, gates, cs)``: the output ((T, B, P) or (N, P)), the
    final states, and the two saved intermediates, which are not
    differentiable outputs. Use :func:`lstm_layer` for the first three alone.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, backend):
        rows = x if batch_sizes is not None else x.flatten(0, 1)  # (N, I)
        _, loops = select(backend, rows, (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr))
        weights = Weights(w_ih, w_hh, b_ih, b_hh, w_hr)
        return _forward(x, rows, h0, c0, weights, batch_sizes, reverse, loops, save=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, backend = inputs
        y, _, _, gates, cs = output
        ctx.mark_non_differentiable(gates, cs)
        # Unused outputs get None, not zeros: no (N, G) zeros for ``gates`` in backward.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, y, gates, cs)
        ctx.batch_sizes, ctx.reverse, ctx.backend = batch_sizes, reverse, backend

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, y, gates, cs = saved
        d_y, d_hn, d_cn, _d_gates, _d_cs = grads
        needs = Needs._make(ctx.needs_input_grad[:8])
        d_y = torch.zeros_like(y) if d_y is None else d_y
        d_hn = torch.zeros_like(h0) if d_hn is None else d_hn
        d_cn = torch.zeros_like(c0) if d_cn is None else d_cn
        padded = ctx.batch_sizes is None
        rows = x.flatten(0, 1) if padded else x  # (N, I)
        sizes = (x.shape[1],) * x.shape[0] if padded else ctx.batch_sizes
        y = y.flatten(0, 1) if padded else y  # (N, P)
        d_y = d_y.flatten(0, 1) if padded else d_y  # (N, P)
        weights = Weights(w_ih, w_hh, b_ih, b_hh, w_hr)
        recording = torch.is_grad_enabled()
        _, loops = select(ctx.backend, rows, saved + grads, recording=recording)
        if recording:
            # Double backward: recompute the intermediates with autograd watching,
            # so that the hand-derived backward below is itself differentiable.
            y, gates, cs, _, _ = project_and_forward(REFERENCE, rows, h0, c0, weights, sizes, ctx.reverse)
        grads, saved = Grads(d_y, d_hn, d_cn), Saved(gates, cs, c0, h0, rows, y)
        if loops.backward_input is None:
            d_x, d_h, d_h0, d_c0, d_w_ih, d_w_hh, d_b = backward_and_products(
                loops, grads, saved, weights, sizes, ctx.reverse, needs
            )
        else:
            d_x, d_h, d_h0, d_c0, d_w_ih, d_w_hh, d_b = loops.backward_input(
                grads, saved, weights, sizes, ctx.reverse, needs
            )
        d_b_ih = d_b_hh = d_w_hr = None
        if needs.x:
            d_x = d_x.view_as(x) if padded else d_x
        if needs.b_ih or needs.b_hh:
            d_b_ih = d_b if needs.b_ih else None
            d_b_hh = (d_b.clone() if needs.b_ih else d_b) if needs.b_hh else None
        if needs.w_hr:
            m = gates.chunk(4, 1)[3] * torch.tanh(cs)  # o tanh(c), (N, H)
            d_w_hr = d_h.t().mm(m)  # (P, H)
        return (
            d_x,
            d_h0 if needs.h0 else None,
            d_c0 if needs.c0 else None,
            d_w_ih,
            d_w_hh,
            d_b_ih,
            d_b_hh,
            d_w_hr,
            None,
            None,
            None,
        )


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
):
    """Run :class:`LSTMFunction` and return ``(y, h_n, c_n)``."""
    sizes = None if batch_sizes is None else tuple(int(b) for b in batch_sizes)
    if (x.shape[0] if sizes is None else len(sizes)) == 0:
        what = f"x of shape {tuple(x.shape)}" if sizes is None else "batch_sizes ()"
        raise ValueError(f"lstm_layer expects at least one time step, got {what}")
    tensors = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    if records(tensors):
        y, h_n, c_n, _, _ = LSTMFunction.apply(*tensors, sizes, bool(reverse), backend)
        return y, h_n, c_n
    rows = x if sizes is not None else x.flatten(0, 1)  # (N, I)
    _, loops = select(backend, rows, tensors)
    return _forward(x, rows, h0, c0, Weights(w_ih, w_hh, b_ih, b_hh, w_hr), sizes, bool(reverse), loops, save=False)[:3]
