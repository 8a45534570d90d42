"""Length-bucketed batches, DDP rank slices, the collate function and the encoded dataset."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_lstm_manual.sentiment.data import SyntheticDataModule
from torch_lstm_manual.sentiment.data.batching import BucketBatchSampler, EncodedDataset, collate_batch


def random_lengths(count, seed=0):
    return torch.randint(1, 200, (count,), generator=torch.Generator().manual_seed(seed)).tolist()


def rank_batches(lengths, batch_size, replicas, shuffle, epoch=0, seed=0):
    samplers = [
        BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=seed, num_replicas=replicas, rank=rank)
        for rank in range(replicas)
    ]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    return [list(sampler) for sampler in samplers], samplers


def test_eval_batches_are_sorted_complete_and_deterministic():
    lengths = random_lengths(103)
    sampler = BucketBatchSampler(lengths, batch_size=10)
    batches = list(sampler)
    assert batches == list(sampler)  # deterministic
    assert len(batches) == len(sampler) == 11
    assert sorted(i for batch in batches for i in batch) == list(range(103))
    assert all(len(batch) <= 10 for batch in batches)
    spans = [(min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches]
    assert all(spans[k][1] <= spans[k + 1][0] for k in range(len(spans) - 1))  # sorted by length


def test_train_batches_are_bucketed_and_reshuffled_each_epoch():
    lengths = random_lengths(1000)
    sampler = BucketBatchSampler(lengths, batch_size=20, shuffle=True, seed=1, bucket_size=10)
    first, second = list(sampler), list(sampler)  # the epoch goes up after each pass
    assert first != second
    for batches in (first, second):
        assert sorted(i for batch in batches for i in batch) == list(range(1000))
    sampler.set_epoch(0)
    assert list(sampler) == first  # set_epoch replays an epoch

    def mean_spread(batches):
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)

    unsorted = [list(range(k, k + 20)) for k in range(0, 1000, 20)]
    assert mean_spread(first) < 0.2 * mean_spread(unsorted)  # little padding


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("count, batch_size, replicas", [(100, 8, 2), (101, 7, 3), (5, 4, 4), (64, 64, 2)])
def test_rank_slices_are_disjoint_complete_and_equal(count, batch_size, replicas, shuffle):
    per_rank, samplers = rank_batches(random_lengths(count), batch_size, replicas, shuffle, epoch=3)
    assert len({len(batches) for batches in per_rank}) == 1  # the same number of batches per rank
    assert all(len(batches) == len(sampler) for batches, sampler in zip(per_rank, samplers))
    indices = [i for batches in per_rank for batch in batches for i in batch]
    assert sorted(indices) == list(range(count))  # disjoint and complete
    assert all(0 < len(batch) <= batch_size for batches in per_rank for batch in batches)


def test_fewer_texts_than_ranks_repeats_some():
    per_rank, _ = rank_batches([3, 1, 2], batch_size=4, replicas=4, shuffle=False)
    assert [len(batches) for batches in per_rank] == [1, 1, 1, 1]
    assert set(i for batches in per_rank for batch in batches for i in batch) == {0, 1, 2}


@settings(max_examples=40, deadline=None)
@given(count=st.integers(1, 60), batch_size=st.integers(1, 9), replicas=st.integers(1, 4), shuffle=st.booleans())
def test_rank_slices_property(count, batch_size, replicas, shuffle):
    per_rank, _ = rank_batches(random_lengths(count, seed=count), batch_size, replicas, shuffle)
    assert len({len(batches) for batches in per_rank}) == 1
    indices = sorted(i for batches in per_rank for batch in batches for i in batch)
    if count >= replicas * len(per_rank[0]):
        assert indices == list(range(count))
    else:  # fewer texts than batches: each text at least once
        assert set(indices) == set(range(count))


def test_rank_and_replicas_come_from_torch_distributed(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 3)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 2)
    sampler = BucketBatchSampler(random_lengths(30), batch_size=5, shuffle=True)
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (3, 2, 2)
    expected = sampler.batches()[2::3]  # every rank computes all batches, rank 2 takes every third
    assert list(sampler) == expected and len(expected) == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size should be a positive integer"),
    (dict(batch_size=4, num_replicas=2, rank=2), r"Invalid rank 2, rank should be in the interval \[0, 1\]"),
    (dict(batch_size=4, num_replicas=0, rank=0), "num_replicas must be greater than zero"),
])
def test_sampler_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BucketBatchSampler([1, 2, 3], **kwargs)


def test_collate_pads_with_zero():
    dataset = EncodedDataset.from_rows([[5, 6, 7], [8], [9, 10]], [1, 0, -1])
    tokens, lengths, labels = collate_batch([dataset[i] for i in range(3)])
    assert tokens.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2] and labels.tolist() == [1, 0, -1]
    assert tokens.dtype == lengths.dtype == labels.dtype == torch.long
    assert dataset.lengths.tolist() == [3, 1, 2]
    rebuilt = EncodedDataset(**dataset.state())
    assert [rebuilt[i][0].tolist() for i in range(3)] == [[5, 6, 7], [8], [9, 10]]


def test_encoded_dataset_errors():
    with pytest.raises(ValueError, match="same length"):
        EncodedDataset.from_rows([[1]], [0, 1])
    with pytest.raises(ValueError, match="offsets must have one more entry than labels"):
        EncodedDataset(torch.ones(3, dtype=torch.int32), torch.tensor([0, 3]), torch.tensor([0, 1]))


def test_dataloaders_with_workers_yield_the_batch_tuple():
    data = SyntheticDataModule(num_train=64, num_val=16, num_test=16, batch_size=16, num_workers=1)
    data.setup("fit")
    loader = data.train_dataloader()
    assert loader.persistent_workers
    batches = list(loader)
    assert sum(len(labels) for _, _, labels in batches) == 64
    for tokens, lengths, labels in batches:
        mask = torch.arange(tokens.size(1)) < lengths[:, None]  # (B, T)
        assert (tokens[~mask] == 0).all() and (tokens[mask] != 0).all()
    predictions = list(data.predict_dataloader())  # the input order, for predictions
    assert torch.cat([labels for _, _, labels in predictions]).tolist() == data.test_set.labels.tolist()


def test_lightning_trainer_accepts_the_dataloaders(tmp_path):
    import lightning.pytorch as pl

    class BagOfEmbeddings(pl.LightningModule):
        def __init__(self, vocab_size, num_classes):
            super().__init__()
            self.embed = torch.nn.EmbeddingBag(vocab_size, num_classes, padding_idx=0)

        def forward(self, tokens, lengths):
            return self.embed(tokens)  # (B, C)

        def training_step(self, batch, batch_idx):
            tokens, lengths, labels = batch
            return torch.nn.functional.cross_entropy(self(tokens, lengths), labels)

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.training_step(batch, batch_idx), batch_size=len(batch[2]))

        def predict_step(self, batch, batch_idx):
            return self(*batch[:2]).argmax(-1)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = SyntheticDataModule(num_train=64, num_val=16, num_test=24, batch_size=8)
    model = BagOfEmbeddings(data.vocab_size, data.num_classes)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)
    assert trainer.num_training_batches == 8
    predictions = trainer.predict(model, datamodule=data)
    assert torch.cat(predictions).numel() == 24
