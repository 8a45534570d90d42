"""A bidirectional training step against a unidirectional one, with the two
directions of each layer at once and one after the other.

    python benchmarks/bidirectional_speed.py [--rounds 15] [--budget 60]

float32 on the CPU at torch's default thread count, native loops. Two shapes
of one layer: (T, B, I, H) = (200, 64, 128, 128), padded, and the LSTM of the
IMDB model (configs/imdb.yaml: reviews of up to 400 tokens, packed, lengths
as ``cases.py`` draws them, B = 64, I = H = 128). The variants of a shape run
interleaved in one
process, as in ``speed.py``: each round times each of them in turn (as many
calls as fill 50 ms, after one warm-up call each), starting one further along
the list every round. "one after the other" is the same module with
``runs_both`` (torch_lstm_manual.functional) answering False: the path every
bidirectional layer took before the directions ran at once. Ratios are taken
within a round; the table gives medians and ranges (min-max) over the rounds,
and the share of the machine other processes took during the rounds (from
/proc/stat, as ``speed.py`` measures it).

"unidirectional, one thread" is the unidirectional step with torch set to one
thread: with two threads, the directions at once run one on each thread, so a
bidirectional step costs at least that much, and its ratio to the unidirectional
step bounds what running the directions at once can reach on two cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import replace

import torch

from cases import Case, make_batch, make_model, model_input, train_step
from speed import _machine_busy_seconds, _others_share

import torch_lstm_manual.functional as functional

SHAPES = {
    "(200, 64, 128, 128)": Case(200, 64, 128, 128),
    "IMDB model (400 packed, 64, 128, 128)": Case(400, 64, 128, 128, packed=True),
}


@contextmanager
def one_after_the_other(on: bool):
    """The directions of every layer one after the other while ``on``."""
    runs_both = getattr(functional, "runs_both", None)
    if on and runs_both is not None:
        functional.runs_both = lambda *args: False
    try:
        yield
    finally:
        if runs_both is not None:
            functional.runs_both = runs_both


def on_one_thread(step):
    """``step`` run with torch (and so the native loops) on one thread."""
    def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            step()
        finally:
            torch.set_num_threads(threads)
    return run


def variants(case: Case) -> dict:
    """name -> (step, one after the other): a training step of each model."""
    x, lengths = make_batch(case)
    out = {}
    for bidirectional in (False, True):
        model = make_model(replace(case, bidirectional=bidirectional), "native")
        inp = model_input(case, "native", x, lengths, requires_grad=True)
        step = (lambda model, inp: lambda: train_step(model, inp))(model, inp)
        if bidirectional:
            out["bidirectional, at once"] = (step, False)
            out["bidirectional, one after the other"] = (step, True)
        else:
            out["unidirectional"] = (step, False)
            out["unidirectional, one thread"] = (on_one_thread(step), False)
    return out


def timed(step, sequential: bool, fill: float = 0.05) -> float:
    """Seconds per call: as many calls as fill ``fill`` seconds."""
    with one_after_the_other(sequential):
        start, calls = time.perf_counter(), 0
        while True:
            step()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= fill:
                return elapsed / calls


def bench(case: Case, rounds: int, budget: float):
    """({variant: [seconds per step, by round]}, [others' share, by round])."""
    runs = variants(case)
    names = list(runs)
    for step, sequential in runs.values():
        timed(step, sequential, fill=0)  # warm-up: the native build, the kept buffers
    times, shares = {n: [] for n in names}, []
    deadline = time.perf_counter() + budget
    for r in range(rounds):
        start = (time.perf_counter(), _machine_busy_seconds(), sum(os.times()[:2]))
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            times[name].append(timed(*runs[name]))
        shares.append(_others_share(start))
        if time.perf_counter() > deadline and r >= 2:
            break
    return times, shares


def spread(values) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="rounds per shape, at most")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per shape, about (at least 3 rounds)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, native loops\n")
    for label, case in SHAPES.items():
        times, shares = bench(case, args.rounds, args.budget)
        rounds = len(shares)
        print(f"### {label}: {rounds} rounds, others' share of the machine {spread(shares)}\n")
        print("| variant | ms per step, median (min-max) | / unidirectional, median (min-max) |")
        print("|---|---|---|")
        for name, ts in times.items():
            ratios = [t / u for t, u in zip(ts, times["unidirectional"])]
            ms = [1e3 * t for t in ts]
            print(f"| {name} | {statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f}) | {spread(ratios)} |")
        print()


if __name__ == "__main__":
    main()
