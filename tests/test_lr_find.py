"""``train.py lr_find``: Lightning's learning-rate range test on the configured model and data
(tiny runs on the built-in corpus)."""

import re
import sys
from contextlib import redirect_stdout
from io import StringIO
from unittest import mock

import matplotlib.image
import pytest
import yaml

from torch_lstm_manual.sentiment.cli import SentimentCLI, main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = [
    "--data.num_train", "256", "--data.num_val", "64", "--data.num_test", "64", "--data.batch_size", "32",
    "--model.embedding_dim", "16", "--model.hidden_size", "16",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]
# 8 training batches an epoch: 20 steps need 3 epochs, more than the 2 that max_epochs allows.
SEARCH = ["--lr_find.min_lr", "1e-3", "--lr_find.max_lr", "1.0", "--lr_find.num_training", "20",
          "--trainer.max_epochs", "2"]
SUGGESTED = re.compile(r"^Suggested learning rate: (\S+)$", re.MULTILINE)


def run_train(*args):
    """``python train.py *args``, in this process."""
    with mock.patch.object(sys, "argv", ["train.py", *args]):
        return main()


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """``python train.py lr_find`` with an updated configuration written, and what it printed."""
    root = tmp_path_factory.mktemp("lr_find")
    config = root / "tuned.yaml"
    out = StringIO()
    with redirect_stdout(out):
        cli = run_train("lr_find", *TINY, *SEARCH, "--trainer.default_root_dir", str(root),
                        "--lr_find.update_config", str(config))
    return cli, root, config, out.getvalue()


def test_prints_a_suggestion_in_range_and_sets_the_model_lr(search):
    cli, root, _, printed = search
    assert cli.subcommand == "lr_find"
    (match,) = SUGGESTED.findall(printed)
    printed_lr = float(match)
    assert 1e-3 <= printed_lr <= 1.0
    assert printed_lr == pytest.approx(cli.lr_suggestion, rel=1e-5)
    # The model carries the reported rate (the default was 5e-3), and it is one of the rates tried.
    assert cli.model.hparams.lr == cli.lr_suggestion
    assert cli.model.hparams.lr != 5e-3
    # The whole range was searched in spite of max_epochs=2 (16 batches): 20 steps recorded.
    assert "20 of 20 steps" in printed


def test_writes_the_plot_and_nothing_else(search):
    cli, root, config, printed = search
    plot = root / "lr_find.png"
    assert f"loss curve: {plot}" in printed
    assert plot.read_bytes().startswith(PNG_MAGIC)
    height, width, _ = matplotlib.image.imread(plot).shape
    assert height > 100 and width > 100
    # No temporary files, no Lightning log folder, no checkpoint of the search left behind.
    assert sorted(path.name for path in root.iterdir()) == sorted(["lr_find.png", config.name])


def test_update_config_trains_with_the_suggestion(search):
    cli, root, config, printed = search
    written = yaml.safe_load(config.read_text())
    assert "lr_find" not in written
    assert written["model"]["lr"] == cli.lr_suggestion
    assert written["model"]["hidden_size"] == 16 and written["data"]["init_args"]["num_train"] == 256
    assert written["trainer"]["max_epochs"] == 2  # the configuration's own, not the search's
    rerun = SentimentCLI(args=["--config", str(config)], run=False)
    assert rerun.model.hparams.lr == cli.lr_suggestion
    assert rerun.model.hparams.hidden_size == 16


def test_plot_option_names_the_png(tmp_path, capsys):
    plot = tmp_path / "figures" / "search.png"
    cli = run_train("lr_find", *TINY, *SEARCH, "--trainer.default_root_dir", str(tmp_path),
                    "--lr_find.plot", str(plot), "--lr_find.mode", "linear")
    assert plot.read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / "lr_find.png").exists()
    assert sorted(path.name for path in plot.parent.iterdir()) == ["search.png"]
    assert 1e-3 <= cli.lr_suggestion <= 1.0
    assert "linear from 0.001 to 1" in capsys.readouterr().out


@pytest.mark.parametrize("option, value, message", [
    ("min_lr", "0", "lr_find.min_lr must be a finite number greater than 0, got 0"),
    ("max_lr", "-1", "lr_find.max_lr must be a finite number greater than 0, got -1"),
    ("max_lr", "1e-4", "lr_find.max_lr must be greater than lr_find.min_lr, got min_lr=0.001 and max_lr=0.0001"),
    ("num_training", "12", "lr_find.num_training must be at least 13"),
    ("early_stop_threshold", "1", "lr_find.early_stop_threshold must be greater than 1"),
    ("plot", "curve.jpg", "lr_find.plot must be the path of a .png file, got 'curve.jpg'"),
    ("update_config", "tuned.json", "lr_find.update_config must be the path of a .yaml or .yml file"),
])
def test_bad_settings_fail_before_the_search(tmp_path, option, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        run_train("lr_find", *TINY, *SEARCH, "--trainer.default_root_dir", str(tmp_path), f"--lr_find.{option}", value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option, value", [("mode", "cubic"), ("num_training", "many"), ("min_lr", "small")])
def test_values_of_the_wrong_type_are_refused_by_the_parser(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit):
        run_train("lr_find", *TINY, "--trainer.default_root_dir", str(tmp_path), f"--lr_find.{option}", value)
    error = capsys.readouterr().err
    assert f'Parser key "lr_find.{option}"' in error and f"Got value: {value}" in error
    assert list(tmp_path.iterdir()) == []


def test_fast_dev_run_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lr_find cannot run with trainer.fast_dev_run"):
        run_train("lr_find", *TINY, "--trainer.default_root_dir", str(tmp_path), "--trainer.fast_dev_run", "true")
    assert list(tmp_path.iterdir()) == []



def test_a_diverging_search_stops_early_and_says_so(tmp_path, capsys):
    # SGD at up to 1e4 on the tiny model: the loss blows up well before the last of 40 steps.
    cli = run_train("lr_find", *TINY, "--model.optimizer", "sgd", "--trainer.default_root_dir", str(tmp_path),
                    "--lr_find.min_lr", "1e-2", "--lr_find.max_lr", "1e4", "--lr_find.num_training", "40")
    out = capsys.readouterr().out
    (steps,) = re.findall(r"; (\d+) of 40 steps, exponential from 0.01 to 10000, stopped early: the loss diverged\)", out)
    assert 13 <= int(steps) < 40
    assert 1e-2 <= cli.lr_suggestion <= 1e4
