"""``TextFilesDataModule``: the user's own labeled texts (CSV, TSV, JSON Lines, or a folder per label)."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader

from .base import TextDataModule, check_fraction, check_int, split_indices
from .batching import NO_LABEL, EncodedDataset
from .readers import Examples, detect_format, read_examples
from .text import MAX_TOKEN_LENGTH, TextEncoder, train_tokenizer

SPLITS = ("train", "val", "test", "predict")


def label_key(name: str) -> str | float:
    """What two spellings of one label share: the number a numeric label stands for
    ("1", "1.0" and "01" are all 1.0), else the case-folded text ("Pos" and "pos")."""
    try:
        value = float(name)
    except ValueError:
        return name.casefold()
    return value if value == value else name.casefold()  # NaN equals nothing: keep it text


def check_spellings(examples: Examples, source: str) -> None:
    """Fails where two different spellings of one label (``label_key``) appear in ``examples``."""
    first: dict[str, str] = {}
    for label, where in zip(examples.labels, examples.where):
        if label is not None:
            first.setdefault(label, where)
    by_key: dict[str | float, list[str]] = {}
    for label in first:
        by_key.setdefault(label_key(label), []).append(label)
    for spellings in by_key.values():
        if len(spellings) > 1:
            seen = " and ".join(f"{label!r} ({first[label]})" for label in spellings)
            raise ValueError(
                f"{source} spells one label in {len(spellings)} ways: {seen}. Labels are compared exactly, so "
                f"these would become separate classes. Write each label one way, or pass labels= to name the "
                f"classes on purpose"
            )


def sort_labels(names: set[str]) -> list[str]:
    """Label names in class-index order: numerically when all are integers ("2" before "10"), else sorted."""
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


class TextFilesDataModule(TextDataModule):
    """Labeled texts from files: a training file, optional validation/test/predict files.

    Each path is a ``.csv``, ``.tsv`` or ``.jsonl`` file with a text and a label
    column (field), or a folder with one subfolder of ``.txt`` files per label
    (the subfolder name is the label). Labels map to class indices in sorted order
    (numeric order when all are integers) unless ``labels`` gives the order; the
    mapping travels in the checkpoints with the tokenizer (``state_dict``). The vocabulary is
    built from the training part only.

    Labels are compared as exact strings, surrounding whitespace removed. When they
    are read from ``train``, two spellings of one label there (``"1"`` and ``"1.0"``,
    ``"pos"`` and ``"Pos"``) are an error rather than two classes; a label of another
    file that is not spelled as in ``train`` (or in ``labels``) is an error too.
    ``setup("fit")`` reads the test file as well, so that a bad test file fails
    before training, not after it.

    Args:
        train: the training file or folder (required).
        val: the validation file or folder; None carves ``val_fraction`` out of ``train``.
        test: the test file or folder; optional (without it, ``python train.py`` skips the
            test stage). Read and checked in ``setup("fit")``, encoded in ``setup("test")``.
        predict: a file or folder to predict; labels optional there (-1 when absent).
            None predicts on ``test``.
        format: "csv", "tsv", "jsonl" or "folder" for every path; None tells each from
            its extension (``.csv``, ``.tsv``/``.tab``, ``.jsonl``/``.ndjson``) or from being a folder.
        text_column: the column (JSON field) with the text.
        label_column: the column (JSON field) with the label.
        labels: the label names in class-index order. None reads them from ``train``
            the first time ``num_classes`` or ``class_names`` is asked for (LightningCLI asks
            right after ``__init__``, so the training file is read then).
        vocab_size: the most tokens in the vocabulary, ``[PAD]`` and ``[UNK]`` included
            (the model's embedding size).
        min_frequency: words seen fewer times in the training part become ``[UNK]``.
        max_length: texts are truncated to this many tokens.
        max_token_length: words longer than this many characters stay out of the
            vocabulary (they become ``[UNK]``).
        val_fraction: the share of ``train`` held out for validation when ``val`` is None.
        seed: the seed of that split and of the training order.
        batch_size: the most texts in a batch.
        num_workers: dataloader worker processes.
    """

    def __init__(
        self,
        train: str,
        val: str | None = None,
        test: str | None = None,
        predict: str | None = None,
        format: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        labels: list[str] | None = None,
        vocab_size: int = 20000,
        min_frequency: int = 1,
        max_length: int = 256,
        max_token_length: int = MAX_TOKEN_LENGTH,
        val_fraction: float = 0.1,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, max_length=max_length, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()
        self.paths: dict[str, Path] = {}
        for argument, value in zip(SPLITS, (train, val, test, predict)):
            if value is None:
                continue
            path = Path(value).expanduser()
            if not path.exists():
                raise FileNotFoundError(
                    f"{argument} file {str(path)!r} does not exist: check the path given as {argument}"
                )
            detect_format(path, argument, format)
            self.paths[argument] = path
        if "train" not in self.paths:
            raise ValueError("train must name a training file or folder, got None")
        self.format, self.text_column, self.label_column = format, text_column, label_column
        self._vocab_size = check_int("vocab_size", vocab_size, 3)
        self.min_frequency = check_int("min_frequency", min_frequency, 1)
        self.max_token_length = check_int("max_token_length", max_token_length, 1)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self._labels: list[str] | None = None
        if labels is not None:
            names = [str(name).strip() for name in labels]
            if len(names) < 2 or len(set(names)) != len(names):
                raise ValueError(f"labels must name at least 2 distinct classes, got {labels!r}")
            self._labels = names
        self._examples: dict[str, Examples] = {}

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def has_test_data(self) -> bool:
        return "test" in self.paths

    @property
    def class_names(self) -> list[str]:
        """The label names by class index; read from the training file when ``labels`` is None."""
        if self._labels is None:
            train = self._read("train")
            check_spellings(train, f"train file {self.paths['train']}")
            names = sort_labels(set(train.labels))
            if len(names) < 2:
                raise ValueError(f"train file {self.paths['train']} has only the label(s) {names}; "
                                 f"a classifier needs at least 2 classes")
            self._labels = names
        return list(self._labels)

    def use_class_names(self, names: list[str]) -> None:
        """Takes the label names of a checkpoint: the class indices are the model's. With
        ``labels`` given they must be the same; read from the training file, the
        checkpoint's names replace them (a label of the data it does not name is an error)."""
        if self.hparams.labels is not None:
            super().use_class_names(names)
        self._labels = list(names)

    def _read(self, split: str) -> Examples:
        if split not in self._examples:
            self._examples[split] = read_examples(
                self.paths[split], split, self.format, self.text_column, self.label_column, required=split != "predict"
            )
        return self._examples[split]

    def _indices(self, examples: Examples) -> list[int]:
        """Class index of each example (-1 where unlabeled); unknown labels are an error."""
        mapping = {name: index for index, name in enumerate(self.class_names)}
        indices = []
        for label, where in zip(examples.labels, examples.where):
            if label is not None and label not in mapping:
                source = "labels=" if self.hparams.labels is not None else f"the training data {self.paths['train']}"
                same = [name for name in mapping if label_key(name) == label_key(label)]
                hint = f" It is another spelling of {same[0]!r}: labels must be spelled alike." if same else ""
                raise ValueError(
                    f"{where}: unknown label {label!r}; the labels of {source} are {list(mapping)}.{hint} "
                    f"Correct the label, or add it to the training data (or to labels=)"
                )
            indices.append(NO_LABEL if label is None else mapping[label])
        return indices

    def _encode(self, split: str, part: list[int] | None = None) -> EncodedDataset:
        examples = self._read(split)
        indices = self._indices(examples)
        part = range(len(examples)) if part is None else part
        rows = self.encoder.encode_ids([examples.texts[i] for i in part])
        return EncodedDataset.from_rows(rows, [indices[i] for i in part])

    def setup(self, stage: str | None = None) -> None:
        """Reads and encodes what ``stage`` needs; the tokenizer always comes from the training part."""
        if self.train_set is None:
            train = self._read("train")
            train_labels = self._indices(train)  # unknown labels (against labels=) fail before any training
            train_part, val_part = list(range(len(train))), None
            if "val" not in self.paths:
                train_part, val_part = split_indices(train_labels, self.val_fraction, self.seed)
            if "test" in self.paths:  # read and checked now: a bad test file fails before training
                self._indices(self._read("test"))
            if self.checkpoint_encoder is not None:  # the tokenizer the model was trained with
                self.encoder = self.checkpoint_encoder
            else:
                tokenizer = train_tokenizer(
                    (train.texts[i] for i in train_part), self.vocab_size, self.min_frequency, self.max_length,
                    self.max_token_length,
                )
                self.encoder = TextEncoder(tokenizer, self.class_names)
            self.train_set = self._encode("train", train_part)
            self.val_set = self._encode("train", val_part) if val_part is not None else self._encode("val")
        if stage in ("test", None) and "test" in self.paths and self.test_set is None:
            self.test_set = self._encode("test")
        if stage in ("predict", None) and "predict" in self.paths and self.predict_set is None:
            self.predict_set = self._encode("predict")

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.paths:
            raise ValueError("there is no test file: pass test= a file or folder to test on")
        return super().test_dataloader()

    def predict_dataloader(self) -> DataLoader:
        if "test" not in self.paths and "predict" not in self.paths:
            raise ValueError("there is nothing to predict: pass predict= (or test=) a file or folder")
        return super().predict_dataloader()
