"""Where the time of one training step goes: its pieces, each timed alone.

    python benchmarks/profile_step.py [--shape 200 64 128 128]

One layer, float32, torch's default thread count. It times the whole training
step of nn.LSTM and of ours with each backend, then the pieces:

* native (float32 without a projection): the forward pass from the inputs,
  whose input projection runs on the loop's register tiles, and the backward
  pass with its products (d_x, dW_ih, dW_hh), a step at a time on the same
  tiles;
* python: the input projection, the forward and backward time loops, and the
  three products of the backward pass over all steps, each one matrix product.

Each matrix product over all steps is 2 N G I or 2 N G H floating-point
operations (1.7 GFLOP at the default shape): the native forward pass does two,
the backward pass four. Medians over repetitions; the pieces run alone, so
inside the step they can take longer (caches, allocation), and the step also
pays autograd, the loss and copies.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from cases import train_step

from torch_lstm_manual import LSTM
from torch_lstm_manual.backends import BACKENDS
from torch_lstm_manual.layer import NO_MASKS, Grads, Saved, Weights
from torch_lstm_manual.reference import input_projection
from torch_lstm_manual.lstm import resolve_backend


def median_ms(fn, repeats: int = 15) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=4, default=[200, 64, 128, 128], metavar=("T", "B", "I", "H"))
    args = parser.parse_args()
    T, B, I, H = args.shape
    torch.manual_seed(0)
    backend = resolve_backend("auto", torch.zeros(1))
    reference = nn.LSTM(I, H)
    ours = LSTM.from_torch(reference, backend=backend)
    x = torch.randn(T, B, I, requires_grad=True)

    python = LSTM.from_torch(reference, backend="python")
    w_ih, w_hh = reference.weight_ih_l0.detach(), reference.weight_hh_l0.detach()
    b_ih, b_hh = reference.bias_ih_l0.detach(), reference.bias_hh_l0.detach()
    rows = x.detach().flatten(0, 1)  # (N, I)
    h0, c0 = torch.zeros(B, H), torch.zeros(B, H)
    sizes = [B] * T
    weights = Weights(w_ih, w_hh, b_ih, b_hh)
    pieces = {
        "nn.LSTM training step": lambda: train_step(reference, x),
        f"ours ({backend}) training step": lambda: train_step(ours, x),
        "ours (python) training step": lambda: train_step(python, x),
    }
    if backend == "native":
        native = BACKENDS["native"]
        y, gates, cs, _, _ = native.forward_input(rows, h0, c0, weights, NO_MASKS, sizes, False)[:5]
        grads, saved = Grads(torch.randn_like(y), h0, c0), Saved(gates, cs, c0, h0, rows, y)
        pieces["  native: forward from the inputs (saving for backward)"] = lambda: native.forward_input(
            rows, h0, c0, weights, NO_MASKS, sizes, False
        )
        pieces["  native: backward with d_x, dW_ih, dW_hh"] = lambda: native.backward_input(
            grads, saved, weights, NO_MASKS, sizes, False
        )
    loops = BACKENDS["python"]
    xw = input_projection(rows, w_ih, b_ih, b_hh)  # (N, G)
    y, gates, cs, _, _ = loops.forward(xw, h0, c0, weights, NO_MASKS, sizes, False)[:5]
    d_y, d_z = torch.randn_like(y), torch.randn(T * B, 4 * H)
    python_grads, python_saved = Grads(d_y, h0, c0), Saved(gates, cs, c0)
    pieces.update(
        {
            "  python: input projection x W_ih^T + b": lambda: input_projection(rows, w_ih, b_ih, b_hh),
            "  python: forward loop (saving for backward)": lambda: loops.forward(xw, h0, c0, weights, NO_MASKS, sizes, False),
            "  python: backward loop": lambda: loops.backward(python_grads, python_saved, weights, NO_MASKS, sizes, False),
            "  python: dX = dZ W_ih": lambda: d_z.mm(w_ih),
            "  python: dW_ih = dZ^T X": lambda: d_z.t().mm(rows),
            "  python: dW_hh = dZ^T H_prev": lambda: d_z.t().mm(y),
        }
    )
    print(f"T={T} B={B} I={I} H={H}, float32, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| piece | median ms |")
    print("|---|---|")
    for name, fn in pieces.items():
        print(f"| {name} | {median_ms(fn):.1f} |", flush=True)


if __name__ == "__main__":
    main()
