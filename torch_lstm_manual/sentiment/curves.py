"""Validation accuracy against training minutes, for several runs side by side.

Every fit writes ``metrics.csv`` into its log folder (see ``PlotMetrics``): one row
per epoch with the training minutes at the end of its validation. This command reads
the files of several runs, prints a Markdown table of each run's best validation
accuracy overall and within given budgets of minutes, and draws the curves into one PNG::

    python -m torch_lstm_manual.sentiment.curves \\
        --run manual=lightning_logs/version_0 --run torch=other/lightning_logs/version_0 \\
        --budgets 10 20 30 --plot curves.png
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

from .callbacks import read_history
from .data.storage import atomic_write


def history_file(path: str | os.PathLike) -> Path:
    """``path`` itself if it is a file, else the ``metrics.csv`` in the folder ``path``."""
    path = Path(path)
    return path / "metrics.csv" if path.is_dir() else path


def validation_points(path: str | os.PathLike) -> list[tuple[float, float]]:
    """The (minutes, val_acc) of every validated epoch of the run at ``path``, in order."""
    file = history_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"run {str(path)!r}: no history file at {str(file)!r}")
    rows = read_history(file)
    points = [(row["minutes"], row["val_acc"]) for row in rows if "minutes" in row and "val_acc" in row]
    if not points:
        raise ValueError(f"run {str(path)!r}: {str(file)!r} holds no epoch with both minutes and val_acc")
    return points


def best_within(points: Sequence[tuple[float, float]], minutes: float | None = None) -> float | None:
    """The best validation accuracy reached within ``minutes`` (all of them: None), or None."""
    values = [acc for at, acc in points if minutes is None or at <= minutes]
    return max(values) if values else None


def table(runs: dict[str, list[tuple[float, float]]], budgets: Sequence[float]) -> str:
    """A Markdown table: per run, the best validation accuracy within each budget and overall,
    the minute it was reached and the run's total minutes."""
    header = ["run", *(f"best val acc ≤ {budget:g} min" for budget in budgets), "best val acc", "at min", "minutes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, points in runs.items():
        best = best_within(points)
        at = min(minutes for minutes, acc in points if acc == best)
        cells = [label]
        for budget in budgets:
            value = best_within(points, budget)
            cells.append("–" if value is None else f"{value:.4f}")
        cells += [f"{best:.4f}", f"{at:.1f}", f"{points[-1][0]:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: dict[str, list[tuple[float, float]]], path: str | os.PathLike, title: str = "") -> None:
    """Draws each run's validation accuracy against its training minutes into the PNG ``path``, atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for label, points in runs.items():
        minutes, accuracy = zip(*points)
        axes.plot(minutes, accuracy, "o-", label=label)
    axes.set_xlabel("training minutes (fit, with validation)")
    axes.set_ylabel("validation accuracy")
    if title:
        axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend()
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=100))


def parse_run(text: str) -> tuple[str, str]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--run expects LABEL=PATH (a run folder or its metrics.csv), got {text!r}")
    return label, path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=parse_run, action="append", required=True, metavar="LABEL=PATH",
                        help="a run: its label and its log folder (or metrics.csv); repeat for several")
    parser.add_argument("--budgets", type=float, nargs="*", default=[10, 20, 30], metavar="MINUTES",
                        help="the budgets of the table's columns (default: 10 20 30)")
    parser.add_argument("--plot", metavar="PNG", help="also draw the curves into this PNG file")
    parser.add_argument("--title", default="", help="the plot's title")
    args = parser.parse_args(argv)
    labels = [label for label, _ in args.run]
    if len(set(labels)) != len(labels):
        parser.error(f"--run labels must differ, got {labels}")
    try:
        runs = {label: validation_points(path) for label, path in args.run}
    except (OSError, ValueError) as error:
        parser.error(str(error))
    print(table(runs, args.budgets))
    if args.plot:
        plot(runs, args.plot, args.title)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
