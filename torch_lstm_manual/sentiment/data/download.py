"""Downloading a file with a checksum and a timeout, leaving nothing half-written.

``download`` fetches to a temporary name in the destination folder, checks the
SHA-256 and only then renames the file into place; a failed or corrupt download
leaves nothing behind. A download that stalls (no data for ``timeout`` seconds)
fails with ``DownloadError``; one ended by SIGTERM removes its partial file
first; the partial files of one killed outright (SIGKILL, power loss) are
removed by the next ``download`` to the same destination
(``remove_stale_downloads``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import torch

from .storage import sha256_file


class DownloadError(ConnectionError):
    """The archive could not be fetched (no network, refused, HTTP error, no data in time)."""


class ChecksumError(ValueError):
    """A file's SHA-256 differs from the expected one.

    Attributes:
        path: the file that was checked.
        expected: the SHA-256 it should have.
        actual: the SHA-256 it has.
    """

    def __init__(
        self, message: str, *, path: str | os.PathLike | None = None, expected: str | None = None,
        actual: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path, self.expected, self.actual = path, expected, actual


DOWNLOAD_TIMEOUT = 60.0  # seconds without any data from the server before a download fails
STALE_AFTER = 3600.0  # seconds without a write after which any partial download counts as abandoned
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63] or "localhost"
_TIMEOUT_LOCK = threading.Lock()



def check_sha256(path: str | os.PathLike, expected: str | None) -> str:
    """Returns the SHA-256 of ``path``; raises ``ChecksumError`` if ``expected`` is set and differs."""
    digest = sha256_file(path)
    if expected is not None and digest != expected.lower():
        raise ChecksumError(
            f"{path} has SHA-256 {digest}, expected {expected.lower()}",
            path=path, expected=expected.lower(), actual=digest,
        )
    return digest


def _partial_name(destination: Path) -> re.Pattern:
    """The names of ``download``'s temporary files for ``destination``: its own
    ``.<name>.<host>.<pid>.<random>.part`` and ``torch.hub``'s ``<that>.<uuid hex>.partial``
    (also those of older versions, ``.<name>.<random>.part``, which name no writer)."""
    return re.compile(
        re.escape(f".{destination.name}.")
        + r"(?:(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.)?[A-Za-z0-9_]+\.part(?:\.[0-9a-f]{32}\.partial)?"
    )


def _process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (True when it cannot be told)."""
    if os.name == "nt":  # os.kill would terminate it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def remove_stale_downloads(destination: str | os.PathLike) -> list[Path]:
    """Removes the temporary files that killed downloads to ``destination`` left in its folder.

    Only files named like ``download``'s own temporary files for this destination are
    considered, and only stale ones: written by a process of this machine that no longer
    runs, or not written for ``STALE_AFTER`` seconds (a running download writes at least
    every ``timeout`` seconds). The partial files of downloads still running, here or on
    another machine sharing the folder, and every other file are left alone.

    Returns:
        the files removed.
    """
    destination = Path(destination)
    pattern, removed = _partial_name(destination), []
    try:
        entries = list(os.scandir(destination.parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            abandoned = time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER
        except FileNotFoundError:  # its download just finished or cleaned up
            continue
        if not abandoned and match["pid"] is not None and match["host"] == _HOST:
            abandoned = not _process_alive(int(match["pid"]))
        if abandoned:
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """Sockets created inside get ``seconds`` as their timeout (``torch.hub.download_url_to_file``
    takes none): every connect and read fails with ``TimeoutError`` after that long without data."""
    with _TIMEOUT_LOCK:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(seconds)
        try:
            yield
        finally:
            socket.setdefaulttimeout(previous)


class _Terminated(BaseException):
    """SIGTERM arrived during a download; raised by the handler so that every ``finally`` runs."""


@contextlib.contextmanager
def _sigterm_cleans_up(url: str):
    """Inside, SIGTERM raises ``_Terminated`` instead of ending the process at once; once the
    block has cleaned up, the signal is raised again for the handler that was in place before:
    the default one ends the process as SIGTERM ends it, after any other the download fails
    with ``DownloadError``. Only in the main thread, and not when SIGTERM is ignored; elsewhere
    ``remove_stale_downloads`` cleans up after the fact."""
    sigterm = getattr(signal, "SIGTERM", None)
    if sigterm is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(sigterm)
    if previous in (signal.SIG_IGN, None):
        yield
        return

    def terminate(signum, frame):
        signal.signal(sigterm, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
        raise _Terminated

    signal.signal(sigterm, terminate)
    try:
        yield
    except _Terminated:
        signal.signal(sigterm, previous)
        signal.raise_signal(sigterm)  # the previous handler's turn; the default one ends the process here
        raise DownloadError(f"the download of {url} was stopped by SIGTERM; its partial file was removed") from None
    finally:
        signal.signal(sigterm, previous)


def download(
    url: str, destination: str | os.PathLike, sha256: str | None, timeout: float = DOWNLOAD_TIMEOUT
) -> Path:
    """Downloads ``url`` to ``destination`` via a temporary name, checking ``sha256`` (None: no check).

    Stale partial files of killed downloads to ``destination`` are removed first
    (``remove_stale_downloads``). SIGTERM during the download removes the partial file
    before the signal takes its usual effect.

    Args:
        url: what to fetch (anything ``urllib`` opens).
        destination: the final path; its folder is created.
        sha256: the expected SHA-256, or None to skip the check.
        timeout: seconds without any data (while connecting or reading) before giving up.

    Raises:
        DownloadError: the request failed or the server sent nothing for ``timeout`` seconds;
            nothing is left on disk.
        ChecksumError: the file arrived with another checksum (truncated or a different
            file); the partial file is removed.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_downloads(destination)
    with _sigterm_cleans_up(url):
        fd, tmp_name = tempfile.mkstemp(
            dir=destination.parent, prefix=f".{destination.name}.{_HOST}.{os.getpid()}.", suffix=".part"
        )
        os.close(fd)
        try:
            try:
                with _socket_timeout(timeout):
                    torch.hub.download_url_to_file(url, tmp_name, hash_prefix=None, progress=True)
            except Exception as exc:  # URLError, HTTPError, socket errors, ...
                if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
                    raise DownloadError(
                        f"could not download {url}: the server sent no data for {timeout:g} s "
                        f"(the download timeout)"
                    ) from exc
                raise DownloadError(f"could not download {url}: {exc}") from exc
            try:
                check_sha256(tmp_name, sha256)
            except ChecksumError as exc:
                raise ChecksumError(
                    f"the file downloaded from {url} is truncated or corrupt ({exc}); it was removed. "
                    f"Run again to retry; to accept a different copy on purpose pass sha256=None",
                    path=destination, expected=exc.expected, actual=exc.actual,
                ) from None
            os.replace(tmp_name, destination)
        finally:
            if os.path.exists(tmp_name):
                os.remove(tmp_name)
    return destination
