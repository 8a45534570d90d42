"""Data for the sentiment classifier: the built-in corpus, IMDB, and the user's own text files.

Every dataloader yields ``(tokens, lengths, labels)``: LongTensor (B, T) padded
with 0, LongTensor (B,) on the CPU (all >= 1), LongTensor (B,) class indices (-1
when unlabeled). Importing this package needs Lightning and tokenizers; the LSTM
core (``torch_lstm_manual``) never imports it.
"""

from .files import TextFilesDataModule
from .imdb import IMDBDataModule
from .synthetic import SyntheticDataModule
from .text import check_vocab_compatible, load_encoder

__all__ = ["IMDBDataModule", "SyntheticDataModule", "TextFilesDataModule", "check_vocab_compatible", "load_encoder"]
