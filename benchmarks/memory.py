"""Peak memory of one training step, ours against torch.nn.LSTM, per case.

    python benchmarks/memory.py [--quick]

Method: every (case, implementation) runs in a fresh Python process. That
process builds the model and the batch, runs one small warm-up step (so that
libraries, oneDNN primitives and our extension are loaded and initialised),
then resets the kernel's resident-memory high-water mark (``5`` into
``/proc/self/clear_refs``), runs one training step (forward, backward, the
``.grad`` tensors it leaves) and reads ``VmHWM`` from ``/proc/self/status``.
The peak is ``VmHWM`` minus the resident size just before the step: physical
memory, whoever allocated it (torch's allocator, oneDNN, MKL). glibc is told
to serve every block over 64 KiB by mmap (``MALLOC_MMAP_THRESHOLD_``, which
also turns off its adaptive threshold), so freed tensors leave the resident
set at once and the high-water mark follows live memory. Linux only.

Columns are ratios ours / nn.LSTM (below 1 = less memory); packed cases also
against nn.LSTM on the padded tensor.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys

import torch

from cases import CASES, QUICK, Case, impls_for, make_batch, make_model, model_input, train_step


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(case: Case, impl: str) -> float:
    """Peak memory (MiB) of one training step, in this process."""
    small = Case(4, min(case.B, 4), case.I, case.H, case.layers, case.bidirectional, case.packed)
    model = make_model(case, impl)
    for c in (small, case):
        x, lengths = make_batch(c)
        inp = model_input(c, impl, x, lengths, requires_grad=True)
        if c is small:
            train_step(model, inp)
            model.zero_grad(set_to_none=True)
    del x
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _rss_kib("VmRSS")
    train_step(model, inp)
    return (_rss_kib("VmHWM") - before) / 1024


def run_fresh(case: Case, impl: str) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.abspath(__file__), "--one", json.dumps([case.__dict__, impl])]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few small cases")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one case in this process
    args = parser.parse_args()
    if args.one:
        fields, impl = json.loads(args.one)
        print(measure(Case(**fields), impl))
        return

    print(f"Peak memory of one training step (MiB), fresh process each; torch {torch.__version__}\n")
    print("| case | nn.LSTM | nn.LSTM padded | python | native | python/nn | native/nn | native/nn padded |")
    print("|---|---|---|---|---|---|---|---|")
    for case in QUICK if args.quick else CASES:
        peak = {impl: run_fresh(case, impl) for impl in impls_for(case)}
        padded = peak.get("nn padded")
        cell = lambda v: "" if v is None else f"{v:.1f}"  # noqa: E731
        # Below 1 MiB the resident set moves by whole pages and reused heap: no ratio.
        ratio = lambda a, b: "" if b is None else (f"{a / b:.2f}" if b >= 1 else "-")  # noqa: E731
        print(
            f"| {case.name} | {cell(peak['nn'])} | {cell(padded)} | {cell(peak['python'])} | {cell(peak['native'])} "
            f"| {ratio(peak['python'], peak['nn'])} | {ratio(peak['native'], peak['nn'])} | {ratio(peak['native'], padded)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
