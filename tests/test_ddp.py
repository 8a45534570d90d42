"""Two-process DDP on the CPU (gloo): slow, run with ``pytest -m slow tests/test_ddp.py``."""

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from torch_lstm_manual.sentiment.classifier import SentimentClassifier
from torch_lstm_manual.sentiment.data import SyntheticDataModule

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NUM_TRAIN, PER_RANK_BATCH, WORLD = 256, 16, 2


class InOrderData(SyntheticDataModule):
    """The built-in corpus with the training texts in their fixed (length-sorted) order.

    ``BucketBatchSampler`` cuts that order into batches and gives rank ``r`` the
    batches ``r, r + 2, ...``: at every step the two ranks together hold the texts
    of one batch twice as large in a single process.
    """

    def train_dataloader(self):
        return self._loader(self._require(self.train_set, "train", "fit"), shuffle=False)


class SaveParameters(pl.Callback):
    def __init__(self, directory):
        self.directory = directory

    def on_train_start(self, trainer, pl_module):
        self.initial = {name: p.detach().clone() for name, p in pl_module.named_parameters()}

    def on_train_end(self, trainer, pl_module):
        state = {name: p.detach().clone() for name, p in pl_module.named_parameters()}
        saved = {"state": state, "initial": self.initial, "global_step": trainer.global_step}
        torch.save(saved, Path(self.directory) / f"rank{trainer.global_rank}.pt")


def train(directory, batch_size, **trainer_kwargs):
    pl.seed_everything(0, verbose=False)
    data = InOrderData(num_train=NUM_TRAIN, num_val=32, num_test=32, batch_size=batch_size)
    model = SentimentClassifier(
        data.vocab_size, data.num_classes, embedding_dim=8, hidden_size=8, head_dropout=0.0,
        optimizer="sgd", lr=0.5, momentum=0.9, weight_decay=0.0,
    )
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=2, precision="64-true", limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, callbacks=[SaveParameters(directory)], **trainer_kwargs,
    )
    trainer.fit(model, data)


def test_ddp_matches_one_process_with_the_global_batch(tmp_path):
    """Both ranks end with identical parameters, equal to one process trained on batches of 2 x 16.

    DDP averages the two ranks' gradients (each the mean over its 16 texts) in an
    allreduce; one process takes the mean over 32 texts at once. The two sums run
    in a different order, so they agree to rounding, not bit for bit: in float64,
    over 16 SGD steps, within rtol=1e-9, atol=1e-11 (float32 would need ~1e-5).
    """
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir()
    single_dir.mkdir()
    train(ddp_dir, PER_RANK_BATCH, strategy="ddp_spawn", devices=WORLD)
    train(single_dir, PER_RANK_BATCH * WORLD, devices=1)

    ranks = [torch.load(ddp_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    single = torch.load(single_dir / "rank0.pt", weights_only=False)
    steps = 2 * NUM_TRAIN // (PER_RANK_BATCH * WORLD)
    assert [r["global_step"] for r in ranks] == [steps, steps] and single["global_step"] == steps
    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name]), f"{name} differs between the ranks"
        torch.testing.assert_close(value, single["state"][name], rtol=1e-9, atol=1e-11, msg=lambda m: f"{name}: {m}")
    for name, value in ranks[0]["initial"].items():
        assert torch.equal(value, single["initial"][name])  # the same start
    moved = single["state"]["head.weight"] - single["initial"]["head.weight"]
    assert moved.abs().max() > 1e-3  # it trained


def test_train_py_under_ddp(tmp_path):
    """``python train.py`` (fit, then test) with ``--trainer.strategy ddp`` on 2 CPU processes."""
    args = [
        sys.executable, str(ROOT / "train.py"),
        "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
        "--data.num_train", str(NUM_TRAIN), "--data.num_val", "64", "--data.num_test", "64",
        "--data.batch_size", str(PER_RANK_BATCH), "--model.embedding_dim", "8", "--model.hidden_size", "8",
        "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on a small machine
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "test accuracy: " in result.stdout
    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    assert list(checkpoints.glob("best-*.ckpt"))
    last = torch.load(checkpoints / "last.ckpt", weights_only=False)
    assert last["SyntheticDataModule"]["class_names"] == ["negative", "positive"]  # the tokenizer travels inside
    # Each rank took half of each epoch's batches: 256 texts / (2 ranks x 16) = 8 steps an epoch.
    assert last["global_step"] == 2 * NUM_TRAIN // (PER_RANK_BATCH * 2)
    assert (tmp_path / "lightning_logs" / "version_0" / "metrics.png").is_file()
