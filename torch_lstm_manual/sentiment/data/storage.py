"""Writes that never leave a half-written file behind, and file checksums.

Every file this package writes goes to a temporary name in the destination's own
folder first and is then renamed into place with ``os.replace``, which is atomic
on POSIX and Windows: a reader sees the old file or the new one, never a torn
one, and a crash leaves at most a ``.tmp`` file that the next write replaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import torch


def _temporary_affixes(path: Path) -> tuple:
    """The start and end of the names of the temporary files that ``path`` is written through."""
    return f".{path.name}.", ".tmp"


def temporaries(path: str | os.PathLike) -> list:
    """The temporary files of ``path`` that an interrupted :func:`atomic_write` left behind."""
    path = Path(path)
    prefix, suffix = _temporary_affixes(path)
    if not path.parent.is_dir():
        return []
    return [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(suffix)]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Runs ``write`` on a temporary file next to ``path``, then renames it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temporary_affixes(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` as UTF-8 to ``path`` atomically (temporary name, then ``os.replace``)."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temporary name, then ``os.replace``)."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The SHA-256 hex digest of a file, read in chunks of ``chunk_size`` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def settings_key(settings: dict) -> str:
    """A short stable hash of a JSON-serialisable settings dict, for cache file names."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
