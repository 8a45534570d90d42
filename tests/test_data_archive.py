"""extract and check_members: the gzip checksum, the extraction limits and the expected folders."""

import io
import tarfile

import pytest

from torch_lstm_manual.sentiment.data.archive import (
    ArchiveTooLargeError, CorruptArchiveError, check_members, extract,
)

REVIEW = b"A review whose every byte matters: the film was good."


def make(path, files, compresslevel=9):
    """A tar.gz of ``files`` ({name: bytes})."""
    with tarfile.open(path, "w:gz", compresslevel=compresslevel) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def flip(path, offset, bit=0):
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_the_text_fails_the_gzip_checksum(tmp_path):
    # Stored (level 0) deflate blocks hold the text as it is: a flipped bit there still
    # decompresses, to other text; only gzip's CRC-32 at the end of the stream tells.
    path = make(tmp_path / "a.tar.gz", {"data/train/1.txt": REVIEW}, compresslevel=0)
    flip(path, path.read_bytes().index(b"good"), bit=1)  # "good" -> "eood"
    with pytest.raises(CorruptArchiveError, match="truncated or corrupt.*CRC check failed"):
        extract(path, tmp_path / "out", expect="data/train")
    assert not (tmp_path / "out").exists()


def test_a_flipped_bit_in_the_trailer_fails_the_gzip_checksum(tmp_path):
    path = make(tmp_path / "a.tar.gz", {"data/train/1.txt": REVIEW})
    flip(path, path.stat().st_size - 8)  # the first byte of the CRC-32 trailer
    with pytest.raises(CorruptArchiveError, match="CRC check failed"):
        check_members(path)


def test_an_intact_archive_extracts(tmp_path):
    path = make(tmp_path / "a.tar.gz", {"data/train/1.txt": REVIEW, "./data/test/1.txt": b"bad"})
    out = extract(path, tmp_path / "out", expect=["data/train", "data/test"])
    assert (out / "data/train/1.txt").read_bytes() == REVIEW
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "out"]  # no temporary folder left


@pytest.mark.parametrize("limit, match", [
    (dict(max_members=3), r"holds more than 3 members \(max_members=3\)"),
    (dict(max_bytes=100), r"would extract more than 100 bytes \(max_bytes=100\)"),
])
def test_limits_are_checked_before_extracting(tmp_path, limit, match):
    files = {f"data/train/{i}.txt": REVIEW for i in range(5)}
    path = make(tmp_path / "a.tar.gz", files)
    with pytest.raises(ArchiveTooLargeError, match=match + ".*Nothing was extracted.*raise max_"):
        extract(path, tmp_path / "out", expect="data/train", **limit)
    assert list(tmp_path.iterdir()) == [path]
    extract(path, tmp_path / "out", expect="data/train", max_members=5, max_bytes=5 * len(REVIEW))  # at the limit


def test_an_archive_that_expands_too_much_is_refused_by_default(tmp_path):
    # 2 MB of zeros compress to a few kB: a compression bomb in miniature.
    path = make(tmp_path / "bomb.tar.gz", {"data/train/1.txt": REVIEW, "data/train/big.txt": bytes(2 << 20)})
    with pytest.raises(ArchiveTooLargeError, match=r"more than 100 times its own size \(max_ratio=100"):
        extract(path, tmp_path / "out", expect="data/train")
    assert not (tmp_path / "out").exists()
    extract(path, tmp_path / "out", expect="data/train", max_ratio=10_000)  # raised on purpose
    assert (tmp_path / "out/data/train/big.txt").stat().st_size == 2 << 20


def test_an_expected_folder_without_files_is_an_incomplete_archive(tmp_path):
    path = make(tmp_path / "a.tar.gz", {"data/train/1.txt": REVIEW})
    with pytest.raises(CorruptArchiveError, match=r"holds no files under 'data/test': the archive itself is "
                                                  r"incomplete.*Nothing was extracted; replace it"):
        extract(path, tmp_path / "out", expect=["data/train", "data/test"])
    assert list(tmp_path.iterdir()) == [path]
