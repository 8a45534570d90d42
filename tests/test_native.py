"""The native (C++) time loops against the Python reference (their loader and
builds: ``test_native_builds.py``).

Every fast path is checked against the readable loops of ``reference.py``,
result for result, and through ``LSTM(backend="native")`` against
``torch.nn.LSTM``. float64 uses the default tolerances. float32 uses
``FLOAT32``: the native and the reference loops both round every product and
activation to float32 (~6e-8 relative), in different orders and with a
polynomial exp/tanh in the native gates (a few ulp); through T steps and
sums over N rows the differences grow to a few 1e-6 of the values' scale, as
between nn.LSTM and the Python loops themselves.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_lstm_manual.native as native
from torch_lstm_manual import LSTM, lstm_layer
from torch_lstm_manual.backends import BACKENDS, REFERENCE, backward_and_products, project_and_forward
from torch_lstm_manual.backends.native import input_projection as native_input_projection
from torch_lstm_manual.layer import NO_MASKS, Grads, Needs, Saved, Weights
from torch_lstm_manual.lstm import resolve_backend
from torch_lstm_manual.reference import backward_loop, forward_loop, input_projection

from helpers import LOOP_SIZES, assert_all_close, loop_inputs, needs_native, run, twins

FLOAT32 = {"rtol": 1e-4, "atol": 1e-5}
TOL = {torch.float64: {}, torch.float32: FLOAT32}

SIZES = LOOP_SIZES


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("H, P", [(5, 0), (33, 0), (72, 0), (72, 20)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("scale", [1, 24], ids=["rows1", "rows24"])
def test_loops_match_reference(dtype, sizes, H, P, reverse, scale):
    sizes = [b * scale for b in sizes]
    xw, h0, c0, w_hh, w_hr = loop_inputs(sizes, H, P, dtype)
    loops, weights = BACKENDS["native"], Weights(None, w_hh, w_hr=w_hr)
    expected = forward_loop(xw, h0, c0, weights, NO_MASKS, sizes, reverse)
    assert_all_close(loops.forward(xw, h0, c0, weights, NO_MASKS, sizes, reverse), expected, **TOL[dtype])
    # Inference: the same outputs, nothing saved; batch_sizes as a tensor.
    y, gates, cs, h_n, c_n = loops.forward(xw, h0, c0, weights, NO_MASKS, torch.tensor(sizes), reverse, save=False)[:5]
    assert gates is None and cs is None
    assert_all_close([y, h_n, c_n], [expected[0], expected[3], expected[4]], **TOL[dtype])

    y, gates, cs = expected[:3]
    gen = torch.Generator().manual_seed(1)
    d_y, d_hn, d_cn = (torch.randn(t.shape, generator=gen, dtype=torch.float64).to(dtype) for t in (y, h0, c0))
    args = (Grads(d_y, d_hn, d_cn), Saved(gates, cs, c0), weights, NO_MASKS, sizes, reverse)
    assert_all_close(loops.backward(*args), backward_loop(*args), **TOL[dtype])


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("threads, H", [(1, 128), (2, 128), (16, 130)])
def test_thread_count_does_not_change_results(threads, H, dtype):
    """Every split of the hidden units across threads, down to threads that own
    none (16 threads, 130 units in blocks of 8), in the loops and in the passes
    from the inputs, packed and reverse."""
    sizes = [64] * 6 + [40, 9, 1]
    xw, h0, c0, w_hh, w_hr = loop_inputs(sizes, H, 0, dtype)
    gen = torch.Generator().manual_seed(1)
    rows, w_ih, bias = (torch.randn(*shape, generator=gen, dtype=dtype) for shape in ((len(xw), 24), (4 * H, 24), (4 * H,)))
    d_y = torch.randn(len(xw), H, generator=gen, dtype=dtype)
    loops = BACKENDS["native"]
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        weights = Weights(w_ih, w_hh, bias, None, w_hr)
        got = loops.forward(xw, h0, c0, weights, NO_MASKS, sizes, True)
        back = (Grads(d_y, h0, c0), Saved(got[1], got[2], c0), weights, NO_MASKS, sizes, True)
        got_back = loops.backward(*back)
        from_input = (rows, h0, c0, weights, NO_MASKS, sizes, True)
        got_input = loops.forward_input(*from_input)
        saved = Saved(got_input[1], got_input[2], c0, h0, rows, got_input[0])
        back_input = (Grads(d_y, h0, c0), saved, weights, NO_MASKS, sizes, True)
        got_back_input = loops.backward_input(*back_input)
    finally:
        torch.set_num_threads(old)
    assert_all_close(got, forward_loop(xw, h0, c0, weights, NO_MASKS, sizes, True), **TOL[dtype])
    assert_all_close(got_back, backward_loop(*back), **TOL[dtype])
    assert_all_close(got_input, project_and_forward(REFERENCE, *from_input), **TOL[dtype])
    assert_all_close(got_back_input, backward_and_products(REFERENCE, *back_input), **TOL[dtype])


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("sizes", [(3, 3, 3), (5, 4, 4, 2, 1)])
@pytest.mark.parametrize("H, P", [(5, 0), (33, 0), (72, 20)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("scale, I, bias", [(1, 3, True), (24, 40, True), (24, 7, False)],
                         ids=["rows1-I3-bias", "rows24-I40-bias", "rows24-I7"])
def test_passes_from_input_match_reference(dtype, sizes, H, P, reverse, scale, I, bias):
    """The two passes LSTMFunction runs, each in one call (for float32 without
    a projection, on the tiles: the input projection inside the forward loop,
    the products of the backward pass inside the backward loop), against the
    reference loops and products."""
    sizes = [b * scale for b in sizes]
    xw, h0, c0, w_hh, w_hr = loop_inputs(sizes, H, P, dtype)
    gen = torch.Generator().manual_seed(2)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

    rows, w_ih = rand(len(xw), I), rand(4 * H, I)
    b_ih, b_hh = (rand(4 * H) if bias else None for _ in "ih")
    native_loops = BACKENDS["native"]
    weights = Weights(w_ih, w_hh, b_ih, b_hh, w_hr)
    args = (rows, h0, c0, weights, NO_MASKS, sizes, reverse)
    expected = project_and_forward(REFERENCE, *args)
    assert_all_close(native_loops.forward_input(*args), expected, **TOL[dtype])
    y, gates, cs, h_n, c_n = native_loops.forward_input(*args, save=False)[:5]
    assert gates is None and cs is None
    assert_all_close([y, h_n, c_n], [expected[0], expected[3], expected[4]], **TOL[dtype])

    y, gates, cs = expected[:3]
    grads = Grads(rand(*y.shape), rand(*h0.shape), rand(*c0.shape))
    back = (grads, Saved(gates, cs, c0, h0, rows, y), weights, NO_MASKS, sizes, reverse)
    expected = backward_and_products(REFERENCE, *back)  # d_x, d_h, d_h0, d_c0, d_w_ih, d_w_hh, d_b
    assert_all_close(native_loops.backward_input(*back), expected, **TOL[dtype])
    for need in [(False, True, False), (True, False, False), (False, False, True)]:
        got = native_loops.backward_input(*back, Needs(x=need[0], w_ih=need[1], w_hh=need[2]))
        wanted = [need[0], True, True, True, need[1], need[2], True]
        assert [g is not None for g in got[:7]] == [w and e is not None for w, e in zip(wanted, expected)]
        assert_all_close([g for g in got if g is not None], [e for e, g in zip(expected, got) if g is not None], **TOL[dtype])


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("biases", ["both", "ih", "hh", "none"])
def test_input_projection_matches_reference(dtype, biases):
    gen = torch.Generator().manual_seed(0)
    rows, w_ih = torch.randn(700, 24, generator=gen, dtype=dtype), torch.randn(400, 24, generator=gen, dtype=dtype)
    b_ih = torch.randn(400, generator=gen, dtype=dtype) if biases in ("both", "ih") else None
    b_hh = torch.randn(400, generator=gen, dtype=dtype) if biases in ("both", "hh") else None
    got = native_input_projection(rows, w_ih, b_ih, b_hh)
    assert_all_close(got, input_projection(rows, w_ih, b_ih, b_hh), **TOL[dtype])


@needs_native
def test_rejects_bad_batch_sizes():
    xw, h0, c0, w_hh, _ = loop_inputs([2, 3], 4, 0, torch.float64)
    with pytest.raises(RuntimeError, match="non-increasing"):
        BACKENDS["native"].forward(xw, h0[:2], c0[:2], Weights(None, w_hh), NO_MASKS, [2, 3], False)
    with pytest.raises(RuntimeError, match=r"xw must be \(4, 16\)"):
        BACKENDS["native"].forward(xw, h0, c0, Weights(None, w_hh), NO_MASKS, [2, 2], False)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_passes_from_input_reject_bad_arguments_by_name(dtype):
    sizes, H, I = [3, 3], 4, 5
    _, h0, c0, w_hh, _ = loop_inputs(sizes, H, 0, dtype)
    rows, w_ih, bias = torch.randn(6, I, dtype=dtype), torch.randn(4 * H, I, dtype=dtype), torch.randn(4 * H, dtype=dtype)
    loops = BACKENDS["native"]

    def forward(**change):
        args = dict(rows=rows, w_ih=w_ih, b_ih=bias, b_hh=None, h0=h0, c0=c0, w_hh=w_hh, w_hr=None)
        args.update(change)
        weights = Weights(args["w_ih"], args["w_hh"], args["b_ih"], args["b_hh"], args["w_hr"])
        return loops.forward_input(args["rows"], args["h0"], args["c0"], weights, NO_MASKS, sizes, False)

    with pytest.raises(RuntimeError, match=r"bias must be \(16,\), got \[2, 8\]"):
        forward(b_ih=bias.view(2, 8))
    with pytest.raises(RuntimeError, match=r"bias must be \(16,\), got \[1\]"):
        forward(b_ih=bias[:1])
    with pytest.raises(RuntimeError, match=r"w_ih must be \(16, 5\), got \[17, 5\]"):
        forward(w_ih=torch.randn(17, I, dtype=dtype))
    with pytest.raises(RuntimeError, match="w_ih must be a CPU tensor of dtype"):
        forward(w_ih=w_ih.half())
    with pytest.raises(RuntimeError, match=r"c0 must be \(B, H\), got \[\]"):
        forward(c0=torch.tensor(1.0, dtype=dtype))
    with pytest.raises(RuntimeError, match="x must be a float32 or float64 CPU tensor, got .* on meta"):
        forward(rows=rows.to("meta"))
    y, gates, cs, _, _ = forward()[:5]
    if native._ext.fuses_backward(gates, None):  # the one-pass backward checks its arguments too
        saved = Saved(gates, cs, c0, h0, torch.randn(7, I), y)
        with pytest.raises(RuntimeError, match=r"x must be \(6, 5\), got \[7, 5\]"):
            loops.backward_input(Grads(torch.zeros_like(y), h0, c0), saved, Weights(w_ih, w_hh), NO_MASKS, sizes, False)
    # The module-level entry refuses what the native loops cannot run, by name.
    with pytest.raises(RuntimeError, match="backend='native' is not available: it runs float32 and float64 tensors on the CPU"):
        lstm_layer(torch.zeros(2, 3, I, device="meta"), h0, c0, w_ih, w_hh, backend="native")


# --------------------------------------------------------------------------
# Through the module, against torch.nn.LSTM.

MODULES = [
    dict(input_size=3, hidden_size=5),
    dict(input_size=3, hidden_size=5, bias=False),
    dict(input_size=4, hidden_size=6, num_layers=2, bidirectional=True),
    dict(input_size=4, hidden_size=6, proj_size=3, bidirectional=True),
    dict(input_size=4, hidden_size=6, batch_first=True),
]


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("kwargs", MODULES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("packing", ["padded", "sorted", "unsorted"])
def test_module_matches_nn_lstm(dtype, kwargs, packing):
    ref, ours = twins("native", dtype=dtype, **kwargs)
    T, B = 6, 4
    shape = (B, T) if kwargs.get("batch_first") else (T, B)
    x = torch.randn(*shape, kwargs["input_size"], dtype=dtype)
    D = 2 if kwargs.get("bidirectional") else 1
    L = kwargs.get("num_layers", 1)
    hx = (torch.randn(L * D, B, kwargs.get("proj_size") or kwargs["hidden_size"], dtype=dtype),
          torch.randn(L * D, B, kwargs["hidden_size"], dtype=dtype))
    lengths = {"padded": None, "sorted": [6, 4, 4, 1], "unsorted": [1, 6, 3, 6]}[packing]
    sorted_ = packing != "unsorted"
    assert_all_close(run(ours, x, hx, lengths, sorted_), run(ref, x, hx, lengths, sorted_), **TOL[dtype])


@needs_native
def test_module_uses_native_loops(monkeypatch):
    """``auto`` resolves to native on CPU float tensors, and both loops run."""
    calls = []
    loops = BACKENDS["native"]
    spy = type(loops)(
        lambda *a, **k: calls.append("forward") or loops.forward(*a, **k),
        lambda *a, **k: calls.append("backward") or loops.backward(*a, **k),
    )
    monkeypatch.setitem(BACKENDS, "native", spy)
    ours = LSTM(3, 5)
    assert resolve_backend("auto", torch.zeros(1)) == "native"
    ours(torch.randn(4, 2, 3))[0].sum().backward()
    assert calls == ["forward", "backward"]


@needs_native
@pytest.mark.parametrize("proj", [0, 2])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck(proj, reverse):
    gen = torch.Generator().manual_seed(0)
    H, P, I, sizes = 4, proj or 4, 3, (3, 2, 2, 1)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)

    inputs = (rand(sum(sizes), I), rand(3, P), rand(3, H), rand(4 * H, I), rand(4 * H, P), rand(4 * H), rand(4 * H))
    w_hr = rand(P, H) if proj else None

    def f(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *w):
        return lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w[0] if w else None, sizes, reverse, "native")

    assert torch.autograd.gradcheck(f, inputs + ((w_hr,) if proj else ()))


@needs_native
def test_float32_error_no_worse_than_nn_lstm():
    """The polynomial exp and tanh of the native float32 gates keep the error
    at nn.LSTM's own level, against float64, on outputs and every gradient."""
    torch.manual_seed(0)
    ref64 = nn.LSTM(32, 64, dtype=torch.float64)
    ref32 = nn.LSTM(32, 64)
    ref32.load_state_dict(ref64.state_dict())
    ours = LSTM.from_torch(ref32, backend="native")
    x = torch.randn(50, 16, 32, dtype=torch.float64)
    upstream = [torch.randn(50, 16, 64, dtype=torch.float64), torch.randn(2, 1, 16, 64, dtype=torch.float64)]

    def results(module, dtype):
        x_ = x.to(dtype).requires_grad_()
        out, (h_n, c_n) = module(x_)
        loss = (out * upstream[0].to(dtype)).sum() + (torch.stack([h_n, c_n]) * upstream[1].to(dtype)).sum()
        return [out, h_n, c_n, *torch.autograd.grad(loss, [x_, *module.parameters()])]

    exact = results(ref64, torch.float64)

    def error(module):
        return max(((a.double() - e).abs().max() / e.abs().max()).item() for a, e in zip(results(module, torch.float32), exact))

    assert error(ours) <= error(ref32)


# --------------------------------------------------------------------------
# The buffers the loops keep for reuse.


@needs_native
def test_kept_buffers_are_reused_only_once_free():
    sizes = [64] * 8  # gates: 512 x 512 floats, 1 MiB: large enough to be kept
    xw, h0, c0, w_hh, _ = loop_inputs(sizes, 128, 0, torch.float32)
    loops = BACKENDS["native"]
    native.empty_cache()
    weights = Weights(None, w_hh)
    first = loops.forward(xw, h0, c0, weights, NO_MASKS, sizes, False)[:5]
    kept = [t.clone() for t in first]
    second = loops.forward(xw * 2, h0, c0, weights, NO_MASKS, sizes, False)[:5]  # `first` still held
    assert first[1].data_ptr() != second[1].data_ptr()
    assert all(torch.equal(a, b) for a, b in zip(first, kept))
    address = first[1].data_ptr()
    del first
    third = loops.forward(xw, h0, c0, weights, NO_MASKS, sizes, False)[:5]
    assert third[1].data_ptr() == address  # the free buffer, not fresh memory
    assert_all_close(third, kept, rtol=0, atol=0)
    del second, third
    # The input projections and the gate gradients of backward() too.
    rows, w_ih = torch.randn(512, 16), torch.randn(512, 16)
    xw = native_input_projection(rows, w_ih, None, None)
    address = xw.data_ptr()
    assert native_input_projection(rows, w_ih, None, None).data_ptr() != address  # xw still held
    del xw
    assert native_input_projection(rows, w_ih, None, None).data_ptr() == address
    xw2, h02, c02, w_hh2, _ = loop_inputs(sizes, 128, 0, torch.float32)
    y, gates, cs, _, _ = loops.forward(xw2, h02, c02, Weights(None, w_hh2), NO_MASKS, sizes, False)[:5]
    args = (Grads(torch.randn_like(y), h0, c0), Saved(gates, cs, c0), weights, NO_MASKS, sizes, False)
    d_z = loops.backward(*args)[0]
    kept_d_z, address = d_z.clone(), d_z.data_ptr()
    assert loops.backward(*args)[0].data_ptr() != address and torch.equal(d_z, kept_d_z)
    del d_z
    assert_all_close([loops.backward(*args)[0]], [kept_d_z], rtol=0, atol=0)
    del y, gates, cs, args
    assert native.empty_cache() >= 512 * 512 * 4
    assert native.empty_cache() == 0


@needs_native
def test_two_graphs_alive_at_once_match_nn_lstm():
    """Two forward passes before either backward: each keeps its own saved buffers."""
    ref, ours = twins("native", dtype=torch.float32, input_size=16, hidden_size=128)
    xs = [torch.randn(8, 64, 16) for _ in range(2)]

    def grads(module):
        module.zero_grad()
        outs = [module(x)[0] for x in xs]
        (outs[0].square().sum() + outs[1].sum()).backward()
        return outs + [p.grad for p in module.parameters()]

    assert_all_close(grads(ours), grads(ref), **FLOAT32)


# --------------------------------------------------------------------------
# The loader: lazy, and a failed build falls back to Python with one warning.
