"""Speed of the LSTM variants: a training step against torch.nn.LSTM (plain) and
against the autograd implementation users write today, as a Markdown table.

    python benchmarks/variant_speed.py                 # T=200, B=64, I=H=128, float32
    python benchmarks/variant_speed.py --threads 1     # one thread (a machine shared with other work)
    python benchmarks/variant_speed.py --quick         # T=50, a smoke run

A step is the forward pass of one layer, one direction, over the padded batch
and the backward pass of a fixed random projection of its outputs, in training
mode (the stochastic variants draw their masks). As in ``speed.py``, the
implementations run interleaved in one process: each round times each of them
in turn (after one warm-up each; the order rotates from round to round), and a
ratio is taken within a round; the table gives its median and range
(min-max) over the rounds. Rounds during which other processes took more than
10% of the CPUs are run again, up to 3 times.

Targets (float32, T=200, B=64, I=H=128): layer norm <= 1.25x nn.LSTM and
<= 0.35x the autograd version; peepholes <= 1.1x and <= 0.35x; recurrent
dropout 0.25 + weight drop 0.5 <= 1.15x; zoneout 0.1/0.1 <= 1.15x and <= 0.35x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from speed import CONTENTION_LIMIT, RETRIES, _machine_busy_seconds, _others_share, ratio_cell, timed
from variant_baselines import LayerNormLSTM, PeepholeLSTM, ZoneoutLSTM

from torch_lstm_manual import LSTM
from torch_lstm_manual.lstm import resolve_backend

# row -> (options of our LSTM, the autograd baseline and its options, or None)
ROWS = {
    "layer norm": ({"layer_norm": True}, (LayerNormLSTM, {})),
    "peepholes": ({"peepholes": True}, (PeepholeLSTM, {})),
    "recurrent dropout 0.25 + weight drop 0.5": ({"recurrent_dropout": 0.25, "weight_drop": 0.5}, None),
    "zoneout 0.1 / 0.1": ({"zoneout_cell": 0.1, "zoneout_hidden": 0.1},
                          (ZoneoutLSTM, {"zoneout_cell": 0.1, "zoneout_hidden": 0.1})),
}


def make_step(model, x, upstream):
    def step():
        out = model(x)[0]
        torch.autograd.backward(out, upstream)

    return step


def measure(steps: dict, budget: float, max_rounds: int) -> dict:
    """``{name: [seconds per round]}``: interleaved rounds within ``budget`` seconds."""
    names = list(steps)
    for name in names:  # warm-up
        steps[name]()
    times = {name: [] for name in names}
    start, k = time.perf_counter(), 0
    while k < max_rounds and (k < 3 or time.perf_counter() - start < budget):
        for _ in range(RETRIES + 1):
            before = (time.perf_counter(), _machine_busy_seconds(), sum(os.times()[:2]))
            order = names[k % len(names):] + names[: k % len(names)]
            got = {name: timed(steps[name], 1) for name in order}
            if _others_share(before) <= CONTENTION_LIMIT:
                break
        for name in names:
            times[name].append(got[name])
        k += 1
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per row")
    parser.add_argument("--max-rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    T, B, size = (50 if args.quick else 200), 64, 128
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, size, generator=gen)
    upstream = torch.randn(T, B, size, generator=gen)
    torch.manual_seed(0)
    plain = nn.LSTM(size, size)
    print(f"T={T}, B={B}, I=H={size}, float32, {torch.get_num_threads()} threads, "
          f"backend {resolve_backend('auto', x)}; {os.cpu_count()} CPUs")
    print()
    print("| variant | ours / nn.LSTM | ours / autograd version | ours plain / nn.LSTM | rounds |")
    print("|---|---|---|---|---|")
    for row, (options, baseline) in ROWS.items():
        ours = LSTM(size, size, **options)
        ours.load_state_dict(plain.state_dict(), strict=False)
        steps = {"nn": make_step(plain, x, upstream), "ours": make_step(ours, x, upstream),
                 "plain": make_step(LSTM.from_torch(plain), x, upstream)}
        if baseline is not None:
            cls, kwargs = baseline
            steps["autograd"] = make_step(cls.from_state_dict(ours.state_dict(), **kwargs), x, upstream)
        times = measure(steps, args.budget, args.max_rounds)
        versus = ratio_cell(times["ours"], times["autograd"]) if baseline is not None else "-"
        print(f"| {row} | {ratio_cell(times['ours'], times['nn'])} | {versus} | "
              f"{ratio_cell(times['plain'], times['nn'])} | {len(times['nn'])} |")
    print()
    print(f"nn.LSTM step: {statistics.median(times['nn']) * 1e3:.1f} ms (median of the last row)")


if __name__ == "__main__":
    main()
