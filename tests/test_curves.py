"""The learning-curve command: table of the best validation accuracy within budgets, and the plot."""

import pytest

from torch_lstm_manual.sentiment.callbacks import write_history
from torch_lstm_manual.sentiment.curves import best_within, main, validation_points

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(folder, accuracies, minutes_per_epoch):
    history = {epoch: {"val_acc": acc, "minutes": (epoch + 1) * minutes_per_epoch, "train_loss": 0.5}
               for epoch, acc in enumerate(accuracies)}
    history[len(accuracies)] = {"train_loss": 0.4}  # an epoch without validation is skipped
    folder.mkdir(parents=True)
    write_history(history, folder / "metrics.csv")
    return folder


def test_points_and_best_within(tmp_path):
    run = make_run(tmp_path / "a", [0.8, 0.9, 0.85], 4.0)
    points = validation_points(run)
    assert points == [(4.0, 0.8), (8.0, 0.9), (12.0, 0.85)]
    assert validation_points(run / "metrics.csv") == points
    assert best_within(points, 5) == 0.8
    assert best_within(points, 8) == 0.9
    assert best_within(points, 3) is None
    assert best_within(points) == 0.9


def test_table_and_plot(tmp_path, capsys):
    fast = make_run(tmp_path / "fast", [0.8, 0.9, 0.85], 4.0)
    slow = make_run(tmp_path / "slow", [0.7, 0.95], 15.0)
    png = tmp_path / "out" / "curves.png"
    main(["--run", f"fast={fast}", "--run", f"slow={slow}", "--budgets", "10", "20", "--plot", str(png)])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| run | best val acc ≤ 10 min | best val acc ≤ 20 min | best val acc | at min")
    assert out[2] == "| fast | 0.9000 | 0.9000 | 0.9000 | 8.0 | 12.0 |"
    assert out[3] == "| slow | – | 0.7000 | 0.9500 | 30.0 | 30.0 |"
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert not list(png.parent.glob(".curves.png.*"))


@pytest.mark.parametrize("argv, message", [
    (["--run", "nolabel"], "--run expects LABEL=PATH"),
    (["--run", "a=missing"], "no history file"),
])
def test_errors(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_same_label_twice_is_an_error(tmp_path, capsys):
    run = make_run(tmp_path / "a", [0.8], 1.0)
    with pytest.raises(SystemExit):
        main(["--run", f"x={run}", "--run", f"x={run}"])
    assert "labels must differ" in capsys.readouterr().err


def test_run_without_validation_is_an_error(tmp_path, capsys):
    folder = tmp_path / "noval"
    folder.mkdir()
    write_history({0: {"train_loss": 0.5, "minutes": 1.0}}, folder / "metrics.csv")
    with pytest.raises(SystemExit):
        main(["--run", f"x={folder}"])
    assert "holds no epoch with both minutes and val_acc" in capsys.readouterr().err
