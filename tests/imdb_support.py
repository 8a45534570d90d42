"""The tiny aclImdb archive, the local HTTP servers and the helpers that the IMDB
data tests share (their fixtures are in conftest.py)."""

import contextlib
import hashlib
import io
import socket
import tarfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


from torch_lstm_manual.sentiment.data import IMDBDataModule

ROOT = Path(__file__).resolve().parents[1]


REVIEWS = {
    ("train", "pos"): ["A great film.<br /><br />Loved it\u0085 truly", "Superb acting\u0096really superb\u0097yes",
                       "good fun\u0085", "GOOD<br/>and great\u0096\u0097"],
    ("train", "neg"): ["A dull film.<br />Hated it\u0097sadly", "awful acting", "bad and dull", "BAD<br>bad"],
    ("test", "pos"): ["great and good", "superb<br />film"],
    ("test", "neg"): ["dull, awful", "bad film\u0085"],
}


ARCHIVE = "aclImdb_v1.tar.gz"


def make_tree(root):
    for (split, label), texts in REVIEWS.items():
        folder = root / "aclImdb" / split / label
        folder.mkdir(parents=True)
        for number, text in enumerate(texts):
            (folder / f"{number}_{8 if label == 'pos' else 2}.txt").write_text(text, encoding="utf-8")
    (root / "aclImdb" / "README").write_text("tiny copy for tests")
    return root / "aclImdb"


def make_archive(path, members=None):
    """A tar.gz of the tiny tree, or of ``members``: a list of TarInfo (with data for files)."""
    with tarfile.open(path, "w:gz") as tar:
        if members is None:
            tree = make_tree(path.parent / "tree")
            tar.add(tree, arcname="aclImdb")
        else:
            for info, data in members:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Server:
    """A local HTTP server of one folder that records the paths requested."""

    def __init__(self, folder):
        self.requests = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                server.requests.append(self.path)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, name=ARCHIVE):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class StallingServer:
    """Accepts connections on 127.0.0.1, reads each request, sends ``reply`` (possibly nothing)
    and then neither sends more nor closes, until ``close`` (at the latest after ``hold`` seconds)."""

    def __init__(self, reply=b"", hold=30.0):
        self.reply, self.hold = reply, hold
        self.requested, self.stop = threading.Event(), threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        connections = []  # (connection, when to close it)
        self.sock.settimeout(0.05)
        while not self.stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except OSError:
                connection = None
            if connection is not None:
                connection.settimeout(5)
                with contextlib.suppress(OSError):
                    connection.recv(65536)  # the request
                    self.requested.set()
                    connection.sendall(self.reply)
                connections.append((connection, time.monotonic() + self.hold))
            for connection, until in connections:
                if time.monotonic() > until:
                    connection.close()
        for connection, _ in connections:
            connection.close()

    def url(self, name=ARCHIVE):
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/{name}"

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


def module(cache_dir, **kwargs):
    settings = dict(cache_dir=str(cache_dir), vocab_size=100, min_frequency=1, max_length=20,
                    val_fraction=0.25, batch_size=4, num_workers=0)
    return IMDBDataModule(**{**settings, **kwargs})


def leftovers(folder):
    return [p for p in Path(folder).rglob("*") if p.name.endswith((".part", ".tmp"))]


def decoded(data, dataset):
    vocab = {index: token for token, index in data.encoder.tokenizer.get_vocab().items()}
    return [" ".join(vocab[int(i)] for i in dataset[k][0]) for k in range(len(dataset))]
