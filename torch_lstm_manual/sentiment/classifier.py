"""``SentimentClassifier``: embedding -> LSTM over the packed reviews -> linear head.

Every batch is ``(tokens, lengths, labels)`` as the data modules of
``torch_lstm_manual.sentiment.data`` yield it: tokens (B, T) padded with 0, lengths (B,)
on the CPU, labels (B,) (-1 where unknown). The reviews are packed, so no step of
the LSTM runs on padding. A review is represented by the final hidden state
``h_n`` of the last layer (both directions side by side when bidirectional), or
by the maximum or mean of the last layer's outputs over the review's own steps.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
from torchmetrics.classification import MulticlassAccuracy

LSTM_IMPLS = ("manual", "torch")
OPTIMIZERS = ("adamw", "sgd")
LR_SCHEDULES = ("none", "cosine", "onecycle")
POOLINGS = ("last", "max", "mean")
# The options of this package's LSTM that torch.nn.LSTM has no counterpart for, with their "off" values.
LSTM_VARIANTS = {
    "layer_norm": False,
    "peepholes": False,
    "zoneout_cell": 0.0,
    "zoneout_hidden": 0.0,
    "recurrent_dropout": 0.0,
    "weight_drop": 0.0,
}


def _check_int(name: str, value: object, smallest: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < smallest:
        raise ValueError(f"{name} must be at least {smallest}, got {value}")


def _check_float(name: str, value: object, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} should be a number, got: {type(value).__name__}")
    if value < low or (high is not None and value > high) or math.isnan(value):
        bounds = f"in range [{low}, {high}]" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bounds}, got {value}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def embedding_dropout(embedding: nn.Embedding, tokens: Tensor, p: float, training: bool = True) -> Tensor:
    """The embeddings (*, E) of the token ids ``tokens`` (*) with whole words dropped.

    Embedding dropout of AWD-LSTM (Merity et al., 2017, "Regularizing and Optimizing
    LSTM Language Models"): in training, each row of ``embedding.weight`` (each entry of
    the vocabulary) is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``,
    or zeroed with probability ``p``, one draw per row per call. Every occurrence of a
    word in the call gets the same draw, so a dropped word is absent from the whole
    batch rather than from some positions. Gradients reach the kept rows only (and
    never the ``padding_idx`` row, as with ``nn.Embedding``). With ``training=False``
    or ``p=0`` this is ``embedding(tokens)``.

    Args:
        embedding: the embedding whose rows are dropped (its ``padding_idx`` is kept).
        tokens: token ids (*), ``0 .. embedding.num_embeddings - 1``.
        p: the probability of dropping a word, in ``[0, 1)``.
        training: drop words (True) or return the plain embeddings (False).
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"embedding_dropout p should be a number, got: {type(p).__name__}")
    if not 0 <= p < 1:
        raise ValueError(
            f"embedding_dropout p must be in range [0, 1) (the probability of dropping a word), got {p}"
        )
    if not training or p == 0:
        return embedding(tokens)
    weight = embedding.weight  # (V, E)
    keep = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p) / (1 - p)  # (V, 1): one draw per word
    return F.embedding(tokens, weight * keep, embedding.padding_idx)  # (*, E)


def packed_max(sequence: PackedSequence) -> Tensor:
    """The element-wise maximum (B, F) of each sequence's own steps of ``sequence``
    (packed rows (N, F)), in the batch's original order.

    The maxima are found without autograd and read back from the packed rows by
    one ``gather``, so the backward pass is one scatter of (B, F) values into zeros
    (N, F), where ``amax`` over the padded (B, T, F) steps would unpack, compare and
    pack again. Where a sequence holds its maximum at several steps, the gradient
    goes to the first of them (``amax`` would share it out).
    """
    data = sequence.data  # (N, F)
    with torch.no_grad():
        rows = torch.arange(data.size(0), device=data.device)
        index, _ = pad_packed_sequence(sequence._replace(data=rows), batch_first=True, padding_value=-1)  # (B, T')
        values = data.detach()[index.clamp(min=0)]  # (B, T', F)
        values.masked_fill_((index < 0).unsqueeze(-1), float("-inf"))
        first = values.argmax(dim=1)  # (B, F): the step of each maximum
        source = index.gather(1, first)  # (B, F): its packed row
    return data.gather(0, source)  # (B, F)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """The learning-rate factor at ``step``: linear from 0 to 1 over ``warmup_steps``,
    then a half cosine from 1 down to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class SentimentClassifier(LightningModule):
    """Embedding -> LSTM -> dropout -> linear, trained with cross-entropy.

    Args:
        vocab_size: rows of the embedding (token ids are ``0 .. vocab_size - 1``, 0 is padding).
            Linked from the data module's ``vocab_size`` by ``train.py``.
        num_classes: classes to tell apart (2 for positive/negative). Linked from the data module.
        embedding_dim: features of each token's embedding.
        hidden_size: features of the LSTM's cell state (and of ``h`` without projection).
        num_layers: stacked LSTM layers.
        bidirectional: run each layer in both directions; the representation is both
            directions' final ``h`` side by side.
        proj_size: size of the projection of ``h`` in the LSTM (0: none).
        dropout: dropout between LSTM layers (needs ``num_layers > 1``).
        head_dropout: dropout on the representation, before the linear head.
        pooling: the representation of a review: ``"last"``, the final ``h`` of the last
            layer (each direction's, side by side); ``"max"`` or ``"mean"``, the
            element-wise maximum or mean of the last layer's outputs over the review's
            own steps (padding never counts).
        lstm_impl: ``"manual"``: this package's hand-derived ``LSTM``; ``"torch"``:
            ``torch.nn.LSTM`` with the same everything, for side-by-side comparison.
        optimizer: ``"adamw"`` or ``"sgd"`` (plain SGD with ``momentum``).
        lr: the learning rate (the peak rate with a schedule).
        weight_decay: decoupled weight decay for AdamW, L2 penalty for SGD.
        momentum: SGD momentum (ignored by AdamW); 0 for plain SGD.
        lr_schedule: ``"none"`` (constant), ``"cosine"`` (linear warm-up then cosine
            decay to 0 over the whole run) or ``"onecycle"`` (``torch.optim.lr_scheduler.OneCycleLR``).
            Both step every optimizer step and need a run of known length (``max_epochs`` or ``max_steps``).
        warmup_fraction: the fraction of the run spent warming up (``"cosine"``) or
            rising to the peak (``"onecycle"``'s ``pct_start``).
        embedding_dropout: the probability, in ``[0, 1)``, of dropping a word (a whole row
            of the embedding) in training: see ``embedding_dropout``.
        layer_norm: layer-normalise the LSTM's input and recurrent products of the gates,
            and its cell state before the tanh.
        peepholes: the LSTM's cell state enters its gates i, f and o (peephole weights).
        zoneout_cell: the probability that a unit of the LSTM's ``c`` keeps its previous
            value at a step, in training (in eval, the expectation).
        zoneout_hidden: the same for ``h``.
        recurrent_dropout: dropout on ``h_{t-1}`` where it enters ``W_hh``, one mask per
            review, layer and direction (variational).
        weight_drop: dropout on the weights ``W_hh`` (DropConnect), one mask per batch.

    The last six are the variant options of this package's ``LSTM``, which checks
    their values; ``lstm_impl="torch"`` cannot express any of them, and setting one
    with it is a ``ValueError`` naming it.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        embedding_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        proj_size: int = 0,
        dropout: float = 0.0,
        head_dropout: float = 0.2,
        pooling: Literal["last", "max", "mean"] = "last",
        lstm_impl: Literal["manual", "torch"] = "manual",
        optimizer: Literal["adamw", "sgd"] = "adamw",
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        momentum: float = 0.9,
        lr_schedule: Literal["none", "cosine", "onecycle"] = "none",
        warmup_fraction: float = 0.1,
        embedding_dropout: float = 0.0,
        layer_norm: bool = False,
        peepholes: bool = False,
        zoneout_cell: float = 0.0,
        zoneout_hidden: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
    ) -> None:
        super().__init__()
        _check_int("vocab_size", vocab_size, 2)
        _check_int("num_classes", num_classes, 2)
        _check_int("embedding_dim", embedding_dim, 1)
        _check_choice("lstm_impl", lstm_impl, LSTM_IMPLS)
        _check_choice("pooling", pooling, POOLINGS)
        _check_choice("optimizer", optimizer, OPTIMIZERS)
        _check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        _check_float("head_dropout", head_dropout, 0.0, 1.0)
        _check_float("lr", lr, 0.0)
        _check_float("weight_decay", weight_decay, 0.0)
        _check_float("momentum", momentum, 0.0)
        _check_float("warmup_fraction", warmup_fraction, 0.0, 1.0)
        _check_float("embedding_dropout", embedding_dropout, 0.0)
        if embedding_dropout >= 1:
            raise ValueError(
                f"embedding_dropout must be in range [0, 1) (the probability of dropping a word), got {embedding_dropout}"
            )
        variants = dict(
            layer_norm=layer_norm, peepholes=peepholes, zoneout_cell=zoneout_cell, zoneout_hidden=zoneout_hidden,
            recurrent_dropout=recurrent_dropout, weight_drop=weight_drop,
        )
        if lstm_impl == "torch":
            for name, value in variants.items():
                if value != LSTM_VARIANTS[name]:
                    raise ValueError(
                        f"{name}={value!r} needs lstm_impl='manual': torch.nn.LSTM (lstm_impl='torch') cannot "
                        f"express {name}; leave it at {LSTM_VARIANTS[name]!r} or choose lstm_impl='manual'"
                    )
        self.save_hyperparameters()

        # The LSTM checks hidden_size, num_layers, proj_size and dropout with nn.LSTM's own
        # messages, and the variant options with its own.
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        if lstm_impl == "manual":
            from torch_lstm_manual import LSTM  # the core, imported only when used

            self.lstm = LSTM(
                embedding_dim, hidden_size, num_layers=num_layers, batch_first=True,
                dropout=dropout, bidirectional=bidirectional, proj_size=proj_size, **variants,
            )
        else:
            self.lstm = nn.LSTM(
                embedding_dim, hidden_size, num_layers=num_layers, batch_first=True,
                dropout=dropout, bidirectional=bidirectional, proj_size=proj_size,
            )
        self.num_directions = 2 if bidirectional else 1
        features = (proj_size or hidden_size) * self.num_directions
        self.head_dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(features, num_classes)

        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    # ------------------------------------------------------------------
    # Model

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Class logits (B, C) of the padded token ids ``tokens`` (B, T) whose
        true lengths (B,) are ``lengths``; padding never enters the LSTM."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be a 2-D (B, T) tensor of token ids, got shape {tuple(tokens.shape)}")
        if lengths.shape != tokens.shape[:1]:
            raise ValueError(
                f"lengths must have one entry per row of tokens. Expected shape ({tokens.size(0)},), "
                f"got {tuple(lengths.shape)}"
            )
        out, h_n = self.encode(self.embed(tokens), lengths)
        return self.classify(out, h_n)

    # The three parts of ``forward``, each usable alone (``benchmarks/profile_training.py`` times them).

    def embed(self, tokens: Tensor) -> Tensor:
        """The embeddings (B, T, E) of the token ids (B, T), with embedding dropout in training."""
        return embedding_dropout(self.embedding, tokens, self.hparams.embedding_dropout, self.training)

    def encode(self, emb: Tensor, lengths: Tensor) -> tuple[PackedSequence, Tensor]:
        """The LSTM over the embeddings (B, T, E), packed by ``lengths`` (B,): its packed
        outputs and its final ``h_n`` (L * D, B, P), in the batch's original order."""
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.lstm(packed)
        return out, h_n

    def classify(self, out: PackedSequence, h_n: Tensor) -> Tensor:
        """The class logits (B, C) from the LSTM's packed outputs and final ``h_n``: pooling, dropout, head."""
        pooling = self.hparams.pooling
        if pooling == "last":
            last = h_n[-self.num_directions :]  # (D, B, P): the last layer's directions
            features = last.transpose(0, 1).reshape(h_n.size(1), -1)  # (B, D * P)
        elif pooling == "max":
            features = packed_max(out)  # (B, D * P)
        else:  # over each review's own steps: padding is 0
            steps, lens = pad_packed_sequence(out, batch_first=True)  # (B, T', D * P), (B,)
            features = steps.sum(dim=1) / lens.to(steps.device, steps.dtype).unsqueeze(1)  # (B, D * P)
        return self.head(self.head_dropout(features))  # (B, C)

    def _shared_step(self, batch, stage: str, metric: MulticlassAccuracy) -> Tensor:
        tokens, lengths, labels = batch  # (B, T), (B,), (B,)
        logits = self(tokens, lengths)  # (B, C)
        loss = F.cross_entropy(logits, labels)
        metric.update(logits, labels)
        batch_size = labels.size(0)
        # Epoch means; under DDP the loss is averaged over the ranks at the epoch's
        # end (sync_dist) and the accuracy metric syncs its own counts.
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=batch_size,
                 sync_dist=True, prog_bar=stage == "train")
        self.log(f"{stage}_acc", metric, on_step=False, on_epoch=True, batch_size=batch_size,
                 prog_bar=stage == "val")
        return loss

    def training_step(self, batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train", self.train_acc)

    def validation_step(self, batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test", self.test_acc)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Class probabilities (B, C) of a ``(tokens, lengths, labels)`` batch (labels ignored)."""
        tokens, lengths = batch[0], batch[1]
        return torch.softmax(self(tokens, lengths), dim=-1)  # (B, C)

    # ------------------------------------------------------------------
    # Optimization

    def configure_optimizers(self):
        hp = self.hparams
        # The fused implementations update every tensor in one kernel per parameter: on the CPU
        # AdamW's step over the 2.6 M embedding weights of the IMDB model takes 2.4 ms instead of 39.
        fused = all(p.device.type in ("cpu", "cuda") for p in self.parameters()) or None
        if hp.optimizer == "adamw":
            optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, fused=fused)
        else:
            optimizer = torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
                                        fused=fused)
        if hp.lr_schedule == "none":
            return optimizer
        total_steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(total_steps) or total_steps < 1:
            raise ValueError(
                f"lr_schedule={hp.lr_schedule!r} needs a run of known length: set trainer.max_epochs or "
                f"trainer.max_steps (the trainer estimates {total_steps} optimizer steps)"
            )
        total_steps = int(total_steps)
        if hp.lr_schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=hp.lr, total_steps=total_steps, pct_start=hp.warmup_fraction,
                cycle_momentum=hp.optimizer == "sgd" and hp.momentum > 0,
            )
        else:
            warmup_steps = int(hp.warmup_fraction * total_steps)
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: warmup_cosine(step, total_steps, warmup_steps)
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
