"""Speed of our LSTMCell against torch.nn.LSTMCell in a Python loop, as a Markdown table of time ratios.

    python benchmarks/cell_speed.py              # B = 64 and B = 1, about a minute
    python benchmarks/cell_speed.py --profile    # and where the time of one of our loops goes
    python benchmarks/cell_speed.py --threads 1  # one thread (a machine shared with other work)

A cell is called in a Python loop (decoders, attention, custom recurrences), so
the case is such a loop: 200 steps of ``h, c = cell(x_t, (h, c))``, I = H = 128,
float32 on the CPU at torch's default thread count. ``train`` runs the loop
and the backward pass of a loss on every state (``sum_t (h_t . g_t + c_t . g'_t)``
with fixed random ``g``); ``inference`` runs the loop under ``no_grad``.

As in ``speed.py``, the implementations run interleaved in one process: each
round times each of them in turn (one loop, or as many as fill 20 ms), after
one warm-up each, and each round starts one further along the list. A ratio is
ours / nn.LSTMCell within the same round (below 1 = ours is faster); the table
gives its median and range (min-max) over the rounds. Rounds during which other
processes took more than 10% of the CPUs are run again, up to 3 times; a ``*``
after the round count marks a row that kept some.

Targets: train at B = 64 at most 1.0x, at B = 1 (where the cost of a call, not
its arithmetic, dominates) at most 1.5x.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch
from torch import nn

from speed import CONTENTION_LIMIT, RETRIES, _machine_busy_seconds, _others_share, ratio_cell, timed

from torch_lstm_manual import LSTMCell
from torch_lstm_manual.lstm import resolve_backend

STEPS, SIZE = 200, 128


def make_cells(native: bool) -> dict:
    """``{name: cell}``, every one with nn.LSTMCell's weights."""
    torch.manual_seed(0)
    cells = {"nn": nn.LSTMCell(SIZE, SIZE)}
    for backend in ("python", "native") if native else ("python",):
        cells[backend] = LSTMCell(SIZE, SIZE, backend=backend)
        cells[backend].load_state_dict(cells["nn"].state_dict(), strict=True)
    return cells


def make_call(cell, xs, upstream, mode: str):
    """One loop of ``STEPS`` steps over ``xs`` (T, B, I); in ``train`` mode,
    forward and backward of the loss on every state."""

    def loop():
        h = c = None
        states = []
        for x in xs:
            h, c = cell(x, None if h is None else (h, c))
            states += (h, c)
        return states

    if mode == "inference":
        def call():
            with torch.no_grad():
                loop()
    else:
        def call():
            cell.zero_grad(set_to_none=True)
            xs.grad = None
            loss = sum((s * g).sum() for s, g in zip(loop(), upstream))
            loss.backward()
    return call


def bench(batch: int, mode: str, budget: float, max_rounds: int, native: bool) -> tuple:
    """Seconds per loop of every implementation, by round: ``({name: [t, ...]}, contended rounds kept)``."""
    cells = make_cells(native)
    gen = torch.Generator().manual_seed(1)
    xs = torch.randn(STEPS, batch, SIZE, generator=gen).requires_grad_(mode == "train")
    upstream = [torch.randn(batch, SIZE, generator=gen) for _ in range(2 * STEPS)]
    calls = {name: make_call(cell, xs, upstream, mode) for name, cell in cells.items()}
    first = {name: timed(call, 1) for name, call in calls.items()}  # warm-up
    repeats = {name: max(1, math.ceil(0.02 / t)) for name, t in first.items()}
    rounds = int(min(max_rounds, max(3, budget // max(sum(first.values()), 1e-9))))
    times, contended, names = {name: [] for name in calls}, 0, list(calls)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for attempt in range(RETRIES + 1):
            start = (time.perf_counter(), _machine_busy_seconds(), sum(os.times()[:2]))
            sample = {name: timed(calls[name], repeats[name]) for name in order}
            busy = _others_share(start) > CONTENTION_LIMIT
            if not busy or attempt == RETRIES:
                break
        contended += busy
        for name, t in sample.items():
            times[name].append(t)
    return times, contended


def profile(batch: int, backend: str) -> None:
    """torch.profiler's table of one training loop of ours, by self CPU time."""
    cells = make_cells(backend == "native")
    xs = torch.randn(STEPS, batch, SIZE, requires_grad=True)
    upstream = [torch.randn(batch, SIZE) for _ in range(2 * STEPS)]
    call = make_call(cells[backend], xs, upstream, "train")
    call()
    with torch.profiler.profile() as prof:
        call()
    print(f"\nProfile of one training loop, B={batch}, backend={backend}:\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of rounds per batch size and mode")
    parser.add_argument("--max-rounds", type=int, default=30)
    parser.add_argument("--profile", action="store_true", help="also profile one training loop of ours")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    native = resolve_backend("auto", torch.zeros(1)) == "native"

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, native loops: {native}")
    print(f"{STEPS} steps of a cell in a Python loop, I = H = {SIZE}. Ratios ours / nn.LSTMCell: median (min-max)")
    print(f"over interleaved rounds; below 1 = ours faster. Rounds where other processes took >{CONTENTION_LIMIT:.0%}")
    print("of the CPUs are rerun; * = some kept anyway.\n")
    print("| B | mode | rounds | nn.LSTMCell ms | python | native |")
    print("|---|---|---|---|---|---|")
    for batch in (64, 1):
        for mode in ("train", "inference"):
            t, contended = bench(batch, mode, args.budget, args.max_rounds, native)
            cell = lambda ours: ratio_cell(t[ours], t["nn"]) if ours in t else ""  # noqa: E731
            print(
                f"| {batch} | {mode} | {len(t['nn'])}{'*' * bool(contended)} | {statistics.median(t['nn']) * 1e3:.1f} "
                f"| {cell('python')} | {cell('native')} |",
                flush=True,
            )
    if args.profile:
        for batch in (64, 1):
            profile(batch, "native" if native else "python")


if __name__ == "__main__":
    main()
