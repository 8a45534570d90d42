"""Compiled time loops for :class:`~torch_lstm_manual.functional.LSTMFunction`."""

from __future__ import annotations

import torch

from ..functional import BACKENDS


def native_supports(x: torch.Tensor) -> bool:
    """Whether the native loops are built and run tensors like ``x``."""
    return "native" in BACKENDS and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
