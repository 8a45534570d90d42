"""Speed of our LSTM against torch.nn.LSTM, as a Markdown table of time ratios.

    python benchmarks/speed.py            # every case, about 5-10 minutes
    python benchmarks/speed.py --quick    # four small cases, about a minute

float32 on the CPU at torch's default thread count. For every case (see
``cases.py``) and both modes, inference (forward under ``no_grad``) and a
training step (forward and backward of a loss on all outputs), the
implementations run interleaved in one process: each round times each of them
in turn (one call, or as many as fill 20 ms), after one warm-up call each, and
each round starts one further along the list, so that none always runs first. A
ratio is ours / nn.LSTM within the same round (below 1 = ours is faster); the
table gives its median and its range (min-max) over the rounds. Packed cases
also compare with nn.LSTM on the padded tensor (``/pad``), what a user
without packing would run.

On a shared machine, a round during which other processes took more than 10%
of the CPUs (from /proc/stat, less this process's own CPU time) is run again,
up to 3 times; a ``*`` after the round count marks a row that kept some.

Rounds: as many as fit in ``--budget`` seconds per case and mode, at least 3,
at most ``--max-rounds``. nn.LSTM's backward on a PackedSequence grows with
the square of T (seconds per step at T=400), so those cases get 3 rounds.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from cases import CASES, QUICK, impls_for, infer, input_leaf, make_batch, make_model, model_input, train_step

from torch_lstm_manual.lstm import resolve_backend


CONTENTION_LIMIT = 0.10  # share of the machine other processes may take during a kept round
RETRIES = 3


def _machine_busy_seconds() -> float:
    """CPU seconds all processes have run, from /proc/stat (nan where there is none)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _others_share(start: tuple) -> float:
    """Share of the machine's CPU time that other processes took since ``start``."""
    wall, busy, own = time.perf_counter() - start[0], _machine_busy_seconds() - start[1], sum(os.times()[:2]) - start[2]
    return max(0.0, busy - own) / (wall * (os.cpu_count() or 1))


def timed(fn, repeats: int) -> float:
    """Seconds per call of ``fn``, over ``repeats`` calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def bench(case, mode: str, budget: float, max_rounds: int, native: bool) -> tuple:
    """Seconds per call of every implementation, by round: ``({impl: [t, ...]}, contended rounds kept)``.

    A round during which other processes took more than CONTENTION_LIMIT of
    the machine is run again (RETRIES times at most) and kept only if no
    attempt was quiet. Calls shorter than 20 ms are repeated within a round.
    """
    x, lengths = make_batch(case)
    reference = make_model(case, "nn")
    calls = {}
    for impl in impls_for(case):
        if impl == "native" and not native:
            continue
        model = reference if impl.startswith("nn") else make_model(case, impl)
        model.load_state_dict(reference.state_dict())
        inp = model_input(case, impl, x, lengths, requires_grad=mode == "train")
        if mode == "train":
            def call(model=model, inp=inp):
                model.zero_grad(set_to_none=True)
                input_leaf(inp).grad = None
                train_step(model, inp)
        else:
            def call(model=model, inp=inp):
                infer(model, inp)
        calls[impl] = call
    first = {impl: timed(call, 1) for impl, call in calls.items()}  # warm-up
    repeats = {impl: max(1, math.ceil(0.02 / t)) for impl, t in first.items()}
    rounds = int(min(max_rounds, max(3, budget // max(sum(first.values()), 1e-9))))
    times, contended = {impl: [] for impl in calls}, 0
    names = list(calls)
    for r in range(rounds):
        # Each round starts with the next implementation: the one that runs
        # right after another pays for the memory that one freed (page faults).
        order = names[r % len(names) :] + names[: r % len(names)]
        for attempt in range(RETRIES + 1):
            start = (time.perf_counter(), _machine_busy_seconds(), sum(os.times()[:2]))
            sample = {impl: timed(calls[impl], repeats[impl]) for impl in order}
            busy = _others_share(start) > CONTENTION_LIMIT
            if not busy or attempt == RETRIES:
                break
        contended += busy
        for impl, t in sample.items():
            times[impl].append(t)
    return times, contended


def ratio_cell(ours: list, theirs: list) -> str:
    ratios = sorted(a / b for a, b in zip(ours, theirs))
    return f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="four small cases, a short budget")
    parser.add_argument("--budget", type=float, help="seconds of rounds per case and mode (default 12, quick 2)")
    parser.add_argument("--max-rounds", type=int, default=30)
    args = parser.parse_args()
    budget = args.budget if args.budget is not None else (2.0 if args.quick else 12.0)
    torch.manual_seed(0)
    native = resolve_backend("auto", torch.zeros(1)) == "native"

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, native loops: {native}")
    print("Ratios ours / nn.LSTM: median (min-max) over interleaved rounds; below 1 = ours faster.")
    print(f"Rounds where other processes took >{CONTENTION_LIMIT:.0%} of the CPUs are rerun; * = some kept anyway.\n")
    print("| case | mode | rounds | nn.LSTM ms | python | native | nn.LSTM padded ms | python /pad | native /pad |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in QUICK if args.quick else CASES:
        for mode in ("inference", "train"):
            t, contended = bench(case, mode, budget, args.max_rounds, native)
            ms = lambda impl: f"{statistics.median(t[impl]) * 1e3:.1f}" if impl in t else ""  # noqa: E731
            cell = lambda ours, ref: ratio_cell(t[ours], t[ref]) if ours in t and ref in t else ""  # noqa: E731
            print(
                f"| {case.name} | {mode} | {len(t['nn'])}{'*' * bool(contended)} | {ms('nn')} | {cell('python', 'nn')} | {cell('native', 'nn')} "
                f"| {ms('nn padded')} | {cell('python', 'nn padded')} | {cell('native', 'nn padded')} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
