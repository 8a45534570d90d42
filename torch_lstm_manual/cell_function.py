"""One step of an LSTM: :class:`LSTMCellFunction`, the autograd Function that
``LSTMCell`` runs, and :func:`lstm_cell`, its functional form.

The step is :func:`~torch_lstm_manual.reference.cell_forward` and
:func:`~torch_lstm_manual.reference.cell_backward`, the step of the
time loops: with autograd off it runs their in-place form
(:func:`~torch_lstm_manual.backends.inplace.cell_forward_inplace`,
:func:`~torch_lstm_manual.backends.inplace.cell_backward_inplace`), which the
``"python"`` loops run for each step; where the reference must run (autograd
recording the backward pass, torch.compile, torch.func transforms, an empty
batch) it runs the reference step. :class:`NativeLSTMCellFunction` is the
same Function with the native step in place of the in-place one: each pass
(its products and the cell arithmetic of :mod:`torch_lstm_manual.native`'s
loops) in one call of the compiled extension, which saves a dozen calls
into ATen from Python per pass. What :class:`~.functional.LSTMFunction`
adds for a sequence (the steps' bookkeeping, the choice of loops, the
products over all steps) is left out: a call is one step.
"""

from __future__ import annotations

import inspect
from typing import Optional

import torch
from torch import Tensor
from torch._functorch.utils import unwrap_dead_wrappers

from . import native as loader
from .backends import needs_reference, records
from .backends.inplace import cell_backward_inplace, cell_forward_inplace
from .reference import cell_backward, cell_forward, input_projection

# (device, dtype) -> a scalar tensor 1 that the in-place step reads (never writes).
_ONES = {}


def _one(like: Tensor) -> Tensor:
    key = (like.device, like.dtype)
    one = _ONES.get(key)
    if one is None:
        with torch.inference_mode(False):
            one = _ONES[key] = torch.ones((), device=like.device, dtype=like.dtype)
    return one


def _in_place(tensors) -> bool:
    """Whether the in-place step runs ``tensors`` (x first): autograd off (the
    caller's part), a batch that is not empty, nothing that needs the reference."""
    return tensors[0].shape[0] != 0 and not needs_reference(tensors)


def _extension(x: Tensor):
    """The native extension, loaded; RuntimeError, saying why, where it does not run ``x``."""
    if loader._ext is None:
        loader.require(x)
    return loader._ext


def _forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, native: bool = False):
    """``(h_1, c_1, gates)``: the step, in place where it may run so (with
    ``native``, the native step, which the caller chose for ``x``). Autograd
    records nothing here: inside the Function, or no tensor asks for a gradient."""
    if not _in_place((x, h0, c0, w_ih, w_hh, b_ih, b_hh)):
        return cell_forward(input_projection(x, w_ih, b_ih, b_hh), h0, c0, w_hh, None)
    if native:
        h, c, gates = _extension(x).cell_step_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        return h, c, gates
    xw = input_projection(x, w_ih, b_ih, b_hh)  # (B, G)
    c = c0.clone(memory_format=torch.contiguous_format)  # (B, H), updated to c_1
    h = c0.new_empty(h0.shape)  # (B, H)
    cell_forward_inplace(None, xw, h0, c, w_hh.t(), None, None, h, _one(x))
    return h, c, xw  # xw now holds the gates


def _backward(ctx, d_h, d_c, native: bool):
    """The gradients of the seven inputs of :class:`LSTMCellFunction` (None
    where not asked for) from those of ``h_1`` and ``c_1`` (None: zeros)."""
    saved = ctx.saved_tensors
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, c, gates = saved
    n_x, n_h0, n_c0, n_w_ih, n_w_hh, n_b_ih, n_b_hh = ctx.needs_input_grad
    if d_h is None and d_c is None:
        return None, None, None, None, None, None, None
    if torch.is_grad_enabled():
        # Double backward: recompute the step with autograd watching, so that
        # the hand-derived backward below is itself differentiable.
        _, c, gates = cell_forward(input_projection(x, w_ih, b_ih, b_hh), h0, c0, w_hh, None)
        in_place = False
    else:
        in_place = _in_place(saved + (d_h, d_c))
    if in_place and native:
        # The step's arithmetic and its four products in one call.
        d_x, d_h0, d_c0, d_w_ih, d_w_hh, d_b = _extension(x).cell_step_backward(
            d_h, d_c, gates, c, c0, x, h0, w_ih, w_hh, n_x, n_h0, n_w_ih, n_w_hh, n_b_ih or n_b_hh
        )
        return (
            d_x, d_h0, d_c0 if n_c0 else None, d_w_ih, d_w_hh,
            d_b if n_b_ih else None,
            (d_b.clone() if n_b_ih else d_b) if n_b_hh else None,
        )
    if in_place:
        # d_c's memory becomes dc_0; a missing d_h is zeros for the step.
        dc = c0.new_zeros(c0.shape) if d_c is None else d_c.clone(memory_format=torch.contiguous_format)
        dm = c0.new_zeros(h0.shape) if d_h is None else d_h
        d_z = gates.new_empty(gates.shape)  # (B, G)
        d_h0 = h0.new_empty(h0.shape) if n_h0 else None
        cell_backward_inplace(dm, dc, gates, c, (c0,), w_hh, d_z, d_h0, _one(c))
        d_c0 = dc
    else:
        dh = torch.zeros_like(h0) if d_h is None else d_h
        dc = torch.zeros_like(c0) if d_c is None else d_c
        d_z, d_h0, d_c0 = cell_backward(dh, dc, gates, c, c0, w_hh, None)
    d_b = d_z.sum(0) if n_b_ih or n_b_hh else None  # (G,)
    return (
        d_z.mm(w_ih) if n_x else None,  # (B, I)
        d_h0 if n_h0 else None,
        d_c0 if n_c0 else None,
        d_z.t().mm(x) if n_w_ih else None,  # (G, I)
        d_z.t().mm(h0) if n_w_hh else None,  # (G, H)
        d_b if n_b_ih else None,
        (d_b.clone() if n_b_ih else d_b) if n_b_hh else None,
    )


class LSTMCellFunction(torch.autograd.Function):
    """One LSTM step (no projection); see :mod:`torch_lstm_manual.reference`.

    ``apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh)``: ``x`` (B, I), ``h0`` and
    ``c0`` (B, H), ``w_ih`` (G, I), ``w_hh`` (G, H), ``b_ih`` and ``b_hh`` (G,)
    or None. Returns ``(h_1, c_1, gates)``: the new states (B, H) and the
    activated gates ``i|f|g|o`` (B, G), which are saved for the backward pass
    and not a differentiable output. Use :func:`lstm_cell` for the states alone.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        return _forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, c, gates = output
        ctx.mark_non_differentiable(gates)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(*inputs, c, gates)

    @staticmethod
    def backward(ctx, d_h, d_c, _d_gates):
        return _backward(ctx, d_h, d_c, False)


class NativeLSTMCellFunction(LSTMCellFunction):
    """:class:`LSTMCellFunction` whose in-place step is the native one: the
    products and the cell arithmetic of a pass in one call of the compiled
    extension (:mod:`torch_lstm_manual.native`), for float32 and float64 CPU
    tensors once it is loaded; the reference step where the reference must run."""

    @staticmethod
    def forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        return _forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, True)

    @staticmethod
    def backward(ctx, d_h, d_c, _d_gates):
        return _backward(ctx, d_h, d_c, True)


# Function.apply binds the arguments to ``inspect.signature(forward)`` on every
# call (with setup_context); computed once here.
for _function in (LSTMCellFunction, NativeLSTMCellFunction):
    _function.forward.__signature__ = inspect.signature(_function.forward)

# What Function.apply calls once it has bound the arguments (which only fills in
# defaults; forward has none) and found no torch.func transform active.
_APPLY = {
    False: super(torch.autograd.Function, LSTMCellFunction).apply,
    True: super(torch.autograd.Function, NativeLSTMCellFunction).apply,
}


def apply_step(x, h0, c0, w_ih, w_hh, b_ih, b_hh, native: bool = False):
    """``LSTMCellFunction.apply`` (``NativeLSTMCellFunction`` with ``native``)
    with its seven arguments, without binding them to ``forward``'s signature
    on every call (~10 us of a step); under torch.compile and torch.func
    transforms, the Function's ``apply`` itself."""
    if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
        function = NativeLSTMCellFunction if native else LSTMCellFunction
        return function.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    return _APPLY[native](*unwrap_dead_wrappers((x, h0, c0, w_ih, w_hh, b_ih, b_hh)))


def lstm_cell(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
    *,
    native: bool = False,
):
    """Run :class:`LSTMCellFunction` and return ``(h_1, c_1)``; without a graph
    to record (grad mode off, or no tensor that asks for a gradient), the step alone.

    ``native``: run the native step (:class:`NativeLSTMCellFunction`), which
    builds the extension on first use; RuntimeError where it does not run
    ``x`` (:func:`torch_lstm_manual.native.unavailable` says why).
    """
    tensors = (x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    if records(tensors):
        h, c, _ = apply_step(*tensors, native)
        return h, c
    h, c, _ = _forward(*tensors, native)
    return h, c
