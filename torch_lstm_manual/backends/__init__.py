"""The backends that run the time loops, and the one rule that picks the loops for a call.

A backend is a :class:`~.loops.Loops`: the two time loops (and, where it has
them, the fused passes from the inputs) with the arguments and results of the
reference loops. :data:`BACKENDS` holds them by name; :func:`select` decides,
for every call, which name a requested backend resolves to and which loops run.

- ``"python"`` (:mod:`.inplace`): the reference loops in place, autograd off.
- ``"native"`` (:mod:`.native`): the compiled loops of
  :mod:`torch_lstm_manual.native`, for float32 and float64 CPU tensors,
  registered the first time they are built.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import native as loader
from . import inplace, native
from .loops import REFERENCE, LayerGrads, Loops, backward_and_products, project_and_forward

__all__ = ["BACKENDS", "CHOICES", "REFERENCE", "LayerGrads", "Loops", "backward_and_products", "needs_reference",
           "records", "project_and_forward", "select"]

# What a caller may ask for: "auto" is "native" where it runs the tensors, else "python".
CHOICES = ("auto", "python", "native")


class _Registry(dict):
    """Backend name -> :class:`Loops`. ``"native"`` is in it once its loops are
    built; looking it up builds them (KeyError where they do not build, or
    RuntimeError under ``TORCH_LSTM_MANUAL_NATIVE=require``)."""

    def __missing__(self, name: str) -> Loops:
        if name == "native" and loader.load() is None:
            self[name] = native.LOOPS
            return native.LOOPS
        raise KeyError(name)


BACKENDS = _Registry(python=inplace.LOOPS)


def records(tensors) -> bool:
    """Whether a call on ``tensors`` must go through its autograd Function:
    grad mode is on and some tensor asks for a gradient, or a forward-mode AD
    level is entered (the Function reports that it has no jvp, where loops run
    without it would drop the tangents). Otherwise the call is inference, with
    nothing to save for a backward pass."""
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in tensors):
        return True
    return getattr(torch.autograd.forward_ad, "_current_level", -1) >= 0


def needs_reference(values) -> bool:
    """Whether the reference loops must run: under torch.compile, which traces
    them, or when any tensor among ``values`` is wrapped by a torch.func
    transform (vmap, grad, ...), which the in-place loops do not support.

    Callers pass every argument they hold (values that are not tensors are
    skipped), so that no tensor is left out of the rule.
    """
    if torch.compiler.is_compiling():
        return True
    if torch._C._functorch.maybe_current_level() is None:
        return False  # no transform is active: no tensor is wrapped by one
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    return any(isinstance(v, Tensor) and wrapped(v) for v in values)


def select(backend: str, rows: Tensor, values=None, *, recording: bool = False,
           variants: bool = False) -> Tuple[str, Optional[Loops]]:
    """The name ``backend`` resolves to for ``rows`` (N, I), and the loops that run them.

    The name: ``"python"``; ``"native"`` where the native loops run tensors
    like ``rows`` (building them on first use), else RuntimeError saying why;
    ``"auto"``: ``"native"`` where they run, else ``"python"``.

    The loops (None where ``values`` is None: the name alone is asked for):
    the reference ones when ``recording`` (autograd records the loops: double
    backward), where :func:`needs_reference` says so for ``values`` (every
    argument of the call), where there are no rows (an empty batch, which
    no backend is asked to handle), or where the call has ``variants`` of the
    cell (layer norm, peepholes, masks) that the backend does not run; else
    the named backend's.
    """
    if backend == "python":
        name = backend
    elif backend == "native":
        if loader.unavailable(rows) is not None:
            loader.require(rows)  # raises, saying why
        name = backend
    elif backend == "auto":
        name = "native" if loader.unavailable(rows) is None else "python"
    else:
        raise ValueError(f"backend must be one of {CHOICES}, got {backend!r}")
    if values is None:
        return name, None
    if recording or rows.shape[0] == 0 or needs_reference(values):
        return name, REFERENCE
    loops = BACKENDS[name]
    return name, (REFERENCE if variants and not loops.variants else loops)
