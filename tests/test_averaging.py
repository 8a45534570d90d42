"""AveragedWeights: the exponential moving average of the weights, against one
computed here from the weights after every step; what validation, the
checkpoints and the end of training see; resuming; the errors."""

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from torch_lstm_manual.sentiment.averaging import AveragedWeights
from torch_lstm_manual.sentiment.callbacks import ExactResume
from torch_lstm_manual.sentiment.classifier import SentimentClassifier

from test_classifier import VOCAB, make_batch


def params(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


class Recorder(pl.Callback):
    """The weights after every training step, and those that each validation runs on."""

    def __init__(self):
        self.steps, self.validated = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append((trainer.current_epoch, params(pl_module)))

    def on_validation_epoch_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.validated.append(params(pl_module))


def loaders(batches=3):
    tokens, lengths = make_batch([3, 5, 2, 4] * batches, seed=1)
    data = TensorDataset(tokens, lengths, torch.tensor([0, 1] * (2 * batches)))
    return DataLoader(data, batch_size=4), DataLoader(data, batch_size=4)


def fit(tmp_path, averaging, max_epochs=3, ckpt_path=None, **kwargs):
    torch.manual_seed(0)
    model = SentimentClassifier(VOCAB, embedding_dim=4, hidden_size=4, lr=0.05)
    recorder = Recorder()
    trainer = pl.Trainer(
        max_epochs=max_epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=tmp_path, callbacks=[averaging, recorder, ExactResume(seed=0)],
        **kwargs,
    )
    trainer.fit(model, *loaders(), ckpt_path=ckpt_path)
    return model, recorder, trainer


def ema(steps, decay, start_epoch):
    """The average after each step of ``steps`` (None before start_epoch), computed here."""
    average, out = None, []
    for epoch, weights in steps:
        if epoch >= start_epoch:
            average = dict(weights) if average is None else {
                k: decay * average[k] + (1 - decay) * weights[k] for k in weights}
        out.append(average)
    return out


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_validation_and_the_end_of_training_see_the_average(tmp_path):
    model, recorder, _ = fit(tmp_path, AveragedWeights(decay=0.7, start_epoch=1))
    expected = ema(recorder.steps, 0.7, 1)
    per_epoch = 3
    # Epoch 0: no average yet, validation runs on the weights themselves.
    assert_same(recorder.validated[0], recorder.steps[per_epoch - 1][1])
    # Epochs 1 and 2: on the average of the steps since epoch 1, which differs from the weights.
    for epoch in (1, 2):
        assert_same(recorder.validated[epoch], expected[(epoch + 1) * per_epoch - 1])
        assert not torch.allclose(recorder.validated[epoch]["lstm.weight_hh_l0"],
                                  recorder.steps[(epoch + 1) * per_epoch - 1][1]["lstm.weight_hh_l0"])
    assert_same(params(model), expected[-1])


def test_checkpoints_hold_the_average_and_a_resume_goes_on_exactly(tmp_path):
    straight, _, _ = fit(tmp_path / "straight", AveragedWeights(decay=0.7, start_epoch=1))
    first, recorder, trainer = fit(tmp_path / "resumed", AveragedWeights(decay=0.7, start_epoch=1), max_epochs=2)
    (checkpoint_file,) = (tmp_path / "resumed").rglob("*.ckpt")
    checkpoint = torch.load(checkpoint_file, weights_only=True)
    average = ema(recorder.steps, 0.7, 1)[-1]
    assert_same({k: v for k, v in checkpoint["state_dict"].items() if k in average}, average)
    assert_same({k: v for k, v in checkpoint["current_model_state"].items() if k in average}, recorder.steps[-1][1])
    resumed, _, _ = fit(tmp_path / "resumed", AveragedWeights(decay=0.7, start_epoch=1), ckpt_path=checkpoint_file)
    assert_same(params(resumed), params(straight))


def test_before_any_average_everything_is_the_weights_themselves(tmp_path):
    model, recorder, _ = fit(tmp_path, AveragedWeights(decay=0.7, start_epoch=5), max_epochs=2)
    assert_same(params(model), recorder.steps[-1][1])
    for checkpoint_file in tmp_path.rglob("*.ckpt"):
        checkpoint = torch.load(checkpoint_file, weights_only=True)
        assert "current_model_state" not in checkpoint
        assert_same({k: v for k, v in checkpoint["state_dict"].items() if k in params(model)}, params(model))


@pytest.mark.parametrize("kwargs, message", [
    (dict(decay=1.0), r"decay must be a number in \(0, 1\), got 1.0"),
    (dict(decay=0), r"decay must be a number in \(0, 1\), got 0"),
    (dict(decay="0.9"), r"decay must be a number in \(0, 1\), got '0.9'"),
    (dict(start_epoch=-1), "start_epoch must be an int >= 0, got -1"),
    (dict(start_epoch=1.5), "start_epoch must be an int >= 0, got 1.5"),
])
def test_bad_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AveragedWeights(**kwargs)
