"""Extracting an archive without surprises.

``extract`` refuses archives with absolute paths, ``..`` components, links or
device files, archives larger than its limits (member count, total size,
expansion over the archive's own size) and archives whose gzip checksum
(CRC-32) fails, all before extracting anything; it then extracts with
``tarfile``'s ``"data"`` filter into a temporary folder and renames that folder
into place, so a half-extracted folder never has the final name.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Sequence


class CorruptArchiveError(ValueError):
    """The archive is empty, truncated or not a tar.gz file."""


class UnsafeArchiveError(ValueError):
    """The archive holds a member that could write outside the target folder."""


class ArchiveTooLargeError(ValueError):
    """The archive holds more members or more bytes than the extraction limits allow."""


MAX_MEMBERS = 250_000  # the original aclImdb_v1.tar.gz holds about 100,000
MAX_BYTES = 1 << 30  # 1 GiB; the members of aclImdb_v1.tar.gz total well under 400 MB
MAX_RATIO = 100  # members may total at most this many times the archive's size (IMDB: about 3)


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


def _read_to_end(tar: tarfile.TarFile) -> None:
    """Reads the rest of the compressed stream, so that gzip checks its CRC-32 and length trailer
    (iterating the members stops at the end-of-archive blocks and never reaches it)."""
    while tar.fileobj.read(1 << 20):
        pass


def _check_limits(archive: str | os.PathLike, count: int, total: int, archive_size: int,
                  max_members: int, max_bytes: int, max_ratio: float) -> None:
    nothing = "Nothing was extracted"
    if count > max_members:
        raise ArchiveTooLargeError(
            f"archive {archive} holds more than {max_members} members (max_members={max_members}). {nothing}; "
            f"if the archive is the one you meant, raise max_members"
        )
    if total > max_bytes:
        raise ArchiveTooLargeError(
            f"archive {archive} would extract more than {max_bytes} bytes (max_bytes={max_bytes}). {nothing}; "
            f"if the archive is the one you meant, raise max_bytes"
        )
    if total > max_ratio * archive_size:
        raise ArchiveTooLargeError(
            f"archive {archive} ({archive_size} bytes) would extract more than {max_ratio} times its own size "
            f"(max_ratio={max_ratio}; members seen so far total {total} bytes), which text data never does: "
            f"it is not the expected data set. {nothing}; if the archive is the one you meant, raise max_ratio"
        )


def check_members(archive: str | os.PathLike, max_members: int = MAX_MEMBERS, max_bytes: int = MAX_BYTES,
                  max_ratio: float = MAX_RATIO) -> list[tarfile.TarInfo]:
    """Reads every member header of a ``.tar.gz`` and checks that all are plain files or folders
    inside the archive, within the limits, and that the gzip stream is intact to its end.

    Reading stops at the first member past a limit, so an oversized archive costs no more
    than the limit to refuse.

    Args:
        archive: the ``.tar.gz`` file.
        max_members: the most members (files and folders) the archive may hold.
        max_bytes: the most bytes its files may total once extracted.
        max_ratio: the most its files may total, as a multiple of the archive's own size.

    Raises:
        CorruptArchiveError: empty, truncated, failing gzip's CRC-32, or not a gzip tar archive.
        UnsafeArchiveError: a member with an absolute path, '..', a link or a special file.
        ArchiveTooLargeError: more members or bytes than the limits.
    """
    archive_size = os.path.getsize(archive)
    if archive_size == 0:
        raise CorruptArchiveError(f"archive {archive} is empty (0 bytes): download it again")
    members: list[tarfile.TarInfo] = []
    total = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                problem = _member_problem(member)
                if problem is not None:
                    raise UnsafeArchiveError(
                        f"archive {archive} is unsafe: member {member.name!r} is {problem}. Nothing was extracted; "
                        f"use an archive of plain files and folders (the original aclImdb_v1.tar.gz is one)"
                    )
                members.append(member)
                total += member.size
                _check_limits(archive, len(members), total, archive_size, max_members, max_bytes, max_ratio)
            _read_to_end(tar)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise CorruptArchiveError(
            f"archive {archive} is truncated or corrupt ({exc}): replace it with a complete copy"
        ) from exc
    return members


def _missing(members: list[tarfile.TarInfo], expect: Sequence[str]) -> list[str]:
    """The folders of ``expect`` under which no file member lies."""
    folders = set()
    for member in members:
        if member.isfile():
            parts = PurePosixPath(member.name).parts
            folders.update(PurePosixPath(*parts[:end]) for end in range(1, len(parts)))
    return [name for name in expect if PurePosixPath(name) not in folders]


def extract(archive: str | os.PathLike, destination: str | os.PathLike, expect: str | Sequence[str],
            max_members: int = MAX_MEMBERS, max_bytes: int = MAX_BYTES, max_ratio: float = MAX_RATIO) -> Path:
    """Extracts ``archive`` into the folder ``destination`` (created).

    The members are checked first (``check_members``, with the limits given here) and
    each folder of ``expect`` must hold at least one file; only then is anything
    written. Extraction goes to a temporary folder next to ``destination`` that is
    renamed into place at the end.

    Args:
        archive: the ``.tar.gz`` file.
        destination: the folder to extract into.
        expect: the folder (or folders) inside the archive that must each hold a file.
        max_members, max_bytes, max_ratio: the limits of ``check_members``.
    """
    expect = [expect] if isinstance(expect, str) else list(expect)
    missing = _missing(check_members(archive, max_members, max_bytes, max_ratio), expect)
    if missing:
        raise CorruptArchiveError(
            f"archive {archive} holds no files under {', '.join(repr(name) for name in missing)}: the archive "
            f"itself is incomplete, or not the expected data set. Nothing was extracted; replace it with a "
            f"complete copy"
        )
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(tmp_dir, filter="data")
                _read_to_end(tar)  # the file could have changed since check_members
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise CorruptArchiveError(
                f"archive {archive} could not be extracted ({exc}): replace it with a complete copy"
            ) from exc
        try:
            os.rename(tmp_dir, destination)
        except OSError:
            if not all((destination / name).exists() for name in expect):  # not another process that finished first
                raise
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    return destination
