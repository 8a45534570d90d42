"""``LSTMFunction`` on its own: gradient checks, every ``needs_input_grad``
combination, and the packed layout helpers."""

from __future__ import annotations

import itertools

import pytest
import torch

from helpers import LOOP_SIZES, assert_all_close, available_backends, loop_inputs
from torch_lstm_manual.backends import REFERENCE, project_and_forward
from torch_lstm_manual.backends.inplace import backward_loop_inplace, forward_loop_inplace, project_and_forward_inplace
from torch_lstm_manual.functional import LSTMFunction, lstm_layer
from torch_lstm_manual.layer import NO_MASKS, Grads, Saved, Weights
from torch_lstm_manual.packing import previous_rows
from torch_lstm_manual.reference import backward_loop, forward_loop

BACKENDS = available_backends()
NAMES = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr"]


def layer_inputs(T=3, B=3, I=2, H=3, P=0, packed=False, seed=0, dtype=torch.float64):
    """``(tensors, batch_sizes)`` for one layer; packed rows use lengths 3, 2, 1."""
    gen = torch.Generator().manual_seed(seed)
    R = P or H
    sizes = (3, 2, 1) if packed else None
    N = sum(sizes) if packed else None

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype) * 0.5

    x = rand(N, I) if packed else rand(T, B, I)
    tensors = [x, rand(B, R), rand(B, H), rand(4 * H, I), rand(4 * H, R), rand(4 * H), rand(4 * H), rand(P, H) if P else None]
    return tensors, sizes


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("sizes", LOOP_SIZES)
@pytest.mark.parametrize("H, P", [(5, 0), (7, 3)])
@pytest.mark.parametrize("reverse", [False, True])
def test_inplace_loops_match_reference(dtype, sizes, H, P, reverse):
    """The loops of the "python" backend against the readable ones, result for
    result, and without touching their arguments."""
    # float32: the same ops on the same values, but for a few fused into one
    # (addcmul for 1 - u^2), so the two differ by a few rounding steps.
    tol = {} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    xw, h0, c0, w_hh, w_hr = loop_inputs(sizes, H, P, dtype)
    with torch.no_grad():
        args = (xw, h0, c0, Weights(None, w_hh, w_hr=w_hr), NO_MASKS, sizes, reverse)
        before = [t.clone() for t in (xw, h0, c0, w_hh, w_hr) if t is not None]
        expected = forward_loop(*args)
        assert_all_close(forward_loop_inplace(*args), expected, **tol)
        y, gates, cs, h_n, c_n = forward_loop_inplace(*args, save=False)[:5]
        assert gates is None and cs is None
        assert_all_close([y, h_n, c_n], [expected[0], expected[3], expected[4]], **tol)
        # From the inputs, the gates computed in the memory of the projections.
        rows, w_ih, b = torch.randn(len(xw), 3, dtype=dtype), torch.randn(4 * H, 3, dtype=dtype), torch.randn(4 * H, dtype=dtype)
        from_input = (rows, h0, c0, Weights(w_ih, w_hh, b, None, w_hr), NO_MASKS, sizes, reverse)
        before += [t.clone() for t in (rows, w_ih, b)]
        assert_all_close(project_and_forward_inplace(*from_input), project_and_forward(REFERENCE, *from_input), **tol)

        gen = torch.Generator().manual_seed(1)
        d_y, d_hn, d_cn = (torch.randn(t.shape, generator=gen, dtype=torch.float64).to(dtype) for t in (y, h0, c0))
        back = (Grads(d_y, d_hn, d_cn), Saved(expected[1], expected[2], c0), Weights(None, w_hh, w_hr=w_hr), NO_MASKS, sizes, reverse)
        before += [t.clone() for t in (d_y, d_hn, d_cn, expected[1], expected[2])]
        assert_all_close(backward_loop_inplace(*back), backward_loop(*back), **tol)
    after = [t for t in (xw, h0, c0, w_hh, w_hr) if t is not None] + [rows, w_ih, b] + [d_y, d_hn, d_cn, expected[1], expected[2]]
    assert all(torch.equal(a, b) for a, b in zip(after, before))


CASES = [
    pytest.param(dict(P=0, packed=False), False, id="plain"),
    pytest.param(dict(P=0, packed=False), True, id="reverse"),
    pytest.param(dict(P=2, packed=False), False, id="projection"),
    pytest.param(dict(P=0, packed=True), False, id="packed"),
    pytest.param(dict(P=2, packed=True), True, id="packed-reverse-projection"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case,reverse", CASES)
def test_gradcheck(backend, case, reverse):
    tensors, sizes = layer_inputs(**case)
    tensors = [t.requires_grad_() if t is not None else None for t in tensors]
    assert torch.autograd.gradcheck(lambda *a: lstm_layer(*a, sizes, reverse, backend), tensors)


@pytest.mark.parametrize("case,reverse", CASES)
def test_gradgradcheck(case, reverse):
    """Double backward: cuDNN refuses it ("Double backwards is not supported for CuDNN RNNs")."""
    tensors, sizes = layer_inputs(**case)
    tensors = [t.requires_grad_() if t is not None else None for t in tensors]
    assert torch.autograd.gradgradcheck(lambda *a: lstm_layer(*a, sizes, reverse), tensors)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_every_needs_input_grad_combination(backend, packed):
    """Each subset of inputs that asks for a gradient gets exactly the gradients
    computed with all of them asked for."""
    tensors, sizes = layer_inputs(P=2, packed=packed)
    full = [t.clone().requires_grad_() for t in tensors]
    y, h_n, c_n = lstm_layer(*full, sizes, False, backend)
    gen = torch.Generator().manual_seed(5)
    ups = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in (y, h_n, c_n)]
    loss = sum((u * t).sum() for u, t in zip(ups, (y, h_n, c_n)))
    expected = torch.autograd.grad(loss, full)
    for count in range(1, len(NAMES) + 1):
        for subset in itertools.combinations(range(len(NAMES)), count):
            leaves = [t.clone().requires_grad_(k in subset) for k, t in enumerate(tensors)]
            y, h_n, c_n = lstm_layer(*leaves, sizes, False, backend)
            loss = sum((u * t).sum() for u, t in zip(ups, (y, h_n, c_n)))
            grads = torch.autograd.grad(loss, [leaves[k] for k in subset])
            for k, g in zip(subset, grads):
                torch.testing.assert_close(g, expected[k], msg=lambda m: f"{NAMES[k]} with {subset}: {m}")


def test_saved_intermediates_are_not_differentiable_outputs():
    tensors, sizes = layer_inputs()
    tensors = [t.requires_grad_() for t in tensors[:7]] + [None] * 9  # no projection, no variant
    y, h_n, c_n, gates, cs, r_hat, r_rstd = LSTMFunction.apply(*tensors, sizes, False, "python")
    assert r_hat is None and r_rstd is None
    assert y.requires_grad and h_n.requires_grad and c_n.requires_grad
    assert not gates.requires_grad and not cs.requires_grad
    assert gates.shape == (9, 12) and cs.shape == (9, 3)


def test_previous_rows_follow_each_sequence():
    # Lengths 3, 2, 1: step 0 has rows 0-2, step 1 rows 3-4, step 2 row 5; init rows are 6+.
    assert previous_rows((3, 2, 1), reverse=False, device="cpu").tolist() == [6, 7, 8, 0, 1, 3]
    # In reverse each sequence starts at its own end: seq 2 at step 0, seq 1 at step 1.
    assert previous_rows((3, 2, 1), reverse=True, device="cpu").tolist() == [3, 4, 8, 5, 7, 6]


def test_unknown_backend_is_named():
    tensors, sizes = layer_inputs()
    with pytest.raises(ValueError, match="backend must be one of .* got 'fortran'"):
        lstm_layer(*tensors, sizes, False, "fortran")
