"""The built-in corpus: deterministic, configurable, balanced, beyond a bag of words yet
exactly decidable from word order; and SyntheticDataModule around it."""

from collections import Counter

import pytest
import torch

from torch_lstm_manual.sentiment import baseline
from torch_lstm_manual.sentiment.data import SyntheticDataModule, load_encoder
from torch_lstm_manual.sentiment.data.corpus import (
    CONTRAST,
    NEGATIVE,
    NEGATORS,
    POSITIVE,
    corpus_vocabulary,
    generate_corpus,
    max_example_length,
)
from torch_lstm_manual.sentiment.data.text import UNK_ID


def bag_of_words_accuracy(train, test):
    return baseline.bag_of_words_accuracy(train, test, corpus_vocabulary())


def order_oracle(text):
    """Reads the label off the word order: the clause after the last "but" decides, and a
    negator before its adjective flips it."""
    words = text.split()
    if CONTRAST in words:
        words = words[len(words) - words[::-1].index(CONTRAST):]
    position, word = next((i, w) for i, w in enumerate(words) if w in POSITIVE or w in NEGATIVE)
    negated = any(w in NEGATORS for w in words[:position])
    return int((word in POSITIVE) != negated)


def test_same_seed_same_data_other_seed_other_data():
    assert generate_corpus(50, seed=3) == generate_corpus(50, seed=3)
    assert generate_corpus(50, seed=3)[0] != generate_corpus(50, seed=4)[0]
    texts, labels = generate_corpus(40, seed=3)
    assert generate_corpus(80, seed=3)[0][:40] == texts  # a prefix does not depend on the size


def test_size_balance_and_vocabulary():
    texts, labels = generate_corpus(1001, seed=1)
    assert len(texts) == len(labels) == 1001
    assert set(labels) == {0, 1} and abs(sum(labels) - 500) <= 1
    assert set(labels[:100]) == {0, 1} and sum(labels[:100]) == 50  # even prefixes are balanced
    vocabulary = set(corpus_vocabulary())
    assert all(set(text.split()) <= vocabulary for text in texts)
    # the filler is neutral: no sentiment word, negator or "but" hides in it
    sentiment = set(POSITIVE) | set(NEGATIVE) | set(NEGATORS) | {CONTRAST}
    assert all(len(sentiment & set(text.split())) <= 6 for text in texts)


def test_every_cue_word_is_as_frequent_in_both_classes():
    texts, labels = generate_corpus(4000, seed=2)
    by_label = [Counter(), Counter()]
    for text, label in zip(texts, labels):
        by_label[label].update(text.split())
    for word in POSITIVE + NEGATIVE + NEGATORS + [CONTRAST]:
        share = by_label[1][word] / (by_label[0][word] + by_label[1][word])
        assert 0.4 < share < 0.6, (word, share)


def test_labels_follow_the_word_order():
    texts, labels = generate_corpus(2000, seed=5)
    assert [order_oracle(text) for text in texts] == labels


def test_the_clause_before_but_says_the_opposite():
    texts, labels = generate_corpus(500, seed=6, contrast_prob=1.0)
    for text, label in zip(texts, labels):
        before = text.split(f" {CONTRAST} ")[0]
        assert order_oracle(before) == 1 - label  # so only the order tells which clause decides


def test_difficulty_settings():
    easy, _ = generate_corpus(300, seed=0, negation_prob=0.0, contrast_prob=0.0, min_filler=0, max_filler=0)
    assert not any(set(text.split()) & (set(NEGATORS) | {CONTRAST}) for text in easy)
    assert max(len(text.split()) for text in easy) <= max_example_length(0)
    contrasts, _ = generate_corpus(300, seed=0, contrast_prob=1.0, negation_prob=1.0)
    assert all(CONTRAST in text.split() and sum(w in NEGATORS for w in text.split()) == 2 for text in contrasts)
    short = [len(t.split()) for t in generate_corpus(500, seed=0, max_filler=4)[0]]
    long = [len(t.split()) for t in generate_corpus(500, seed=0, min_filler=10, max_filler=20)[0]]
    assert max(short) <= max_example_length(4) and max(long) <= max_example_length(20)
    assert max(short) < min(long)


@pytest.mark.parametrize("kwargs, name", [
    (dict(min_filler=5, max_filler=2), "max_filler"),
    (dict(negation_prob=1.5), "negation_prob"),
    (dict(contrast_prob=-0.1), "contrast_prob"),
    (dict(num_examples=-1), "num_examples"),
])
def test_generator_argument_errors(kwargs, name):
    with pytest.raises(ValueError, match=name):
        generate_corpus(**{"num_examples": 10, **kwargs})


def test_bag_of_words_falls_short_on_the_default_corpus():
    train, test = generate_corpus(3000, seed=10), generate_corpus(1000, seed=11)
    assert bag_of_words_accuracy(train, test) < 0.70


def test_bag_of_words_solves_the_corpus_without_negation_and_contrast():
    # The control: the same classifier is not simply broken.
    easy = dict(negation_prob=0.0, contrast_prob=0.0)
    train, test = generate_corpus(1000, seed=10, **easy), generate_corpus(500, seed=11, **easy)
    assert bag_of_words_accuracy(train, test) > 0.95


def test_synthetic_datamodule(tmp_path):
    data = SyntheticDataModule(num_train=300, num_val=40, num_test=60, batch_size=16)
    assert data.vocab_size == data.encoder.vocab_size == len(corpus_vocabulary()) + 2
    assert data.num_classes == 2 and data.class_names == ["negative", "positive"]
    data.setup("fit")
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (300, 40, 60)
    assert not (data.train_set.ids == UNK_ID).any()  # the tokenizer knows every corpus word
    texts, labels = data.generate()
    assert data.val_set.labels.tolist() == labels[:40] and data.train_set.labels.tolist() == labels[100:]
    seen = 0
    for tokens, lengths, batch_labels in data.train_dataloader():
        assert tokens.dtype == lengths.dtype == batch_labels.dtype == torch.long
        assert tokens.shape == (lengths.numel(), int(lengths.max())) and (lengths >= 1).all()
        seen += lengths.numel()
    assert seen == 300
    data.save_artifacts(tmp_path)
    encoder = load_encoder(tmp_path)
    tokens, lengths = encoder(texts[:3])
    for row in range(3):
        stored, _ = data.val_set[row]
        assert tokens[row, : lengths[row]].tolist() == stored.tolist()


def test_synthetic_datamodule_warns_when_truncation_can_cut_the_label():
    with pytest.warns(UserWarning, match="max_length=20 is below the longest sentence"):
        SyntheticDataModule(max_length=20)


def test_baseline_command_reports_the_default_corpus(capsys):
    baseline.main()
    line = capsys.readouterr().out.strip()
    assert line.startswith("bag of words, built-in corpus (4000 train, 500 test): test accuracy ")
    assert float(line.rsplit(" ", 1)[1]) < 0.70


def test_the_tokenizer_and_labels_travel_in_the_state():
    """``state_dict`` (stored in each checkpoint) and ``load_state_dict`` (after ``setup``)."""
    from torch_lstm_manual.sentiment.data.text import TextEncoder, encoder_state, tokenizer_from_words

    data = SyntheticDataModule(num_train=16, num_val=8, num_test=8, max_length=64)
    state = data.state_dict()
    assert state["class_names"] == ["negative", "positive"]
    assert state["tokenizer"] == data.encoder.tokenizer.to_str()
    restored = SyntheticDataModule(num_train=16, num_val=8, num_test=8, max_length=64)
    restored.setup("fit")
    words = [f"x{word}" for word in corpus_vocabulary()[1:]]  # a tokenizer of the same size, other words
    restored.load_state_dict(encoder_state(TextEncoder(tokenizer_from_words(words, 64), ["negative", "positive"])))
    assert restored.encoder.vocab_size == data.encoder.vocab_size - 1
    assert restored.encoder.encode_ids(["good"]) != data.encoder.encode_ids(["good"])
    texts, _ = restored.generate()
    assert restored.train_set[0][0].tolist() == restored.encoder.encode_ids([texts[16]])[0]  # encoded again

    with pytest.raises(ValueError, match=r"label names \['bad', 'good'\] are not those of SyntheticDataModule"):
        restored.load_state_dict({**state, "class_names": ["bad", "good"]})
    with pytest.raises(ValueError, match="holds no tokenizer"):
        restored.load_state_dict({"something": "else"})
    with pytest.raises(ValueError, match="not a valid tokenizers JSON string"):
        restored.load_state_dict({**state, "tokenizer": "{"})
