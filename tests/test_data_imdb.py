"""IMDBDataModule on a tiny aclImdb archive served from 127.0.0.1: checksum, safe
extraction, the on-disk cache, local copies, and their errors."""

import re
import tarfile
import warnings

import pytest
import torch

from torch_lstm_manual.sentiment.data import IMDBDataModule
from torch_lstm_manual.sentiment.cli import main
from torch_lstm_manual.sentiment.data import imdb as imdb_module
from torch_lstm_manual.sentiment.data.archive import CorruptArchiveError, UnsafeArchiveError
from torch_lstm_manual.sentiment.data.download import ChecksumError
from torch_lstm_manual.sentiment.data.text import load_tokenizer

from imdb_support import ARCHIVE, REVIEWS, decoded, leftovers, make_archive, make_tree, module, sha256


def test_init_does_no_io(tmp_path):
    data = IMDBDataModule(cache_dir=str(tmp_path / "cache"), url="http://127.0.0.1:9/none")
    assert (data.vocab_size, data.num_classes, data.class_names) == (20000, 2, ["neg", "pos"])
    assert not (tmp_path / "cache").exists()


def test_download_checksum_extract_and_cache(tmp_path, archive, serve, monkeypatch):
    folder, server = serve
    (folder / ARCHIVE).write_bytes(archive.read_bytes())
    cache = tmp_path / "cache"
    data = module(cache, url=server.url(), sha256=sha256(archive))
    data.prepare_data()
    assert server.requests == [f"/{ARCHIVE}"]
    assert (cache / ARCHIVE).read_bytes() == archive.read_bytes()
    assert (cache / f"aclImdb-{sha256(archive)[:16]}" / "aclImdb" / "train" / "pos").is_dir()
    data.setup("fit")
    assert (len(data.train_set), len(data.val_set), data.test_set) == (6, 2, None)  # test read only for "test"
    vocab = data.encoder.tokenizer.get_vocab()
    assert {"\u2026", "\u2013", "\u2014", "good"} <= set(vocab)  # each is in two reviews: one is in train
    assert not {"<", "br", "GOOD", "\u0085", "\u0096", "\u0097"} & set(vocab)

    def expected(split):  # the cleaned reviews, words outside the vocabulary as [UNK]
        raw = REVIEWS[(split, "neg")] + REVIEWS[(split, "pos")]
        for old, new in (("<br />", " "), ("<br/>", " "), ("<br>", " "), ("\u0085", "\u2026"),
                         ("\u0096", "\u2013"), ("\u0097", "\u2014")):
            raw = [text.replace(old, new) for text in raw]
        words = [re.findall(r"\w+|[^\w\s]+", text.lower()) for text in raw]
        return sorted(" ".join(w if w in vocab else "[UNK]" for w in text) for text in words)

    assert sorted(decoded(data, data.train_set) + decoded(data, data.val_set)) == expected("train")
    data.setup("test")
    assert sorted(decoded(data, data.test_set)) == expected("test")
    assert "bad film \u2026" in expected("test")
    batch = next(iter(data.train_dataloader()))
    assert [t.dtype for t in batch] == [torch.long] * 3 and (batch[1] >= 1).all()
    data.save_artifacts(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["labels.json", "tokenizer.json"]

    def fail(*args, **kwargs):
        raise AssertionError("the second run must come from the cache")

    monkeypatch.setattr(imdb_module, "train_tokenizer", fail)
    monkeypatch.setattr(imdb_module, "read_text_file", fail)
    again = module(cache, url=server.url(), sha256=sha256(archive))
    again.prepare_data()
    again.setup("fit")
    again.setup("test")
    assert server.requests == [f"/{ARCHIVE}"]  # no second download
    for name in ("train_set", "val_set", "test_set"):
        assert torch.equal(getattr(data, name).ids, getattr(again, name).ids)
    assert leftovers(cache) == []


@pytest.mark.parametrize("content", ["another valid archive", "broken bytes"])
def test_a_foreign_file_in_the_cache_is_reported_not_removed(tmp_path, archive, serve, content):
    folder, server = serve
    (folder / ARCHIVE).write_bytes(archive.read_bytes())
    cache = tmp_path / "cache"
    cache.mkdir()
    if content == "broken bytes":
        (cache / ARCHIVE).write_bytes(b"not an archive")
    else:  # the tiny tree with one more review: a usable archive, with another checksum
        make_tree(tmp_path / "other")
        (tmp_path / "other" / "aclImdb" / "train" / "pos" / "9_9.txt").write_text("one more", encoding="utf-8")
        with tarfile.open(cache / ARCHIVE, "w:gz") as tar:
            tar.add(tmp_path / "other" / "aclImdb", arcname="aclImdb")
    placed = (cache / ARCHIVE).read_bytes()
    expected, actual = sha256(archive), sha256(cache / ARCHIVE)
    with pytest.raises(ChecksumError) as info:
        module(cache, url=server.url(), sha256=expected).prepare_data()
    message = str(info.value)
    assert str(cache / ARCHIVE) in message and actual in message and expected in message
    assert "left as it is" in message and f"--data.sha256 {actual}" in message and "--data.sha256 null" in message
    assert "missing" not in message
    assert (info.value.path, info.value.expected, info.value.actual) == (cache / ARCHIVE, expected, actual)
    assert (cache / ARCHIVE).read_bytes() == placed  # never deleted, never replaced
    assert server.requests == []
    if content == "another valid archive":  # the user's way out: its own checksum
        data = module(cache, url=server.url(), sha256=actual)
        data.prepare_data()
        data.setup("fit")
        assert len(data.train_set) + len(data.val_set) == 9
        assert server.requests == []


def test_sha256_argument_is_checked(tmp_path, capsys):
    for wrong in ("abc", "g" * 64, "a" * 65, 123):
        with pytest.raises(ValueError, match=rf"sha256 must be .*64 hexadecimal characters.*got {re.escape(repr(wrong))}"):
            module(tmp_path, sha256=wrong)
    data = module(tmp_path, sha256="AB" * 32)
    assert data.sha256 == data.hparams.sha256 == "ab" * 32 and type(data.hparams.sha256) is str
    assert module(tmp_path, sha256=None).sha256 is None
    with pytest.raises(SystemExit) as exit_info:  # the command line names the argument, no traceback
        main(["fit", "--data", "IMDBDataModule", "--data.sha256", "xyz", "--data.cache_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'Parser key "sha256"' in err and "sha256 must be the archive's SHA-256, 64 hexadecimal characters" in err
    assert "got 'xyz'" in err and "Traceback" not in err


def test_a_corrupt_cached_tokenizer_is_named_and_rebuilt(tmp_path, archive):
    cache = tmp_path / "cache"
    first = module(cache, archive=str(archive), sha256=None)
    first.prepare_data()
    first.setup("fit")
    (saved,) = (cache / "encoded").glob("*/tokenizer.json")
    good = saved.read_bytes()
    for broken, cause in ((b'{"version": "1.0", "trunc', "EOF while parsing"), (b"\xff\xfe{}", "not valid UTF-8")):
        saved.write_bytes(broken)
        again = module(cache, archive=str(archive), sha256=None)
        with pytest.warns(UserWarning, match=rf"unreadable cache file {re.escape(str(saved))} \(.*{cause}.*\); "
                                             rf"it will be rebuilt"):
            again.setup("fit")
        assert saved.read_bytes() == good  # rebuilt the same, in place
        assert load_tokenizer(saved).get_vocab() == first.encoder.tokenizer.get_vocab()
        for name in ("train_set", "val_set"):
            assert torch.equal(getattr(first, name).ids, getattr(again, name).ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module(cache, archive=str(archive), sha256=None).setup("fit")  # the rebuilt cache is used quietly
    assert leftovers(cache) == []


def test_changed_settings_are_encoded_again(tmp_path, archive, monkeypatch):
    cache = tmp_path / "cache"
    calls = []
    original = imdb_module.train_tokenizer
    monkeypatch.setattr(imdb_module, "train_tokenizer", lambda *a, **k: calls.append(a[1:]) or original(*a, **k))
    for max_length in (20, 20, 3):
        data = module(cache, archive=str(archive), sha256=None, max_length=max_length)
        data.prepare_data()
        data.setup("fit")
    assert len(calls) == 2 and int(data.train_set.lengths.max()) == 3


@pytest.mark.parametrize("as_parent", [False, True])
def test_local_data_dir(tmp_path, closed_url, as_parent):
    root = make_tree(tmp_path / "local")
    data = module(tmp_path / "cache", data_dir=str(root.parent if as_parent else root), url=closed_url)
    data.prepare_data()
    data.setup(None)
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (6, 2, 4)


def test_local_archive_and_its_checksum(tmp_path, archive, closed_url):
    data = module(tmp_path / "cache", archive=str(archive), url=closed_url, sha256=None)
    data.prepare_data()
    data.setup("test")
    assert len(data.test_set) == 4
    checked = module(tmp_path / "cache2", archive=str(archive), url=closed_url)  # the real IMDB checksum
    with pytest.raises(ChecksumError, match=r"archive: .*aclImdb_v1\.tar\.gz has SHA-256 .*sha256=None"):
        checked.prepare_data()
    assert archive.exists()  # the user's file is never deleted


def test_missing_paths_name_the_argument(tmp_path, closed_url):
    with pytest.raises(FileNotFoundError, match=r"data_dir '.*nowhere' does not exist"):
        module(tmp_path, data_dir=str(tmp_path / "nowhere"), url=closed_url).prepare_data()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no train/ folder"):
        module(tmp_path, data_dir=str(tmp_path / "empty"), url=closed_url).prepare_data()
    with pytest.raises(FileNotFoundError, match=r"archive '.*nothing\.tar\.gz' does not exist"):
        module(tmp_path, archive=str(tmp_path / "nothing.tar.gz"), url=closed_url).prepare_data()


def test_truncated_archive_without_checksum(tmp_path, archive, serve):
    folder, server = serve
    (folder / ARCHIVE).write_bytes(archive.read_bytes()[:200])
    cache = tmp_path / "cache"
    with pytest.raises(CorruptArchiveError, match="truncated or corrupt.*has been removed"):
        module(cache, url=server.url(), sha256=None).prepare_data()
    assert list(cache.iterdir()) == []  # the bad download and the half extraction are gone
    local = tmp_path / "local.tar.gz"
    local.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(CorruptArchiveError, match=r"local\.tar\.gz is truncated or corrupt"):
        module(cache, archive=str(local), sha256=None).prepare_data()
    assert local.exists()


def test_empty_archive(tmp_path):
    (tmp_path / "empty.tar.gz").write_bytes(b"")
    with pytest.raises(CorruptArchiveError, match=r"empty\.tar\.gz is empty \(0 bytes\)"):
        module(tmp_path / "cache", archive=str(tmp_path / "empty.tar.gz"), sha256=None).prepare_data()


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, kind):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("member, problem", [
    (_file("/tmp/evil.txt"), "an absolute path"),
    (_file("aclImdb/../../evil.txt"), "a '..' component"),
    (_link("aclImdb/train/pos/link.txt", "/etc/passwd", tarfile.SYMTYPE), "a symbolic link"),
    (_link("aclImdb/train/pos/hard.txt", "aclImdb/README", tarfile.LNKTYPE), "a hard link"),
])
def test_unsafe_members_are_refused_before_extraction(tmp_path, member, problem):
    path = make_archive(tmp_path / "bad.tar.gz", [_file("aclImdb/train/pos/0_9.txt", b"fine"), member])
    cache = tmp_path / "cache"
    with pytest.raises(UnsafeArchiveError, match=f"member '{member[0].name}' is {problem}"):
        module(cache, archive=str(path), sha256=None).prepare_data()
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing extracted


def test_not_the_imdb_archive(tmp_path):
    path = make_archive(tmp_path / "other.tar.gz", [_file("something/else.txt")])
    with pytest.raises(CorruptArchiveError, match="holds no files under 'aclImdb/train/neg'"):
        module(tmp_path / "cache", archive=str(path), sha256=None).prepare_data()
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_empty_split_folder_and_non_utf8_review(tmp_path):
    root = make_tree(tmp_path / "local")
    for review in (root / "test" / "neg").iterdir():
        review.unlink()
    data = module(tmp_path / "cache", data_dir=str(root))
    with pytest.raises(ValueError, match=r"test/neg holds no \.txt reviews.*Pass data_dir= a complete aclImdb"):
        data.setup("fit")  # before training, not in the test stage after it
    (root / "test" / "neg" / "0_2.txt").write_text("dull", encoding="utf-8")
    (root / "train" / "pos" / "9_9.txt").write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(UnicodeDecodeError, match=r"9_9\.txt: the file is not valid UTF-8"):
        module(tmp_path / "cache", data_dir=str(root)).setup("fit")  # a changed folder is read again


def test_setup_before_prepare_data(tmp_path, closed_url):
    with pytest.raises(RuntimeError, match=r"call prepare_data\(\) before setup\(\)"):
        module(tmp_path / "cache", url=closed_url).setup("fit")


def test_an_archive_without_test_fails_in_prepare_data(tmp_path):
    members = [_file(f"aclImdb/train/{name}/0_{score}.txt", b"a review") for name, score in (("neg", 2), ("pos", 9))]
    path = make_archive(tmp_path / "train_only.tar.gz", members)
    with pytest.raises(CorruptArchiveError, match=r"holds no files under 'aclImdb/test/neg', 'aclImdb/test/pos': "
                                                  r"the archive itself is incomplete") as info:
        module(tmp_path / "cache", archive=str(path), sha256=None).prepare_data()
    assert "again" not in str(info.value)  # extracting the same archive again cannot help
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_a_data_dir_without_test_fails_before_training(tmp_path):
    root = make_tree(tmp_path / "local")
    for review in (root / "test" / "pos").iterdir():
        review.unlink()
    (root / "test" / "pos").rmdir()
    data = module(tmp_path / "cache", data_dir=str(root))
    data.prepare_data()
    with pytest.raises(FileNotFoundError, match=r"test/pos is missing.*Pass data_dir= a complete aclImdb folder"):
        data.setup("fit")
    assert data.train_set is None


def test_a_damaged_extraction_is_named(tmp_path, archive):
    data = module(tmp_path / "cache", archive=str(archive), sha256=None)
    data.prepare_data()
    extracted = next((tmp_path / "cache").glob("aclImdb-*"))
    for review in (extracted / "aclImdb" / "test" / "neg").iterdir():
        review.unlink()
    with pytest.raises(ValueError, match=f"test/neg holds no .txt reviews.*Remove {extracted} to have the archive "
                                         f"extracted again"):
        data.setup("fit")


def test_a_checkpoint_tokenizer_replaces_the_cached_one(tmp_path, archive, closed_url):
    """``load_state_dict`` (a checkpoint being loaded) after ``setup``: the splits are encoded again
    with the checkpoint's tokenizer; the cache, which holds another tokenizer's ids, is left as it is."""
    trained = module(tmp_path / "cache", archive=str(archive), url=closed_url, sha256=None, min_frequency=1)
    trained.prepare_data()
    trained.setup("test")
    other = module(tmp_path / "cache", archive=str(archive), url=closed_url, sha256=None, min_frequency=2)
    other.prepare_data()
    other.setup("test")
    assert other.encoder.tokenizer.to_str() != trained.encoder.tokenizer.to_str()
    cached = sorted((tmp_path / "cache" / "encoded").rglob("*"))
    stamps = {path: path.stat().st_mtime_ns for path in cached}

    other.load_state_dict(trained.state_dict())
    assert other.encoder.tokenizer.to_str() == trained.encoder.tokenizer.to_str()
    for split in ("train_set", "val_set", "test_set"):
        assert decoded(other, getattr(other, split)) == decoded(trained, getattr(trained, split))
        assert torch.equal(getattr(other, split).labels, getattr(trained, split).labels)
    assert sorted((tmp_path / "cache" / "encoded").rglob("*")) == cached
    assert {path: path.stat().st_mtime_ns for path in cached} == stamps
