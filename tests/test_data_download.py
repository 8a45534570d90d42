"""IMDB downloads from servers on 127.0.0.1: refused, failing, truncated, stalled and
stopped downloads, and the partial files they must not leave behind."""

import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest

from torch_lstm_manual.sentiment.data import download as download_module
from torch_lstm_manual.sentiment.data.download import ChecksumError, DownloadError, download

from imdb_support import ARCHIVE, ROOT, leftovers, module, sha256


def test_no_network_and_no_local_copy(tmp_path, closed_url):
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as info:
        module(cache, url=closed_url).prepare_data()
    message = str(info.value)
    assert str(cache / ARCHIVE) in message and "python train.py" in message and "data_dir" in message
    assert list(cache.iterdir()) == []


def test_http_error_is_a_download_error(tmp_path, serve):
    _, server = serve
    with pytest.raises(DownloadError, match="404"):
        module(tmp_path / "cache", url=server.url("missing.tar.gz")).prepare_data()
    assert leftovers(tmp_path / "cache") == []


def test_truncated_download_fails_the_checksum_and_is_removed(tmp_path, archive, serve):
    folder, server = serve
    (folder / ARCHIVE).write_bytes(archive.read_bytes()[:200])
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="truncated or corrupt.*removed"):
        module(cache, url=server.url(), sha256=sha256(archive)).prepare_data()
    assert list(cache.iterdir()) == []


def test_a_server_that_never_answers_times_out(tmp_path, stalling):
    cache = tmp_path / "cache"
    silent = stalling()  # accepts the connection, reads the request, never answers
    with pytest.raises(DownloadError) as info:
        module(cache, url=silent.url(), download_timeout=0.5).prepare_data()
    message = str(info.value)
    assert f"could not download {silent.url()}: the server sent no data for 0.5 s" in message
    assert silent.requested.is_set() and leftovers(cache) == []
    slow = stalling(reply=b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)  # stops mid-file
    with pytest.raises(DownloadError, match="the server sent no data for 0.5 s"):
        module(tmp_path / "cache2", url=slow.url(), download_timeout=0.5).prepare_data()
    assert leftovers(tmp_path / "cache2") == []
    for wrong in (0, -1.0, float("inf"), float("nan"), "60", True):
        with pytest.raises(ValueError, match=r"download_timeout must be a positive number of seconds, got"):
            module(cache, download_timeout=wrong)


STALLED_REPLY = b"HTTP/1.0 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 1000


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_sigterm_during_a_download_removes_the_partial_file(tmp_path, stalling):
    server = stalling(reply=STALLED_REPLY)
    script = "import sys; from torch_lstm_manual.sentiment.data.download import download; download(sys.argv[1], sys.argv[2], None)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-c", script, server.url(), str(tmp_path / "dl" / ARCHIVE)], env=env)
    try:
        assert server.requested.wait(120), "the download never started"
        assert [p.suffix for p in (tmp_path / "dl").iterdir()] != []  # the partial files exist now
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == -signal.SIGTERM  # SIGTERM still ends the process, as SIGTERM does
    finally:
        process.kill()
    assert list((tmp_path / "dl").iterdir()) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_sigterm_during_a_download_reaches_the_previous_handler(tmp_path, stalling):
    server = stalling(reply=STALLED_REPLY)
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    threading.Thread(target=lambda: server.requested.wait(60) and os.kill(os.getpid(), signal.SIGTERM)).start()
    try:
        with pytest.raises(DownloadError, match=r"was stopped by SIGTERM; its partial file was removed"):
            download(server.url(), tmp_path / "dl" / ARCHIVE, None)
        assert received == [signal.SIGTERM]
    finally:
        handler = signal.signal(signal.SIGTERM, previous)
    assert handler.__name__ == "<lambda>"  # restored after the download
    assert list((tmp_path / "dl").iterdir()) == []


def test_stale_partial_files_are_removed_by_the_next_run(tmp_path, archive, serve):
    folder, server = serve
    (folder / ARCHIVE).write_bytes(archive.read_bytes())
    cache = tmp_path / "cache"
    cache.mkdir()
    finished = subprocess.Popen([sys.executable, "-c", ""])
    finished.wait()  # a run that has ended: its pid runs no more
    host, dead, alive = download_module._HOST, finished.pid, os.getpid()

    def partial(name, age=0.0):
        path = cache / name
        path.write_bytes(b"partial")
        stamp = path.stat().st_mtime - age
        os.utime(path, (stamp, stamp))
        return name

    stale = {
        partial(f".{ARCHIVE}.{host}.{dead}.k2j4_x9a.part"),  # a killed run's own temporary file
        partial(f".{ARCHIVE}.{host}.{dead}.k2j4_x9a.part.{uuid.uuid4().hex}.partial"),  # torch.hub's inside it
        partial(f".{ARCHIVE}.otherhost.{alive}.abcdefgh.part.{uuid.uuid4().hex}.partial", age=7200),  # abandoned
        partial(f".{ARCHIVE}.q8w7e6r5.part", age=7200),  # an old version's, untouched for two hours
    }
    kept = {
        partial(f".{ARCHIVE}.{host}.{alive}.abcdefgh.part.{uuid.uuid4().hex}.partial"),  # a download running here
        partial(f".{ARCHIVE}.otherhost.{dead}.abcdefgh.part.{uuid.uuid4().hex}.partial"),  # ... or elsewhere
        partial(f".{ARCHIVE}.z1x2c3v4.part"),  # an old version's, written just now
        partial(f"{ARCHIVE}.part", age=7200),  # the user's own files
        partial(f".{ARCHIVE}.notes.txt", age=7200),
        partial(f".other.tar.gz.{host}.{dead}.abcdefgh.part", age=7200),
        partial("mine.partial", age=7200),
    }
    module(cache, url=server.url(), sha256=sha256(archive)).prepare_data()
    assert {p.name for p in cache.iterdir() if p.is_file()} == kept | {ARCHIVE}
    assert not any((cache / name).exists() for name in stale)
