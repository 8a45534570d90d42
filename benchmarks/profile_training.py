"""Where the time of a training step of the sentiment model goes, piece by piece.

    python benchmarks/profile_training.py --config configs/imdb.yaml --data.archive aclImdb_v1.tar.gz
    python benchmarks/profile_training.py --steps 40    # the built-in corpus

Every option after the script's own (``--steps``, ``--warmup``) is one of
``train.py fit``'s: the model, the data module and the trainer's gradient clipping
are built from them exactly as that command builds them. The script then runs
``--steps`` optimizer steps on the first training batches (after ``--warmup``
untimed ones), each split into pieces timed with ``time.perf_counter``:

* data: fetching the batch from the training ``DataLoader`` (its workers included);
* forward: the embedding (with embedding dropout), the LSTM (packing included),
  and the rest (pooling, head dropout, head, loss);
* backward, in stages by ``torch.autograd.backward`` on detached copies of the
  pieces' outputs: the rest, the LSTM, the embedding;
* optimizer: gradient clipping (``trainer.gradient_clip_val``), the optimizer's step
  and ``zero_grad``. The learning-rate schedule is left out: it needs the run length
  that a fitting trainer estimates, and its step is a few scalar operations.

It prints the mean milliseconds of each piece and its share of the step. Staging the
backward costs a little (detached copies, three calls of the autograd engine), so the
pieces add up to slightly more than a step run straight. Lightning's own share of a
step (its loops, hooks, logging and the metric updates of ``training_step``) is what
``python train.py fit ... --trainer.profiler simple`` reports beyond these pieces.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence

from torch_lstm_manual.sentiment.cli import SentimentCLI

PIECES = (
    "data", "forward: embedding", "forward: LSTM", "forward: pooling, head, loss",
    "backward: pooling, head, loss", "backward: LSTM", "backward: embedding", "optimizer",
)


def leaf(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().requires_grad_(tensor.requires_grad)


def timed_step(model, batch, optimizer, clip: float | None, times: dict[str, list[float]]) -> None:
    """One optimizer step of ``model`` on ``batch``, each piece's seconds appended to ``times``."""
    tokens, lengths, labels = batch
    clock = time.perf_counter

    start = clock()
    emb = model.embed(tokens)
    t_embed = clock()
    emb_in = leaf(emb)
    out, h_n = model.encode(emb_in, lengths)
    t_lstm = clock()
    out_in = PackedSequence(leaf(out.data), out.batch_sizes, out.sorted_indices, out.unsorted_indices)
    h_n_in = leaf(h_n)
    loss = F.cross_entropy(model.classify(out_in, h_n_in), labels)
    t_rest = clock()

    loss.backward()
    t_back_rest = clock()
    pairs = [(t, leaf_t.grad) for t, leaf_t in ((out.data, out_in.data), (h_n, h_n_in)) if leaf_t.grad is not None]
    torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
    t_back_lstm = clock()
    if emb.requires_grad:
        emb.backward(emb_in.grad)
    t_back_embed = clock()

    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    t_opt = clock()

    marks = (start, t_embed, t_lstm, t_rest, t_back_rest, t_back_lstm, t_back_embed, t_opt)
    for name, begin, end in zip(PIECES[1:], marks, marks[1:]):
        times[name].append(end - begin)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before them (default 3)")
    args, fit_options = parser.parse_known_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps must be at least 1 and --warmup at least 0, got {args.steps} and {args.warmup}")
    cli = SentimentCLI(args=fit_options, run=False)
    model, data = cli.model, cli.datamodule
    data.prepare_data()
    data.setup("fit")
    loader = data.train_dataloader()
    model.hparams.lr_schedule = "none"
    optimizer = model.configure_optimizers()
    clip = cli.trainer.gradient_clip_val
    model.train()

    times: dict[str, list[float]] = defaultdict(list)
    batches = iter(loader)
    for index in range(args.warmup + args.steps):
        start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            parser.error(f"the training data has {index} batches, fewer than --warmup + --steps")
        fetched = time.perf_counter() - start
        step_times = defaultdict(list)
        timed_step(model, batch, optimizer, clip, step_times)
        if index >= args.warmup:
            times["data"].append(fetched)
            for name, values in step_times.items():
                times[name].extend(values)

    means = {name: statistics.mean(times[name]) * 1e3 for name in PIECES}
    total = sum(means.values())
    lstm = model.lstm
    print(f"{type(data).__name__}, {type(lstm).__module__}.{type(lstm).__name__} "
          f"(backend {getattr(lstm, 'backend', '-')}), {args.steps} steps after {args.warmup} untimed, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| piece | mean ms | share |")
    print("|---|---|---|")
    for name in PIECES:
        print(f"| {name} | {means[name]:.1f} | {means[name] / total:.1%} |")
    print(f"| step | {total:.1f} | 100% |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
