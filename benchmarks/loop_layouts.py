"""The two layouts of the native loops on the same work, as a Markdown table:
the plain LSTM's loops, which split the hidden units of every step over the
threads (a barrier per step), against the variants' loops, which split the
batch by rows (no barrier), both running the plain LSTM; and the variants'
loops with layer norm.

    python benchmarks/loop_layouts.py                # T=200, B=64, I=H=128, float32
    python benchmarks/loop_layouts.py --threads 1

Layer norm needs the means of whole rows of 4H units. Split by units, each
step would need two more barriers (after the partial sums of r, and of c̃)
on top of the same arithmetic; split by rows, it needs none. The table
measures what the split itself costs: the plain LSTM in both layouts
(``forward_input`` and ``backward_input`` of the native backend, a training
step of one layer: the forward pass saving what the backward pass reads, and
the backward pass with every gradient), interleaved rounds as in
``variant_speed.py``, ratios to the unit split within a round, median (min-max).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from speed import ratio_cell
from variant_speed import measure

import torch_lstm_manual.native as loader
from torch_lstm_manual.backends import select
from torch_lstm_manual.backends.native import forward_input, backward_input
from torch_lstm_manual.layer import NO_MASKS, Grads, Saved, Weights
from torch_lstm_manual.reference import input_bias


def unit_split(rows, h0, c0, weights, sizes, upstream):
    def step():
        y, gates, cs, _, _, _, _ = forward_input(rows, h0, c0, weights, NO_MASKS, sizes, False)
        backward_input(Grads(upstream, h0, c0), Saved(gates, cs, c0, h0, rows, y), weights, NO_MASKS, sizes, False)

    return step


def row_split(rows, h0, c0, weights, sizes, upstream):
    """The variants' passes with the options of ``weights`` (none: the plain LSTM)."""
    options = (weights.ln_hh, weights.ln_c, weights.ln_c_bias, weights.peephole, None, None, None)
    bias = input_bias(weights.b_ih, weights.b_hh)

    def step():
        y, gates, cs, _, _ = loader._ext.variant_forward_input(
            rows, weights.w_ih, bias, weights.ln_ih, h0, c0, weights.w_hh, None, *options, sizes, False, True, 0)
        loader._ext.variant_backward_input(
            upstream, h0, c0, gates, cs, c0, weights.w_hh, None, *options, rows, weights.w_ih, weights.ln_ih, y, h0,
            sizes, False, True, True, True, True, 0)

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds")
    parser.add_argument("--max-rounds", type=int, default=15)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    T, B, H = 200, 64, 128
    gen = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=gen) * 0.1  # noqa: E731
    rows, h0, c0, upstream = rand(T * B, H), rand(B, H), rand(B, H), rand(T * B, H)
    select("native", rows)  # builds or loads the extension
    plain = Weights(rand(4 * H, H), rand(4 * H, H), rand(4 * H), rand(4 * H))
    norm = plain._replace(ln_ih=1 + rand(4 * H), ln_hh=1 + rand(4 * H), ln_c=1 + rand(H), ln_c_bias=rand(H))
    sizes = [B] * T
    steps = {
        "units": unit_split(rows, h0, c0, plain, sizes, upstream),
        "rows": row_split(rows, h0, c0, plain, sizes, upstream),
        "rows, layer norm": row_split(rows, h0, c0, norm, sizes, upstream),
    }
    times = measure(steps, args.budget, args.max_rounds)
    print(f"T={T}, B={B}, I=H={H}, float32, {torch.get_num_threads()} threads, {len(times['units'])} rounds\n")
    print("| loops | work | ms | / split by units |")
    print("|---|---|---|---|")
    for name, work in (("units", "plain LSTM"), ("rows", "plain LSTM"), ("rows, layer norm", "layer norm")):
        split = "split by units (plain loops)" if name == "units" else "split by rows (variant loops)"
        print(f"| {split} | {work} | {statistics.median(times[name]) * 1e3:.1f} | "
              f"{ratio_cell(times[name], times['units'])} |")


if __name__ == "__main__":
    main()
