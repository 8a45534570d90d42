"""``LSTMCell``: a drop-in replacement for ``torch.nn.LSTMCell``, one step of the hand-derived LSTM.

A call runs :class:`~.cell_function.LSTMCellFunction`, the step of the time
loops (:func:`~.reference.cell_forward`, :func:`~.reference.cell_backward`
and their in-place form) without the machinery of a whole sequence, or, where
the native extension runs the tensors, :class:`~.cell_function.NativeLSTMCellFunction`,
the same step in one compiled call per pass. Nothing here computes an LSTM step itself.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .backends import CHOICES as BACKEND_CHOICES
from .backends import select
from .cell_function import lstm_cell


class LSTMCell(nn.Module):
    r"""An LSTM cell with the interface of ``torch.nn.LSTMCell``.

    The constructor, the parameters ``weight_ih`` (4H, I), ``weight_hh`` (4H, H),
    ``bias_ih`` and ``bias_hh`` (4H,), their initialisation, ``state_dict``,
    inputs and outputs are those of ``torch.nn.LSTMCell``. A call runs
    :class:`~torch_lstm_manual.cell_function.LSTMCellFunction`, one step of
    the hand-derived LSTM (the in-place step of the ``"python"`` loops, with
    autograd off, or its native form), so the backward pass is the
    hand-derived one, which is itself differentiable (double backward) and
    works under ``torch.func.vmap`` and ``torch.compile``.

    Args:
        input_size: features of the input ``x``.
        hidden_size: features of the states ``h`` and ``c``.
        bias: use ``b_ih`` and ``b_hh``.
        device, dtype: of the parameters.
        backend: ``"python"``: the in-place Python step; ``"native"``: the
            native step (:class:`~torch_lstm_manual.cell_function.NativeLSTMCellFunction`:
            the products and the cell arithmetic of a pass in one call of the
            compiled extension), RuntimeError where the extension does not run
            the input; ``"auto"``: the native step where it runs the input
            (float32 and float64 on the CPU, once built), else the Python step.

    Inputs: ``input, (h_0, c_0)``: ``input`` (B, I) or unbatched (I,); ``h_0``
    and ``c_0`` (B, H) or (H,), zeros when ``hx`` is None.

    Outputs: ``(h_1, c_1)``, each (B, H) or (H,).
    """

    __constants__ = ["input_size", "hidden_size", "bias"]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be greater than zero, got {value}")
        if backend not in BACKEND_CHOICES:
            raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
        self.input_size, self.hidden_size, self.bias, self.backend = input_size, hidden_size, bias, backend
        factory = {"device": device, "dtype": dtype}
        G = 4 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty((G, input_size), **factory))
        self.weight_hh = nn.Parameter(torch.empty((G, hidden_size), **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(G, **factory))
            self.bias_hh = nn.Parameter(torch.empty(G, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        # (backend option, device, dtype) -> "python" (the Python step) or
        # "native" (the native step), resolved on the first call (which may
        # build the native extension).
        self._backends = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), as ``torch.nn.LSTMCell``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("_backends", {})

    # ------------------------------------------------------------------
    # Conversions

    @classmethod
    def from_torch(cls, cell: nn.LSTMCell, *, backend: str = "auto") -> "LSTMCell":
        """An ``LSTMCell`` holding the same Parameter objects as ``cell`` (so an
        optimizer built on them keeps working), on its device, with its dtype and mode."""
        if not isinstance(cell, nn.LSTMCell):
            raise TypeError(f"from_torch expects a torch.nn.LSTMCell, got {type(cell).__name__}")
        new = cls(cell.input_size, cell.hidden_size, bool(cell.bias), device="meta", dtype=cell.weight_ih.dtype,
                  backend=backend)
        for name, param in cell.named_parameters(recurse=False):
            setattr(new, name, param)
        return new.train(cell.training)

    def to_torch(self) -> nn.LSTMCell:
        """A ``torch.nn.LSTMCell`` holding the same Parameter objects, device, dtype and mode."""
        cell = nn.LSTMCell(self.input_size, self.hidden_size, self.bias, device="meta", dtype=self.weight_ih.dtype)
        for name, param in self.named_parameters(recurse=False):
            setattr(cell, name, param)
        return cell.train(self.training)

    # ------------------------------------------------------------------
    # Forward

    def _backend_for(self, x: Tensor) -> str:
        key = (self.backend, x.device, x.dtype)
        backend = self._backends.get(key)
        if backend is None:
            backend = self._backends[key] = "python" if self.backend == "python" else select(self.backend, x)[0]
        return backend

    def _check_hx(self, hx, batched: bool, batch: int, x: Tensor) -> Tuple[Tensor, Tensor]:
        if not isinstance(hx, (tuple, list)):
            raise TypeError(f"hx must be a tuple (h_0, c_0) of two tensors, got {type(hx).__name__}")
        if len(hx) != 2:
            raise RuntimeError(f"LSTMCell expects two hidden states (h_0, c_0), got {len(hx)}")
        h0, c0 = hx
        want = 2 if batched else 1
        for i, t in enumerate((h0, c0)):
            if not isinstance(t, Tensor):
                raise TypeError(f"hx[{i}] must be a Tensor, got {type(t).__name__}")
            if t.dim() not in (1, 2):
                raise ValueError(f"LSTMCell: Expected hx[{i}] to be 1D or 2D, got {t.dim()}D instead")
            if t.dim() != want:
                kind = "batched 2-D" if batched else "unbatched 1-D"
                raise RuntimeError(f"For {kind} input, hx[{i}] should also be {want}-D, got {t.dim()}-D")
        if not batched:
            h0, c0 = h0.unsqueeze(0), c0.unsqueeze(0)
        for i, t in enumerate((h0, c0)):
            if t.shape[0] != batch:
                raise RuntimeError(f"Input batch size {batch} doesn't match hidden{i} batch size {t.shape[0]}")
            if t.shape[1] != self.hidden_size:
                raise RuntimeError(
                    f"hidden{i} has inconsistent hidden_size: got {t.shape[1]}, expected {self.hidden_size}"
                )
            if t.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
                raise RuntimeError(f"hx[{i}] dtype must match the input dtype {x.dtype}, got {t.dtype}")
            if t.device != x.device:
                raise RuntimeError(f"hx[{i}] must be on the input's device {x.device}, got {t.device}")
        return h0, c0

    def forward(self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None) -> Tuple[Tensor, Tensor]:
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a Tensor, got {type(input).__name__}")
        dim = input.dim()
        if dim != 2:
            if dim != 1:
                raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {dim}D instead")
            input = input.unsqueeze(0)  # (1, I)
        # Validation of the input only: the weights are the module's, as the constructor made them.
        w_ih = self.weight_ih
        if input.shape[1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.shape[1]}, expected {self.input_size}")
        if input.device != w_ih.device:
            raise RuntimeError(f"input must be on the parameters' device {w_ih.device}, got {input.device}")
        device_type = input.device.type
        autocast = torch.is_autocast_enabled(device_type)
        if input.dtype != w_ih.dtype and not autocast:
            raise RuntimeError(
                f"LSTMCell input dtype ({input.dtype}) does not match weight dtype ({w_ih.dtype}). "
                f"Convert input: input.to({w_ih.dtype}), or convert model: model.to({input.dtype})"
            )
        if hx is None:
            h0 = c0 = input.new_zeros(input.shape[0], self.hidden_size)  # (B, H); never written to
        else:
            h0, c0 = self._check_hx(hx, dim == 2, input.shape[0], input)
        weights = (w_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        if autocast:
            input, h0, c0, weights = _autocast(input, h0, c0, weights, device_type)
            with torch.autocast(device_type, enabled=False):
                h, c = self._step(input, h0, c0, weights)
        else:
            h, c = self._step(input, h0, c0, weights)
        if dim == 1:
            h, c = h.squeeze(0), c.squeeze(0)
        return h, c

    def _step(self, x: Tensor, h0: Tensor, c0: Tensor, weights) -> Tuple[Tensor, Tensor]:
        """``(h_1, c_1)`` from ``x`` (B, I), ``h0``, ``c0`` (B, H)."""
        return lstm_cell(x, h0, c0, *weights, native=self._backend_for(x) == "native")


def _autocast(x, h0, c0, weights, device_type):
    """The step under autocast, in the dtype ``torch.nn.LSTMCell`` returns there.

    ``torch.nn.LSTMCell`` runs its two products as autocast runs ``linear`` (in
    the autocast dtype) and the rest elementwise, so its states come out in the
    dtype that the autocast dtype and ``c_0``'s promote to (float32 for a
    float32 state under bfloat16). The step runs in that dtype here, every
    tensor cast to it; the products are not lowered, so the results are those
    of nn.LSTMCell without the rounding of the gates to the autocast dtype.
    """
    dtype = torch.promote_types(torch.get_autocast_dtype(device_type), c0.dtype)
    x, h0, c0 = x.to(dtype), h0.to(dtype), c0.to(dtype)
    weights = tuple(None if w is None else w.to(dtype) for w in weights)
    return x, h0, c0, weights
