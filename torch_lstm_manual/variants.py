"""The options of the LSTM variants: their parameters, their masks, and the
checks of what a caller gives.

The math of each variant is in :mod:`torch_lstm_manual.reference`; this module
only says which tensors a variant has (:func:`parameter_shapes`), draws the
masks of the stochastic ones (:func:`sample_layer_masks`) and checks the
arguments of :func:`~torch_lstm_manual.functional.lstm_layer`.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

# The probabilities a module takes, by keyword: the share of units dropped
# (recurrent_dropout, weight_drop) or kept from the step before (zoneout).
PROBABILITIES = ("zoneout_cell", "zoneout_hidden", "recurrent_dropout", "weight_drop")
SWITCHES = ("layer_norm", "peepholes")


class LayerMasks(NamedTuple):
    """The masks of one layer and direction (None: off), as
    :func:`~torch_lstm_manual.functional.lstm_layer` takes them."""

    weight_hh: Optional[Tensor] = None  # (G, P): weight drop, scaled by 1 / (1 - p)
    recurrent: Optional[Tensor] = None  # (B, P): recurrent dropout, scaled by 1 / (1 - p)
    cell: Optional[Tensor] = None  # zoneout d_c, rows like the input: (T, B, H) or (N, H)
    hidden: Optional[Tensor] = None  # zoneout d_h: (T, B, P) or (N, P)


NO_LAYER_MASKS = LayerMasks()


def check_probability(name: str, value) -> float:
    """``value`` as a float, or ValueError naming ``name`` unless it is a number in [0, 1]."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a probability, a number in [0, 1], got {value!r}")
    return float(value)


def check_switch(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
    return value


def parameter_shapes(layer_norm: bool, peepholes: bool, hidden_size: int) -> dict:
    """The variant parameters of one layer and direction: name prefix -> shape,
    in the order of :class:`~torch_lstm_manual.layer.Weights`."""
    H = hidden_size
    shapes = {}
    if layer_norm:
        shapes.update(layer_norm_ih_weight=(4 * H,), layer_norm_hh_weight=(4 * H,), layer_norm_c_weight=(H,),
                      layer_norm_c_bias=(H,))
    if peepholes:
        shapes["peephole"] = (3, H)
    return shapes


# The fields of Weights after w_hr, and the parameter name prefix of each.
WEIGHT_FIELDS = (("ln_ih", "layer_norm_ih_weight"), ("ln_hh", "layer_norm_hh_weight"), ("ln_c", "layer_norm_c_weight"),
                 ("ln_c_bias", "layer_norm_c_bias"), ("peephole", "peephole"))


def init_parameters(named_parameters, hidden_size: int) -> None:
    """Initialise an LSTM's or a cell's parameters: every weight and bias from
    U(-1/sqrt(H), 1/sqrt(H)), as torch.nn.LSTM does, the peephole weights too;
    the layer norm gains to ones and its biases to zeros."""
    bound = 1.0 / math.sqrt(hidden_size)
    for name, weight in named_parameters:
        if name.startswith("layer_norm_"):
            nn.init.zeros_(weight) if "_bias" in name else nn.init.ones_(weight)
        else:
            nn.init.uniform_(weight, -bound, bound)


def dropout_mask(shape, p: float, like: Tensor) -> Tensor:
    """Bernoulli(1 - p) / (1 - p) of ``shape``, from the generator of ``like``'s
    device; all zeros for ``p = 1``, as ``F.dropout`` gives."""
    if p == 1:
        return like.new_zeros(shape)
    # u < 1 - p for u ~ U[0, 1): Bernoulli(1 - p), drawn faster than bernoulli_ on the CPU.
    return like.new_empty(shape).uniform_().lt_(1 - p).div_(1 - p)


# Below this probability the CPU draws a Bernoulli mask from the gaps between its ones.
RARE = 0.15


def _gap_draws(mean: float) -> int:
    """Gaps to draw for ``mean`` expected ones: enough to pass the end all but
    never (six standard deviations over); bernoulli_mask draws more if not."""
    return int(mean + 6 * math.sqrt(mean) + 16)


def bernoulli_mask(shape, p: float, like: Tensor) -> Tensor:
    """A bool tensor of ``shape`` on ``like``'s device, each entry True with
    probability ``p``, independently, from the generator of the device.

    On the CPU, where the generator draws one number at a time, a rare value
    (probability below :data:`RARE`, or above ``1 - RARE`` for False) is
    placed by drawing the gaps between its occurrences, Geometric(p), one draw
    per occurrence instead of one per entry; otherwise each entry is
    ``u < p`` for ``u ~ U[0, 1)``.
    """
    if p > 0.5:
        return ~bernoulli_mask(shape, 1 - p, like)
    if p >= RARE or like.device.type != "cpu":
        return like.new_empty(shape).uniform_() < p
    n = math.prod(shape)
    mask = torch.zeros(n, dtype=torch.bool, device=like.device)
    start = 0  # the first entry not yet drawn
    while p > 0 and start < n:
        gaps = torch.empty(_gap_draws((n - start) * p), dtype=torch.float64).geometric_(p)
        ones = gaps.cumsum_(0).add_(start - 1)  # the positions of the Trues: trials up to each success
        inside = ones[ones < n].long()
        mask.index_fill_(0, inside, True)
        start = n if inside.numel() < ones.numel() else int(ones[-1]) + 1
    return mask.view(shape)


def zoneout_mask(shape, z: float, training: bool, like: Tensor) -> Tensor:
    """The zoneout mask ``d`` of ``shape``: Bernoulli(z) in training, as bool
    (a quarter of the memory of float32; the loops read it as 0 and 1), ``z``
    everywhere in eval (its expectation; an expanded scalar of ``like``'s dtype)."""
    if training:
        return bernoulli_mask(shape, z, like)
    return like.new_full((), z).expand(shape)


def sample_layer_masks(options: dict, training: bool, rows: Sequence[int], batch: int, hidden_size: int,
                       out_size: int, like: Tensor) -> LayerMasks:
    """The masks of one layer and direction for one forward call.

    ``options`` holds the probabilities of :data:`PROBABILITIES`; ``rows`` is
    the shape of the input's rows without its features ((T, B) or (N,)).
    Drawn in the order of :class:`LayerMasks`, each only where its option is on
    (dropout masks in training only).
    """
    H, P = hidden_size, out_size
    weight_hh = recurrent = cell = hidden = None
    if training and options["weight_drop"]:
        weight_hh = dropout_mask((4 * H, P), options["weight_drop"], like)
    if training and options["recurrent_dropout"]:
        recurrent = dropout_mask((batch, P), options["recurrent_dropout"], like)
    if options["zoneout_cell"]:
        cell = zoneout_mask((*rows, H), options["zoneout_cell"], training, like)
    if options["zoneout_hidden"]:
        hidden = zoneout_mask((*rows, P), options["zoneout_hidden"], training, like)
    return LayerMasks(weight_hh, recurrent, cell, hidden)


def _check_tensor(name: str, t, shape, like: Tensor, or_bool: bool = False) -> None:
    """TypeError or ValueError naming ``name`` unless ``t`` is a tensor of
    ``shape`` with the dtype (or, with ``or_bool``, bool) and device of ``like``."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if (t.dtype != like.dtype and not (or_bool and t.dtype == torch.bool)) or t.device != like.device:
        dtype = f"{like.dtype} or torch.bool" if or_bool else f"{like.dtype}"
        raise ValueError(f"{name} must be {dtype} on {like.device} like the input, got {t.dtype} on {t.device}")


def check_variants(x: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, w_hr: Optional[Tensor], batch_sizes,
                   layer_norm, peephole, weight_hh_mask, recurrent_mask, cell_mask, hidden_mask) -> tuple:
    """Check the variant arguments of ``lstm_layer``; return the four layer norm
    tensors ``(ln_ih, ln_hh, ln_c, ln_c_bias)`` (None each without layer norm)."""
    H, P, B = c0.shape[-1], h0.shape[-1], h0.shape[0]
    G = 4 * H
    rows = tuple(x.shape[:-1])  # (T, B) or (N,)
    ln = (None,) * 4
    if layer_norm is not None:
        if not isinstance(layer_norm, (tuple, list)) or len(layer_norm) != 4:
            raise TypeError(
                "layer_norm must be a tuple (gamma_ih, gamma_hh, gamma_c, beta_c) of four tensors, "
                f"got {type(layer_norm).__name__}" + (f" of length {len(layer_norm)}" if isinstance(layer_norm, (tuple, list)) else "")
            )
        for name, t, shape in zip(("gamma_ih", "gamma_hh", "gamma_c", "beta_c"), layer_norm, ((G,), (G,), (H,), (H,))):
            _check_tensor(f"layer_norm's {name}", t, shape, x)
        ln = tuple(layer_norm)
    for name, t, shape in (
        ("peephole", peephole, (3, H)),
        ("weight_hh_mask", weight_hh_mask, tuple(w_hh.shape)),
        ("recurrent_mask", recurrent_mask, (B, P)),
        ("cell_mask", cell_mask, (*rows, H)),
        ("hidden_mask", hidden_mask, (*rows, P)),
    ):
        if t is not None:
            _check_tensor(name, t, shape, x, or_bool=name in ("cell_mask", "hidden_mask"))
    return ln
