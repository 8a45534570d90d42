"""Shared pytest configuration. Fixtures used by more than one test file go here."""

import socket

import pytest

from helpers import native_loops  # noqa: F401  (the fixture behind helpers.needs_native)
from imdb_support import ARCHIVE, Server, StallingServer, make_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("archive") / ARCHIVE)


@pytest.fixture
def serve(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    server = Server(folder)
    yield folder, server
    server.close()


@pytest.fixture
def stalling():
    servers = []
    yield lambda **kwargs: servers.append(StallingServer(**kwargs)) or servers[-1]
    for server in servers:
        server.close()


@pytest.fixture
def closed_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{ARCHIVE}"  # nothing listens there now
