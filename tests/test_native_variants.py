"""The native loops of the LSTM variants (layer norm, peepholes, zoneout,
recurrent dropout) against the Python reference loops, result for result:
the outputs, what the forward pass saves, and every field of LoopGrads.

float64 to 1e-10; float32 to ``FLOAT32``: both loops round every product
and activation to float32, in different orders and with a polynomial
exp/tanh in the native cell. Sizes are small; ``rows64`` runs a batch large
enough for the native loops to split it over threads.
"""

from __future__ import annotations

import pytest
import torch

import torch_lstm_manual.backends.native as native_backend
import torch_lstm_manual.functional as functional
import torch_lstm_manual.native as native
from torch_lstm_manual import LSTM
from torch_lstm_manual.backends import BACKENDS, REFERENCE, backward_and_products, project_and_forward
from torch_lstm_manual.layer import Grads, LoopGrads, Masks, Needs, Saved, Weights
from torch_lstm_manual.reference import backward_loop, forward_loop

from helpers import needs_native

FLOAT64 = {"rtol": 1e-10, "atol": 1e-10}
FLOAT32 = {"rtol": 1e-5, "atol": 1e-5}
TOL = {torch.float64: FLOAT64, torch.float32: FLOAT32}

OPTIONS = ("layer_norm", "peepholes", "zoneout_cell", "zoneout_hidden", "recurrent_dropout")
OPTION_SETS = [(o,) for o in OPTIONS] + [OPTIONS, ("layer_norm", "zoneout_hidden", "recurrent_dropout")]
FORWARD_NAMES = ("y", "gates", "cs", "h_n", "c_n", "r_hat", "r_rstd")


def variant_inputs(sizes, H, P, dtype, options, seed=0):
    """``(xw, h0, c0, weights, masks)`` of one layer with ``options``; ``P = 0``: no projection.
    Gains and biases away from 1 and 0, masks of 0s and 1s (recurrent: scaled)."""
    gen = torch.Generator().manual_seed(seed)
    N, B, P_ = sum(sizes), sizes[0], P or H

    def rand(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).mul(scale).add(shift).to(dtype)

    def bernoulli(*shape, keep):
        return (torch.rand(*shape, generator=gen) < keep).to(dtype)

    xw, h0, c0 = rand(N, 4 * H), rand(B, P_), rand(B, H)
    weights = Weights(None, rand(4 * H, P_, scale=0.3), w_hr=rand(P_, H, scale=0.3) if P else None)
    if "layer_norm" in options:
        weights = weights._replace(ln_hh=rand(4 * H, scale=0.2, shift=1.0), ln_c=rand(H, scale=0.2, shift=1.0),
                                   ln_c_bias=rand(H, scale=0.2))
    if "peepholes" in options:
        weights = weights._replace(peephole=rand(3, H, scale=0.3))
    masks = Masks(
        recurrent=bernoulli(B, P_, keep=0.7) / 0.7 if "recurrent_dropout" in options else None,
        cell=bernoulli(N, H, keep=0.4) if "zoneout_cell" in options else None,
        hidden=bernoulli(N, P_, keep=0.4) if "zoneout_hidden" in options else None,
    )
    return xw, h0, c0, weights, masks


def upstream(y, h0, c0, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return Grads(*(torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.dtype) for t in (y, h0, c0)))


def assert_same(actual, expected, names, tol):
    """Field by field: None where expected is None, else close (NaN where expected has NaN)."""
    for name, a, e in zip(names, actual, expected):
        if e is None:
            assert a is None, f"{name}: expected None, got a tensor"
        else:
            assert a is not None, f"{name}: expected a tensor, got None"
            torch.testing.assert_close(a, e, equal_nan=True, **tol, msg=lambda m: f"{name}: {m}")


def check_loops(sizes, H, P, reverse, dtype, options):
    xw, h0, c0, weights, masks = variant_inputs(sizes, H, P, dtype, options)
    loops, tol = BACKENDS["native"], TOL[dtype]
    expected = forward_loop(xw, h0, c0, weights, masks, sizes, reverse)
    got = loops.forward(xw, h0, c0, weights, masks, sizes, reverse)
    assert_same(got, expected, FORWARD_NAMES, tol)
    # Inference: the same outputs and final states, nothing saved.
    y, gates, cs, h_n, c_n, r_hat, r_rstd = loops.forward(xw, h0, c0, weights, masks, torch.tensor(sizes), reverse,
                                                          save=False)
    assert gates is None and cs is None and r_hat is None and r_rstd is None
    assert_same([y, h_n, c_n], [expected[0], expected[3], expected[4]], ("y", "h_n", "c_n"), tol)

    y, gates, cs, _, _, r_hat, r_rstd = expected
    saved = Saved(gates, cs, c0, r_hat=r_hat, r_rstd=r_rstd)
    args = (upstream(y, h0, c0), saved, weights, masks, sizes, reverse)
    got, expected = loops.backward(*args), backward_loop(*args)
    assert isinstance(got, LoopGrads)
    assert_same(got, expected, LoopGrads._fields, tol)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("options", OPTION_SETS, ids="+".join)
@pytest.mark.parametrize("sizes, H, P", [((3, 3, 3), 5, 0), ((5, 4, 4, 2, 1), 20, 0), ((5, 4, 4, 2, 1), 20, 7)],
                         ids=["padded", "packed", "packed-proj"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_variant_loops_match_reference(dtype, options, sizes, H, P, reverse):
    check_loops(list(sizes), H, P, reverse, dtype, options)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("P", [0, 24], ids=["no-proj", "proj"])
def test_variant_loops_match_reference_rows64(dtype, P):
    """A batch that the loops split over threads (where there are several), packed, reverse."""
    check_loops([64, 64, 50, 31, 3], 32, P, True, dtype, OPTIONS)


@needs_native
@pytest.mark.parametrize("options", [("layer_norm",), ("zoneout_cell",)], ids="+".join)
def test_each_layer_norm_and_mask_alone(options):
    """ln_hh without ln_c and the reverse, as the reference loops allow."""
    xw, h0, c0, weights, masks = variant_inputs([4, 3, 1], 9, 0, torch.float64, ("layer_norm", "zoneout_cell"))
    for part in (weights._replace(ln_c=None, ln_c_bias=None), weights._replace(ln_hh=None)):
        expected = forward_loop(xw, h0, c0, part, masks, [4, 3, 1], False)
        got = BACKENDS["native"].forward(xw, h0, c0, part, masks, [4, 3, 1], False)
        assert_same(got, expected, FORWARD_NAMES, FLOAT64)
        y, gates, cs, _, _, r_hat, r_rstd = expected
        args = (upstream(y, h0, c0), Saved(gates, cs, c0, r_hat=r_hat, r_rstd=r_rstd), part, masks, [4, 3, 1], False)
        assert_same(BACKENDS["native"].backward(*args), backward_loop(*args), LoopGrads._fields, FLOAT64)


def _floats(masks, dtype):
    """The zoneout masks as contiguous tensors of ``dtype``."""
    return masks._replace(cell=masks.cell.to(dtype).contiguous(), hidden=masks.hidden.to(dtype).contiguous())


def check_layer_passes(sizes, H, P, I, reverse, dtype, options, needs=Needs(), layout=None):
    """forward_input / backward_input of the native backend against the
    reference loops under project_and_forward / backward_and_products, with
    the layer norm of the input projections (ln_ih) and ``options``. The
    native forward saves no r̂ (its backward recomputes it): the backward gets
    the reference's saved tensors without it. ``layout(masks)``: the zoneout
    masks as the native passes get them, the reference getting their values
    as contiguous floats."""
    _, h0, c0, weights, masks = variant_inputs(sizes, H, P, dtype, options)
    given = masks if layout is None else layout(masks)
    masks = masks if layout is None else _floats(given, dtype)
    gen = torch.Generator().manual_seed(3)
    rand = lambda *s, scale=1.0: torch.randn(*s, generator=gen, dtype=torch.float64).mul(scale).to(dtype)  # noqa: E731
    weights = weights._replace(w_ih=rand(4 * H, I, scale=0.3), b_ih=rand(4 * H), b_hh=rand(4 * H),
                               ln_ih=rand(4 * H, scale=0.2) + 1)
    rows, native_loops = rand(sum(sizes), I), BACKENDS["native"]
    expected = project_and_forward(REFERENCE, rows, h0, c0, weights, masks, sizes, reverse)
    got = native_loops.forward_input(rows, h0, c0, weights, given, sizes, reverse)
    assert got[5] is None and got[6] is None
    assert_same(got[:5], expected[:5], FORWARD_NAMES[:5], TOL[dtype])
    y, gates, cs, _, _, r_hat, r_rstd = expected
    args = (upstream(y, h0, c0), Saved(gates, cs, c0, h0, rows, y, r_hat, r_rstd), weights, masks, sizes, reverse)
    expected = backward_and_products(REFERENCE, *args, needs)
    got = native_loops.backward_input(args[0], args[1]._replace(r_hat=None, r_rstd=None), weights, given,
                                      *args[4:], needs)
    assert_same(got, expected, type(expected)._fields, TOL[dtype])


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("P", [0, 6], ids=["no-proj", "proj"])
@pytest.mark.parametrize("options", [OPTIONS, ()], ids=["all", "ln_ih-alone"])
@pytest.mark.parametrize("needs", [Needs(), Needs(x=False), Needs(w_ih=False, ln_ih=False), Needs(x=False, w_ih=False)],
                         ids=["all", "no-x", "no-w_ih", "no-input"])
def test_layer_passes_match_reference(dtype, P, options, needs):
    check_layer_passes([5, 4, 2], 12, P, 7, True, dtype, options, needs)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("chunk_rows", [1, 6, 11], ids=lambda n: f"chunk{n}")
@pytest.mark.parametrize("sizes", [[4, 4, 4, 4, 4], [6, 5, 5, 3, 3, 1]], ids=["padded", "packed"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("options", [OPTIONS, ("peepholes", "zoneout_hidden")], ids=["all", "peep+zh"])
def test_layer_passes_in_chunks_match_reference(monkeypatch, dtype, chunk_rows, sizes, reverse, options):
    """The passes from the inputs a chunk of steps at a time: one step per
    chunk (1 row), chunks that end inside the sequence and between steps of
    different sizes, in both directions, with a projection."""
    monkeypatch.setattr(native_backend, "chunk_rows", chunk_rows)
    check_layer_passes(sizes, 8, 5, 3, reverse, dtype, options)


def _as_bool(masks):
    return masks._replace(cell=masks.cell.bool(), hidden=masks.hidden.bool())


def _expanded(masks):
    """The layout of eval-mode zoneout masks: one value each, expanded."""
    return masks._replace(cell=torch.full_like(masks.cell[:1, :1], 0.25).expand_as(masks.cell),
                          hidden=torch.full_like(masks.hidden[:1, :1], 0.75).expand_as(masks.hidden))


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("chunk_rows", [0, 5], ids=lambda n: f"chunk{n}")
@pytest.mark.parametrize("layout", [_as_bool, _expanded], ids=["bool", "expanded"])
def test_zoneout_masks_as_bool_or_expanded(monkeypatch, dtype, chunk_rows, layout):
    """The native loops read bool zoneout masks as 0 and 1, and the passes
    from the inputs read expanded ones (eval) a chunk at a time: the results
    of the reference with the same values as contiguous floats."""
    monkeypatch.setattr(native_backend, "chunk_rows", chunk_rows)
    options = ("zoneout_cell", "zoneout_hidden", "layer_norm")
    check_layer_passes([6, 5, 5, 3], 8, 5, 3, True, dtype, options, layout=layout)
    xw, h0, c0, weights, masks = variant_inputs([4, 3, 1], 8, 0, dtype, options)
    given = layout(masks)
    expected = forward_loop(xw, h0, c0, weights, _floats(given, dtype), [4, 3, 1], False)
    assert_same(BACKENDS["native"].forward(xw, h0, c0, weights, given, [4, 3, 1], False), expected, FORWARD_NAMES,
                TOL[dtype])


@needs_native
def test_reference_backward_after_a_native_forward_recomputes_what_it_reads(monkeypatch):
    """The native forward pass saves no r̂; a backward pass that runs the
    reference loops (as one under a torch.func transform of the gradients
    would) recomputes it, and gets the gradients of an all-Python run."""
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    grads = []
    for backend in ("python", "native"):
        torch.manual_seed(1)
        lstm = LSTM(4, 6, layer_norm=True, peepholes=True, backend=backend, dtype=torch.float64)
        x_ = x.clone().requires_grad_()
        out = lstm(x_)[0]
        if backend == "native":
            monkeypatch.setattr(functional, "select", lambda *args, **kwargs: ("python", REFERENCE))
        out.sin().sum().backward()
        grads.append([x_.grad, *(p.grad for p in lstm.parameters())])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, **FLOAT64)


@needs_native
def test_plain_calls_run_the_plain_loops(monkeypatch):
    """Without a variant the backend calls the plain LSTM's functions of the
    extension, with any the variant ones."""
    called = []

    class Recorder:
        def __getattr__(self, name):
            called.append(name)
            return getattr(ext, name)

    ext = native._ext
    monkeypatch.setattr(native, "_ext", Recorder())
    loops = BACKENDS["native"]
    for options, names in [((), ("forward", "backward")), (("peepholes",), ("variant_forward", "variant_backward")),
                           (("zoneout_hidden",), ("variant_forward", "variant_backward"))]:
        called.clear()
        xw, h0, c0, weights, masks = variant_inputs([3, 2], 8, 0, torch.float32, options)
        y, gates, cs, _, _, r_hat, r_rstd = loops.forward(xw, h0, c0, weights, masks, [3, 2], False)
        loops.backward(upstream(y, h0, c0), Saved(gates, cs, c0, r_hat=r_hat, r_rstd=r_rstd), weights, masks,
                       [3, 2], False)
        assert called == list(names)


@needs_native
def test_nonfinite_values_propagate_as_in_the_reference():
    """A NaN and an infinity in the inputs of some rows: the same NaN and
    infinite entries as the reference loops, the finite ones equal."""
    for dtype in (torch.float64, torch.float32):
        xw, h0, c0, weights, masks = variant_inputs([4, 4, 2], 16, 0, dtype, OPTIONS)
        xw[5, 3] = float("nan")
        c0[2, 1] = float("inf")
        expected = forward_loop(xw, h0, c0, weights, masks, [4, 4, 2], False)
        got = BACKENDS["native"].forward(xw, h0, c0, weights, masks, [4, 4, 2], False)
        assert expected[0].isnan().any()
        assert_same(got, expected, FORWARD_NAMES, TOL[dtype])


@needs_native
def test_bad_variant_arguments_raise_clear_errors():
    xw, h0, c0, weights, masks = variant_inputs([3, 2], 8, 0, torch.float64, OPTIONS)
    loops, sizes = BACKENDS["native"], [3, 2]
    with pytest.raises(RuntimeError, match=r"cell mask must be \(5, 8\), got \[4, 8\]"):
        loops.forward(xw, h0, c0, weights, masks._replace(cell=masks.cell[:4]), sizes, False)
    with pytest.raises(RuntimeError, match=r"recurrent mask must be a CPU tensor of dtype Double, got Float"):
        loops.forward(xw, h0, c0, weights, masks._replace(recurrent=masks.recurrent.float()), sizes, False)
    with pytest.raises(RuntimeError, match=r"peephole must be \(3, 8\), got \[2, 8\]"):
        loops.forward(xw, h0, c0, weights._replace(peephole=weights.peephole[:2]), masks, sizes, False)
    with pytest.raises(RuntimeError, match=r"ln_hh must be \(32,\), got \[8\]"):
        loops.forward(xw, h0, c0, weights._replace(ln_hh=weights.ln_c), masks, sizes, False)
    with pytest.raises(RuntimeError, match="needs ln_c and ln_c_bias together, got ln_c alone"):
        loops.forward(xw, h0, c0, weights._replace(ln_c_bias=None), masks, sizes, False)
    y, gates, cs, _, _, r_hat, r_rstd = loops.forward(xw, h0, c0, weights, masks, sizes, False)
    with pytest.raises(RuntimeError, match="needs the saved r_hat and r_rstd, got no r_hat and r_rstd"):
        loops.backward(upstream(y, h0, c0), Saved(gates, cs, c0, r_rstd=r_rstd), weights, masks, sizes, False)
