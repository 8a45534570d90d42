"""Conversions of whole models: every ``torch.nn.LSTM`` and ``torch.nn.LSTMCell``
inside a model to the modules of this package, in place."""

from __future__ import annotations

from torch import nn

from .cell import LSTMCell
from .lstm import LSTM


def replace_lstms(model: nn.Module, *, backend: str = "auto") -> int:
    """Replace every ``torch.nn.LSTM`` inside ``model`` by an :class:`LSTM`, and every
    ``torch.nn.LSTMCell`` by an :class:`~torch_lstm_manual.cell.LSTMCell`, holding
    the same parameters, in place. Returns how many were replaced."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LSTM):
                setattr(parent, name, LSTM.from_torch(child, backend=backend))
                count += 1
            elif isinstance(child, nn.LSTMCell):
                setattr(parent, name, LSTMCell.from_torch(child, backend=backend))
                count += 1
    return count
