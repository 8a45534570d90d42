"""The ``lr_find`` subcommand of ``train.py``: Lightning's learning-rate range test
(``lightning.pytorch.tuner.Tuner.lr_find``) on the configured model and data.

``python train.py lr_find --config configs/seed.yaml`` trains from the model's
initial weights for ``num_training`` steps while the learning rate grows from
``min_lr`` to ``max_lr``, prints the rate Lightning suggests (the steepest descent
of the smoothed loss), sets ``model.lr`` to it, saves the loss-versus-rate curve as
a PNG and, with ``update_config``, writes the whole configuration with that rate
as a YAML file that ``train.py fit --config`` takes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import yaml

from .data.storage import atomic_write, atomic_write_text

MODES = ("exponential", "linear")
# Lightning's suggestion drops the first 10 and the last recorded loss, and needs two more.
SKIP_BEGIN, SKIP_END = 10, 1
MIN_NUM_TRAINING = SKIP_BEGIN + SKIP_END + 2


def _check_positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"lr_find.{name} should be a number, got: {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"lr_find.{name} must be a finite number greater than 0, got {value}")
    return float(value)


class LRFindSettings:
    """The options of ``train.py lr_find`` (``--lr_find.*``), checked when given.

    Args:
        min_lr: the first learning rate tried (> 0).
        max_lr: the last learning rate tried (> ``min_lr``).
        num_training: the number of training steps, one learning rate each; at least 13
            (Lightning's suggestion skips the first 10 and the last loss).
            The search is not limited by ``trainer.max_epochs``: it runs as many epochs as
            the steps need.
        mode: how the rate grows from step to step: ``"exponential"`` (evenly on a log
            scale) or ``"linear"``.
        early_stop_threshold: stop once the smoothed loss exceeds this many times the best
            loss so far (> 1); ``None`` never stops early.
        plot: where the PNG of the loss against the learning rate is written; ``None``:
            ``lr_find.png`` in ``trainer.default_root_dir``.
        update_config: a ``.yaml`` file to write the whole configuration to, with
            ``model.lr`` set to the suggestion (for ``train.py fit --config``); ``None``:
            none is written.
    """

    def __init__(
        self,
        min_lr: float = 1e-4,
        max_lr: float = 10.0,
        num_training: int = 100,
        mode: Literal["exponential", "linear"] = "exponential",
        early_stop_threshold: float | None = 4.0,
        plot: str | None = None,
        update_config: str | None = None,
    ) -> None:
        self.min_lr = _check_positive_float("min_lr", min_lr)
        self.max_lr = _check_positive_float("max_lr", max_lr)
        if self.max_lr <= self.min_lr:
            raise ValueError(
                f"lr_find.max_lr must be greater than lr_find.min_lr, got min_lr={min_lr} and max_lr={max_lr}"
            )
        if isinstance(num_training, bool) or not isinstance(num_training, int):
            raise TypeError(f"lr_find.num_training should be of type int, got: {type(num_training).__name__}")
        if num_training < MIN_NUM_TRAINING:
            raise ValueError(
                f"lr_find.num_training must be at least {MIN_NUM_TRAINING} (the suggestion skips the first "
                f"{SKIP_BEGIN} losses and the last {SKIP_END}), got {num_training}"
            )
        self.num_training = num_training
        if mode not in MODES:
            raise ValueError(f"lr_find.mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        if early_stop_threshold is not None:
            early_stop_threshold = _check_positive_float("early_stop_threshold", early_stop_threshold)
            if early_stop_threshold <= 1:
                raise ValueError(
                    f"lr_find.early_stop_threshold must be greater than 1 (a multiple of the best loss) or null, "
                    f"got {early_stop_threshold}"
                )
        self.early_stop_threshold = early_stop_threshold
        if plot is not None and Path(plot).suffix.lower() != ".png":
            raise ValueError(f"lr_find.plot must be the path of a .png file, got {plot!r}")
        self.plot = plot
        if update_config is not None and Path(update_config).suffix.lower() not in (".yaml", ".yml"):
            raise ValueError(f"lr_find.update_config must be the path of a .yaml or .yml file, got {update_config!r}")
        self.update_config = update_config


def write_lr_plot(finder: Any, suggestion: float, path: str | os.PathLike, title: str = "") -> Path:
    """Saves the loss against the learning rate recorded by ``finder`` (Lightning's
    ``_LRFinder``), with ``suggestion`` marked, as a PNG at ``path``, atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    lrs, losses = finder.results["lr"], finder.results["loss"]
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.plot(lrs, losses, "-", label="smoothed training loss")
    index = min(range(len(lrs)), key=lambda i: abs(lrs[i] - suggestion))
    axes.plot([lrs[index]], [losses[index]], "o", color="red", markersize=9, label=f"suggested lr = {suggestion:.3g}")
    if finder.mode == "exponential":
        axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("loss")
    axes.set_title(title or "learning-rate range test")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))


def write_config_with_lr(config: dict, lr: float, path: str | os.PathLike) -> Path:
    """Writes ``config`` (a plain dict of ``train.py``'s options) with ``model.lr`` set to
    ``lr`` as YAML at ``path``, atomically: the file is complete or absent."""
    config = dict(config)
    model = config.get("model")
    if not isinstance(model, dict):
        raise ValueError(f"the configuration has no model section to set the learning rate in, got {model!r}")
    config["model"] = {**model, "lr": float(lr)}
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    return atomic_write_text(path, text)
