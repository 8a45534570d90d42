"""float32 error against float64, per output and gradient: ours and nn.LSTM's.

    python benchmarks/accuracy.py [--seeds 3]

One layer (T=50, B=16, I=32, H=64), the same weights in float64 (the exact
answer) and in float32. For the outputs, the final states and every gradient of
a random linear loss, the table gives max |float32 - float64| / max |float64|
for nn.LSTM in float32 and for our backends. ``tests/test_native.py`` asserts
that the native loops' largest error over all of them is no larger than
nn.LSTM's.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from torch_lstm_manual import LSTM
from torch_lstm_manual.lstm import resolve_backend

NAMES = ["output", "h_n", "c_n", "d_x", "d_w_ih", "d_w_hh", "d_b_ih", "d_b_hh"]


def results(module, x, upstream, dtype):
    x = x.to(dtype).requires_grad_()
    out, (h_n, c_n) = module(x)
    loss = (out * upstream[0].to(dtype)).sum() + (torch.stack([h_n, c_n]) * upstream[1].to(dtype)).sum()
    return [out, h_n, c_n, *torch.autograd.grad(loss, [x, *module.parameters()])]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    backends = ["python"] + (["native"] if resolve_backend("auto", torch.zeros(1)) == "native" else [])
    print("| seed | implementation | " + " | ".join(NAMES) + " |")
    print("|---|---|" + "---|" * len(NAMES))
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        exact_lstm = nn.LSTM(32, 64, dtype=torch.float64)
        torch_lstm = nn.LSTM(32, 64)
        torch_lstm.load_state_dict(exact_lstm.state_dict())
        x = torch.randn(50, 16, 32, dtype=torch.float64)
        upstream = [torch.randn(50, 16, 64, dtype=torch.float64), torch.randn(2, 1, 16, 64, dtype=torch.float64)]
        exact = results(exact_lstm, x, upstream, torch.float64)
        modules = {"nn.LSTM": torch_lstm, **{b: LSTM.from_torch(torch_lstm, backend=b) for b in backends}}
        for name, module in modules.items():
            got = results(module, x, upstream, torch.float32)
            errors = [((a.double() - e).abs().max() / e.abs().max()).item() for a, e in zip(got, exact)]
            print(f"| {seed} | {name} | " + " | ".join(f"{v:.1e}" for v in errors) + " |")


if __name__ == "__main__":
    main()
