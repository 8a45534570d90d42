"""``TextDataModule``: the dataloaders, splits and artifacts shared by every data module.

A subclass reads its texts in ``setup``, fills ``train_set``, ``val_set``,
``test_set`` (and optionally ``predict_set``) with ``EncodedDataset``s, sets
``encoder``, and answers ``vocab_size``, ``num_classes`` and ``class_names``
right after ``__init__`` (LightningCLI links them to the model then).

The tokenizer and label names travel inside every checkpoint: ``state_dict`` returns
them and Lightning stores that under the data module's class name; when a run loads a
checkpoint (``--ckpt_path``), ``load_state_dict`` puts them back and the splits already
set up are encoded again with them. A subclass's ``setup`` uses ``checkpoint_encoder``,
when set, instead of building a tokenizer of its own.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from typing import Sequence

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from .batching import BucketBatchSampler, EncodedDataset, collate_batch
from .text import TextEncoder, encoder_from_state, encoder_state, save_artifacts


def check_int(name: str, value: object, minimum: int) -> int:
    """Returns ``value`` if it is an int >= ``minimum``, else raises naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_fraction(name: str, value: object) -> float:
    """Returns ``value`` if it is a number strictly between 0 and 1, else raises naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} should be a float, got: {type(value).__name__}")
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {value}")
    return float(value)


def split_indices(labels: Sequence[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded train/validation split that keeps the label proportions.

    From each label's examples a ``random.Random(seed)`` shuffle picks
    ``count * val_fraction`` (rounded half up) for validation. Returns sorted index lists.
    """
    by_label: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_label):
        indices = by_label[label]
        rng.shuffle(indices)
        count = int(len(indices) * val_fraction + 0.5)  # rounds half up
        val += indices[:count]
        train += indices[count:]
    if not val or not train:
        raise ValueError(
            f"val_fraction={val_fraction} of {len(labels)} training examples leaves "
            f"{len(train)} for training and {len(val)} for validation; both need at least one. "
            f"Change val_fraction or give a separate validation file."
        )
    return sorted(train), sorted(val)


class TextDataModule(pl.LightningDataModule):
    """The shared part of the data modules: length-bucketed dataloaders and artifacts.

    Args:
        batch_size: the most texts in a batch.
        max_length: texts are truncated to this many tokens.
        num_workers: dataloader worker processes (0 loads in the main process);
            workers persist across epochs when > 0.
        seed: the seed of the split and of the training order.
    """

    def __init__(self, batch_size: int = 64, max_length: int = 256, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.max_length = check_int("max_length", max_length, 1)
        self.num_workers = check_int("num_workers", num_workers, 0)
        self.seed = check_int("seed", seed, 0)
        self.encoder: TextEncoder | None = None
        self.train_set: EncodedDataset | None = None
        self.val_set: EncodedDataset | None = None
        self.test_set: EncodedDataset | None = None
        self.predict_set: EncodedDataset | None = None
        self.checkpoint_encoder: TextEncoder | None = None  # set by load_state_dict

    @property
    def vocab_size(self) -> int:
        """An upper bound on the token ids + 1: the size the model's embedding needs."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_test_data(self) -> bool:
        """Whether there is a test split (``python train.py`` skips the test stage without one)."""
        return True

    @property
    def class_names(self) -> list[str]:
        """The label names, by class index."""
        raise NotImplementedError

    def _require(self, dataset: EncodedDataset | None, split: str, stage: str) -> EncodedDataset:
        if dataset is None:
            raise RuntimeError(
                f"the {split} split is not set up: call setup({stage!r}) first (the Trainer does this for you)"
            )
        return dataset

    def _check_checkpoint_encoder(self) -> None:
        """A run that loaded a checkpoint must use the checkpoint's tokenizer, never its own."""
        trainer = self.trainer
        ckpt_path = getattr(trainer, "ckpt_path", None) if trainer is not None else None
        if ckpt_path is not None and self.checkpoint_encoder is None:
            raise RuntimeError(
                f"the checkpoint {str(ckpt_path)!r} holds no tokenizer and label names of {type(self).__name__}: "
                f"it was written by an older version of torch_lstm_manual (which kept them in tokenizer.json "
                f"beside it) or by a run with another data module. Its data would be encoded with a tokenizer "
                f"other than the one the model was trained with, so it is not used: run it with the data module "
                f"it was trained with, or train it again"
            )

    def _loader(self, dataset: EncodedDataset, shuffle: bool, bucketed: bool = True) -> DataLoader:
        self._check_checkpoint_encoder()
        if self.num_workers > 0:
            # Workers never tokenize; saying so silences tokenizers' fork warning.
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        common = dict(
            collate_fn=collate_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
        if not bucketed:  # the input order, for predictions that line up with the inputs
            return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, **common)
        sampler = BucketBatchSampler(dataset.lengths, self.batch_size, shuffle=shuffle, seed=self.seed)
        return DataLoader(dataset, batch_sampler=sampler, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.train_set, "train", "fit"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.val_set, "validation", "fit"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.test_set, "test", "test"), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The predict split (the test split unless a subclass sets another), in input order."""
        dataset = self.predict_set if self.predict_set is not None else self.test_set
        return self._loader(self._require(dataset, "predict", "predict"), shuffle=False, bucketed=False)

    def state_dict(self) -> dict:
        """The tokenizer and label names (plain data), which Lightning stores in each checkpoint."""
        return {} if self.encoder is None else encoder_state(self.encoder)

    def load_state_dict(self, state_dict: dict) -> None:
        """Takes the tokenizer and label names of a checkpoint (``state_dict``'s result) and
        encodes the splits already set up again with them.

        Raises:
            ValueError: the state holds no valid tokenizer, or label names this data module
                cannot use (another number or other names than its own).
        """
        encoder = encoder_from_state(state_dict, f"the {type(self).__name__} state of the checkpoint")
        if encoder.class_names is None:
            raise ValueError(f"the {type(self).__name__} state of the checkpoint holds no label names")
        self.use_class_names(encoder.class_names)
        same = (
            self.encoder is not None and self.encoder.class_names == encoder.class_names
            and self.encoder.tokenizer.to_str() == encoder.tokenizer.to_str()
        )
        self.checkpoint_encoder = encoder
        if same:
            return
        self.encoder = encoder
        built = {"test": self.test_set is not None, "predict": self.predict_set is not None}
        if self.train_set is None and not any(built.values()):
            return  # nothing set up yet: setup uses checkpoint_encoder
        self.train_set = self.val_set = self.test_set = self.predict_set = None
        self.setup("fit")
        for stage, was_built in built.items():
            if was_built:
                self.setup(stage)

    def use_class_names(self, names: list[str]) -> None:
        """Accepts the label names of a checkpoint: they must be this data module's own."""
        if list(names) != self.class_names:
            raise ValueError(
                f"the checkpoint's label names {list(names)} are not those of {type(self).__name__} "
                f"{self.class_names}: the model was trained on other labels"
            )

    def save_artifacts(self, directory: str | os.PathLike) -> None:
        """Writes ``tokenizer.json`` and ``labels.json`` into ``directory`` (atomically),
        for ``load_encoder`` (checkpoints carry both already: this is an export)."""
        if self.encoder is None:
            raise RuntimeError(
                f"{type(self).__name__} has no tokenizer yet: call setup('fit') before save_artifacts"
            )
        save_artifacts(directory, self.encoder)
