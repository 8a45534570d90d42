"""Encoded datasets, length-bucketed batches, and the collate function.

Every dataloader of this package yields ``(tokens, lengths, labels)``:

* ``tokens``: LongTensor (B, T), padded with ``PAD_ID`` = 0, T = longest in the batch,
* ``lengths``: LongTensor (B,) on the CPU, every entry >= 1,
* ``labels``: LongTensor (B,) class indices, -1 where the text has no label.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, Sampler

from .text import PAD_ID

NO_LABEL = -1


class EncodedDataset(Dataset):
    """Token ids of N texts stored flat, with one label each.

    Args:
        ids: IntTensor (total,), the token ids of all texts one after another.
        offsets: LongTensor (N + 1,), text ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.
        labels: LongTensor (N,), class indices, -1 for unlabeled texts.
    """

    def __init__(self, ids: torch.Tensor, offsets: torch.Tensor, labels: torch.Tensor) -> None:
        if offsets.dim() != 1 or labels.dim() != 1 or offsets.numel() != labels.numel() + 1:
            raise ValueError(
                f"offsets must have one more entry than labels. Expected {labels.numel() + 1}, got {offsets.numel()}"
            )
        if int(offsets[-1]) != ids.numel():
            raise ValueError(f"offsets[-1] must equal ids.numel(). Expected {ids.numel()}, got {int(offsets[-1])}")
        self.ids = ids
        self.offsets = offsets
        self.labels = labels

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[int]], labels: Sequence[int]) -> "EncodedDataset":
        """Builds the flat storage from one list of token ids per text."""
        if len(rows) != len(labels):
            raise ValueError(f"rows and labels must have the same length, got {len(rows)} and {len(labels)}")
        lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)  # (N,)
        offsets = torch.zeros(len(rows) + 1, dtype=torch.long)  # (N + 1,)
        torch.cumsum(lengths, dim=0, out=offsets[1:])
        ids = torch.tensor([token for row in rows for token in row], dtype=torch.int32)  # (total,)
        return cls(ids, offsets, torch.tensor(list(labels), dtype=torch.long))

    def state(self) -> dict:
        """The tensors, for ``torch.save``; ``EncodedDataset(**state)`` rebuilds it."""
        return {"ids": self.ids, "offsets": self.offsets, "labels": self.labels}

    @property
    def lengths(self) -> torch.Tensor:
        """LongTensor (N,), the number of tokens of each text."""
        return self.offsets[1:] - self.offsets[:-1]

    def __len__(self) -> int:
        return self.labels.numel()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.ids[start:end], int(self.labels[index])


def collate_batch(items: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pads a list of ``(ids, label)`` into ``(tokens, lengths, labels)``."""
    rows = [ids.long() for ids, _ in items]
    lengths = torch.tensor([row.numel() for row in rows], dtype=torch.long)  # (B,)
    tokens = pad_sequence(rows, batch_first=True, padding_value=PAD_ID)  # (B, T)
    labels = torch.tensor([label for _, label in items], dtype=torch.long)  # (B,)
    return tokens, lengths, labels


def distributed_world() -> tuple[int, int]:
    """``(num_replicas, rank)`` of the initialized process group, else ``(1, 0)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of texts of similar length, so that little of each batch is padding.

    Evaluation order (``shuffle=False``) is deterministic: all texts sorted by length,
    cut into batches. Training order (``shuffle=True``) draws a permutation from
    ``seed + epoch``, sorts each pool of ``bucket_size`` batches' worth of texts by
    length, cuts the pools into batches and shuffles the batches. The epoch goes up
    by one after every pass; ``set_epoch`` sets it.

    The texts are cut into ``ceil(N / batch_size)`` batches rounded up to a multiple
    of ``num_replicas``, of near-equal size (never above ``batch_size``), and rank
    ``r`` takes batches ``r, r + num_replicas, ...``: the ranks get disjoint batches
    that together hold every text once, the same number each. (Only when there are
    fewer texts than batches are some texts repeated, as DistributedSampler does.)
    Under DDP, Lightning must leave the sampler alone:
    ``Trainer(use_distributed_sampler=False)``.

    Args:
        lengths: the length of each text, a sequence or LongTensor (N,).
        batch_size: the most texts in a batch.
        shuffle: draw a new order every epoch (training) or keep the sorted order.
        seed: the seed of the training order; the same on every rank.
        bucket_size: how many batches' worth of texts are sorted together when shuffling.
        num_replicas: the number of ranks; None reads it from ``torch.distributed``
            when initialized, else 1.
        rank: this process's rank; None reads it from ``torch.distributed``, else 0.
    """

    def __init__(
        self,
        lengths: Sequence[int] | torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        bucket_size: int = 100,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("bucket_size", bucket_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} should be a positive integer value, but got {name}={value!r}")
        world, own_rank = distributed_world()
        num_replicas = world if num_replicas is None else num_replicas
        rank = own_rank if rank is None else rank
        if num_replicas <= 0:
            raise ValueError(f"num_replicas must be greater than zero, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1)  # (N,)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_size = bucket_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        num_texts = self.lengths.numel()
        self.total_batches = math.ceil(math.ceil(num_texts / batch_size) / num_replicas) * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch that seeds the next training order (as DistributedSampler does)."""
        self.epoch = epoch

    def _order(self, generator: torch.Generator | None) -> torch.Tensor:
        """All indices, arranged so that neighbours have similar lengths."""
        if generator is None:
            return torch.argsort(self.lengths, stable=True)  # (N,)
        order = torch.randperm(self.lengths.numel(), generator=generator)  # (N,)
        pool = self.bucket_size * self.batch_size
        pools = [chunk[torch.argsort(self.lengths[chunk], stable=True)] for chunk in order.split(pool)]
        return torch.cat(pools) if pools else order

    def batches(self) -> list[list[int]]:
        """Every rank's batches, in order (rank ``r`` takes every ``num_replicas``-th)."""
        generator = None
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = self._order(generator)  # (N,)
        if 0 < order.numel() < self.total_batches:  # fewer texts than batches: repeat some
            order = order.repeat(math.ceil(self.total_batches / order.numel()))[: self.total_batches]
        if order.numel() == 0:
            return []
        batches = [chunk.tolist() for chunk in torch.tensor_split(order, self.total_batches)]
        if generator is not None:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: the order is drawn at the first batch, not when iter() is
        # called, so a set_epoch() in between (a resumed run) still takes effect.
        batches = self.batches()[self.rank :: self.num_replicas]
        self.epoch += 1
        yield from batches

    def __len__(self) -> int:
        return self.total_batches // self.num_replicas
