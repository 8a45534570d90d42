"""How long ``torch.compile`` takes on a model that uses ``LSTM``, and what it gives.

    python benchmarks/compile_time.py [--steps 16 64] [--backend inductor]

For each sequence length it times the first compiled training step (compilation
included; dynamo unrolls the time loop, so this grows with T), then the median
of later compiled and eager steps, and checks that compiled and eager agree.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from torch_lstm_manual import LSTM


class Model(nn.Module):
    def __init__(self, input_size=64, hidden_size=64):
        super().__init__()
        self.lstm = LSTM(input_size, hidden_size, backend="python")
        self.head = nn.Linear(hidden_size, 2)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(h[-1])


def step(model, x):
    loss = model(x).square().mean()
    loss.backward()
    return loss.detach()


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 64], help="sequence lengths T")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, backend={args.backend}, B={args.batch}, I=H=64\n")
    print("| T | first compiled step (s) | compiled step (ms) | eager step (ms) | compiled / eager | max abs diff |")
    print("|---|---|---|---|---|---|")
    for T in args.steps:
        torch.manual_seed(0)
        torch._dynamo.reset()
        model = Model()
        compiled = torch.compile(model, backend=args.backend)
        x = torch.randn(T, args.batch, 64)
        first, loss_c = timed(step, compiled, x)
        model.zero_grad()
        loss_e = step(model, x)
        diff = (loss_c - loss_e).abs().item()
        eager, comp = [], []
        for _ in range(args.repeats):
            comp.append(timed(step, compiled, x)[0])
            eager.append(timed(step, model, x)[0])
        c, e = statistics.median(comp), statistics.median(eager)
        print(f"| {T} | {first:.1f} | {c * 1e3:.1f} | {e * 1e3:.1f} | {c / e:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
