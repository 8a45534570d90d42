"""``LSTM``: a drop-in replacement for ``torch.nn.LSTM`` built on :class:`LSTMFunction`."""

from __future__ import annotations

import numbers
import warnings
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from .backends import CHOICES as BACKEND_CHOICES
from .backends import select
from .functional import bidirectional_layer, lstm_layer
from .inputs import autocast_inputs, check_hx, check_input
from .layer import Weights
from .variants import (NO_LAYER_MASKS, PROBABILITIES, SWITCHES, WEIGHT_FIELDS, LayerMasks, check_probability, check_switch,
                       init_parameters, parameter_shapes, sample_layer_masks)


def _plain(weights, masks) -> bool:
    """Whether layers with these ``weights`` and ``masks`` (one entry per
    layer and direction) have no variants of the cell: no layer norm, no
    peepholes, no masks."""
    return all(Weights._make(w).plain for w in weights) and all(m is None for ms in masks for m in ms)


def _layer_args(h0, c0, weights, k) -> tuple:
    """``(h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)`` of layer and direction ``k``."""
    return (h0[k], c0[k], *weights[k][:5])


def resolve_backend(backend: str, x: Tensor) -> str:
    """The time-loop implementation that runs ``x``: ``auto`` takes the native
    loops where they are built and support the device and dtype (see
    :func:`torch_lstm_manual.backends.select`)."""
    return select(backend, x)[0]


class LSTM(nn.Module):
    r"""Multi-layer LSTM with the interface of ``torch.nn.LSTM``.

    The constructor, parameter names and shapes, ``state_dict``, inputs and
    outputs are those of ``torch.nn.LSTM``; each layer and direction runs
    :class:`~torch_lstm_manual.functional.LSTMFunction`, whose backward pass is
    the hand-derived backpropagation through time.

    Args:
        input_size: features of the input ``x``.
        hidden_size: features of the cell state ``c`` (and of ``h`` without projection).
        num_layers: stacked recurrent layers.
        bias: use ``b_ih`` and ``b_hh``.
        batch_first: inputs and outputs are ``(B, T, *)`` instead of ``(T, B, *)``.
        dropout: dropout on the outputs of every layer but the last, in training mode.
        bidirectional: add a reverse direction to every layer.
        proj_size: size of the projection of ``h`` (0: none).
        device, dtype: of the parameters.
        backend: time-loop implementation: ``"auto"`` (native where built and
            supported, else Python), ``"python"`` or ``"native"``.
        layer_norm: layer-normalise the two products of the gates and the
            cell state before its tanh (parameters ``layer_norm_*_l{k}``).
        peepholes: the cell state enters the gates i, f (previous state) and o
            (new state) through the weights ``peephole_l{k}`` (3, H).
        zoneout_cell, zoneout_hidden: the probability that a unit of ``c``
            (``h``) keeps its previous value at a step, per step and unit;
            in eval, the expectation.
        recurrent_dropout: dropout on ``h_{t-1}`` where it enters ``W_hh``, one
            mask per sequence, layer and direction (variational).
        weight_drop: dropout on the weights ``W_hh`` (DropConnect), one mask
            per forward call.

    The variants are defined in :mod:`torch_lstm_manual.reference`; the
    stochastic ones draw their masks from torch's generator of the device
    (:meth:`sample_masks`), or take them given to :meth:`forward`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        backend: str = "auto",
        layer_norm: bool = False,
        peepholes: bool = False,
        zoneout_cell: float = 0.0,
        zoneout_hidden: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.layer_norm, self.peepholes = check_switch("layer_norm", layer_norm), check_switch("peepholes", peepholes)
        self.zoneout_cell, self.zoneout_hidden, self.recurrent_dropout, self.weight_drop = (
            check_probability(name, value)
            for name, value in zip(PROBABILITIES, (zoneout_cell, zoneout_hidden, recurrent_dropout, weight_drop))
        )
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability "
                f"of an element being zeroed, got {dropout!r}"
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=2,
            )
        for name, value in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
        for name, value, smallest in (
            ("input_size", input_size, 1),
            ("hidden_size", hidden_size, 1),
            ("num_layers", num_layers, 1),
            ("proj_size", proj_size, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
            if value < smallest:
                what = "greater than zero" if smallest else "a positive integer or zero to disable projections"
                raise ValueError(f"{name} must be {what}, got {value}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size has to be smaller than hidden_size, got proj_size={proj_size} >= hidden_size={hidden_size}")
        if backend not in BACKEND_CHOICES:
            raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")

        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size, self.backend = bidirectional, proj_size, backend
        factory = {"device": device, "dtype": dtype}
        H, P, D = hidden_size, proj_size or hidden_size, 2 if bidirectional else 1
        self._layer_names = []  # per (layer, direction): names of the fields of Weights, None where absent
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else P * D
            for direction in range(D):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = {"weight_ih": (4 * H, layer_input), "weight_hh": (4 * H, P)}
                if bias:
                    shapes.update(bias_ih=(4 * H,), bias_hh=(4 * H,))
                if proj_size:
                    shapes["weight_hr"] = (P, H)
                shapes.update(parameter_shapes(layer_norm, peepholes, H))
                for kind, shape in shapes.items():
                    self.register_parameter(kind + suffix, nn.Parameter(torch.empty(shape, **factory)))
                kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr") + tuple(k for _, k in WEIGHT_FIELDS)
                self._layer_names.append(tuple(kind + suffix if kind in shapes else None for kind in kinds))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), as ``torch.nn.LSTM``,
        the peephole weights too; layer norm gains ones and biases zeros."""
        init_parameters(self.named_parameters(), self.hidden_size)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = {"proj_size": 0, "num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0, "bidirectional": False, "backend": "auto",
                    **dict.fromkeys(SWITCHES, False), **dict.fromkeys(PROBABILITIES, 0.0)}
        for name, default in defaults.items():
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s

    def __setstate__(self, state):
        super().__setstate__(state)
        # Modules pickled before the variants had none, and five names per layer.
        for name in SWITCHES:
            self.__dict__.setdefault(name, False)
        for name in PROBABILITIES:
            self.__dict__.setdefault(name, 0.0)
        self._layer_names = [names + (None,) * (5 + len(WEIGHT_FIELDS) - len(names)) for names in self._layer_names]

    def flatten_parameters(self) -> None:
        """Nothing to do: the weights are used where they are. Kept so that code
        written for ``torch.nn.LSTM`` (which calls it for cuDNN) runs unchanged."""

    @property
    def all_weights(self):
        """Parameters per layer and direction, in ``torch.nn.LSTM``'s order."""
        return [[getattr(self, n) for n in names if n is not None] for names in self._layer_names]

    # ------------------------------------------------------------------
    # Conversions

    @classmethod
    def from_torch(cls, lstm: nn.LSTM, *, backend: str = "auto") -> "LSTM":
        """An ``LSTM`` holding the same Parameter objects as ``lstm`` (so an optimizer
        built on them keeps working), on its device, with its dtype and mode."""
        if not isinstance(lstm, nn.LSTM):
            raise TypeError(f"from_torch expects a torch.nn.LSTM, got {type(lstm).__name__}")
        weight = lstm.weight_ih_l0
        new = cls(
            lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bias, lstm.batch_first,
            lstm.dropout, lstm.bidirectional, lstm.proj_size, device="meta", dtype=weight.dtype, backend=backend,
        )
        for name, param in lstm.named_parameters(recurse=False):
            setattr(new, name, param)
        return new.train(lstm.training)

    def to_torch(self) -> nn.LSTM:
        """A ``torch.nn.LSTM`` holding the same Parameter objects, device, dtype and mode.

        RuntimeError for a module that ``torch.nn.LSTM`` cannot express: layer
        norm, peepholes, zoneout, or recurrent dropout or weight drop in
        training mode (in eval they are the identity)."""
        options = [name for name in SWITCHES if getattr(self, name)]
        options += [name for name in PROBABILITIES if getattr(self, name)
                    and (self.training or name.startswith("zoneout"))]
        if options:
            mode = "training" if self.training else "eval"
            raise RuntimeError(
                f"torch.nn.LSTM cannot express this LSTM's {', '.join(options)} (in {mode} mode); "
                "to_torch converts plain LSTMs, and recurrent_dropout or weight_drop only in eval mode"
            )
        weight = self.weight_ih_l0
        lstm = nn.LSTM(
            self.input_size, self.hidden_size, self.num_layers, self.bias, self.batch_first,
            self.dropout, self.bidirectional, self.proj_size, device="meta", dtype=weight.dtype,
        )
        for name, param in self.named_parameters(recurse=False):
            setattr(lstm, name, param)
        lstm._init_flat_weights()
        return lstm.train(self.training)

    # ------------------------------------------------------------------
    # Forward

    def sample_masks(self, input) -> List[LayerMasks]:
        """The masks a forward call on ``input`` (as :meth:`forward` takes it) draws
        in the module's mode: one :class:`~torch_lstm_manual.variants.LayerMasks`
        per layer and direction (index ``layer * D + direction``), in the
        layout of the rows of the input: time-major ``(T, B, .)`` for a
        padded batch (also with ``batch_first``), ``(N, .)`` for a
        PackedSequence; ``(T, 1, .)`` for an unbatched one. Pass them to
        :meth:`forward` as ``masks`` to run a call with given masks."""
        if isinstance(input, PackedSequence):
            return self._draw_masks(input.data, int(input.batch_sizes[0]))
        x = input if input.dim() == 3 else input.unsqueeze(1 if not self.batch_first else 0)
        x = x.transpose(0, 1) if self.batch_first else x  # (T, B, I)
        return self._draw_masks(x, x.shape[1])

    def _draw_masks(self, x: Tensor, batch: int) -> List[LayerMasks]:
        """:meth:`sample_masks` for the rows ``x`` ((T, B, I) or (N, I)) of ``batch`` sequences."""
        drops = self.training and (self.recurrent_dropout or self.weight_drop)
        if not (drops or self.zoneout_cell or self.zoneout_hidden):  # nothing to draw
            return [NO_LAYER_MASKS] * (self.num_layers * (2 if self.bidirectional else 1))
        options = {name: getattr(self, name) for name in PROBABILITIES}
        D = 2 if self.bidirectional else 1
        P = self.proj_size or self.hidden_size
        rows = tuple(x.shape[:-1])
        return [sample_layer_masks(options, self.training, rows, batch, self.hidden_size, P, x)
                for _ in range(self.num_layers * D)]

    def forward(self, input, hx: Optional[Tuple[Tensor, Tensor]] = None, *, masks: Optional[List[LayerMasks]] = None):
        """``torch.nn.LSTM``'s forward; ``masks`` (as :meth:`sample_masks` returns
        them) replaces the masks the call would draw for its variants."""
        packed = isinstance(input, PackedSequence)
        D, H, P = (2 if self.bidirectional else 1), self.hidden_size, self.proj_size or self.hidden_size
        if packed:
            x, batch_sizes, sorted_indices, unsorted_indices = input
            check_input(self, x, packed=True)
            sizes = tuple(batch_sizes.tolist())
            if not sizes:
                raise RuntimeError("Expected sequence length to be larger than 0 in RNN, got batch_sizes of length 0")
            batch, batched = sizes[0], True
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"input must be a Tensor or a PackedSequence, got {type(input).__name__}")
            if input.dim() not in (2, 3):
                raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1 if not self.batch_first else 0)
            check_input(self, x, packed=False)
            if self.batch_first:
                x = x.transpose(0, 1)  # (T, B, I)
            sizes, sorted_indices, unsorted_indices = None, None, None
            batch = x.shape[1]
            if x.shape[0] == 0:
                raise RuntimeError(f"Expected sequence length to be larger than 0 in RNN, got input of shape {list(input.shape)}")

        if hx is None:
            zeros = {"dtype": x.dtype, "device": x.device}
            h0 = torch.zeros(self.num_layers * D, batch, P, **zeros)
            c0 = torch.zeros(self.num_layers * D, batch, H, **zeros)
        else:
            h0, c0 = check_hx(self, hx, batched, batch, x)
            if sorted_indices is not None:
                h0, c0 = h0.index_select(1, sorted_indices), c0.index_select(1, sorted_indices)

        weights = [[getattr(self, n) if n is not None else None for n in names] for names in self._layer_names]
        if masks is None:
            masks = self._draw_masks(x, batch)
        elif not isinstance(masks, (list, tuple)) or len(masks) != len(weights):
            raise ValueError(f"masks must be a list of {len(weights)} LayerMasks (one per layer and direction), "
                             f"got {type(masks).__name__}" + (f" of length {len(masks)}" if isinstance(masks, (list, tuple)) else ""))
        device_type = x.device.type
        if torch.is_autocast_enabled(device_type):
            x, h0, c0, weights = autocast_inputs(self, x, h0, c0, weights, device_type)
        with torch.autocast(device_type, enabled=False):
            out, h_n, c_n = self._run_layers(x, h0, c0, weights, masks, sizes)

        if packed:
            h_n, c_n = (h_n, c_n) if unsorted_indices is None else (h_n.index_select(1, unsorted_indices), c_n.index_select(1, unsorted_indices))
            return PackedSequence(out, batch_sizes, sorted_indices, unsorted_indices), (h_n, c_n)
        if self.batch_first:
            out = out.transpose(0, 1)  # (B, T, D*P)
        if not batched:
            out = out.squeeze(0 if self.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return out, (h_n, c_n)

    def _run_layers(self, x, h0, c0, weights, masks, sizes):
        D = 2 if self.bidirectional else 1
        backend = resolve_backend(self.backend, x)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            ks = range(layer * D, layer * D + D)
            if D == 2 and _plain([weights[k] for k in ks], [masks[k] for k in ks]):
                # The two directions at once where the backend can (bidirectional_layer).
                results = bidirectional_layer(x, *(_layer_args(h0, c0, weights, k) for k in ks), sizes, backend)
            else:
                results = [self._layer(x, h0, c0, weights, masks, sizes, backend, k, k % D == 1) for k in ks]
            for y, h, c in results:
                h_n.append(h)
                c_n.append(c)
            x = results[0][0] if D == 1 else torch.cat([y for y, _, _ in results], -1)  # (T, B, D*P) or (N, D*P)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        return x, torch.stack(h_n), torch.stack(c_n)

    @staticmethod
    def _layer(x, h0, c0, weights, masks, sizes, backend, k, reverse):
        """lstm_layer for layer and direction ``k``: ``(y, h_n, c_n)``."""
        w_ih, w_hh, b_ih, b_hh, w_hr, ln_ih, ln_hh, ln_c, ln_c_bias, peephole = weights[k]
        mask = LayerMasks(*masks[k])
        return lstm_layer(
            x, h0[k], c0[k], w_ih, w_hh, b_ih, b_hh, w_hr, sizes, reverse, backend,
            layer_norm=None if ln_ih is None else (ln_ih, ln_hh, ln_c, ln_c_bias), peephole=peephole,
            weight_hh_mask=mask.weight_hh, recurrent_mask=mask.recurrent, cell_mask=mask.cell,
            hidden_mask=mask.hidden,
        )
