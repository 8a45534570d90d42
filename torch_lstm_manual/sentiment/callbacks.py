"""Callbacks of the training command: the learning-curve plot, ``last.ckpt`` after
every epoch, the end-of-run summary, the predictions file, and the seeding that
makes a resumed run repeat a straight one."""

from __future__ import annotations

import csv
import io
import os
import random
import re
import time
import zlib
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint

from .data.storage import atomic_write, atomic_write_text, temporaries

CURVES = (("loss", "train_loss", "val_loss"), ("accuracy", "train_acc", "val_acc"))


def _scalar(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value.detach().cpu()) if value.numel() == 1 else None
    return float(value) if isinstance(value, (int, float)) else None


class PlotMetrics(Callback):
    """Writes a PNG of the loss and accuracy per epoch, train and validation, into
    the run's log folder after every validation and training epoch (rank 0 only),
    and the same history as a CSV file next to it (``metrics.csv`` for ``metrics.png``).

    Each epoch's row also holds ``minutes``: the training time, by the wall clock,
    from the start of fitting to the end of that epoch's validation (or of its
    training, without validation). A resumed run goes on counting from the minutes
    its checkpoint recorded, so the time spent between the kill and the restart is
    not counted.

    The history is part of the checkpoint, so a resumed run plots every epoch.
    Each file is written under a temporary name (``.<filename>.<random>.tmp``) and
    renamed, so a reader never sees half a file; the temporaries that a killed run
    left in the folder are removed when fitting starts there again.

    Args:
        filename: name of the PNG inside the log folder.
    """

    def __init__(self, filename: str = "metrics.png") -> None:
        if not filename or os.sep in filename or (os.altsep and os.altsep in filename):
            raise ValueError(f"filename must be a plain file name without folders, got {filename!r}")
        self.filename = filename
        self.history: dict[int, dict[str, float]] = {}  # epoch -> metric name -> value
        self.path: Path | None = None
        self._clock_start: float | None = None  # time.monotonic() at the start of this fit
        self._minutes_before = 0.0  # the training minutes of the run before this fit resumed it

    def minutes(self) -> float:
        """The training minutes of the run so far (0 before fitting starts)."""
        if self._clock_start is None:
            return self._minutes_before
        return self._minutes_before + (time.monotonic() - self._clock_start) / 60

    # -- collection ---------------------------------------------------------

    def _record(self, trainer: Trainer, names: tuple[str, ...]) -> None:
        row = self.history.setdefault(trainer.current_epoch, {})
        for name in names:
            value = _scalar(trainer.callback_metrics.get(name))
            if value is not None:
                row[name] = value

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # The checkpoint's state, restored before this hook, holds the minutes of the run so far.
        self._minutes_before = max((row.get("minutes", 0.0) for row in self.history.values()), default=0.0)
        self._clock_start = time.monotonic()
        plot = self.plot_path(trainer)  # trainer.log_dir: a collective call under DDP, on every rank
        if trainer.is_global_zero:
            for name in (plot.name, plot.with_suffix(".csv").name):
                for stale in temporaries(plot.parent / name):
                    stale.unlink(missing_ok=True)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._minutes_before, self._clock_start = self.minutes(), None

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._record(trainer, ("val_loss", "val_acc"))
        self.history[trainer.current_epoch]["minutes"] = self.minutes()
        self.plot(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning computes the epoch's train metrics before this hook, after validation.
        self._record(trainer, ("train_loss", "train_acc"))
        self.history[trainer.current_epoch].setdefault("minutes", self.minutes())
        self.plot(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {int(epoch): dict(row) for epoch, row in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Merged, not replaced: testing the best checkpoint after fitting loads an
        # older history than the one this callback already holds.
        for epoch, row in state_dict.get("history", {}).items():
            self.history.setdefault(int(epoch), {}).update(row)

    # -- drawing ------------------------------------------------------------

    def plot_path(self, trainer: Trainer) -> Path:
        return Path(trainer.log_dir or trainer.default_root_dir) / self.filename

    def plot(self, trainer: Trainer) -> None:
        """Draws the history into ``plot_path(trainer)`` and writes it to the same path with
        the suffix ``.csv`` (on rank 0)."""
        path = self.plot_path(trainer)  # a collective call under DDP: every rank makes it
        self.path = path
        if trainer.is_global_zero and self.history:
            write_plot(self.history, path)
            write_history(self.history, path.with_suffix(".csv"))


HISTORY_COLUMNS = ("epoch", "minutes", "train_loss", "train_acc", "val_loss", "val_acc")


def write_history(history: dict[int, dict[str, float]], path: str | os.PathLike) -> None:
    """Saves ``history`` (epoch -> metric -> value) as a CSV file at ``path``, atomically:
    one row per epoch (counted from 1), the columns of ``HISTORY_COLUMNS``, empty where
    a value is missing."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(HISTORY_COLUMNS)
    for epoch in sorted(history):
        row = history[epoch]
        writer.writerow([epoch + 1] + [f"{row[key]:.6g}" if key in row else "" for key in HISTORY_COLUMNS[1:]])
    atomic_write_text(path, text.getvalue())


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a CSV file that ``write_history`` wrote, as dicts of the values present."""
    with open(path, newline="", encoding="utf-8") as file:
        return [{key: float(value) for key, value in row.items() if value not in ("", None)}
                for row in csv.DictReader(file)]


def write_plot(history: dict[int, dict[str, float]], path: str | os.PathLike) -> None:
    """Saves the curves of ``history`` (epoch -> metric -> value) as a PNG at ``path``, atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, (title, train_key, val_key) in zip(figure.subplots(1, 2), CURVES):
        for key, style in ((train_key, "o-"), (val_key, "s--")):
            points = sorted((epoch, row[key]) for epoch, row in history.items() if key in row)
            if points:
                epochs, values = zip(*points)
                axes.plot([epoch + 1 for epoch in epochs], values, style, label=key)
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
        if axes.has_data():
            axes.legend()
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=100))


class BestCheckpoints(ModelCheckpoint):
    """``ModelCheckpoint`` that, when a run continues in its folder, first removes the
    checkpoints of its own file name pattern that the restored state does not list.

    ``ModelCheckpoint`` writes a new best checkpoint, then deletes the one it
    replaces, and ``last.ckpt`` records the list afterwards: a run killed in between
    leaves files that the checkpoint it resumes from does not know. Left there, they
    are never deleted (and a repeated epoch writes its file again as ``...-v1.ckpt``),
    so the folder would hold more than ``save_top_k`` of them. Files that do not
    match ``filename`` (``last.ckpt``, other runs' names) are never touched, nor is
    the folder of a checkpoint whose state was not restored (another ``dirpath``).

    Its state is saved under ``ModelCheckpoint``'s key, so checkpoints written with
    a plain ``ModelCheckpoint`` resume with their list of best files.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._restored_here = False

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._restored_here = state_dict.get("dirpath", self.dirpath) == self.dirpath

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        restored, self._restored_here = self._restored_here, False
        if not (restored and trainer.is_global_zero and self.dirpath and os.path.isdir(self.dirpath)):
            return
        listed = {*self.best_k_models, self.best_model_path, self.kth_best_model_path, self.last_model_path,
                  trainer.ckpt_path}
        listed = {os.path.realpath(path) for path in listed if path}
        pattern = self.file_name_pattern()
        for entry in os.scandir(self.dirpath):
            if entry.is_file() and pattern.fullmatch(entry.name) and os.path.realpath(entry.path) not in listed:
                os.remove(entry.path)

    def file_name_pattern(self) -> re.Pattern:
        """The names ``format_checkpoint_name`` gives this callback's checkpoints, as a regular
        expression: the ``filename`` template with any value in each ``{...}``, then an
        optional version suffix (``-v1``) and the extension."""
        template = self.filename or "{epoch}" + self.CHECKPOINT_JOIN_CHAR + "{step}"
        regex = ""
        for part in re.split(r"(\{[^{}]*\})", template):
            if part.startswith("{") and part.endswith("}"):
                name = re.split(r"[:}]", part[1:], maxsplit=1)[0]
                regex += (re.escape(name + self.CHECKPOINT_EQUALS_CHAR) if self.auto_insert_metric_name else "") + ".+?"
            else:
                regex += re.escape(part)
        version = re.escape(self.CHECKPOINT_JOIN_CHAR) + r"v\d+"
        return re.compile(f"{regex}(?:{version})?{re.escape(self.FILE_EXTENSION)}")


class LastCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` at every checkpoint opportunity (after each validation,
    or each training epoch without validation), whatever the metrics, into the
    folder of the run's other ``ModelCheckpoint`` (or the log folder).

    Lightning 2.6's ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only
    when it writes a top-k checkpoint at the same step: with ``save_top_k=1`` it is
    a copy of the best checkpoint, and resuming from it would repeat epochs.

    Args:
        dirpath: the folder; None: that of the other ``ModelCheckpoint``, else the log folder.
    """

    def __init__(self, dirpath: str | None = None) -> None:
        super().__init__(dirpath=dirpath, filename=self.CHECKPOINT_NAME_LAST, monitor=None, save_top_k=1,
                         enable_version_counter=False)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dirpath is None:
            for other in trainer.checkpoint_callbacks:
                if other is not self and getattr(other, "dirpath", None):
                    self.dirpath = other.dirpath
                    break
        super().setup(trainer, pl_module, stage)


class RunSummary(Callback):
    """Prints, at the end of fitting and of testing (rank 0), the accuracy reached and
    where the checkpoints, the logs and the plot went."""

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        lines = []
        checkpoint = trainer.checkpoint_callback
        if isinstance(checkpoint, ModelCheckpoint) and checkpoint.monitor and checkpoint.best_model_score is not None:
            lines.append(f"best {checkpoint.monitor}: {float(checkpoint.best_model_score):.4f}")
        for callback in trainer.callbacks:
            if isinstance(callback, PlotMetrics):
                lines.append(f"training minutes: {callback.minutes():.2f}")
        self._print("fit", trainer, lines)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        value = _scalar(trainer.callback_metrics.get("test_acc"))
        lines = [f"test accuracy: {value:.4f}"] if value is not None else []
        self._print("test", trainer, lines)

    @staticmethod
    def _print(stage: str, trainer: Trainer, lines: list[str]) -> None:
        log_dir = trainer.log_dir  # a collective call under DDP: every rank makes it
        if not trainer.is_global_zero:
            return
        for checkpoint in trainer.checkpoint_callbacks:
            if isinstance(checkpoint, LastCheckpoint) and checkpoint.best_model_path:
                lines.append(f"last checkpoint: {checkpoint.best_model_path}")
            elif isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_path:
                lines.append(f"best checkpoint: {checkpoint.best_model_path}")
        if log_dir:
            lines.append(f"logs: {log_dir}")
        for callback in trainer.callbacks:
            if isinstance(callback, PlotMetrics) and callback.path is not None and callback.path.is_file():
                lines.append(f"plot: {callback.path}")
        print("\n".join([f"\n== {stage} done =="] + lines), flush=True)


class PredictionWriter(BasePredictionWriter):
    """Writes the rows of ``predict`` (true label, predicted label, class
    probabilities) to a CSV file in the run's log folder, in the order of the
    predict dataloader; under DDP each rank writes its own file.

    Args:
        filename: name of the CSV file (``predictions-rank<r>.csv`` per rank under DDP).
    """

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="batch")
        self.filename = filename
        self.rows: list[list] = []
        self.path: Path | None = None

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.rows = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        names = getattr(trainer.datamodule, "class_names", None) or [str(i) for i in range(prediction.size(-1))]
        labels = batch[2].tolist() if len(batch) > 2 else [-1] * prediction.size(0)
        for label, row in zip(labels, prediction.tolist()):
            best = max(range(len(row)), key=row.__getitem__)
            self.rows.append([names[label] if label >= 0 else "", names[best], *(f"{p:.6f}" for p in row)])

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        path = Path(trainer.log_dir or trainer.default_root_dir) / self.filename
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}-rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        names = getattr(trainer.datamodule, "class_names", None)
        width = len(self.rows[0]) - 2 if self.rows else 0
        names = names if names and len(names) == width else [str(i) for i in range(width)]
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["label", "predicted", *(f"p_{name}" for name in names)])
            writer.writerows(self.rows)
        self.path = path
        print(f"predictions: {path}", flush=True)


class ExactResume(Callback):
    """Makes a run resumed from an epoch-end checkpoint (``--ckpt_path last``)
    repeat the straight run, step for step.

    * Before every training batch it seeds ``torch``, ``random`` (and NumPy) from
      the run's seed, the epoch, the batch's index within the epoch and the rank,
      so the random draws of a batch (dropout masks) do not depend on what ran
      before it in this process (a resumed process never drew the earlier batches'
      numbers, and Lightning's dataloader iterators draw a number when created, at
      different moments in a resumed run). The batch, not the optimizer step:
      under ``accumulate_grad_batches > 1`` the micro-batches of one step get
      masks of their own. Epoch and batch index are part of the loop state a
      checkpoint restores, so a resumed run seeds each batch as the straight run did.
    * At the start of every training epoch it calls ``set_epoch(epoch)`` on the
      train dataloader's batch sampler, when it has one (Lightning calls it only
      on ``dataloader.sampler`` and ``dataloader.batch_sampler.sampler``), so a
      seeded per-epoch order restarts at the right epoch.

    Does nothing to the seeds when no seed was set (``seed_everything: false``).

    Args:
        seed: the base seed; None takes the one ``seed_everything`` set (``PL_GLOBAL_SEED``).
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loaders = trainer.train_dataloader
        for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
            set_epoch = getattr(getattr(loader, "batch_sampler", None), "set_epoch", None)
            if callable(set_epoch):
                set_epoch(trainer.current_epoch)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        seed = self.seed if self.seed is not None else os.environ.get("PL_GLOBAL_SEED")
        if seed is None:
            return
        key = f"{int(seed)}:{trainer.current_epoch}:{batch_idx}:{trainer.global_rank}"
        step_seed = zlib.crc32(key.encode())
        random.seed(step_seed)
        torch.manual_seed(step_seed)
        try:
            import numpy

            numpy.random.seed(step_seed)
        except ImportError:
            pass
