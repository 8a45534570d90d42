"""SentimentClassifier: shapes, packing, manual vs torch.nn.LSTM, a short real run, optimizers."""

import math

import lightning.pytorch as pl
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.data import DataLoader, TensorDataset

from torch_lstm_manual.sentiment.classifier import SentimentClassifier, packed_max, warmup_cosine

VOCAB = 50


def make_batch(lengths, vocab=VOCAB, pad_to=None, seed=0):
    """Random token ids (B, T) padded with 0 after each length, and the lengths (B,)."""
    generator = torch.Generator().manual_seed(seed)
    T = pad_to or max(lengths)
    tokens = torch.randint(1, vocab, (len(lengths), T), generator=generator)  # (B, T)
    lengths = torch.tensor(lengths)  # (B,)
    tokens[torch.arange(T)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


CONFIGS = [
    dict(),
    dict(bidirectional=True),
    dict(num_layers=2, dropout=0.1, proj_size=4),
    dict(num_layers=2, bidirectional=True, proj_size=3, num_classes=5),
]


@pytest.mark.parametrize("impl", ["manual", "torch"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_shapes_and_probabilities(impl, config):
    torch.manual_seed(0)
    model = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, lstm_impl=impl, **config).eval()
    tokens, lengths = make_batch([5, 1, 3])
    num_classes = config.get("num_classes", 2)
    logits = model(tokens, lengths)
    assert logits.shape == (3, num_classes)
    probabilities = model.predict_step((tokens, lengths, torch.full((3,), -1)), 0)
    assert probabilities.shape == (3, num_classes)
    assert (probabilities >= 0).all()
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(3))
    torch.testing.assert_close(probabilities, torch.softmax(logits, -1))


@pytest.mark.parametrize("impl", ["manual", "torch"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "max", "mean"])
def test_padding_is_ignored(impl, bidirectional, pooling):
    """Extra padding, and the company of other sequences, leave a sequence's logits unchanged:
    each review counts only its own tokens (a model that ran over padding would see extra
    steps of the zero embedding and end in a different state)."""
    torch.manual_seed(0)
    model = SentimentClassifier(
        VOCAB, embedding_dim=6, hidden_size=8, num_layers=2, bidirectional=bidirectional, lstm_impl=impl,
        pooling=pooling,
    ).double().eval()
    tokens, lengths = make_batch([4, 7, 2, 7])
    logits = model(tokens, lengths)
    padded = torch.cat([tokens, torch.zeros(4, 9, dtype=torch.long)], dim=1)  # (B, T + 9)
    torch.testing.assert_close(model(padded, lengths), logits)
    for row in range(4):  # each one alone, without any padding
        alone = tokens[row : row + 1, : lengths[row]]
        torch.testing.assert_close(model(alone, lengths[row : row + 1]), logits[row : row + 1])


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_pooling_over_each_reviews_own_steps(pooling):
    """max/mean pooling equals the same reduction over each review's outputs, run alone."""
    torch.manual_seed(0)
    model = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, bidirectional=True, pooling=pooling,
                                head_dropout=0.0).double().eval()
    tokens, lengths = make_batch([4, 7, 1])
    expected = []
    for row in range(3):
        out, _ = model.lstm(model.embedding(tokens[row : row + 1, : lengths[row]]))  # (1, L, 16)
        expected.append(out.amax(1) if pooling == "max" else out.mean(1))
    torch.testing.assert_close(model(tokens, lengths), model.head(torch.cat(expected)))


def test_packed_max_matches_amax_values_and_gradients():
    """``packed_max`` against ``amax`` over the padded steps (padding -inf), in the batch's own order:
    the same maxima, and, without ties, the same gradient of the packed rows."""
    torch.manual_seed(0)
    lengths = torch.tensor([3, 7, 1, 5])
    padded = torch.randn(4, 7, 6, dtype=torch.float64)
    packed = pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
    data = packed.data.clone().requires_grad_()
    upstream = torch.randn(4, 6, dtype=torch.float64)
    ours = packed_max(packed._replace(data=data))
    (ours_grad,) = torch.autograd.grad(ours, data, upstream)
    steps, _ = pad_packed_sequence(packed._replace(data=data), batch_first=True, padding_value=float("-inf"))
    expected = steps.amax(dim=1)
    (expected_grad,) = torch.autograd.grad(expected, data, upstream)
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    torch.testing.assert_close(ours_grad, expected_grad, rtol=0, atol=0)
    for row in range(4):  # and the maxima of each sequence alone
        torch.testing.assert_close(ours[row], padded[row, : lengths[row]].amax(0), rtol=0, atol=0)


def test_packed_max_gives_a_tie_to_the_first_step():
    data = torch.tensor([[1.0], [2.0], [2.0]], requires_grad=True)  # one sequence of 3 steps, max at steps 1, 2
    packed = pack_padded_sequence(data.unsqueeze(0), torch.tensor([3]), batch_first=True)
    out = packed_max(packed)
    out.sum().backward()
    assert out.item() == 2.0 and data.grad.flatten().tolist() == [0.0, 1.0, 0.0]


def test_padding_would_matter_without_packing():
    """The check above can fail: the same LSTM run over the padded batch (no packing) ends elsewhere."""
    torch.manual_seed(0)
    model = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8).double().eval()
    tokens, lengths = make_batch([2, 7])
    _, (h_n, _) = model.lstm(model.embedding(tokens))  # padding included
    unpacked_logits = model.head(h_n[-1])
    assert not torch.allclose(unpacked_logits[0], model(tokens, lengths)[0])


@pytest.mark.parametrize(
    "config", [dict(), dict(num_layers=2, bidirectional=True, proj_size=3)], ids=["default", "2layer-bi-proj"]
)
def test_manual_matches_torch(config):
    """The same weights give the same logits and gradients with either LSTM (float64, default tolerances)."""
    torch.manual_seed(0)
    reference = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, lstm_impl="torch", head_dropout=0.0, **config)
    manual = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, lstm_impl="manual", head_dropout=0.0, **config)
    manual.load_state_dict(reference.state_dict(), strict=True)
    reference.double()
    manual.double()
    tokens, lengths = make_batch([3, 6, 1, 5])
    labels = torch.tensor([0, 1, 1, 0])
    losses = []
    for model in (reference, manual):
        logits = model(tokens, lengths)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss.backward()
        losses.append((logits, loss))
    torch.testing.assert_close(losses[1][0], losses[0][0])
    for (name, p_ref), (_, p_man) in zip(reference.named_parameters(), manual.named_parameters()):
        torch.testing.assert_close(p_man.grad, p_ref.grad, msg=lambda m: f"{name}: {m}")


def test_argument_errors():
    with pytest.raises(ValueError, match="lstm_impl must be one of"):
        SentimentClassifier(VOCAB, lstm_impl="cudnn")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        SentimentClassifier(VOCAB, optimizer="adam")
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        SentimentClassifier(VOCAB, lr_schedule="linear")
    with pytest.raises(ValueError, match="pooling must be one of"):
        SentimentClassifier(VOCAB, pooling="attention")
    with pytest.raises(TypeError, match="vocab_size should be of type int, got: float"):
        SentimentClassifier(50.0)
    with pytest.raises(ValueError, match="num_classes must be at least 2, got 1"):
        SentimentClassifier(VOCAB, num_classes=1)
    with pytest.raises(ValueError, match="head_dropout must be in range"):
        SentimentClassifier(VOCAB, head_dropout=1.5)
    for impl in ("manual", "torch"):  # the LSTM's own check, with nn.LSTM's wording
        with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
            SentimentClassifier(VOCAB, hidden_size=0, lstm_impl=impl)
    model = SentimentClassifier(VOCAB, embedding_dim=4, hidden_size=4)
    with pytest.raises(ValueError, match="lengths must have one entry per row of tokens"):
        model(torch.ones(3, 5, dtype=torch.long), torch.tensor([5, 5]))


# ----------------------------------------------------------------------
# Training


def test_short_run_on_builtin_corpus_beats_chance():
    """Two epochs on 1000 contrast sentences ("the plot was dull , but the acting was superb"):
    a bag of words is at chance on them (swapping the clauses flips the label), so
    accuracy well above 50 % means the LSTM reads the order."""
    from torch_lstm_manual.sentiment.data import SyntheticDataModule

    pl.seed_everything(0, verbose=False)
    data = SyntheticDataModule(
        num_train=1000, num_val=200, num_test=200, negation_prob=0.0, contrast_prob=1.0, max_filler=3, batch_size=32
    )
    model = SentimentClassifier(data.vocab_size, data.num_classes, embedding_dim=32, hidden_size=32, lr=1e-2)
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False, deterministic=True,
    )
    trainer.fit(model, data)
    (result,) = trainer.test(model, data, verbose=False)
    assert result["test_acc"] > 0.9, result


class LRRecorder(pl.Callback):
    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def fit_tiny(model, max_epochs=2, batches=4, **trainer_kwargs):
    tokens, lengths = make_batch([3, 5, 2, 4] * batches, seed=1)
    labels = torch.tensor([0, 1] * (2 * batches))
    loader = DataLoader(TensorDataset(tokens, lengths, labels), batch_size=4)
    recorder = LRRecorder()
    trainer = pl.Trainer(
        max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[recorder], **trainer_kwargs,
    )
    trainer.fit(model, loader)
    return trainer, recorder.lrs


@pytest.mark.parametrize(
    "kwargs, optimizer_type, expected",
    [
        (dict(optimizer="adamw", lr=3e-3, weight_decay=0.05), torch.optim.AdamW, dict(lr=3e-3, weight_decay=0.05)),
        (dict(optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0), torch.optim.SGD, dict(lr=0.5, momentum=0.0)),
        (dict(optimizer="sgd", lr=0.1, momentum=0.9), torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    ],
)
def test_optimizers(kwargs, optimizer_type, expected):
    model = SentimentClassifier(VOCAB, embedding_dim=4, hidden_size=4, **kwargs)
    trainer, lrs = fit_tiny(model, max_epochs=1)
    (optimizer,) = trainer.optimizers
    assert type(optimizer) is optimizer_type
    for key, value in expected.items():
        assert optimizer.param_groups[0][key] == value
    assert trainer.lr_scheduler_configs == []
    assert lrs == [kwargs["lr"]] * 4


def test_cosine_schedule_warms_up_and_decays():
    model = SentimentClassifier(VOCAB, embedding_dim=4, hidden_size=4, lr=1e-2, lr_schedule="cosine", warmup_fraction=0.25)
    trainer, lrs = fit_tiny(model, max_epochs=2, batches=4)  # 8 steps: 2 of warm-up
    (config,) = trainer.lr_scheduler_configs
    assert config.interval == "step"
    expected = [1e-2 * warmup_cosine(step, 8, 2) for step in range(8)]
    assert lrs == pytest.approx(expected)
    assert lrs[:3] == pytest.approx([5e-3, 1e-2, 1e-2])
    assert lrs[-1] < 1e-3
    assert warmup_cosine(8, 8, 2) == pytest.approx(0.0)


def test_onecycle_schedule_peaks_at_lr():
    model = SentimentClassifier(VOCAB, embedding_dim=4, hidden_size=4, lr=1e-2, lr_schedule="onecycle", warmup_fraction=0.3)
    trainer, lrs = fit_tiny(model, max_epochs=3, batches=4)  # 12 steps
    (config,) = trainer.lr_scheduler_configs
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.OneCycleLR)
    assert config.scheduler.total_steps == 12
    assert max(lrs) == pytest.approx(1e-2, rel=0.05)
    assert lrs[0] < 1e-3 and lrs[-1] < 1e-3
    peak = lrs.index(max(lrs))
    assert 2 <= peak <= 4


def test_schedule_needs_a_known_length():
    model = SentimentClassifier(VOCAB, embedding_dim=4, hidden_size=4, lr_schedule="cosine")
    with pytest.raises(ValueError, match="needs a run of known length"):
        fit_tiny(model, max_epochs=-1, max_steps=-1)


def test_warmup_cosine_values():
    assert [warmup_cosine(s, 10, 0) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])
    assert warmup_cosine(0, 10, 4) == pytest.approx(0.25)
    assert warmup_cosine(7, 10, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_optimizer_is_fused_and_steps_as_the_plain_one(optimizer):
    """On the CPU the model's optimizer is torch's fused implementation, whose steps
    match the plain one's (float64, three steps)."""
    torch.manual_seed(0)
    model = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, optimizer=optimizer, momentum=0.9,
                                weight_decay=0.01, head_dropout=0.0).double()
    twin = SentimentClassifier(VOCAB, embedding_dim=6, hidden_size=8, head_dropout=0.0).double()
    twin.load_state_dict(model.state_dict())
    fused = model.configure_optimizers()
    assert fused.defaults["fused"] is True
    plain_class = torch.optim.AdamW if optimizer == "adamw" else torch.optim.SGD
    extra = {} if optimizer == "adamw" else {"momentum": 0.9}
    plain = plain_class(twin.parameters(), lr=model.hparams.lr, weight_decay=0.01, foreach=False, **extra)
    tokens, lengths = make_batch([4, 7, 2])
    labels = torch.tensor([0, 1, 1])
    for _ in range(3):
        for net, opt in ((model, fused), (twin, plain)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(tokens, lengths), labels).backward()
            opt.step()
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
