"""An exponential moving average of the model's weights, validated, checkpointed and
kept at the end of training in place of the weights themselves: the averaging of
AWD-LSTM's averaged SGD, for any optimizer.

    trainer:
      callbacks:
        - class_path: torch_lstm_manual.sentiment.averaging.AveragedWeights
          init_args: {decay: 0.999, start_epoch: 2}
"""

from __future__ import annotations

import numbers

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn


class AveragedWeights(WeightAveraging):
    """Lightning's ``WeightAveraging`` with an exponential moving average
    ``avg = decay * avg + (1 - decay) * w`` of the parameters, updated after
    every optimizer step from epoch ``start_epoch`` (0-based) on, the first
    update copying them.

    Once there is an average, validation (and so the choice of the best
    checkpoint) runs on it, the checkpoints' ``state_dict`` holds it (the
    weights themselves under ``current_model_state``, for a resumed run) and
    the model ends training with it; before, everything runs on the weights
    themselves. Outside ``fit`` (``test``, ``predict`` from a checkpoint) it
    does nothing: the checkpoint's ``state_dict`` is already the average.

    Args:
        decay: in (0, 1); the average's horizon is about ``1 / (1 - decay)`` steps.
        start_epoch: the first epoch whose steps update the average.
    """

    def __init__(self, decay: float = 0.999, start_epoch: int = 0) -> None:
        if not isinstance(decay, numbers.Real) or isinstance(decay, bool) or not 0 < decay < 1:
            raise ValueError(f"decay must be a number in (0, 1), got {decay!r}")
        if not isinstance(start_epoch, int) or isinstance(start_epoch, bool) or start_epoch < 0:
            raise ValueError(f"start_epoch must be an int >= 0, got {start_epoch!r}")
        super().__init__(multi_avg_fn=get_ema_multi_avg_fn(float(decay)))
        self.decay, self.start_epoch = float(decay), start_epoch
        self._epoch = 0

    def should_update(self, step_idx=None, epoch_idx=None) -> bool:
        return step_idx is not None and self._epoch >= self.start_epoch

    def _averaged(self) -> bool:
        """Whether there is an average: fit has begun and some step updated it."""
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        self._epoch = trainer.current_epoch
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._averaged():
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._averaged():
            super().on_validation_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._averaged():
            super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        if self._averaged():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        if self._average_model is None:
            return  # not fitting: the checkpoint's state_dict is what runs
        if "averaging_state" in checkpoint:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
        # Else the checkpoint was saved before any average: the next update starts one.
