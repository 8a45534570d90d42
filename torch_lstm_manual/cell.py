"""``LSTMCell``: a drop-in replacement for ``torch.nn.LSTMCell``, one step of the hand-derived LSTM.

A call runs :class:`~.cell_function.LSTMCellFunction`, the step of the time
loops (:func:`~.reference.cell_forward`, :func:`~.reference.cell_backward`
and their in-place form) without the machinery of a whole sequence, or, where
the native extension runs the tensors, :class:`~.cell_function.NativeLSTMCellFunction`,
the same step in one compiled call per pass. Nothing here computes an LSTM step itself.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .backends import CHOICES as BACKEND_CHOICES
from .backends import select
from .cell_function import lstm_cell
from .functional import lstm_layer
from .variants import (WEIGHT_FIELDS, LayerMasks, check_probability, check_switch, init_parameters, parameter_shapes,
                       sample_layer_masks)


# The variant options a cell takes (those of LSTM that make sense for one step).
CELL_SWITCHES = ("layer_norm", "peepholes")
CELL_PROBABILITIES = ("zoneout_cell", "zoneout_hidden")


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
        layer_norm: bool = False,
        peepholes: bool = False,
        zoneout_cell: float = 0.0,
        zoneout_hidden: float = 0.0,
    ) -> None:
        super().__init__()
        self.layer_norm, self.peepholes = check_switch("layer_norm", layer_norm), check_switch("peepholes", peepholes)
        self.zoneout_cell = check_probability("zoneout_cell", zoneout_cell)
        self.zoneout_hidden = check_probability("zoneout_hidden", zoneout_hidden)
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
        # The variants' parameters, named as LSTM's without the layer suffix.
        for kind, shape in parameter_shapes(layer_norm, peepholes, hidden_size).items():
            self.register_parameter(kind, nn.Parameter(torch.empty(shape, **factory)))
        # (backend option, device, dtype) -> "python" (the Python step) or
        # "native" (the native step; with a variant, the native loops),
        # resolved on the first call (which may build the native extension).
        self._backends = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), as ``torch.nn.LSTMCell``,
        the peephole weights too; layer norm gains ones and biases zeros."""
        init_parameters(self.named_parameters(), self.hidden_size)

    @property
    def _variant(self) -> bool:
        return self.layer_norm or self.peepholes or bool(self.zoneout_cell or self.zoneout_hidden)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        for name in CELL_SWITCHES + CELL_PROBABILITIES:
            if getattr(self, name):
                s += f", {name}={getattr(self, name)!r}"
        return s

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("_backends", {})
        # Cells pickled before the variants had none.
        for name in CELL_SWITCHES:
            self.__dict__.setdefault(name, False)
        for name in CELL_PROBABILITIES:
            self.__dict__.setdefault(name, 0.0)

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
        """A ``torch.nn.LSTMCell`` holding the same Parameter objects, device, dtype and mode;
        RuntimeError for a cell with a variant, which ``torch.nn.LSTMCell`` cannot express."""
        if self._variant:
            options = [n for n in CELL_SWITCHES + CELL_PROBABILITIES if getattr(self, n)]
            raise RuntimeError(f"torch.nn.LSTMCell cannot express this LSTMCell's {', '.join(options)}")
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

    def forward(self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None, *,
                masks: Optional[LayerMasks] = None) -> Tuple[Tensor, Tensor]:
        """``torch.nn.LSTMCell``'s forward; with zoneout, ``masks`` (a
        :class:`~torch_lstm_manual.variants.LayerMasks` whose ``cell`` and
        ``hidden`` are (B, H) or (H,)) replaces the masks the call would draw."""
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
        if masks is not None and not (self.zoneout_cell or self.zoneout_hidden):
            raise ValueError("masks are the zoneout masks of a cell with zoneout_cell or zoneout_hidden; this cell has neither")
        if self._variant:
            weights += tuple(getattr(self, kind, None) for _, kind in WEIGHT_FIELDS)
            masks = self._masks(input, masks, dim == 2)
        if autocast:
            input, h0, c0, weights = _autocast(input, h0, c0, weights, device_type)
            with torch.autocast(device_type, enabled=False):
                h, c = self._step(input, h0, c0, weights, masks)
        else:
            h, c = self._step(input, h0, c0, weights, masks)
        if dim == 1:
            h, c = h.squeeze(0), c.squeeze(0)
        return h, c

    def _masks(self, x: Tensor, masks: Optional[LayerMasks], batched: bool) -> LayerMasks:
        """The zoneout masks of a call on ``x`` (B, I), as (1, B, H) rows: drawn, or ``masks`` checked."""
        shape = (1, x.shape[0], self.hidden_size)
        if masks is None:
            options = {"zoneout_cell": self.zoneout_cell, "zoneout_hidden": self.zoneout_hidden,
                       "recurrent_dropout": 0.0, "weight_drop": 0.0}
            return sample_layer_masks(options, self.training, shape[:2], shape[1], self.hidden_size, self.hidden_size, x)
        if not isinstance(masks, LayerMasks) or masks.weight_hh is not None or masks.recurrent is not None:
            raise ValueError("masks must be a LayerMasks with zoneout masks (cell, hidden) only, got "
                             f"{masks!r:.80}")
        given = []
        for name, m in (("cell", masks.cell), ("hidden", masks.hidden)):
            want = shape[1:] if batched else shape[2:]
            if m is not None and tuple(m.shape) != want:
                raise ValueError(f"masks.{name} must have shape {want}, got {tuple(m.shape)}")
            given.append(None if m is None else m.reshape(shape))
        return LayerMasks(None, None, *given)

    def _step(self, x: Tensor, h0: Tensor, c0: Tensor, weights, masks: Optional[LayerMasks] = None) -> Tuple[Tensor, Tensor]:
        """``(h_1, c_1)`` from ``x`` (B, I), ``h0``, ``c0`` (B, H)."""
        if masks is not None:  # a variant: LSTMFunction over a sequence of one step, x (1, B, I)
            backend = "native" if self._backend_for(x) == "native" else "python"
            ln_ih, ln_hh, ln_c, ln_c_bias, peephole = weights[4:]
            _, h, c = lstm_layer(
                x.unsqueeze(0), h0, c0, *weights[:4], None, None, False, backend,
                layer_norm=None if ln_ih is None else (ln_ih, ln_hh, ln_c, ln_c_bias), peephole=peephole,
                cell_mask=masks.cell, hidden_mask=masks.hidden,
            )
            return h, c
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
