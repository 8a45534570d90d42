"""Shared test helpers: twin modules with the same weights, and runs that collect
outputs and gradients for comparison."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from torch_lstm_manual import LSTM
from torch_lstm_manual.reference import cell_forward, input_projection

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


def native_unavailable():
    """Why the native loops do not run here, or None when they do.

    Under ``TORCH_LSTM_MANUAL_NATIVE=require`` (CI) a failed build raises
    instead: the native tests then fail rather than being left out.
    """
    from torch_lstm_manual import native

    return native.load()


def available_backends() -> list:
    """The loop backends this machine can run: always Python, native when it
    builds (and, under ``TORCH_LSTM_MANUAL_NATIVE=require``, an error when it
    does not, so that no test silently loses its native half)."""
    return ["python"] + (["native"] if native_unavailable() is None else [])


@pytest.fixture
def native_loops():
    """Skips the test where the native loops do not run; fails it where they
    were required (``TORCH_LSTM_MANUAL_NATIVE=require``) and did not build."""
    try:
        reason = native_unavailable()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    if reason is not None:
        pytest.skip(f"native extension unavailable: {reason}")


# Marks a test that needs the native loops; see ``native_loops``.
needs_native = pytest.mark.usefixtures("native_loops")


def twins(backend="python", device="cpu", dtype=torch.float64, seed=0, **kwargs):
    """A ``torch.nn.LSTM`` and an :class:`LSTM` with the same weights (through ``state_dict``)."""
    torch.manual_seed(seed)
    ref = nn.LSTM(**kwargs, device=device, dtype=dtype)
    ours = LSTM(**kwargs, device=device, dtype=dtype, backend=backend)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def run(module, x, hx=None, lengths=None, enforce_sorted=True, seed=1, upstream=None):
    """Forward and backward with fixed random upstream gradients.

    Returns ``[output, h_n, c_n, d_x, d_h0, d_c0, d_param...]`` (``None`` for an
    absent hx). ``lengths`` packs ``x`` first. ``upstream``, if given, is
    called with the list of the three upstream gradients (of the output, h_n
    and c_n) and may change them in place.
    """
    x = x.detach().clone().requires_grad_()
    hx = None if hx is None else tuple(t.detach().clone().requires_grad_() for t in hx)
    inp = x
    if lengths is not None:
        inp = pack_padded_sequence(x, lengths, batch_first=module.batch_first, enforce_sorted=enforce_sorted)
    out, (h_n, c_n) = module(inp, hx)
    out = out.data if lengths is not None else out
    gen = torch.Generator(device="cpu").manual_seed(seed)
    grads = [torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device) for t in (out, h_n, c_n)]
    if upstream is not None:
        upstream(grads)
    loss = sum((t * g).sum() for t, g in zip((out, h_n, c_n), grads))
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


def assert_per_sample_grads_match_a_loop(loss, params, xs):
    """``vmap(grad(loss))`` over the samples ``xs`` (the parameters ``params``
    unbatched) equals ``loss``'s gradients computed sample by sample."""
    batched = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, xs)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    for s in range(xs.shape[0]):
        one = torch.autograd.grad(loss(leaves, xs[s]), list(leaves.values()))
        for name, g in zip(leaves, one):
            torch.testing.assert_close(batched[name][s], g, msg=lambda m: f"{name}, sample {s}: {m}")


def cell_step_inputs(I, H, B, bias=True, seed=0, dtype=torch.float64):
    """``(x, h0, c0, w_ih, w_hh, b_ih, b_hh)`` of one LSTM cell step, biases None without ``bias``."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(B, I), (B, H), (B, H), (4 * H, I), (4 * H, H), (4 * H,), (4 * H,)]
    tensors = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    return tensors if bias else tensors[:5] + [None, None]


def run_cell_step(step, tensors, wanted, which=("h", "c")):
    """``[h_1, c_1, gradient of every input in wanted...]`` of ``step(*tensors)``
    under a loss on the states named in ``which`` (fixed random weights)."""
    leaves = [t if t is None else t.detach().clone().requires_grad_(k in wanted) for k, t in enumerate(tensors)]
    h, c = step(*leaves)
    gen = torch.Generator().manual_seed(1)
    loss = sum((s * torch.randn(s.shape, generator=gen, dtype=s.dtype)).sum()
               for name, s in (("h", h), ("c", c)) if name in which)
    grads = torch.autograd.grad(loss, [leaves[k] for k in wanted])
    return [h.detach(), c.detach(), *grads]


def reference_cell_step(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """The reference step (reference.cell_forward), differentiated by autograd."""
    h, c, _ = cell_forward(input_projection(x, w_ih, b_ih, b_hh), h0, c0, w_hh, None)
    return h, c


# (bias, inputs of a cell step asking for a gradient): each input alone, then all of them.
CELL_GRAD_CASES = [(bias, w) for bias, n in ((True, 7), (False, 5)) for w in [(k,) for k in range(n)] + [tuple(range(n))]]
