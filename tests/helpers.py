"""Shared test helpers: twin modules with the same weights, and runs that collect
outputs and gradients for comparison."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from torch_lstm_manual import LSTM
from torch_lstm_manual.lstm import resolve_backend

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def available_backends() -> list:
    """The loop backends this machine can run: always Python, native when it builds."""
    names = ["python"]
    try:
        if resolve_backend("auto", torch.zeros(1)) == "native":
            names.append("native")
    except Exception:  # the native loader reports its own failures in its tests
        pass
    return names


def twins(backend="python", device="cpu", dtype=torch.float64, seed=0, **kwargs):
    """A ``torch.nn.LSTM`` and an :class:`LSTM` with the same weights (through ``state_dict``)."""
    torch.manual_seed(seed)
    ref = nn.LSTM(**kwargs, device=device, dtype=dtype)
    ours = LSTM(**kwargs, device=device, dtype=dtype, backend=backend)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def run(module, x, hx=None, lengths=None, enforce_sorted=True, seed=1):
    """Forward and backward with fixed random upstream gradients.

    Returns ``[output, h_n, c_n, d_x, d_h0, d_c0, d_param...]`` (``None`` for an
    absent hx). ``lengths`` packs ``x`` first.
    """
    x = x.detach().clone().requires_grad_()
    hx = None if hx is None else tuple(t.detach().clone().requires_grad_() for t in hx)
    inp = x
    if lengths is not None:
        inp = pack_padded_sequence(x, lengths, batch_first=module.batch_first, enforce_sorted=enforce_sorted)
    out, (h_n, c_n) = module(inp, hx)
    out = out.data if lengths is not None else out
    gen = torch.Generator(device="cpu").manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device)).sum() for t in (out, h_n, c_n))
    wrt = [x] + ([] if hx is None else list(hx)) + list(module.parameters())
    grads = list(torch.autograd.grad(loss, wrt))
    d_x = grads.pop(0)
    d_hx = [None, None] if hx is None else [grads.pop(0), grads.pop(0)]
    return [out, h_n, c_n, d_x, *d_hx, *grads]


def assert_all_close(got, expected, **tol):
    assert len(got) == len(expected)
    for k, (a, b) in enumerate(zip(got, expected)):
        if a is None or b is None:
            assert a is None and b is None, f"item {k}: one side is None"
            continue
        torch.testing.assert_close(a, b, msg=lambda m: f"item {k}: {m}", **tol)


# batch_sizes: equal lengths, packed with lengths 1..max, a single step, one
# row. Long enough ones (x 24 rows, H = 72) run the loops on several threads.
LOOP_SIZES = [(3, 3, 3), (5, 4, 4, 2, 1), (2,), (1, 1, 1), (4, 3, 1, 1)]


def loop_inputs(sizes, H, P, dtype, seed=0):
    """``(xw, h0, c0, w_hh, w_hr)`` for the time loops; ``P = 0``: no projection."""
    gen = torch.Generator().manual_seed(seed)
    N, B, P_ = sum(sizes), sizes[0], P or H

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).mul(scale).to(dtype)

    xw, h0, c0 = rand(N, 4 * H), rand(B, P_), rand(B, H)
    w_hh, w_hr = rand(4 * H, P_, scale=0.3), rand(P_, H, scale=0.3) if P else None
    return xw, h0, c0, w_hh, w_hr
