"""NaN and infinities propagate as in ``torch.nn.LSTM``, on every backend and
every path of the native loops.

One NaN, +inf or -inf goes into the input, ``h0``, ``c0``, one weight or
bias, or one upstream gradient; every output and every gradient must have NaN
in exactly the positions where ``torch.nn.LSTM`` (same weights, same dtype)
has them, the same infinities, and finite values within the usual tolerance.

The cases reach every path of the loops: float32 without a projection runs
the register tiles and the vectorised gates (AVX2: 8 floats, AVX-512: 16),
float64 and projections the BLAS loops; the hidden sizes lie below, at and
above the vector widths, and 33 leaves one unit to the scalar gates after
whole vectors. The poisoned element is the last of its tensor and, with 33
units, also the first, so that it starts in the scalar tail or in a vector lane. The builds this
process does not load (AVX2 only, no vector instructions, the portable
fallback) run the native cases in ``test_native.py``, each in a subprocess.

On the CPU, float32 ``nn.LSTM`` runs oneDNN, float64 (and float32 with
oneDNN off) the plain formulas of ATen. The main test compares with the
plain formulas, which take a tenth of oneDNN's time on these tiny shapes;
``test_onednn_agrees`` checks that oneDNN gives the same NaN, infinities and
values on a part of the cases (all of them with ``-m slow``). float32 and
float64 differ from each other where a gate saturates: sigmoid(z) rounds to
exactly 1 from z = 16.6 in float32 but only from z = 36.7 in float64, and
(1 - f) inf is NaN only where it does; so each dtype is compared with its own.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from torch_lstm_manual.backends import BACKENDS as LOOPS
from torch_lstm_manual.layer import NO_MASKS, Grads, Saved, Weights
from torch_lstm_manual.reference import backward_loop, forward_loop

from helpers import available_backends, loop_inputs, needs_native, run, twins

BACKENDS = available_backends()
TOL = {torch.float64: {}, torch.float32: {"rtol": 1e-4, "atol": 1e-5}}
DTYPES = [torch.float32, torch.float64]
VALUES = [float("nan"), float("inf"), float("-inf")]

# (hidden_size, proj_size).
SHAPES = [(5, 0), (8, 0), (16, 0), (33, 0), (33, 4)]
PLACES = ["x", "h0", "c0", "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0",
          "d_output", "d_h_n", "d_c_n"]
# The Python loops have no path that depends on the hidden size: one shape.
CASES = [(backend, H, P, place) for backend in BACKENDS for H, P in SHAPES for place in PLACES
         if (P or place != "weight_hr_l0") and (backend == "native" or (H, P) == (33, 4))]
T, B, I = 4, 3, 5
LENGTHS = [4, 3, 2]
RESULTS = ["output", "h_n", "c_n", "d_x", "d_h0", "d_c0"]


def positions(H):
    """Where in its tensor the value goes: with 33 units, the first element
    is in a vector lane and the last in the scalar tail; elsewhere one is enough."""
    return ["first", "last"] if H == 33 else ["last"]


def assert_same_nonfinite(got, expected, names, tol):
    """NaN in the same positions, the same infinities, finite values close."""
    assert len(got) == len(expected) == len(names)
    for name, a, b in zip(names, got, expected):
        nan_a, nan_b = torch.isnan(a), torch.isnan(b)
        if not torch.equal(nan_a, nan_b):
            where = (nan_a != nan_b).nonzero()[0].tolist()
            raise AssertionError(
                f"{name}: {int(nan_a.sum())} NaN, torch.nn.LSTM {int(nan_b.sum())}; first difference at {where}: "
                f"{a[tuple(where)].item()} against {b[tuple(where)].item()}"
            )
        torch.testing.assert_close(a, b, equal_nan=True, msg=lambda m: f"{name}: {m}", **tol)


def poison(t: torch.Tensor, position: str, value: float) -> None:
    """Put ``value`` into the first or the last element of ``t``, in place."""
    t.view(-1)[0 if position == "first" else -1] = value


def inputs(dtype, H, P, place, position, value):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64).to(dtype)
    h0 = torch.randn(1, B, P or H, generator=gen, dtype=torch.float64).to(dtype)
    c0 = torch.randn(1, B, H, generator=gen, dtype=torch.float64).to(dtype)
    if place == "x":  # the last element of the last sequence, which packing keeps
        x[(0, 0, 0) if position == "first" else (LENGTHS[-1] - 1, -1, -1)] = value
    elif place in ("h0", "c0"):
        poison(h0 if place == "h0" else c0, position, value)
    return x, (h0, c0)


def results(module, dtype, H, P, place, position, value, packed):
    x, hx = inputs(dtype, H, P, place, position, value)
    if place.startswith(("weight", "bias")):
        with torch.no_grad():
            poison(getattr(module, place), position, value)

    def upstream(grads):
        if place.startswith("d_"):
            poison(grads[["d_output", "d_h_n", "d_c_n"].index(place)], position, value)

    return run(module, x, hx, LENGTHS if packed else None, upstream=upstream)


_expected = {}


def expected_results(case, onednn=False):
    """torch.nn.LSTM's results for ``case``, ``(dtype, H, P, place, position,
    value, packed)``: by the plain formulas (once per case, for every
    backend), or, with ``onednn``, on oneDNN (float32)."""
    if onednn or case not in _expected:
        dtype, H, P = case[:3]
        torch.manual_seed(0)  # the weights of helpers.twins
        ref = nn.LSTM(I, H, proj_size=P, dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # about TF32 on Intel GPUs, on setting the flag
            with torch.backends.mkldnn.flags(enabled=onednn):
                got = results(ref, *case)
        if onednn:
            return got
        _expected[case] = got
    return _expected[case]


def check_case(backend, case, expected=None):
    """Our results against ``expected``, by default nn.LSTM's plain formulas."""
    dtype, H, P, place, position, value, packed = case
    _, ours = twins(backend, dtype=dtype, input_size=I, hidden_size=H, proj_size=P)
    names = RESULTS + [f"d_{name}" for name, _ in ours.named_parameters()]
    expected = expected_results(case) if expected is None else expected
    try:
        assert_same_nonfinite(results(ours, *case), expected, names, TOL[dtype])
    except AssertionError as error:
        raise AssertionError(f"{value} at the {position} element of {place}: {error}") from None


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("backend, H, P, place", CASES)
def test_nonfinite_propagates_as_in_nn_lstm(backend, dtype, packed, H, P, place):
    for value in VALUES:
        for position in positions(H):
            check_case(backend, (dtype, H, P, place, position, value, packed))


def onednn_cases(everything):
    if not everything:  # NaN and infinities in the input, the cell state, a weight, the upstream gradient
        return [(torch.float32, 33, 0, place, "last", value, False) for place in ("x", "c0", "weight_hh_l0", "d_output")
                for value in VALUES]
    return [(torch.float32, H, 0, place, position, value, packed) for H in (16, 33)
            for place in PLACES if place != "weight_hr_l0"
            for position in positions(H) for value in VALUES for packed in (False, True)]


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch is built without oneDNN")
@pytest.mark.parametrize("everything", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["part", "all"])
def test_onednn_agrees(everything):
    """float32 nn.LSTM on oneDNN (its own exp, sigmoid and tanh) against every
    backend, as the plain formulas are in the test above."""
    for case in onednn_cases(everything):
        expected = expected_results(case, onednn=True)
        for backend in BACKENDS:
            check_case(backend, case, expected)


# --------------------------------------------------------------------------
# The loops that LSTM does not call with these shapes: forward and backward of
# float32 without a projection run the tiles with the input projections and
# the gate gradients d_z in memory (the passes from the input, which the
# module runs, keep neither).

LOOP_PLACES = ["xw", "h0", "c0", "w_hh", "d_y", "d_hn", "d_cn"]
LOOP_CASES = [(H, place) for H in (5, 16, 33) for place in LOOP_PLACES]
SIZES = [3, 3, 2, 1]


@needs_native
@pytest.mark.parametrize("H, place", LOOP_CASES)
def test_nonfinite_through_native_loops(H, place):
    loops, dtype, reverse = LOOPS["native"], torch.float32, True
    for value in VALUES:
        for position in positions(H):
            xw, h0, c0, w_hh, _ = loop_inputs(SIZES, H, 0, dtype)
            gen = torch.Generator().manual_seed(2)
            d_y, d_hn, d_cn = (torch.randn(len(xw) if t is xw else len(t), H, generator=gen, dtype=dtype)
                               for t in (xw, h0, c0))
            tensors = dict(xw=xw, h0=h0, c0=c0, w_hh=w_hh, d_y=d_y, d_hn=d_hn, d_cn=d_cn)
            poison(tensors[place], position, value)
            try:
                weights = Weights(None, w_hh)
                expected = forward_loop(xw, h0, c0, weights, NO_MASKS, SIZES, reverse)
                got = loops.forward(xw, h0, c0, weights, NO_MASKS, SIZES, reverse)
                assert got[5:] == expected[5:] == (None, None)
                got, expected = got[:5], expected[:5]
                assert_same_nonfinite(got, expected, ["y", "gates", "cs", "h_n", "c_n"], TOL[dtype])
                back = (Grads(d_y, d_hn, d_cn), Saved(expected[1], expected[2], c0), weights, NO_MASKS, SIZES, reverse)
                got, want = loops.backward(*back), backward_loop(*back)
                assert all(t is None for t in got[6:] + want[6:]) and got.d_r is got.d_h is want.d_r is want.d_h is None
                got, want = [(g.d_z, g.d_h0, g.d_c0, g.d_b) for g in (got, want)]
                assert_same_nonfinite(got, want, ["d_z", "d_h0", "d_c0", "d_b"], TOL[dtype])
            except AssertionError as error:
                raise AssertionError(f"{value} at the {position} element of {place}: {error}") from None


def test_saturated_gates_are_exact():
    """sigmoid(+-inf) and tanh(+-inf) are exactly 1, 0 and +-1 on every
    backend, so that a saturated gate times an infinity is NaN, as in torch:
    with an infinite c0 and the forget gate open, c stays infinite; with it
    shut (sigmoid(-inf) = 0), 0 inf is NaN."""
    for backend in BACKENDS:
        for dtype in DTYPES:
            ref, ours = twins(backend, dtype=dtype, input_size=1, hidden_size=20)
            with torch.no_grad():
                for m in (ref, ours):
                    m.weight_hh_l0.zero_()
                    m.bias_ih_l0.zero_(), m.bias_hh_l0.zero_()
                    m.weight_ih_l0.fill_(1.0)  # every gate: z = x
            x = torch.tensor([[[float("inf")]], [[float("-inf")]]], dtype=dtype)
            c0 = torch.full((1, 1, 20), float("inf"), dtype=dtype)
            hx = (torch.zeros(1, 1, 20, dtype=dtype), c0)
            got, expected = ours(x, hx), ref(x, hx)
            # step 1: i = f = o = 1, g = 1: c = inf, h = 1; step 2: f = 0: c = 0 inf + 0 (-1) = NaN.
            assert torch.isinf(got[0][0]).sum() == 0 and torch.equal(got[0][0], torch.ones_like(got[0][0]))
            assert torch.isnan(got[1][1]).all() and torch.isnan(expected[1][1]).all()
            assert_same_nonfinite([got[0], *got[1]], [expected[0], *expected[1]], ["y", "h_n", "c_n"], {})


def test_nonfinite_weights_meet_zero_states():
    """0 times NaN or inf is NaN: a non-finite recurrent weight poisons the
    first step even from the zero h0 that an absent hx means, and one of
    w_ih even where its input column is zero; no product skips the zeros."""
    for backend in BACKENDS:
        for dtype in DTYPES:
            for place in ("weight_ih_l0", "weight_hh_l0"):
                for value in VALUES:
                    ref, ours = twins(backend, dtype=dtype, input_size=I, hidden_size=33)
                    for module in (ref, ours):
                        with torch.no_grad():
                            poison(getattr(module, place), "last", value)
                    x = torch.randn(T, B, I, dtype=dtype)
                    x[..., -1] = 0  # the column that meets the last column of w_ih
                    names = RESULTS + [f"d_{name}" for name, _ in ours.named_parameters()]
                    got, expected = run(ours, x), run(ref, x)
                    assert torch.isnan(got[0][-1]).all(), (backend, dtype, place, value)  # by the last step
                    keep = [k for k, t in enumerate(expected) if t is not None]
                    assert_same_nonfinite([got[k] for k in keep], [expected[k] for k in keep], [names[k] for k in keep],
                                          TOL[dtype])
