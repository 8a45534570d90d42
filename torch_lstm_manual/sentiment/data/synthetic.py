"""``SyntheticDataModule``: the built-in corpus (``corpus.py``) as train/val/test splits.

Needs no download and no disk: the vocabulary is the generator's word list, so
the tokenizer exists right after ``__init__`` and ``vocab_size`` is exact.
"""

from __future__ import annotations

import warnings

from .base import TextDataModule, check_int
from .batching import EncodedDataset
from .corpus import CLASS_NAMES, corpus_vocabulary, generate_corpus, max_example_length
from .text import SPECIAL_TOKENS, TextEncoder, tokenizer_from_words


class SyntheticDataModule(TextDataModule):
    """Sentiment sentences whose label depends on word order (negation, "but" contrast),
    generated from a seed: the default data of ``python train.py``.

    One corpus of ``num_val + num_test + num_train`` examples is generated and cut
    in that order, so the validation and test examples stay the same when only
    ``num_train`` changes.

    Args:
        num_train: training examples.
        num_val: validation examples.
        num_test: test examples (also the predict split).
        min_filler: the fewest neutral words in each filler stretch.
        max_filler: the most neutral words in each filler stretch (longer is harder).
        negation_prob: how often a clause is negated.
        contrast_prob: how often an example is a "... but ..." contrast.
        intensifier_prob: how often an adjective gets an intensifier ("very", "truly", ...).
        seed: the seed of the generator and of the training order.
        batch_size: the most sentences in a batch.
        max_length: sentences are truncated to this many tokens (keep it above the
            longest sentence, ``22 + 5 * max_filler``, or the deciding words may be cut).
        num_workers: dataloader worker processes (0: the data is tiny).
    """

    def __init__(
        self,
        num_train: int = 4000,
        num_val: int = 500,
        num_test: int = 500,
        min_filler: int = 2,
        max_filler: int = 8,
        negation_prob: float = 0.5,
        contrast_prob: float = 0.5,
        intensifier_prob: float = 0.3,
        seed: int = 0,
        batch_size: int = 64,
        max_length: int = 128,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, max_length=max_length, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            check_int(name, value, 1)
        generate_corpus(0, seed, min_filler, max_filler, negation_prob, contrast_prob, intensifier_prob)  # checks
        longest = max_example_length(max_filler)
        if max_length < longest:
            warnings.warn(
                f"max_length={max_length} is below the longest sentence ({longest} tokens with "
                f"max_filler={max_filler}): truncation may cut the words that decide the label. "
                f"Raise max_length to {longest} or lower max_filler.",
                stacklevel=2,
            )
        self.encoder = TextEncoder(tokenizer_from_words(corpus_vocabulary(), max_length), CLASS_NAMES)

    @property
    def vocab_size(self) -> int:
        return len(corpus_vocabulary()) + len(SPECIAL_TOKENS)

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES)

    def generate(self) -> tuple[list[str], list[int]]:
        """All ``num_val + num_test + num_train`` texts and labels, in split order."""
        h = self.hparams
        return generate_corpus(
            h.num_val + h.num_test + h.num_train, h.seed, h.min_filler, h.max_filler,
            h.negation_prob, h.contrast_prob, h.intensifier_prob,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        texts, labels = self.generate()
        rows = self.encoder.encode_ids(texts)
        cut_val, cut_test = self.hparams.num_val, self.hparams.num_val + self.hparams.num_test
        self.val_set = EncodedDataset.from_rows(rows[:cut_val], labels[:cut_val])
        self.test_set = EncodedDataset.from_rows(rows[cut_val:cut_test], labels[cut_val:cut_test])
        self.train_set = EncodedDataset.from_rows(rows[cut_test:], labels[cut_test:])
