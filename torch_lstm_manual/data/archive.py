"""Downloading an archive with a checksum, and extracting it without surprises.

``download`` fetches to a temporary name in the destination folder, checks the
SHA-256 and only then renames the file into place; a failed or corrupt download
leaves nothing behind. ``extract`` refuses archives with absolute paths, ``..``
components, links or device files (before extracting anything), extracts with
``tarfile``'s ``"data"`` filter into a temporary folder and renames that folder
into place, so a half-extracted folder never has the final name.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

import torch

from .storage import sha256_file


class DownloadError(ConnectionError):
    """The archive could not be fetched (no network, refused, HTTP error)."""


class ChecksumError(ValueError):
    """A file's SHA-256 differs from the expected one."""


class CorruptArchiveError(ValueError):
    """The archive is empty, truncated or not a tar.gz file."""


class UnsafeArchiveError(ValueError):
    """The archive holds a member that could write outside the target folder."""


def check_sha256(path: str | os.PathLike, expected: str | None) -> str:
    """Returns the SHA-256 of ``path``; raises ``ChecksumError`` if ``expected`` is set and differs."""
    digest = sha256_file(path)
    if expected is not None and digest != expected.lower():
        raise ChecksumError(f"{path} has SHA-256 {digest}, expected {expected.lower()}")
    return digest


def download(url: str, destination: str | os.PathLike, sha256: str | None) -> Path:
    """Downloads ``url`` to ``destination`` via a temporary name, checking ``sha256`` (None: no check).

    Raises:
        DownloadError: the request failed; nothing is left on disk.
        ChecksumError: the file arrived with another checksum (truncated or a different
            file); the partial file is removed.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    os.close(fd)
    try:
        try:
            torch.hub.download_url_to_file(url, tmp_name, hash_prefix=None, progress=True)
        except Exception as exc:  # URLError, HTTPError, socket errors, ...
            raise DownloadError(f"could not download {url}: {exc}") from exc
        try:
            check_sha256(tmp_name, sha256)
        except ChecksumError as exc:
            raise ChecksumError(
                f"the file downloaded from {url} is truncated or corrupt ({exc}); it was removed. "
                f"Run again to retry; to accept a different copy on purpose pass sha256=None"
            ) from None
        os.replace(tmp_name, destination)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
    return destination


def _member_problem(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` is unsafe to extract, or None."""
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "a '..' component"
    if member.issym() or member.islnk():
        return f"a {'symbolic' if member.issym() else 'hard'} link (to {member.linkname!r})"
    if not (member.isfile() or member.isdir()):
        return "a device, FIFO or other special file"
    return None


def check_members(archive: str | os.PathLike) -> list[tarfile.TarInfo]:
    """Reads every member header of a ``.tar.gz`` and checks that all are plain files or folders
    inside the archive.

    Raises:
        CorruptArchiveError: empty, truncated or not a gzip tar archive.
        UnsafeArchiveError: a member with an absolute path, '..', a link or a special file.
    """
    if os.path.getsize(archive) == 0:
        raise CorruptArchiveError(f"archive {archive} is empty (0 bytes): download it again")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise CorruptArchiveError(
            f"archive {archive} is truncated or corrupt ({exc}): replace it with a complete copy"
        ) from exc
    for member in members:
        problem = _member_problem(member)
        if problem is not None:
            raise UnsafeArchiveError(
                f"archive {archive} is unsafe: member {member.name!r} is {problem}. Nothing was extracted; "
                f"use an archive of plain files and folders (the original aclImdb_v1.tar.gz is one)"
            )
    return members


def extract(archive: str | os.PathLike, destination: str | os.PathLike, expect: str) -> Path:
    """Extracts ``archive`` into the folder ``destination`` (created), which must then hold ``expect``.

    The members are checked first (``check_members``); extraction goes to a
    temporary folder next to ``destination`` that is renamed into place at the end.
    """
    check_members(archive)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(tmp_dir, filter="data")
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise CorruptArchiveError(
                f"archive {archive} could not be extracted ({exc}): replace it with a complete copy"
            ) from exc
        if not (tmp_dir / expect).exists():
            raise CorruptArchiveError(f"archive {archive} holds no {expect!r}: it is not the expected data set")
        try:
            os.rename(tmp_dir, destination)
        except OSError:
            if not (destination / expect).exists():  # not another process that finished first
                raise
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    return destination
