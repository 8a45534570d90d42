"""SentimentClassifier's LSTM variant options and embedding dropout: from the command line and
the constructor to the LSTM, the error of lstm_impl="torch", the checkpoint, a short fit."""

import math

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torch_lstm_manual import LSTM
from torch_lstm_manual.sentiment.classifier import LSTM_VARIANTS, SentimentClassifier, embedding_dropout
from torch_lstm_manual.sentiment.cli import SentimentCLI
from torch_lstm_manual.sentiment.predict import load_checkpoint

VOCAB = 50
# Every variant on, each with a value other than its default.
VARIANTS = dict(
    layer_norm=True, peepholes=True, zoneout_cell=0.1, zoneout_hidden=0.15, recurrent_dropout=0.25, weight_drop=0.5,
)
# Token ids (B, T) of a vocabulary of 40, each word several times, padding (0) at the ends: with
# 39 words, a draw that keeps them all or drops them all has probability below 1e-4 for p in [0.25, 0.75].
WORDS_VOCAB = 40
WORDS = torch.randint(1, WORDS_VOCAB, (4, 30), generator=torch.Generator().manual_seed(0))
WORDS[:, 25:] = 0


def make_batch(lengths, vocab=VOCAB, seed=0):
    """Random token ids (B, T) padded with 0 after each length, and the lengths (B,)."""
    generator = torch.Generator().manual_seed(seed)
    T = max(lengths)
    tokens = torch.randint(1, vocab, (len(lengths), T), generator=generator)  # (B, T)
    lengths = torch.tensor(lengths)  # (B,)
    tokens[torch.arange(T)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


def assert_variants(lstm, expected):
    assert isinstance(lstm, LSTM)
    for name, value in expected.items():
        assert getattr(lstm, name) == value, name
        assert type(getattr(lstm, name)) is type(value), name


# ----------------------------------------------------------------------
# The options reach the LSTM


def test_constructor_passes_every_variant_to_the_lstm():
    model = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, num_layers=2, bidirectional=True, **VARIANTS)
    assert_variants(model.lstm, VARIANTS)
    names = dict(model.lstm.named_parameters())
    for suffix in ("l0", "l1_reverse"):  # the parameters the options add, in every layer and direction
        assert f"layer_norm_ih_weight_{suffix}" in names and f"peephole_{suffix}" in names
    for name in VARIANTS:
        assert model.hparams[name] == VARIANTS[name]


def test_defaults_leave_every_variant_off():
    model = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8)
    assert_variants(model.lstm, LSTM_VARIANTS)
    assert not any(name.startswith(("layer_norm", "peephole")) for name, _ in model.lstm.named_parameters())
    assert model.hparams.embedding_dropout == 0.0


@pytest.mark.parametrize("name, value", list(VARIANTS.items()))
def test_each_variant_alone_reaches_the_lstm(name, value):
    model = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, **{name: value})
    assert_variants(model.lstm, {**LSTM_VARIANTS, name: value})


CLI_ARGS = [
    "--data.num_train", "64", "--data.num_val", "32", "--data.num_test", "32",
    "--model.embedding_dim", "8", "--model.hidden_size", "8",
    "--model.layer_norm", "true", "--model.peepholes", "true", "--model.zoneout_cell", "0.1",
    "--model.zoneout_hidden", "0.15", "--model.recurrent_dropout", "0.25", "--model.weight_drop", "0.5",
    "--model.embedding_dropout", "0.2",
]


def test_command_line_options_reach_the_lstm(tmp_path):
    cli = SentimentCLI(args=[*CLI_ARGS, "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert_variants(cli.model.lstm, VARIANTS)
    assert cli.model.hparams.embedding_dropout == 0.2


def test_command_line_torch_impl_with_a_variant_is_refused(tmp_path):
    with pytest.raises(ValueError, match="torch.nn.LSTM .* cannot express peepholes"):
        SentimentCLI(args=["--model.lstm_impl", "torch", "--model.peepholes", "true",
                           "--trainer.default_root_dir", str(tmp_path)], run=False)


# ----------------------------------------------------------------------
# lstm_impl="torch"


@pytest.mark.parametrize("name, value", list(VARIANTS.items()))
def test_torch_impl_cannot_express_a_variant(name, value):
    message = rf"{name}={value!r} needs lstm_impl='manual': torch.nn.LSTM \(lstm_impl='torch'\) cannot express {name}"
    with pytest.raises(ValueError, match=message):
        SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, lstm_impl="torch", **{name: value})


def test_torch_impl_takes_the_defaults_and_embedding_dropout():
    """The variants at their "off" values, and embedding dropout (outside the LSTM), work with nn.LSTM."""
    model = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, lstm_impl="torch", embedding_dropout=0.3,
                                **LSTM_VARIANTS)
    assert type(model.lstm) is nn.LSTM
    tokens, lengths = make_batch([3, 5])
    assert model.train()(tokens, lengths).shape == (2, 2)


def test_the_lstm_checks_variant_values():
    """Values out of range reach the LSTM, which refuses them with its own message naming the option."""
    for name in ("zoneout_cell", "recurrent_dropout", "weight_drop"):
        with pytest.raises(ValueError, match=name):
            SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, **{name: 1.5})


# ----------------------------------------------------------------------
# Embedding dropout


def embedding_table(vocab=WORDS_VOCAB, dim=5, seed=0):
    torch.manual_seed(seed)
    return nn.Embedding(vocab, dim, padding_idx=0)


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_embedding_dropout_drops_whole_words_and_scales_the_rest(p):
    embedding = embedding_table()
    plain = embedding(WORDS)  # (B, T, E)
    torch.manual_seed(1)
    dropped = embedding_dropout(embedding, WORDS, p)  # (B, T, E)
    assert dropped.shape == plain.shape
    kept = {}
    for position in WORDS.flatten().nonzero().flatten().tolist():
        word = WORDS.flatten()[position].item()
        row, expected = dropped.flatten(0, 1)[position], plain.flatten(0, 1)[position]
        is_kept = bool(row.abs().sum() > 0)
        # the whole row: all zero, or all the embedding times 1 / (1 - p)
        torch.testing.assert_close(row, expected / (1 - p) if is_kept else torch.zeros_like(row))
        assert kept.setdefault(word, is_kept) == is_kept, f"word {word} kept at one position, dropped at another"
    assert set(kept.values()) == {True, False}, "expected kept and dropped words with this seed"
    torch.testing.assert_close(dropped[WORDS == 0], torch.zeros_like(dropped[WORDS == 0]))  # padding stays zero


def test_embedding_dropout_draws_once_per_word_per_call():
    """Each vocabulary entry is dropped with probability p, independently of the others and of the last call."""
    embedding = nn.Embedding(4000, 2)
    nn.init.uniform_(embedding.weight, 1.0, 2.0)  # no zero entries: a zero row means dropped
    every_word = torch.arange(4000)
    torch.manual_seed(2)
    masks = [embedding_dropout(embedding, every_word, 0.3)[:, 0] == 0 for _ in range(2)]  # (V,) each
    for dropped in masks:
        assert abs(dropped.double().mean().item() - 0.3) < 0.03  # 4000 draws: sd 0.007
    assert not torch.equal(masks[0], masks[1])  # a new draw each call


def test_embedding_dropout_expectation_is_the_embedding():
    """Scaled by 1 / (1 - p), the mean over many calls approaches the plain embeddings
    (each word kept in a fraction of the calls with standard deviation 0.022: 0.1 is 4.5 of them)."""
    embedding = embedding_table()
    torch.manual_seed(3)
    mean = torch.stack([embedding_dropout(embedding, WORDS, 0.5) for _ in range(2000)]).mean(0)
    torch.testing.assert_close(mean, embedding(WORDS), rtol=0.1, atol=1e-6)


def test_embedding_dropout_gradients_reach_the_kept_rows_only():
    embedding = embedding_table()
    torch.manual_seed(4)
    out = embedding_dropout(embedding, WORDS, 0.5)
    out.sum().backward()
    grad = embedding.weight.grad  # (V, E)
    kept_words = WORDS[(out.abs().sum(-1) > 0)].unique()
    counts = torch.bincount(WORDS.flatten(), minlength=WORDS_VOCAB).float()  # occurrences of each word
    expected = torch.zeros(WORDS_VOCAB, 5)
    expected[kept_words] = (counts[kept_words] / 0.5)[:, None].expand(-1, 5)
    expected[0] = 0  # padding_idx gets no gradient
    torch.testing.assert_close(grad, expected)


def test_embedding_dropout_is_the_identity_in_eval_and_at_p_zero():
    embedding = embedding_table()
    plain = embedding(WORDS)
    torch.testing.assert_close(embedding_dropout(embedding, WORDS, 0.7, training=False), plain, rtol=0, atol=0)
    torch.testing.assert_close(embedding_dropout(embedding, WORDS, 0.0), plain, rtol=0, atol=0)
    torch.testing.assert_close(embedding_dropout(embedding, WORDS, 0), plain, rtol=0, atol=0)


@pytest.mark.parametrize("p", [1.0, 1, -0.1, 1.5, math.nan])
def test_embedding_dropout_refuses_p_outside_zero_one(p):
    with pytest.raises(ValueError, match=r"embedding_dropout p must be in range \[0, 1\)"):
        embedding_dropout(embedding_table(), WORDS, p)


@pytest.mark.parametrize("p", ["0.5", True, None])
def test_embedding_dropout_refuses_p_that_is_not_a_number(p):
    with pytest.raises(TypeError, match="embedding_dropout p should be a number, got: "):
        embedding_dropout(embedding_table(), WORDS, p)


@pytest.mark.parametrize("p", [1.0, -0.5, math.nan])
def test_classifier_refuses_embedding_dropout_outside_zero_one(p):
    with pytest.raises(ValueError, match=r"embedding_dropout must be (in range \[0, 1\)|at least 0)"):
        SentimentClassifier(VOCAB, embedding_dropout=p)
    with pytest.raises(TypeError, match="embedding_dropout should be a number, got: str"):
        SentimentClassifier(VOCAB, embedding_dropout="0.1")


def test_classifier_drops_words_in_training_only():
    """What reaches the LSTM in training: whole words dropped, the rest scaled; in eval, the plain embeddings."""
    torch.manual_seed(0)
    model = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, embedding_dropout=0.5)
    seen = []
    model.lstm.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    tokens, lengths = make_batch([6, 4, 5])
    plain = model.embedding(tokens)  # (B, T, E)
    for training in (True, False):
        model.train(training)
        model(tokens, lengths)
        data, _ = nn.utils.rnn.pad_packed_sequence(seen.pop(), batch_first=True)  # (B, T, E)
        for b, t in (tokens != 0).nonzero().tolist():
            row = data[b, t]
            if training and row.abs().sum() == 0:
                continue
            torch.testing.assert_close(row, plain[b, t] * (2.0 if training else 1.0))
        if training:
            dropped = {tokens[b, t].item() for b, t in (tokens != 0).nonzero().tolist() if data[b, t].abs().sum() == 0}
            kept = {tokens[b, t].item() for b, t in (tokens != 0).nonzero().tolist() if data[b, t].abs().sum() > 0}
            assert dropped and kept and not dropped & kept


# ----------------------------------------------------------------------
# Checkpoints


def fit_steps(model, steps=2, root=None):
    tokens, lengths = make_batch([3, 5, 2, 4] * steps, seed=1)
    labels = torch.tensor([0, 1] * (2 * steps))
    trainer = pl.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=root,
    )
    trainer.fit(model, DataLoader(TensorDataset(tokens, lengths, labels), batch_size=4))
    return trainer


def test_checkpoint_rebuilds_the_model_with_its_variants(tmp_path):
    torch.manual_seed(0)
    model = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, embedding_dropout=0.2, **VARIANTS)
    trainer = fit_steps(model, root=tmp_path)
    path = tmp_path / "variants.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["hyper_parameters"]
    assert {name: saved[name] for name in VARIANTS} == VARIANTS and saved["embedding_dropout"] == 0.2

    loaded, _ = load_checkpoint(path)
    assert_variants(loaded.lstm, VARIANTS)
    assert loaded.hparams.embedding_dropout == 0.2
    assert loaded.state_dict().keys() == model.state_dict().keys()
    tokens, lengths = make_batch([4, 2, 6])
    torch.testing.assert_close(loaded(tokens, lengths), model.eval()(tokens, lengths), rtol=0, atol=0)


def test_checkpoint_without_the_new_options_loads_with_them_off(tmp_path):
    """A checkpoint written before these options existed has none of their keys: it loads with the defaults."""
    torch.manual_seed(0)
    model = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8)
    trainer = fit_steps(model, root=tmp_path)
    path = tmp_path / "old.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    for name in [*LSTM_VARIANTS, "embedding_dropout"]:
        del checkpoint["hyper_parameters"][name]
    torch.save(checkpoint, path)

    loaded, _ = load_checkpoint(path)
    assert_variants(loaded.lstm, LSTM_VARIANTS)
    assert loaded.hparams.embedding_dropout == 0.0
    tokens, lengths = make_batch([4, 2, 6])
    torch.testing.assert_close(loaded(tokens, lengths), model.eval()(tokens, lengths), rtol=0, atol=0)


# ----------------------------------------------------------------------
# Training


class LossRecorder(pl.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())


def test_short_fit_with_every_variant_lowers_the_loss():
    """Five epochs of short sentences of the built-in corpus with every variant and embedding
    dropout on (at rates that let so small a run learn): the loss of the last epoch is well
    below that of the first."""
    from torch_lstm_manual.sentiment.data import SyntheticDataModule

    pl.seed_everything(0, verbose=False)
    data = SyntheticDataModule(num_train=128, num_val=16, num_test=16, min_filler=0, max_filler=1, negation_prob=0.0,
                               contrast_prob=0.0, batch_size=16)
    model = SentimentClassifier(
        data.vocab_size, data.num_classes, embedding_dim=16, hidden_size=16, lr=2e-2, embedding_dropout=0.05,
        layer_norm=True, peepholes=True, zoneout_cell=0.1, zoneout_hidden=0.1, recurrent_dropout=0.1, weight_drop=0.1,
    )
    recorder = LossRecorder()
    trainer = pl.Trainer(
        max_epochs=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False, limit_val_batches=0, callbacks=[recorder],
    )
    trainer.fit(model, data)
    assert len(recorder.losses) == 5 * 8
    first, last = recorder.losses[:8], recorder.losses[-8:]
    assert all(math.isfinite(loss) for loss in recorder.losses)
    assert sum(last) / 8 < 0.8 * sum(first) / 8, recorder.losses
