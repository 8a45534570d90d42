"""train.py / SentimentCLI, the way Lightning tests its CLI: patched ``sys.argv`` and tiny runs."""

import pickle
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import matplotlib.image
import pytest
import torch
import yaml

from torch_lstm_manual.sentiment.callbacks import PlotMetrics, read_history
from torch_lstm_manual.sentiment.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = [
    "--data.num_train", "256", "--data.num_val", "64", "--data.num_test", "64", "--data.batch_size", "32",
    "--model.embedding_dim", "16", "--model.hidden_size", "16",
    "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--trainer.deterministic", "true",
]


def run_train(*args):
    """``python train.py *args``, in this process."""
    with mock.patch.object(sys, "argv", ["train.py", *args]):
        return main()


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=lambda m: f"{key}: {m}")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """``python train.py`` (no subcommand: fit 2 epochs, then test) on a tiny corpus."""
    root = tmp_path_factory.mktemp("straight")
    cli = run_train(*TINY, "--trainer.default_root_dir", str(root))
    return cli, root


def test_fit_then_test_and_artifacts(straight_run, capsys):
    cli, root = straight_run
    trainer = cli.trainer
    assert cli.subcommand == "fit" and trainer.current_epoch == 2
    assert "test_acc" in trainer.callback_metrics and "test_loss" in trainer.callback_metrics
    assert cli.model.hparams.vocab_size == cli.datamodule.vocab_size
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes == 2

    run_dir = root / "lightning_logs" / "version_0"
    assert Path(trainer.log_dir) == run_dir
    checkpoints = run_dir / "checkpoints"
    best = Path(trainer.checkpoint_callback.best_model_path)
    assert best.parent == checkpoints and best.name.startswith("best-") and best.is_file()
    assert (checkpoints / "last.ckpt").is_file()
    for path in (best, checkpoints / "last.ckpt"):  # each carries the tokenizer and the label names
        state = torch.load(path, map_location="cpu", weights_only=True)["SyntheticDataModule"]
        assert state["tokenizer"] == cli.datamodule.encoder.tokenizer.to_str()
        assert state["class_names"] == cli.datamodule.class_names
    assert list(run_dir.glob("events.out.tfevents.*")) and (run_dir / "config.yaml").is_file()

    plot = run_dir / "metrics.png"
    assert plot.read_bytes().startswith(PNG_MAGIC)
    height, width, _ = matplotlib.image.imread(plot).shape
    assert height > 100 and width > 100
    assert not list(run_dir.glob(".metrics.png.*"))  # no temporary file left behind
    (plotter,) = [c for c in trainer.callbacks if type(c).__name__ == "PlotMetrics"]
    assert sorted(plotter.history) == [0, 1]
    for row in plotter.history.values():
        assert set(row) == {"train_loss", "train_acc", "val_loss", "val_acc", "minutes"}
    best_val = max(row["val_acc"] for row in plotter.history.values())
    assert float(trainer.checkpoint_callback.best_model_score) == pytest.approx(best_val)
    # The same history as a CSV file, epochs counted from 1, the training minutes growing.
    rows = read_history(run_dir / "metrics.csv")
    assert [row["epoch"] for row in rows] == [1, 2]
    for row, epoch in zip(rows, (0, 1)):
        assert row == pytest.approx({"epoch": epoch + 1, **plotter.history[epoch]}, rel=1e-5)
    assert 0 < rows[0]["minutes"] < rows[1]["minutes"] <= plotter.minutes()  # the whole fit: a little more
    assert not list(run_dir.glob(".metrics.csv.*"))


def test_summary_is_printed(tmp_path, capsys):
    run_train(*TINY, "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path))
    out = capsys.readouterr().out
    assert "test accuracy: " in out
    for what in ("best checkpoint: ", "logs: ", "plot: "):
        assert what + str(tmp_path) in out


def test_same_seed_same_metrics(straight_run, tmp_path):
    cli, root = straight_run
    again = run_train(*TINY, "--trainer.default_root_dir", str(tmp_path))
    for key in ("test_loss", "test_acc"):
        assert again.trainer.callback_metrics[key].item() == cli.trainer.callback_metrics[key].item(), key
    last = "lightning_logs/version_0/checkpoints/last.ckpt"
    assert_same_weights(weights(tmp_path / last), weights(root / last))


def test_other_seed_other_weights(straight_run, tmp_path):
    _, root = straight_run
    run_train("fit", *TINY, "--seed_everything", "7", "--trainer.default_root_dir", str(tmp_path))
    last = "lightning_logs/version_0/checkpoints/last.ckpt"
    a, b = weights(tmp_path / last), weights(root / last)
    assert not torch.equal(a["head.weight"], b["head.weight"])


def test_resume_from_last_repeats_the_straight_run(straight_run, tmp_path):
    """1 epoch, then ``--ckpt_path last`` up to 2 epochs: the same steps and weights as 2 epochs straight.

    Needs the training order of the resumed epoch to be that epoch's: the data
    module's batch sampler must draw its order lazily (at the first ``next``, after
    ``ExactResume`` has called ``set_epoch``), not when ``iter`` is called: a
    resumed run creates its first iterator before the epoch is known.
    """
    straight, root = straight_run
    args = [*TINY, "--trainer.default_root_dir", str(tmp_path)]
    first = run_train("fit", *args, "--trainer.max_epochs", "1")
    assert first.trainer.global_step == straight.trainer.global_step // 2
    resumed = run_train("fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    # It continued in the same run folder, not a new version_1 without the checkpoint.
    assert Path(resumed.trainer.log_dir) == tmp_path / "lightning_logs" / "version_0"
    assert resumed.trainer.current_epoch == 2
    assert resumed.trainer.global_step == straight.trainer.global_step
    last = "lightning_logs/version_0/checkpoints/last.ckpt"
    assert torch.load(tmp_path / last, weights_only=False)["global_step"] == straight.trainer.global_step
    assert_same_weights(weights(tmp_path / last), weights(root / last))
    (plotter,) = [c for c in resumed.trainer.callbacks if type(c).__name__ == "PlotMetrics"]
    assert sorted(plotter.history) == [0, 1]  # the plot keeps the epoch before the restart
    assert plotter.history[1]["minutes"] > plotter.history[0]["minutes"]


def test_training_clock_goes_on_from_the_checkpoint(tmp_path):
    """A resumed fit counts its minutes from those its checkpoint recorded, never from zero."""
    plotter = PlotMetrics()
    plotter.load_state_dict({"history": {0: {"val_acc": 0.5, "minutes": 5.0}, 1: {"val_acc": 0.6, "minutes": 7.5}}})
    trainer = SimpleNamespace(log_dir=str(tmp_path), default_root_dir=str(tmp_path), is_global_zero=True)
    with mock.patch("torch_lstm_manual.sentiment.callbacks.time.monotonic", return_value=100.0):
        plotter.on_fit_start(trainer, None)
        assert plotter.minutes() == 7.5
    with mock.patch("torch_lstm_manual.sentiment.callbacks.time.monotonic", return_value=130.0):
        assert plotter.minutes() == 8.0
        plotter.on_fit_end(trainer, None)
    assert plotter.minutes() == 8.0  # stopped with the fit


def test_overrides(tmp_path):
    cli = run_train(
        "fit", "--config", str(CONFIGS / "default.yaml"), *TINY,
        "--model.hidden_size", "12", "--model.bidirectional", "true", "--model.lstm_impl", "torch",
        "--model.optimizer", "sgd", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1",
        "--checkpoint.filename", "chosen-{epoch}", "--trainer.default_root_dir", str(tmp_path),
    )
    model = cli.model
    assert isinstance(model.lstm, torch.nn.LSTM) and model.lstm.hidden_size == 12 and model.lstm.bidirectional
    assert model.head.in_features == 24
    assert isinstance(cli.trainer.optimizers[0], torch.optim.SGD)
    assert cli.trainer.global_step == 2
    assert Path(cli.trainer.checkpoint_callback.best_model_path).name.startswith("chosen-epoch=")
    assert cli.trainer.gradient_clip_val == 1.0  # from default.yaml


def print_config(*args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_train(*args, "--print_config")
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_default_yaml_is_what_train_py_uses(capsys):
    builtin = print_config("fit", capsys=capsys)
    from_file = print_config("fit", "--config", str(CONFIGS / "default.yaml"), capsys=capsys)
    assert from_file == builtin
    assert builtin["data"]["class_path"] == "torch_lstm_manual.sentiment.data.SyntheticDataModule"
    assert builtin["seed_everything"] == 42
    assert builtin["checkpoint"]["monitor"] == "val_acc" and builtin["checkpoint"]["save_last"] is False


@pytest.mark.parametrize(
    "name, expected",
    [
        ("seed.yaml", dict(vocab_size=502, max_length=80, hidden_size=80, optimizer="sgd", momentum=0.0)),
        ("imdb.yaml", dict(vocab_size=20000, max_length=800, hidden_size=128, optimizer="adamw", lr_schedule="onecycle",
                           pooling="max", lstm_impl="manual", embedding_dropout=0.3, weight_drop=0.5)),
        ("imdb_torch.yaml", dict(vocab_size=20000, max_length=400, hidden_size=128, optimizer="adamw",
                                 lr_schedule="onecycle", pooling="max", lstm_impl="torch", weight_drop=0.0)),
    ],
)
def test_imdb_configs_parse(name, expected, capsys):
    config = print_config("fit", "--config", str(CONFIGS / name), "--data.archive", "/some/aclImdb_v1.tar.gz", capsys=capsys)
    assert config["data"]["class_path"] == "torch_lstm_manual.sentiment.data.IMDBDataModule"
    data, model = config["data"]["init_args"], config["model"]
    assert data["archive"] == "/some/aclImdb_v1.tar.gz" and data["data_dir"] is None
    for key, value in expected.items():
        assert (data if key in ("vocab_size", "max_length") else model)[key] == value, key
    assert config["trainer"]["gradient_clip_val"] == 1.0
    assert config["trainer"]["use_distributed_sampler"] is False
    if name.startswith("imdb"):  # the budget of the IMDB runs
        assert config["trainer"]["max_time"] == "00:00:30:00"


def test_invalid_value_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        run_train("fit", "--model.lstm_impl", "cudnn")
    err = capsys.readouterr().err
    assert "lstm_impl" in err and "cudnn" in err


def test_predict_subcommand(straight_run, tmp_path):
    cli, root = straight_run
    best = cli.trainer.checkpoint_callback.best_model_path
    predicted = run_train("predict", *TINY, "--ckpt_path", best, "--trainer.default_root_dir", str(tmp_path))
    (writer,) = [c for c in predicted.trainer.callbacks if type(c).__name__ == "PredictionWriter"]
    lines = writer.path.read_text().splitlines()
    assert lines[0] == "label,predicted,p_negative,p_positive"
    assert len(lines) == 1 + 64
    for line in lines[1:]:
        label, predicted_label, *probabilities = line.split(",")
        assert label in ("negative", "positive") and predicted_label in ("negative", "positive")
        assert sum(map(float, probabilities)) == pytest.approx(1.0, abs=1e-5)


def test_train_py_entry_point(capsys):
    with mock.patch.object(sys, "argv", ["train.py", "--help"]), pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for subcommand in ("fit", "validate", "test", "predict"):
        assert subcommand in out


def write_label_folders(root, count, seed):
    """``root/negative/*.txt`` and ``root/positive/*.txt``: one short review per file."""
    import random

    rng = random.Random(seed)
    words = {"negative": ["dull", "boring", "bad"], "positive": ["great", "superb", "good"]}
    for label, sentiment in words.items():
        (root / label).mkdir(parents=True)
        for i in range(count):
            text = f"the film was {rng.choice(sentiment)} and the cast was {rng.choice(sentiment)}"
            (root / label / f"{i}.txt").write_text(text, encoding="utf-8")


def test_option_values_are_not_taken_for_subcommands(tmp_path, monkeypatch):
    """``python train.py --data TextFilesDataModule --data.train train --data.test test``, with
    folders named ``train`` and ``test``: no subcommand (the values are folder names), so fit then test."""
    write_label_folders(tmp_path / "train", 24, seed=0)
    write_label_folders(tmp_path / "test", 8, seed=1)
    monkeypatch.chdir(tmp_path)
    cli = run_train(
        "--data", "TextFilesDataModule", "--data.train", "train", "--data.test", "test",
        "--data.batch_size", "8", "--model.embedding_dim", "8", "--model.hidden_size", "8",
        "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(tmp_path / "runs"),
    )
    assert cli.subcommand == "fit" and cli.trainer.current_epoch == 1
    assert type(cli.datamodule).__name__ == "TextFilesDataModule"
    assert "test_acc" in cli.trainer.callback_metrics  # the test stage ran after fitting


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], False),
        (["--config", "run.yaml"], False),
        (["--config", "fit"], False),  # the value of --config, not the subcommand
        (["--trainer.max_epochs", "1", "fit"], False),  # after a subcommand's option: no subcommand there
        (["--data.train", "test"], False),
        (["fit", "--data.train", "train"], True),
        (["--config", "run.yaml", "test", "--ckpt_path", "best.ckpt"], True),
        (["-crun.yaml", "validate"], True),
        (["--print_config", "predict"], True),
        (["--help"], None),
        (["-h"], None),
    ],
)
def test_subcommand_is_found_where_the_parser_expects_it(main_parser, args, expected):
    from torch_lstm_manual.sentiment.cli import subcommand_given

    assert subcommand_given(main_parser, args) is expected


@pytest.fixture(scope="module")
def main_parser():
    """The main parser of ``SentimentCLI`` (the one that holds the subcommands)."""
    from torch_lstm_manual.sentiment.cli import SentimentCLI

    class Probe(SentimentCLI):
        def parse_arguments(self, parser, args):
            raise StopIteration(parser)

    with pytest.raises(StopIteration) as built:
        Probe(args=[])
    return built.value.value


def test_micro_batches_of_one_step_get_their_own_dropout_masks():
    """Under ``accumulate_grad_batches=2`` the two micro-batches of an optimizer step draw
    different dropout masks, and the same ones again in a second run."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from torch_lstm_manual.sentiment.callbacks import ExactResume

    class Masks(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)
            self.masks = []  # (global_step, mask)

        def training_step(self, batch, batch_idx):
            mask = torch.nn.functional.dropout(torch.ones(256), p=0.5, training=True) > 0  # (256,)
            self.masks.append((self.trainer.global_step, mask))
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def masks_of_a_run():
        model = Masks()
        trainer = pl.Trainer(
            max_epochs=2, accumulate_grad_batches=2, callbacks=[ExactResume(seed=3)], logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )
        trainer.fit(model, DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=2))
        return model.masks

    masks = masks_of_a_run()
    assert len(masks) == 8 and [step for step, _ in masks] == [0, 0, 1, 1, 2, 2, 3, 3]
    for (step_a, a), (step_b, b) in zip(masks[::2], masks[1::2]):
        assert step_a == step_b and not torch.equal(a, b), f"the micro-batches of step {step_a} share a mask"
    assert len({tuple(mask.tolist()) for _, mask in masks}) == 8
    for (_, a), (_, b) in zip(masks, masks_of_a_run()):
        assert torch.equal(a, b)


class WritesAFile:
    """Unpickling it would create ``path``: a stand-in for code a checkpoint file can carry."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("ckpt_path", ["last", "file"])
def test_a_checkpoint_that_carries_code_is_refused(straight_run, tmp_path, monkeypatch, ckpt_path):
    """``train.py fit --ckpt_path`` reads checkpoints with ``weights_only=True`` even where torch's
    default is False (before torch 2.6, emulated here): the file's code never runs."""
    _, root = straight_run
    marker = tmp_path / "code-ran"
    content = torch.load(root / "lightning_logs/version_0/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    content["loops"]["note"] = WritesAFile(marker)
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(content, folder / "last.ckpt")
    real_load = torch.load

    def load(*args, weights_only=None, **kwargs):
        return real_load(*args, weights_only=False if weights_only is None else weights_only, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    path = "last" if ckpt_path == "last" else str(folder / "last.ckpt")
    with pytest.raises(pickle.UnpicklingError, match="Unsupported global"):
        run_train("fit", *TINY, "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", path)
    assert not marker.exists()


def test_checkpoints_are_read_with_weights_only_by_default(capsys):
    config = print_config("fit", capsys=capsys)
    assert config["weights_only"] is True
    assert print_config("test", capsys=capsys)["weights_only"] is True


def test_resume_removes_what_a_killed_run_left(tmp_path):
    """A run killed after writing a best checkpoint, but before ``last.ckpt`` recorded it, and
    in the middle of writing the plot: the resumed run removes both, and keeps at most
    ``save_top_k`` best checkpoints."""
    args = [*TINY, "--data.num_train", "64", "--trainer.default_root_dir", str(tmp_path)]
    run_train("fit", *args, "--trainer.max_epochs", "1")
    run_dir = tmp_path / "lightning_logs" / "version_0"
    checkpoints = run_dir / "checkpoints"
    (kept,) = checkpoints.glob("best-*.ckpt")
    unlisted = checkpoints / "best-epoch=01-val_acc=0.9999.ckpt"
    unlisted.write_bytes((checkpoints / "last.ckpt").read_bytes())
    temporary = run_dir / ".metrics.png.k1ll3d.tmp"
    temporary.write_bytes(PNG_MAGIC)
    others = [checkpoints / "mine.ckpt", run_dir / ".other.png.k1ll3d.tmp"]  # not of these callbacks' names
    for path in others:
        path.write_bytes(b"keep")

    resumed = run_train("fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    best = sorted(checkpoints.glob("best-*.ckpt"))
    assert len(best) == 1, best  # save_top_k=1
    assert str(best[0]) == resumed.trainer.checkpoint_callback.best_model_path
    assert not unlisted.exists() or best == [unlisted]
    assert not temporary.exists() and not list(run_dir.glob(".metrics.png.*"))
    assert all(path.read_bytes() == b"keep" for path in others)
    assert kept.exists() == (kept in best)
