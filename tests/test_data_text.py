"""Text cleaning, the word-level tokenizer, its save/load round trip, and load_encoder."""

import json

import pytest
import torch

from torch_lstm_manual.sentiment.data.text import (
    PAD_ID,
    UNK_ID,
    TextEncoder,
    check_vocab_compatible,
    clean_text,
    load_encoder,
    read_text_file,
    save_artifacts,
    tokenizer_from_words,
    train_tokenizer,
)

TEXTS = [
    "A good movie.<br /><br />Truly GOOD!",
    "A bad movie, not good at all.",
    "The acting was good but the plot was bad.",
    "Bad, bad, bad.",
]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello<br />World", "hello world"),
        ("a<br/>b<br>c<BR />d", "a b c d"),
        ("wait\u0085 and\u0096then\u0097end", "wait\u2026 and\u2013then\u2014end"),
        ("ALREADY clean", "already clean"),
        ("", ""),
    ],
)
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def test_clean_text_rejects_non_strings():
    with pytest.raises(TypeError, match="expects a str, got bytes"):
        clean_text(b"bytes")


def test_read_text_file_strict_utf8(tmp_path):
    good = tmp_path / "good.txt"
    good.write_bytes("\ufeffcaf\u00e9".encode("utf-8"))
    assert read_text_file(good) == "caf\u00e9"
    bad = tmp_path / "bad.txt"
    bad.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(UnicodeDecodeError, match=r"bad\.txt.*not valid UTF-8"):
        read_text_file(bad)


def _tokenizer(max_length=16, vocab_size=50, min_frequency=1, **kwargs):
    return train_tokenizer(TEXTS, vocab_size=vocab_size, min_frequency=min_frequency, max_length=max_length, **kwargs)


def test_special_ids_and_vocabulary():
    tokenizer = _tokenizer()
    assert tokenizer.token_to_id("[PAD]") == PAD_ID == 0
    assert tokenizer.token_to_id("[UNK]") == UNK_ID == 1
    vocab = tokenizer.get_vocab()
    assert "good" in vocab and "," in vocab and "." in vocab  # words and punctuation split apart
    assert "<" not in vocab and "br" not in vocab and "GOOD" not in vocab  # cleaned before training


def test_vocab_size_and_min_frequency_limit_the_vocabulary():
    assert _tokenizer(vocab_size=5).get_vocab_size() == 5
    frequent = set(_tokenizer(min_frequency=3).get_vocab()) - {"[PAD]", "[UNK]"}
    assert frequent == {"bad", "good", ".", ","}  # 5x bad, 4x good, 4x ".", 3x ","; the rest <= 2x


def test_training_is_deterministic():
    assert _tokenizer().to_str() == _tokenizer().to_str()


def test_encoder_pads_truncates_and_never_returns_empty():
    encoder = TextEncoder(_tokenizer(max_length=4))
    tokens, lengths = encoder(["good", "a bad movie , not good at all", "", "<br />", "zzz unseen"])
    assert tokens.dtype == torch.long and lengths.dtype == torch.long
    assert lengths.tolist() == [1, 4, 1, 1, 2]
    assert tokens.shape == (5, 4)
    assert tokens[0, 1:].tolist() == [PAD_ID] * 3
    assert tokens[2, 0] == UNK_ID and tokens[3, 0] == UNK_ID
    assert tokens[4, :2].tolist() == [UNK_ID, UNK_ID]
    single, single_lengths = encoder("GOOD<br/>")
    assert single.tolist() == [[encoder.tokenizer.token_to_id("good")]] and single_lengths.tolist() == [1]


def test_encoder_errors():
    encoder = TextEncoder(_tokenizer())
    with pytest.raises(ValueError, match="at least one string"):
        encoder([])
    with pytest.raises(TypeError, match=r"texts\[1\] should be a str, got: int"):
        encoder(["fine", 3])
    tokenizer = _tokenizer()
    tokenizer.no_truncation()
    with pytest.raises(ValueError, match="truncation"):
        TextEncoder(tokenizer)


@pytest.mark.parametrize("name, kwargs, error", [
    ("vocab_size", dict(vocab_size=2), ValueError),
    ("min_frequency", dict(min_frequency=0), ValueError),
    ("max_length", dict(max_length=0), ValueError),
    ("vocab_size", dict(vocab_size=10.0), TypeError),
    ("max_token_length", dict(max_token_length=0), ValueError),
])
def test_train_tokenizer_argument_errors(name, kwargs, error):
    with pytest.raises(error, match=name):
        _tokenizer(**kwargs)


def test_save_load_round_trip(tmp_path):
    encoder = TextEncoder(_tokenizer(max_length=5), class_names=["neg", "pos"])
    save_artifacts(tmp_path / "ckpt", encoder)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["labels.json", "tokenizer.json"]
    assert json.loads((tmp_path / "ckpt" / "labels.json").read_text()) == {"class_names": ["neg", "pos"]}
    loaded = load_encoder(tmp_path / "ckpt")
    assert loaded.class_names == ["neg", "pos"]
    assert loaded.max_length == 5 and loaded.vocab_size == encoder.vocab_size
    assert loaded.tokenizer.get_vocab() == encoder.tokenizer.get_vocab()
    probe = TEXTS + ["Good<br />BAD\u0085 unseen words here and there"]
    for a, b in zip(encoder(probe), loaded(probe)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert loaded(probe)[1].max() == 5  # truncation survives the round trip


def test_load_encoder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_encoder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_encoder(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid tokenizers JSON"):
        load_encoder(tmp_path)
    save_artifacts(tmp_path, TextEncoder(_tokenizer()))
    (tmp_path / "labels.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="class_names"):
        load_encoder(tmp_path)


def test_tokenizer_from_words():
    tokenizer = tokenizer_from_words(["b", "a", "a", "[UNK]"], max_length=8)
    assert tokenizer.get_vocab() == {"[PAD]": 0, "[UNK]": 1, "a": 2, "b": 3}


def test_check_vocab_compatible():
    check_vocab_compatible(100, 100)
    check_vocab_compatible(90, 100)  # vocab_size is an upper bound: a smaller tokenizer fits
    with pytest.raises(ValueError, match=r"tokenizer has 120 tokens.*only 100 rows.*different training runs"):
        check_vocab_compatible(120, 100)
    with pytest.raises(ValueError, match="model_vocab_size must be at least 1"):
        check_vocab_compatible(10, 0)
    with pytest.raises(TypeError, match="tokenizer_vocab_size should be of type int"):
        check_vocab_compatible(10.0, 100)


def test_words_longer_than_max_token_length_stay_out_of_the_vocabulary():
    long_word, punctuation, limit_word = "w" * 101, "!" * 150, "l" * 100
    texts = [f"good {long_word} {punctuation} {limit_word} caf\u00e9"] * 2
    vocab = train_tokenizer(texts, vocab_size=50, min_frequency=1, max_length=16).get_vocab()
    assert set(vocab) == {"[PAD]", "[UNK]", "good", limit_word, "caf\u00e9"}  # 100 characters: still a word
    vocab = train_tokenizer(texts, vocab_size=50, min_frequency=1, max_length=16, max_token_length=150).get_vocab()
    assert {long_word, punctuation} <= set(vocab)
    tokenizer = train_tokenizer(texts, vocab_size=50, min_frequency=1, max_length=16, max_token_length=4)
    assert set(tokenizer.get_vocab()) == {"[PAD]", "[UNK]", "good", "caf\u00e9"}  # characters, not bytes
    ids = TextEncoder(tokenizer).encode_ids([f"good {long_word} caf\u00e9"])
    assert ids == [[tokenizer.token_to_id("good"), UNK_ID, tokenizer.token_to_id("caf\u00e9")]]
