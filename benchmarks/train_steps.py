"""Real training steps of the sentiment model: ``lstm_impl: manual`` against ``torch``.

    python benchmarks/train_steps.py --archive path/to/aclImdb_v1.tar.gz [--sha256 none] [--steps 20]
    python benchmarks/train_steps.py            # the built-in corpus, when no IMDB copy is at hand

It takes the first ``--steps`` training batches of the data module (packed,
variable-length reviews) and runs each of them through one optimizer step of
every model, interleaved (each batch starting with the next model), all models
starting from the same weights. It prints
the median and mean step time, the minutes per epoch estimated from the mean, and
the ratio of the mean to ``torch.nn.LSTM``'s. The mean, not the median, estimates an
epoch: nn.LSTM's packed backward grows faster than linearly with the batch's longest
review, so its step times have a long tail.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from torch_lstm_manual.sentiment.classifier import SentimentClassifier
from torch_lstm_manual.sentiment.data import IMDBDataModule, SyntheticDataModule


def make_data(args):
    if args.archive is None:
        return SyntheticDataModule(batch_size=args.batch_size)
    sha256 = None if args.sha256.lower() == "none" else args.sha256
    return IMDBDataModule(archive=args.archive, sha256=sha256, batch_size=args.batch_size, max_length=args.max_length, num_workers=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", help="an aclImdb tar.gz; without it, the built-in corpus")
    parser.add_argument("--sha256", default="none", help="checksum of the archive, or 'none'")
    parser.add_argument("--steps", type=int, default=20, help="timed batches")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=400)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--pooling", default="last", choices=["last", "max", "mean"])
    parser.add_argument("--impls", nargs="+", default=["torch", "manual:native", "manual:python"])
    args = parser.parse_args()

    data = make_data(args)
    data.prepare_data()
    data.setup("fit")
    loader = data.train_dataloader()
    batches = list(itertools.islice(iter(loader), args.steps + 1))
    per_epoch = len(loader)

    models = {}
    for impl in args.impls:
        kind, _, backend = impl.partition(":")
        torch.manual_seed(0)
        model = SentimentClassifier(
            data.vocab_size, data.num_classes, hidden_size=args.hidden_size, bidirectional=args.bidirectional,
            pooling=args.pooling, lstm_impl=kind,
        )
        if backend:
            model.lstm.backend = backend
        models[impl] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3))

    def step(model, optimizer, batch):
        tokens, lengths, labels = batch
        loss = torch.nn.functional.cross_entropy(model(tokens, lengths), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    times, names = {impl: [] for impl in models}, list(models)
    for k, batch in enumerate(batches):
        for impl in names[k % len(names) :] + names[: k % len(names)]:  # a different one first each batch
            model, optimizer = models[impl]
            start = time.perf_counter()
            step(model, optimizer, batch)
            if k:  # the first batch warms up
                times[impl].append(time.perf_counter() - start)

    mean_len = statistics.mean(float(b[1].float().mean()) for b in batches)
    print(f"{type(data).__name__}: {args.steps} timed steps of batch {args.batch_size}, mean length {mean_len:.0f}, "
          f"{per_epoch} batches per epoch, H={args.hidden_size}, bidirectional={args.bidirectional}, "
          f"{torch.get_num_threads()} threads\n")
    base = statistics.mean(times["torch"]) if "torch" in times else None
    print("| lstm_impl | median step (ms) | mean step (ms) | min–max (ms) | est. min/epoch | mean / torch's |")
    print("|---|---|---|---|---|---|")
    for impl, values in times.items():
        mean = statistics.mean(values)
        ratio = f"{mean / base:.3f}" if base else "-"
        print(f"| {impl} | {statistics.median(values) * 1e3:.0f} | {mean * 1e3:.0f} | {min(values) * 1e3:.0f}–{max(values) * 1e3:.0f} "
              f"| {mean * per_epoch / 60:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
