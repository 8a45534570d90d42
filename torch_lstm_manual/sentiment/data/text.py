"""Text cleaning, the word-level tokenizer, and the encoder used for prediction.

The same three steps run at training and at prediction time:

1. ``clean_text``: lowercase, ``<br />`` tags become spaces, and the three
   stray C1 control characters of the IMDB reviews become the punctuation they
   stood for (U+0085 -> "…", U+0096 -> "–", U+0097 -> "—").
2. The Hugging Face ``tokenizers`` word-level model: ``Whitespace``
   pre-tokenization (runs of word characters, runs of punctuation), ids from a
   vocabulary built on the training split, unknown words -> ``[UNK]``.
   Words longer than ``max_token_length`` characters (100 by default) never enter
   the vocabulary: they become ``[UNK]``, so one huge "word" cannot bloat the
   vocabulary or ``tokenizer.json``.
3. Truncation to ``max_length`` tokens (stored in ``tokenizer.json``), and an
   empty result becomes the single token ``[UNK]`` so every length is >= 1.

``encoder_state`` turns a ``TextEncoder`` into plain data (the tokenizer's JSON and
the label names), which the data modules' ``state_dict`` hands to Lightning, so that
every checkpoint carries the tokenizer and labels it was trained with;
``encoder_from_state`` reads it back. ``save_artifacts`` writes ``tokenizer.json`` and
``labels.json`` into a folder and ``load_encoder`` reads them back (checkpoints written
before the tokenizer travelled inside them kept it there; ``load_tokenizer`` reads one
``tokenizer.json``, naming the file when it is broken).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
from torch.nn.utils.rnn import pad_sequence

from .storage import atomic_write_text

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
PAD_ID = 0
UNK_ID = 1
SPECIAL_TOKENS = [PAD_TOKEN, UNK_TOKEN]
MAX_TOKEN_LENGTH = 100  # characters; longer words stay out of the vocabulary
TOKENIZER_FILE = "tokenizer.json"
LABELS_FILE = "labels.json"
ENCODER_STATE_FORMAT = "torch_lstm_manual.sentiment.TextEncoder/1"  # marks the encoder's entry in a checkpoint

_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_STRAY_CONTROLS = str.maketrans({"\u0085": "\u2026", "\u0096": "\u2013", "\u0097": "\u2014"})


def clean_text(text: str) -> str:
    """Lowercases ``text``, turns ``<br />``/``<br/>``/``<br>`` into spaces and the
    stray controls U+0085, U+0096, U+0097 into "…", "–", "—"."""
    if not isinstance(text, str):
        raise TypeError(f"clean_text expects a str, got {type(text).__name__}")
    return _LINE_BREAK.sub(" ", text).translate(_STRAY_CONTROLS).lower()


def read_text_file(path: str | os.PathLike) -> str:
    """Reads ``path`` strictly as UTF-8 (a leading byte-order mark is dropped).

    Raises:
        UnicodeDecodeError: the file is not valid UTF-8; the message names the file.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnicodeDecodeError(
            exc.encoding, exc.object, exc.start, exc.end,
            f"{exc.reason} in {path}: the file is not valid UTF-8. Re-save it as UTF-8 "
            f"(for example `iconv -f latin1 -t utf-8 old.txt > new.txt`)",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _finish(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    """Sets the pre-tokenizer and truncation, and checks the special-token ids."""
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.enable_truncation(_check_positive_int("max_length", max_length))
    for token, expected in ((PAD_TOKEN, PAD_ID), (UNK_TOKEN, UNK_ID)):
        if tokenizer.token_to_id(token) != expected:
            raise RuntimeError(f"{token} must have id {expected}, got {tokenizer.token_to_id(token)}")
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int, max_length: int,
                    max_token_length: int = MAX_TOKEN_LENGTH) -> Tokenizer:
    """Trains a word-level tokenizer on ``texts`` (cleaned here with ``clean_text``).

    Args:
        texts: the training texts, raw (not yet cleaned).
        vocab_size: the most tokens in the vocabulary, the two special tokens included.
        min_frequency: words seen fewer times than this become ``[UNK]``.
        max_length: encodings are truncated to this many tokens.
        max_token_length: words longer than this many characters stay out of the
            vocabulary (they become ``[UNK]``).
    """
    _check_positive_int("vocab_size", vocab_size, minimum=len(SPECIAL_TOKENS) + 1)
    _check_positive_int("min_frequency", min_frequency)
    _check_positive_int("max_token_length", max_token_length)
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
    # For training only: the words, less those longer than max_token_length (removed whole).
    # _finish sets the plain Whitespace pre-tokenizer back, under which such a word is [UNK].
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(),
        pre_tokenizers.Split(Regex(rf"[\s\S]{{{max_token_length + 1},}}"), behavior="removed"),
    ])
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    tokenizer.train_from_iterator((clean_text(text) for text in texts), trainer=trainer)
    return _finish(tokenizer, max_length)


def tokenizer_from_words(words: Iterable[str], max_length: int) -> Tokenizer:
    """A word-level tokenizer over a fixed word list: ``[PAD]``=0, ``[UNK]``=1, then the
    words in sorted order. For corpora whose vocabulary is known without reading them."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(set(words) - set(SPECIAL_TOKENS)):
        vocab[word] = len(vocab)
    return _finish(Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN)), max_length)


class TextEncoder:
    """Turns raw strings into ``(tokens, lengths)``: clean, tokenize, truncate, pad.

    Args:
        tokenizer: a word-level tokenizer with ``[PAD]``=0, ``[UNK]``=1 and truncation
            enabled (as made by ``train_tokenizer`` or read by ``load_encoder``).
        class_names: the label names by class index, or None when unknown.
    """

    def __init__(self, tokenizer: Tokenizer, class_names: list[str] | None = None) -> None:
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer should be a tokenizers.Tokenizer, got: {type(tokenizer).__name__}")
        if tokenizer.truncation is None:
            raise ValueError("tokenizer must have truncation enabled (tokenizer.enable_truncation(max_length))")
        self.tokenizer = tokenizer
        self.class_names = None if class_names is None else [str(name) for name in class_names]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def max_length(self) -> int:
        return self.tokenizer.truncation["max_length"]

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, truncated to ``max_length``, never empty."""
        texts = list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] should be a str, got: {type(text).__name__}")
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)  # no offsets: faster
        encodings = encode([clean_text(text) for text in texts])
        return [encoding.ids or [UNK_ID] for encoding in encodings]

    def __call__(self, texts: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encodes one string or a list of strings into padded ``(tokens, lengths)``.

        Returns:
            tokens: LongTensor (B, T), padded with ``PAD_ID`` = 0, T = longest encoding.
            lengths: LongTensor (B,) on the CPU, every entry >= 1.
        """
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise ValueError("texts must hold at least one string, got an empty sequence")
        rows = [torch.tensor(ids, dtype=torch.long) for ids in self.encode_ids(texts)]
        lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)  # (B,)
        tokens = pad_sequence(rows, batch_first=True, padding_value=PAD_ID)  # (B, T)
        return tokens, lengths

    def __repr__(self) -> str:
        return (
            f"TextEncoder(vocab_size={self.vocab_size}, max_length={self.max_length}, "
            f"class_names={self.class_names})"
        )


def save_artifacts(directory: str | os.PathLike, encoder: TextEncoder) -> None:
    """Writes ``tokenizer.json`` and ``labels.json`` into ``directory``, each atomically."""
    directory = Path(directory)
    atomic_write_text(directory / TOKENIZER_FILE, encoder.tokenizer.to_str(pretty=True))
    labels = {"class_names": encoder.class_names}
    atomic_write_text(directory / LABELS_FILE, json.dumps(labels, indent=2, ensure_ascii=False) + "\n")


def encoder_state(encoder: TextEncoder) -> dict:
    """The tokenizer (its JSON) and label names of ``encoder`` as plain data, for a checkpoint."""
    return {
        "format": ENCODER_STATE_FORMAT,
        "tokenizer": encoder.tokenizer.to_str(),
        "class_names": None if encoder.class_names is None else list(encoder.class_names),
    }


def is_encoder_state(value: object) -> bool:
    """Whether ``value`` is what ``encoder_state`` returns (by its format marker)."""
    return isinstance(value, dict) and value.get("format") == ENCODER_STATE_FORMAT


def encoder_from_state(state: object, where: str) -> TextEncoder:
    """The ``TextEncoder`` that ``encoder_state`` described.

    Args:
        state: the dictionary ``encoder_state`` returned.
        where: what held it (named in the error messages), e.g. the checkpoint.

    Raises:
        ValueError: ``state`` is not such a dictionary, or its tokenizer or label names are invalid.
    """
    if not is_encoder_state(state):
        found = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{where} holds no tokenizer: expected a dictionary with 'format' {ENCODER_STATE_FORMAT!r}, "
            f"'tokenizer' and 'class_names', got {found}"
        )
    tokenizer, class_names = state.get("tokenizer"), state.get("class_names")
    if not isinstance(tokenizer, str):
        raise ValueError(f"{where}: 'tokenizer' should be the tokenizer's JSON string, got: {type(tokenizer).__name__}")
    if class_names is not None and (
        not isinstance(class_names, list) or not all(isinstance(name, str) for name in class_names)
    ):
        raise ValueError(f"{where}: 'class_names' should be a list of strings, got: {class_names!r}")
    try:
        loaded = Tokenizer.from_str(tokenizer)
    except Exception as exc:  # the tokenizers parser's own message names nothing
        raise ValueError(f"{where}: its tokenizer is not a valid tokenizers JSON string ({exc})") from exc
    return TextEncoder(loaded, class_names)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Reads a ``tokenizer.json`` written by ``save_artifacts`` or a data module's cache.

    Raises:
        ValueError: the file is not a valid tokenizers JSON file (truncated, edited or not
            UTF-8); the message names the file and the cause.
    """
    try:
        return Tokenizer.from_str(read_text_file(path))
    except Exception as exc:  # the tokenizers parser's own message names no file
        raise ValueError(f"{path} is not a valid tokenizers JSON file ({exc})") from exc


def load_encoder(directory: str | os.PathLike) -> TextEncoder:
    """Reads the ``tokenizer.json`` and ``labels.json`` that ``save_artifacts`` wrote.

    Args:
        directory: the folder holding them (the checkpoint folder of a training run).

    Returns:
        a ``TextEncoder`` with the training run's cleaning, vocabulary and truncation.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"directory {str(directory)!r} does not exist: pass the checkpoint folder of a training run, "
            f"which holds {TOKENIZER_FILE} and {LABELS_FILE}"
        )
    tokenizer_path = directory / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise FileNotFoundError(
            f"no {TOKENIZER_FILE} in {str(directory)!r}: pass the checkpoint folder of a training run "
            f"(the data module's save_artifacts writes {TOKENIZER_FILE} there)"
        )
    try:
        tokenizer = load_tokenizer(tokenizer_path)
    except ValueError as exc:
        raise ValueError(f"{exc}; retrain or restore it") from exc.__cause__
    class_names = None
    labels_path = directory / LABELS_FILE
    if labels_path.is_file():
        try:
            class_names = json.loads(read_text_file(labels_path))["class_names"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{labels_path} is not valid: expected a JSON object with a 'class_names' list ({exc!r})"
            ) from exc
    return TextEncoder(tokenizer, class_names)


def check_vocab_compatible(tokenizer_vocab_size: int, model_vocab_size: int) -> None:
    """Checks that every id the tokenizer can produce has a row in the model's embedding.

    The configured ``vocab_size`` is an upper bound: a tokenizer trained on a small
    corpus may have fewer tokens than the model has rows, which is fine; more is not.

    Raises:
        ValueError: ``tokenizer_vocab_size > model_vocab_size``.
    """
    _check_positive_int("tokenizer_vocab_size", tokenizer_vocab_size)
    _check_positive_int("model_vocab_size", model_vocab_size)
    if tokenizer_vocab_size > model_vocab_size:
        raise ValueError(
            f"The tokenizer has {tokenizer_vocab_size} tokens but the model's embedding has only "
            f"{model_vocab_size} rows (vocab_size): ids up to {tokenizer_vocab_size - 1} would index past it. "
            f"The tokenizer.json and the checkpoint come from different training runs; pass the folder "
            f"saved next to this checkpoint, or retrain with a vocab_size of at least {tokenizer_vocab_size}."
        )
