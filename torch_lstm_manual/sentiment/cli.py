"""``SentimentCLI``: the ``LightningCLI`` of ``train.py``.

``python train.py`` with no subcommand fits on the built-in corpus and then tests
the best checkpoint; ``fit``, ``validate``, ``test`` and ``predict`` work as in
any LightningCLI; ``lr_find`` runs Lightning's learning-rate range test on the
configured model and data (``torch_lstm_manual.sentiment.lr_find``). The defaults
here are the values of ``configs/default.yaml``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from .callbacks import BestCheckpoints, ExactResume, LastCheckpoint, PlotMetrics, PredictionWriter, RunSummary
from .classifier import SentimentClassifier
from .lr_find import MIN_NUM_TRAINING, LRFindSettings, write_config_with_lr, write_lr_plot

LOGS_NAME = "lightning_logs"
LR_FIND = "lr_find"

DEFAULTS = {
    "data": {"class_path": "torch_lstm_manual.sentiment.data.SyntheticDataModule"},
    # Sized for the built-in corpus: > 99 % test accuracy in about a minute on 2 CPU cores.
    "model.embedding_dim": 64,
    "model.hidden_size": 64,
    "model.lr": 5e-3,
    "trainer.max_epochs": 5,
    "trainer.gradient_clip_val": 1.0,
    "trainer.log_every_n_steps": 10,
    # The data modules split batches across ranks themselves (BucketBatchSampler):
    # Lightning must not wrap them in a DistributedSampler.
    "trainer.use_distributed_sampler": False,
    "checkpoint.monitor": "val_acc",
    "checkpoint.mode": "max",
    "checkpoint.save_last": False,  # LastCheckpoint writes last.ckpt after every epoch instead
    "checkpoint.filename": "best-{epoch:02d}-{val_acc:.4f}",
}


def latest_run_with_last_checkpoint(root: Path) -> str | None:
    """The name of the run folder under ``root`` (``version_N``) whose
    ``checkpoints/last.ckpt`` was written most recently, or None."""
    candidates = [path for path in root.glob("*/checkpoints/last.ckpt") if path.is_file()]
    if not candidates:
        return None
    return max(candidates, key=lambda path: path.stat().st_mtime).parent.parent.name


class SentimentCLI(LightningCLI):
    """LightningCLI for ``SentimentClassifier`` on any data module of ``torch_lstm_manual.sentiment.data``.

    Adds a configurable ``BestCheckpoints`` (``--checkpoint.*``: the best by
    ``val_acc``) and ``PlotMetrics`` (``--plot.*``), always writes ``last.ckpt``
    (``LastCheckpoint``) and ``predictions.csv`` (``PredictionWriter``), and links the data's
    ``vocab_size`` and ``num_classes`` to the model. With Lightning's default
    logger (TensorBoard, under ``<default_root_dir>/lightning_logs/version_N``),
    ``--ckpt_path last`` continues in the folder of the latest run that left a
    ``last.ckpt`` (a new ``version_N`` would hold none, and Lightning would
    silently start from scratch). With ``test_after_fit`` the ``fit`` subcommand
    tests the best checkpoint when it is done. The ``lr_find`` subcommand
    (``--lr_find.*``, see ``LRFindSettings``) runs ``Tuner.lr_find`` with no logger,
    checkpoints or always-on callbacks, prints the suggested learning rate, sets
    ``model.lr`` to it and writes the loss curve as a PNG.

    Args:
        test_after_fit: after ``fit``, run ``test`` on the best checkpoint (what
            ``python train.py`` without a subcommand does).
        fit_then_test_by_default: command lines (lists of strings) that name no
            subcommand run ``fit`` with ``test_after_fit`` (``python train.py``).
        *args, **kwargs: those of ``LightningCLI``; the defaults here set the model,
            the data base class, the seed (42) and the always-on callbacks.
    """

    def __init__(self, *args, test_after_fit: bool = False, fit_then_test_by_default: bool = False,
                 **kwargs) -> None:
        self.test_after_fit = test_after_fit
        self.fit_then_test_by_default = fit_then_test_by_default
        kwargs.setdefault("model_class", SentimentClassifier)
        kwargs.setdefault("datamodule_class", LightningDataModule)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", 42)
        kwargs.setdefault("auto_configure_optimizers", False)  # the model configures its own
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})  # a resumed run rewrites it
        kwargs.setdefault("trainer_defaults", {
            "callbacks": [LastCheckpoint(), RunSummary(), ExactResume(), PredictionWriter()]
        })
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(BestCheckpoints, "checkpoint")
        parser.add_lightning_class_args(PlotMetrics, "plot")
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.set_defaults(DEFAULTS)

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        # Checkpoints hold tensors and plain data only: reading one with weights_only=True
        # (torch's default since 2.6 only) never runs code that a file may carry.
        for subcommand, arguments in getattr(self, "_subcommand_method_arguments", {}).items():
            if "weights_only" in arguments:
                self._subcommand_parsers[subcommand].set_defaults(weights_only=True)

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs) -> None:
        super()._add_subcommands(parser, **kwargs)
        # lr_find is no method of the Trainer: its parser is the common options plus --lr_find.*.
        description = "Runs the learning-rate range test (Tuner.lr_find) and prints the suggested lr."
        subcommand_parser = self.init_parser(description=description)
        self._add_arguments(subcommand_parser)
        subcommand_parser.add_class_arguments(LRFindSettings, LR_FIND, fail_untyped=True)
        self._subcommand_parsers[LR_FIND] = subcommand_parser
        self._subcommand_method_arguments[LR_FIND] = []
        parser._subcommands_action.add_subcommand(LR_FIND, subcommand_parser, help=description)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        # As LightningCLI's, without its warning about `args` next to `sys.argv`:
        # `main` passes the arguments it took from `sys.argv` on purpose.
        if isinstance(args, (dict, Namespace)):
            self.config = parser.parse_object(args)
            return
        if self.fit_then_test_by_default and args is not None:
            args = list(args)
            if subcommand_given(parser, args) is False:
                args = ["fit", *args]
                self.test_after_fit = True
        self.config = parser.parse_args(args)

    def instantiate_trainer(self, **kwargs):
        if self.subcommand == LR_FIND:
            # The range test only: nothing logged or checkpointed, the search not cut short by max_epochs.
            trainer_config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
            trainer_config.update(logger=False, enable_checkpointing=False, max_epochs=-1)
            return self.trainer_class(**trainer_config)
        trainer_config = self._get(self.config_init, "trainer", default={})
        resuming = self.subcommand is not None and self.config_init[self.subcommand].get("ckpt_path") == "last"
        checkpoint_dir = self._get(self.config_init, "checkpoint").dirpath
        if resuming and checkpoint_dir is None and trainer_config.get("logger") in (None, True):
            # Lightning's default logger, pinned to the folder of the run to continue.
            root = Path(trainer_config.get("default_root_dir") or os.getcwd())
            version = latest_run_with_last_checkpoint(root / LOGS_NAME)
            kwargs.setdefault("logger", TensorBoardLogger(save_dir=root, name=LOGS_NAME, version=version))
        return super().instantiate_trainer(**kwargs)

    def _run_subcommand(self, subcommand: str) -> None:
        if subcommand == LR_FIND:
            self.lr_find()
        else:
            super()._run_subcommand(subcommand)

    def lr_find(self) -> float:
        """Runs ``Tuner.lr_find`` with the ``--lr_find.*`` settings, sets ``model.lr`` to the
        suggestion, prints it and writes the plot (and the updated configuration, if asked
        for) on rank 0. Returns the suggested learning rate."""
        from lightning.pytorch.tuner import Tuner

        settings: LRFindSettings = self._get(self.config_init, LR_FIND)
        if self.trainer.fast_dev_run:
            raise ValueError("lr_find cannot run with trainer.fast_dev_run set (Lightning skips the search then)")
        previous = self.model.hparams.lr
        finder = Tuner(self.trainer).lr_find(
            self.model, datamodule=self.datamodule, min_lr=settings.min_lr, max_lr=settings.max_lr,
            num_training=settings.num_training, mode=settings.mode,
            early_stop_threshold=settings.early_stop_threshold, update_attr=True, attr_name="lr",
        )
        suggestion = finder.suggestion() if finder is not None else None
        steps = len(finder.results.get("lr", [])) if finder is not None else 0
        if suggestion is None:
            raise RuntimeError(
                f"lr_find could not suggest a learning rate: it recorded {steps} losses, and the suggestion needs "
                f"at least {MIN_NUM_TRAINING} finite ones; the loss diverged early "
                f"(raise lr_find.early_stop_threshold, lower lr_find.max_lr) or training ended first "
                f"(more training batches, or a larger lr_find.num_training)"
            )
        if self.trainer.is_global_zero:
            plot = Path(settings.plot) if settings.plot is not None else (
                Path(self.trainer.default_root_dir) / "lr_find.png")
            write_lr_plot(finder, suggestion, plot, title=f"{type(self.datamodule).__name__}: "
                          f"{steps} steps from {settings.min_lr:g} to {settings.max_lr:g}")
            stopped = ""
            if steps < settings.num_training:
                losses, threshold = finder.results["loss"], settings.early_stop_threshold
                diverged = threshold is not None and losses[-1] > threshold * min(losses)
                stopped = ", stopped early: " + ("the loss diverged" if diverged else "a trainer limit ended it")
            lines = [
                f"Suggested learning rate: {suggestion:.6g}",
                f"  (model.lr was {previous:g}; {steps} of {settings.num_training} steps, {settings.mode} "
                f"from {settings.min_lr:g} to {settings.max_lr:g}{stopped})",
                f"  loss curve: {plot}",
            ]
            if settings.update_config is not None:
                config = self._parser(LR_FIND).dump(self.config[LR_FIND], format="yaml", skip_none=False)
                config = yaml.safe_load(config)
                config.pop(LR_FIND, None)
                write_config_with_lr(config, suggestion, settings.update_config)
                lines.append(f"  configuration with this lr: {settings.update_config} "
                             f"(python train.py fit --config {settings.update_config})")
            print("\n".join(lines))
        self.lr_suggestion = suggestion
        return suggestion

    def after_fit(self) -> None:
        if not self.test_after_fit:
            return
        if not getattr(self.datamodule, "has_test_data", True):
            if self.trainer.is_global_zero:
                print(f"No test data ({type(self.datamodule).__name__} was given none): skipping the test stage. "
                      f"Pass a test file (--data.test PATH) to test after training.")
            return
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if best else None,
                          weights_only=True)


def subcommand_given(parser: LightningArgumentParser, args: list[str]) -> bool | None:
    """Whether ``args`` name a subcommand where ``parser`` (the CLI's main parser) expects one.

    Reads ``args`` as the main parser does: its own options (``--config FILE``,
    ``--print_config``, ``-h``) come first, and the first token that is not one of
    them is the subcommand. True: that token names a subcommand; False: there is
    none (no token left, or an option or value of a subcommand, such as
    ``--data.train train``); None: only the main parser's options, among them
    ``-h``/``--help``, which asks for the main help.
    """
    choices = parser._subcommands_action.choices if parser._subcommands_action is not None else {}
    actions = parser._option_string_actions
    print_config = getattr(parser, "_print_config", None)
    asked_for_help = False
    index = 0
    while index < len(args):
        token = args[index]
        if not token.startswith("-") or token == "-":
            return token in choices
        if token == "--":
            return index + 1 < len(args) and args[index + 1] in choices
        name, has_value = token.split("=", 1)[0], "=" in token
        if name not in actions and not token.startswith("--") and token[:2] in actions:
            name, has_value = token[:2], True  # a short option with its value attached: -cconfig.yaml
        action = actions.get(name)
        if action is None:
            return False  # an option of a subcommand: none was given before it
        if isinstance(action, argparse._HelpAction):
            asked_for_help = True
        nargs = action.nargs
        if has_value or nargs in (0, "?", "*") or name == print_config:
            index += 1
        else:
            index += 1 + (1 if nargs is None else int(nargs) if isinstance(nargs, int) else 1)
    return None if asked_for_help else False


def main(args: list[str] | None = None) -> SentimentCLI:
    """Runs the command line ``args`` (default ``sys.argv[1:]``).

    Without a subcommand it is ``fit`` followed by ``test`` of the best checkpoint.
    Whether one was given is decided by the CLI's own parser (the first token after
    its own options), so option values such as folder names never count as one.
    Returns the CLI, whose ``trainer``, ``model`` and ``datamodule`` hold the run.
    """
    argv = sys.argv[1:] if args is None else list(args)
    return SentimentCLI(args=argv, fit_then_test_by_default=True)
