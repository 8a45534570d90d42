"""A hand-derived LSTM for PyTorch: ``LSTMFunction`` and the drop-in ``LSTM`` module."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["LSTM", "LSTMCell", "LSTMFunction", "lstm_layer", "replace_lstms"]
__version__ = "0.1.0"

# Imported on first use, so that commands such as ``python -m torch_lstm_manual.sentiment.predict
# --help`` answer without importing torch first.
_EXPORTS = {
    "LSTMFunction": ".functional", "lstm_layer": ".functional", "LSTM": ".lstm", "LSTMCell": ".cell",
    "replace_lstms": ".convert",
}

if TYPE_CHECKING:
    from .cell import LSTMCell
    from .convert import replace_lstms
    from .functional import LSTMFunction, lstm_layer
    from .lstm import LSTM


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
