"""Peak memory of a training step of each LSTM variant against the plain LSTM
(both ours, same backend), and against torch.nn.LSTM, as a Markdown table.

    python benchmarks/variant_memory.py            # T=200, B=64, I=H=128, float32
    python benchmarks/variant_memory.py --quick    # T=50

Method: that of ``memory.py``: every (variant, implementation) runs in a fresh
process, which warms up on a small batch, resets the resident-memory
high-water mark, runs one training step (forward, backward of a fixed random
projection of the outputs, the ``.grad`` tensors it leaves) and reports
``VmHWM`` minus the resident size before the step, with glibc serving blocks
over 64 KiB by mmap. Linux only.

Target: every variant at most 1.2x the plain LSTM.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys

import torch
from torch import nn

from memory import _rss_kib
from variant_speed import ROWS

from torch_lstm_manual import LSTM


def measure(options, T: int) -> float:
    """Peak memory (MiB) of one training step of ``LSTM(128, 128, **options)``
    (``options`` None: torch.nn.LSTM), in this process."""
    torch.manual_seed(0)
    model = nn.LSTM(128, 128) if options is None else LSTM(128, 128, **options)
    for steps in (4, T):
        x = torch.randn(steps, 64, 128, requires_grad=True)
        upstream = torch.randn(steps, 64, 128)
        if steps == 4:
            torch.autograd.backward(model(x)[0], upstream)
            model.zero_grad(set_to_none=True)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _rss_kib("VmRSS")
    torch.autograd.backward(model(x)[0], upstream)
    return (_rss_kib("VmHWM") - before) / 1024


def run_fresh(options, T: int) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.abspath(__file__), "--one", json.dumps([options, T])]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one case in this process
    args = parser.parse_args()
    if args.one:
        options, T = json.loads(args.one)
        print(measure(options, T))
        return
    T = 50 if args.quick else 200
    print(f"Peak memory of one training step (MiB), T={T}, B=64, I=H=128, float32, fresh process each\n")
    nn_peak, plain = run_fresh(None, T), run_fresh({}, T)
    print("| variant | MiB | / plain (ours) | / nn.LSTM |")
    print("|---|---|---|---|")
    print(f"| plain (ours) | {plain:.1f} | 1.00 | {plain / nn_peak:.2f} |")
    for row, (options, _) in ROWS.items():
        peak = run_fresh(options, T)
        print(f"| {row} | {peak:.1f} | {peak / plain:.2f} | {peak / nn_peak:.2f} |", flush=True)
    print(f"| torch.nn.LSTM | {nn_peak:.1f} | {nn_peak / plain:.2f} | 1.00 |")


if __name__ == "__main__":
    main()
