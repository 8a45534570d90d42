"""The LSTM variants as users write them today: a loop over time in Python,
torch ops per step, autograd for the backward.

These are the baselines of the speed comparison for ``layer_norm``,
``peepholes`` and zoneout: one layer, one direction, input (T, B, I), each
returning ``(out (T, B, H), (h_n (1, B, H), c_n (1, B, H)))`` like
``torch.nn.LSTM``. Each computes the same math as the option of the library's
``LSTM`` (checked in tests/test_variant_baselines.py), and takes that module's
weights through :meth:`from_state_dict`, so that a comparison runs both on the
same numbers. They use nothing of ``torch_lstm_manual``.

    ours = LSTM(I, H, layer_norm=True)
    base = LayerNormLSTM.from_state_dict(ours.state_dict())
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _Loop(nn.Module):
    """What every baseline shares: loading the library's weights and the initial state.

    ``STATE_NAMES`` maps the state_dict names of the library's ``LSTM`` (and
    ``nn.LSTM``) to this module's own.
    """

    STATE_NAMES = {
        "weight_ih_l0": "weight_ih",
        "weight_hh_l0": "weight_hh",
        "bias_ih_l0": "bias_ih",
        "bias_hh_l0": "bias_hh",
    }

    @classmethod
    def from_state_dict(cls, state_dict: dict, **kwargs):
        """A module with the weights of a single-layer, one-direction LSTM's ``state_dict``."""
        missing = [name for name in cls.STATE_NAMES if name not in state_dict]
        if missing:
            raise KeyError(f"{cls.__name__}.from_state_dict: state_dict has no {missing}")
        w_ih = state_dict["weight_ih_l0"]
        hidden_size, input_size = w_ih.shape[0] // 4, w_ih.shape[1]
        if state_dict["weight_hh_l0"].shape != (4 * hidden_size, hidden_size):
            raise ValueError(
                f"{cls.__name__}.from_state_dict: weight_hh_l0 must have shape {(4 * hidden_size, hidden_size)} "
                f"(no projection), got {tuple(state_dict['weight_hh_l0'].shape)}"
            )
        module = cls(input_size, hidden_size, device=w_ih.device, dtype=w_ih.dtype, **kwargs)
        module.load_state_dict({ours: state_dict[theirs] for theirs, ours in cls.STATE_NAMES.items()}, strict=True)
        return module

    def initial_state(self, x: torch.Tensor, hx):
        """(h, c), each (B, H), from ``hx`` = ((1, B, H), (1, B, H)) or zeros."""
        if hx is None:
            zeros = x.new_zeros(x.shape[1], self.hidden_size)
            return zeros, zeros
        h0, c0 = hx
        return h0[0], c0[0]


class _UserLSTM(_Loop):
    """The weights of a single-layer ``nn.LSTM``, as plain parameters."""

    def __init__(self, input_size: int, hidden_size: int, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size = input_size, hidden_size
        G = 4 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(G, hidden_size, **factory))
        self.bias_ih = nn.Parameter(torch.empty(G, **factory))
        self.bias_hh = nn.Parameter(torch.empty(G, **factory))
        bound = 1 / math.sqrt(hidden_size)
        for weight in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            nn.init.uniform_(weight, -bound, bound)

    def input_part(self, x: torch.Tensor) -> torch.Tensor:
        """x W_ih^T + b_ih + b_hh for every step at once, (T, B, 4H): no step waits on it."""
        return x @ self.weight_ih.T + self.bias_ih + self.bias_hh


class LayerNormLSTM(_UserLSTM):
    """Layer normalisation of the input and recurrent pre-activations (gain only)
    and of the cell state before its tanh (gain and bias); the carried cell state
    is the unnormalised one."""

    STATE_NAMES = _UserLSTM.STATE_NAMES | {
        "layer_norm_ih_weight_l0": "ln_ih.weight",
        "layer_norm_hh_weight_l0": "ln_hh.weight",
        "layer_norm_c_weight_l0": "ln_c.weight",
        "layer_norm_c_bias_l0": "ln_c.bias",
    }

    def __init__(self, input_size: int, hidden_size: int, device=None, dtype=None):
        super().__init__(input_size, hidden_size, device=device, dtype=dtype)
        factory = {"device": device, "dtype": dtype}
        self.ln_ih = nn.LayerNorm(4 * hidden_size, bias=False, **factory)
        self.ln_hh = nn.LayerNorm(4 * hidden_size, bias=False, **factory)
        self.ln_c = nn.LayerNorm(hidden_size, **factory)

    def forward(self, x, hx=None):
        h, c = self.initial_state(x, hx)
        xw = self.ln_ih(x @ self.weight_ih.T) + self.bias_ih + self.bias_hh  # (T, B, 4H)
        outputs = []
        for t in range(x.shape[0]):
            gates = xw[t] + self.ln_hh(h @ self.weight_hh.T)
            i, f, g, o = gates.chunk(4, dim=1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * c + i * g
            h = o * torch.tanh(self.ln_c(c))
            outputs.append(h)
        return torch.stack(outputs), (h.unsqueeze(0), c.unsqueeze(0))


class PeepholeLSTM(_UserLSTM):
    """Peephole connections: the input and forget gates see the previous cell
    state, the output gate the new one (``peephole`` rows i, f, o)."""

    STATE_NAMES = _UserLSTM.STATE_NAMES | {"peephole_l0": "peephole"}

    def __init__(self, input_size: int, hidden_size: int, device=None, dtype=None):
        super().__init__(input_size, hidden_size, device=device, dtype=dtype)
        bound = 1 / math.sqrt(hidden_size)
        self.peephole = nn.Parameter(torch.empty(3, hidden_size, device=device, dtype=dtype).uniform_(-bound, bound))

    def forward(self, x, hx=None):
        h, c = self.initial_state(x, hx)
        xw = self.input_part(x)
        p_i, p_f, p_o = self.peephole
        outputs = []
        for t in range(x.shape[0]):
            gates = xw[t] + h @ self.weight_hh.T
            z_i, z_f, z_g, z_o = gates.chunk(4, dim=1)
            i = torch.sigmoid(z_i + p_i * c)
            f = torch.sigmoid(z_f + p_f * c)
            c = f * c + i * torch.tanh(z_g)
            o = torch.sigmoid(z_o + p_o * c)
            h = o * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs), (h.unsqueeze(0), c.unsqueeze(0))


class ZoneoutLSTM(_Loop):
    """Zoneout on ``nn.LSTMCell``: each unit keeps its previous cell (hidden)
    state with probability ``zoneout_cell`` (``zoneout_hidden``), a mask drawn
    per step in training; in evaluation the states mix with those weights.

    ``masks``: optionally (d_c, d_h), each (T, B, H) of 0/1 (1 = keep), used
    in training instead of drawing, for reproducible comparisons.
    """

    STATE_NAMES = {
        "weight_ih_l0": "cell.weight_ih",
        "weight_hh_l0": "cell.weight_hh",
        "bias_ih_l0": "cell.bias_ih",
        "bias_hh_l0": "cell.bias_hh",
    }

    def __init__(self, input_size: int, hidden_size: int, zoneout_cell: float = 0.1, zoneout_hidden: float = 0.1,
                 device=None, dtype=None):  # fmt: skip
        super().__init__()
        for name, p in (("zoneout_cell", zoneout_cell), ("zoneout_hidden", zoneout_hidden)):
            if not 0 <= p < 1:
                raise ValueError(f"ZoneoutLSTM: {name} must be in [0, 1), got {p}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.zoneout_cell, self.zoneout_hidden = zoneout_cell, zoneout_hidden
        self.cell = nn.LSTMCell(input_size, hidden_size, device=device, dtype=dtype)

    def _keep(self, p: float, state: torch.Tensor, given):
        """The zoneout mask of one step: given, drawn (training) or the constant p (evaluation)."""
        if not self.training:
            return p
        return given if given is not None else torch.bernoulli(torch.full_like(state, p))

    def forward(self, x, hx=None, masks=None):
        h, c = self.initial_state(x, hx)
        outputs = []
        for t in range(x.shape[0]):
            d_c = self._keep(self.zoneout_cell, c, None if masks is None else masks[0][t])
            d_h = self._keep(self.zoneout_hidden, h, None if masks is None else masks[1][t])
            h_new, c_new = self.cell(x[t], (h, c))
            c = d_c * c + (1 - d_c) * c_new
            h = d_h * h + (1 - d_h) * h_new
            outputs.append(h)
        return torch.stack(outputs), (h.unsqueeze(0), c.unsqueeze(0))


# The speed comparison's rows: label -> (baseline class, options of the library's
# LSTM with the same math, keyword arguments of the baseline).
ZONEOUT = {"zoneout_cell": 0.1, "zoneout_hidden": 0.1}
BASELINES = {
    "layer_norm": (LayerNormLSTM, {"layer_norm": True}, {}),
    "peepholes": (PeepholeLSTM, {"peepholes": True}, {}),
    "zoneout": (ZoneoutLSTM, ZONEOUT, ZONEOUT),
}
