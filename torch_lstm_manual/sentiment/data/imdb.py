"""``IMDBDataModule``: the Large Movie Review Dataset (Maas et al., 2011), 25k + 25k reviews.

``prepare_data`` finds the data (a local ``aclImdb/`` folder, a local archive, or
the cache folder) and downloads it only when none has it. ``setup`` reads the
reviews, trains the vocabulary on the training split and caches the encoded
tensors on disk, keyed by every setting that changes them, so a second run
skips reading and tokenizing. Layout of the cache folder::

    aclImdb_v1.tar.gz                 the downloaded archive
    aclImdb-<sha256[:16]>/aclImdb/    its extraction
    encoded/imdb-<key>/               tokenizer.json, fit.pt (train + val), test.pt
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch
from jsonargparse.typing import register_type

from .archive import CorruptArchiveError, extract
from .download import DOWNLOAD_TIMEOUT, ChecksumError, DownloadError, check_sha256, download, remove_stale_downloads
from .base import TextDataModule, check_fraction, check_int, split_indices
from .batching import EncodedDataset
from .storage import atomic_torch_save, atomic_write_text, settings_key
from .text import TOKENIZER_FILE, TextEncoder, load_tokenizer, read_text_file, train_tokenizer

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
CLASS_NAMES = ["neg", "pos"]  # folder names; class index = position
CACHE_VERSION = 1  # bump when the cleaning or the cache format changes


class Sha256(str):
    """A SHA-256 digest: 64 hexadecimal characters, kept in lowercase.

    The type of ``IMDBDataModule``'s ``sha256``: the command line checks a value while
    parsing it and reports a wrong one under ``data.sha256`` with this message.
    """

    def __new__(cls, value: object) -> "Sha256":
        if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ValueError(
                f"sha256 must be the archive's SHA-256, 64 hexadecimal characters, or None to skip the check "
                f"(null on the command line), got {value!r}"
            )
        return super().__new__(cls, value.lower())


register_type(Sha256, serializer=str, deserializer=Sha256)


SPLIT_FOLDERS = [f"{split}/{name}" for split in ("train", "test") for name in CLASS_NAMES]


def check_folder(folder: Path, remedy: str = "") -> None:
    """Checks that ``folder`` exists and holds at least one ``.txt`` review; ``remedy`` ends the error."""
    if not folder.is_dir():
        problem = f"{folder} is missing: an aclImdb folder holds train/neg, train/pos, test/neg and test/pos"
        raise FileNotFoundError(f"{problem}. {remedy}".strip())
    if not any(path.suffix == ".txt" and path.is_file() for path in folder.iterdir()):
        raise ValueError(f"{folder} holds no .txt reviews: the aclImdb folder is incomplete. {remedy}".strip())


def read_split(root: Path, split: str) -> tuple[list[str], list[int]]:
    """The reviews of ``root/split/{neg,pos}/*.txt`` (sorted by file name) and their labels."""
    texts, labels = [], []
    for label, name in enumerate(CLASS_NAMES):
        folder = root / split / name
        check_folder(folder)
        files = sorted(path for path in folder.iterdir() if path.suffix == ".txt" and path.is_file())
        texts += [read_text_file(path) for path in files]
        labels += [label] * len(files)
    return texts, labels


def folder_signature(root: Path) -> str:
    """A cheap identity of an aclImdb folder: its path and each split's file count, size and newest mtime."""
    parts = [str(root.resolve())]
    for split in ("train", "test"):
        for name in CLASS_NAMES:
            count = size = newest = 0
            folder = root / split / name
            if folder.is_dir():
                for entry in os.scandir(folder):
                    stat = entry.stat()
                    count, size, newest = count + 1, size + stat.st_size, max(newest, stat.st_mtime_ns)
            parts.append(f"{split}/{name}:{count}:{size}:{newest}")
    return "|".join(parts)


class IMDBDataModule(TextDataModule):
    """IMDB movie reviews, labels ``neg`` = 0 and ``pos`` = 1, with a seeded validation split.

    The data is looked for, in this order, in ``data_dir``, in ``archive``, and in
    ``cache_dir``; only when none has it is it downloaded from ``url`` (in
    ``prepare_data``, never in ``__init__``).

    Args:
        data_dir: an extracted ``aclImdb`` folder (holding ``train/`` and ``test/``) or its parent.
        archive: a local ``aclImdb_v1.tar.gz``; extracted into ``cache_dir``.
        cache_dir: where the download, its extraction and the encoded tensors are kept.
        url: where to download the archive from.
        sha256: the archive's expected SHA-256 (64 hexadecimal characters); None skips the
            check (for a copy you trust whose checksum differs).
        download_timeout: seconds without any data from ``url`` after which the download
            fails (a server that accepts and never answers would otherwise hang the run).
        vocab_size: the most tokens in the vocabulary, ``[PAD]`` and ``[UNK]`` included
            (the model's embedding size).
        min_frequency: words seen fewer times in the training split become ``[UNK]``.
        max_length: reviews are truncated to this many tokens.
        val_fraction: the share of ``train/`` held out for validation (per label).
        seed: the seed of the validation split and of the training order.
        batch_size: the most reviews in a batch.
        num_workers: dataloader worker processes.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        archive: str | None = None,
        cache_dir: str = "~/.cache/torch_lstm_manual",
        url: str = IMDB_URL,
        sha256: Sha256 | None = IMDB_SHA256,
        download_timeout: float = DOWNLOAD_TIMEOUT,
        vocab_size: int = 20000,
        min_frequency: int = 2,
        max_length: int = 400,
        val_fraction: float = 0.1,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 2,
    ) -> None:
        sha256 = None if sha256 is None else str(Sha256(sha256))  # a plain str in the saved hyperparameters
        if (
            isinstance(download_timeout, bool) or not isinstance(download_timeout, (int, float))
            or not 0 < download_timeout < math.inf
        ):
            raise ValueError(f"download_timeout must be a positive number of seconds, got {download_timeout!r}")
        super().__init__(batch_size=batch_size, max_length=max_length, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()
        self.data_dir = None if data_dir is None else Path(data_dir).expanduser()
        self.archive = None if archive is None else Path(archive).expanduser()
        self.cache_dir = Path(cache_dir).expanduser()
        self.url = url
        self.sha256 = sha256
        self.download_timeout = float(download_timeout)
        self._vocab_size = check_int("vocab_size", vocab_size, 3)
        self.min_frequency = check_int("min_frequency", min_frequency, 1)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self._digests: dict[tuple, str] = {}
        self._cache_usable = True  # whether the cached splits hold the ids of the tokenizer in use

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES)

    # -- finding the data --------------------------------------------------------------

    def _cached_archive(self) -> Path:
        return self.cache_dir / (Path(urlparse(self.url).path).name or "aclImdb_v1.tar.gz")

    def _digest(self, path: Path) -> str:
        """SHA-256 of ``path``, checked against ``sha256``; remembered per (path, size, mtime)."""
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = check_sha256(path, self.sha256)
        return self._digests[key]

    def _data_dir_root(self) -> Path:
        if not self.data_dir.is_dir():
            raise FileNotFoundError(
                f"data_dir {str(self.data_dir)!r} does not exist: pass the extracted aclImdb folder "
                f"(the one holding train/ and test/), or leave data_dir unset to use the archive or the download"
            )
        for root in (self.data_dir, self.data_dir / "aclImdb"):
            if (root / "train").is_dir():
                return root
        raise FileNotFoundError(
            f"data_dir {str(self.data_dir)!r} holds no train/ folder: pass the aclImdb folder "
            f"(the one holding train/ and test/) or its parent"
        )

    def _local_archive(self) -> Path | None:
        """The archive to use: ``archive`` (which must exist) or a valid cached download, else None."""
        if self.archive is not None:
            if not self.archive.is_file():
                raise FileNotFoundError(
                    f"archive {str(self.archive)!r} does not exist: pass the path of aclImdb_v1.tar.gz, "
                    f"or leave archive unset to download it into {self.cache_dir}"
                )
            try:
                self._digest(self.archive)
            except ChecksumError as exc:
                raise ChecksumError(
                    f"archive: {exc}. The file is truncated, corrupt or another copy: download it again, or "
                    f"pass sha256=None (--data.sha256 null) to skip the check for a copy you trust"
                ) from None
            return self.archive
        cached = self._cached_archive()
        if cached.is_file():
            try:
                self._digest(cached)
            except ChecksumError as exc:
                # Downloads take this name only once their checksum matched: the file was put
                # here by hand (or downloaded with sha256=None), so it is reported, not removed.
                raise ChecksumError(
                    f"{cached} is in the cache folder but its SHA-256 is {exc.actual}, not the expected "
                    f"{exc.expected} (sha256): it is not the archive from {self.url}, and it was left as it is. "
                    f"Remove it to download the archive again, or, for a copy you trust, pass its checksum "
                    f"(sha256={exc.actual!r}, --data.sha256 {exc.actual}) or skip the check (sha256=None, "
                    f"--data.sha256 null)",
                    path=cached, expected=exc.expected, actual=exc.actual,
                ) from None
            return cached
        return None

    def _extracted(self, archive: Path) -> Path:
        return self.cache_dir / f"aclImdb-{self._digest(archive)[:16]}"

    def _download_error(self, exc: Exception) -> DownloadError:
        return DownloadError(
            f"The IMDB data set is not here and could not be downloaded ({exc}). Looked for: data_dir (not set), "
            f"archive (not set), {self._cached_archive()} (missing). Fix: download {self.url} by hand and put it "
            f"at {self._cached_archive()} (or pass archive=PATH, or data_dir=PATH to an extracted aclImdb "
            f"folder), or train on the built-in corpus instead: `python train.py` with no config"
        )

    def prepare_data(self) -> None:
        """Makes sure the data is on disk: validates ``data_dir``, or extracts ``archive`` or the
        cached download, downloading it first when there is none."""
        if self.data_dir is not None:
            self._data_dir_root()
            return
        remove_stale_downloads(self._cached_archive())  # left by a killed run
        archive, downloaded = self._local_archive(), False
        if archive is None:
            try:
                archive = download(self.url, self._cached_archive(), self.sha256, timeout=self.download_timeout)
            except DownloadError as exc:
                raise self._download_error(exc) from exc
            downloaded = True
        if (self._extracted(archive) / "aclImdb").is_dir():
            return
        try:
            extract(archive, self._extracted(archive), expect=[f"aclImdb/{name}" for name in SPLIT_FOLDERS])
        except CorruptArchiveError as exc:
            if not downloaded:  # a file that was here before (the user's own): never deleted
                raise
            archive.unlink()
            raise CorruptArchiveError(
                f"{exc} (it was the cached download: it has been removed, and the next run downloads it again)"
            ) from None

    def _root_and_identity(self) -> tuple[Path, str]:
        """The prepared aclImdb folder and a string that identifies its contents."""
        if self.data_dir is not None:
            root = self._data_dir_root()
            return root, "dir:" + folder_signature(root)
        archive = self._local_archive()
        if archive is None or not (self._extracted(archive) / "aclImdb").is_dir():
            raise RuntimeError("the IMDB data is not prepared: call prepare_data() before setup() (the Trainer does)")
        return self._extracted(archive) / "aclImdb", "sha256:" + self._digest(archive)

    # -- encoding and caching ----------------------------------------------------------

    def _cache_folder(self, identity: str) -> Path:
        settings = dict(
            version=CACHE_VERSION, data=identity, vocab_size=self.vocab_size, min_frequency=self.min_frequency,
            max_length=self.max_length, seed=self.seed, val_fraction=self.val_fraction,
        )
        return self.cache_dir / "encoded" / f"imdb-{settings_key(settings)}"

    @staticmethod
    def _load(path: Path) -> dict | None:
        if not path.is_file():
            return None
        try:
            return torch.load(path, weights_only=True)
        except Exception as exc:  # an unreadable cache is rebuilt, never trusted
            warnings.warn(f"ignoring the unreadable cache file {path} ({exc}); it will be rebuilt", stacklevel=3)
            return None

    @staticmethod
    def _load_encoder(path: Path) -> TextEncoder | None:
        if not path.is_file():
            return None
        try:
            return TextEncoder(load_tokenizer(path), CLASS_NAMES)
        except ValueError as exc:  # a broken tokenizer is rebuilt, never trusted
            cause = exc.__cause__ or exc  # load_tokenizer's message names the file again
            warnings.warn(f"ignoring the unreadable cache file {path} ({cause}); it will be rebuilt", stacklevel=3)
            return None

    def _setup_fit(self, root: Path, cache: Path) -> None:
        stored = self._load(cache / "fit.pt")
        self.encoder = None if stored is None else self._load_encoder(cache / TOKENIZER_FILE)
        restored = self.checkpoint_encoder
        self._cache_usable = restored is None or (
            self.encoder is not None and self.encoder.tokenizer.to_str() == restored.tokenizer.to_str()
        )
        if not self._cache_usable:  # the cache holds the ids of another tokenizer than the checkpoint's
            texts, labels = read_split(root, "train")
            train, val = split_indices(labels, self.val_fraction, self.seed)
            self.encoder = restored
            rows = self.encoder.encode_ids(texts)
            stored = {
                name: EncodedDataset.from_rows([rows[i] for i in part], [labels[i] for i in part]).state()
                for name, part in (("train", train), ("val", val))
            }
        elif self.encoder is None:  # fit.pt holds the ids of this tokenizer: both are built again
            texts, labels = read_split(root, "train")
            train, val = split_indices(labels, self.val_fraction, self.seed)
            tokenizer = train_tokenizer(
                (texts[i] for i in train), self.vocab_size, self.min_frequency, self.max_length
            )
            self.encoder = TextEncoder(tokenizer, CLASS_NAMES)
            rows = self.encoder.encode_ids(texts)
            stored = {
                name: EncodedDataset.from_rows([rows[i] for i in part], [labels[i] for i in part]).state()
                for name, part in (("train", train), ("val", val))
            }
            atomic_write_text(cache / TOKENIZER_FILE, tokenizer.to_str())
            atomic_torch_save(cache / "fit.pt", stored)
        self.train_set = EncodedDataset(**stored["train"])
        self.val_set = EncodedDataset(**stored["val"])

    def _setup_test(self, root: Path, cache: Path) -> None:
        stored = self._load(cache / "test.pt") if self._cache_usable else None
        if stored is None:
            texts, labels = read_split(root, "test")
            stored = EncodedDataset.from_rows(self.encoder.encode_ids(texts), labels).state()
            if self._cache_usable:
                atomic_torch_save(cache / "test.pt", stored)
        self.test_set = EncodedDataset(**stored)

    def setup(self, stage: str | None = None) -> None:
        """Loads (or builds and caches) the splits ``stage`` needs; ``test`` is read only for
        ``"test"``/``"predict"``/None. The tokenizer always comes from the training split."""
        root, identity = self._root_and_identity()
        # Every split folder is checked now, so that a missing test/ fails before training, not after it.
        remedy = ("Pass data_dir= a complete aclImdb folder" if self.data_dir is not None
                  else f"Remove {root.parent} to have the archive extracted again")
        for name in SPLIT_FOLDERS:
            check_folder(root / name, remedy)
        cache = self._cache_folder(identity)
        if self.train_set is None:  # every stage needs the tokenizer trained on train/
            self._setup_fit(root, cache)
        if stage in ("test", "predict", None) and self.test_set is None:
            self._setup_test(root, cache)
