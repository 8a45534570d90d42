"""A hand-derived LSTM for PyTorch: ``LSTMFunction`` and the drop-in ``LSTM`` module."""

from .functional import LSTMFunction, lstm_layer
from .lstm import LSTM, replace_lstms

__all__ = ["LSTM", "LSTMFunction", "lstm_layer", "replace_lstms"]
__version__ = "0.1.0"
