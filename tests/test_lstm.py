"""Parity of the drop-in ``LSTM`` with ``torch.nn.LSTM``: outputs, final states and
every gradient, over the grid of options, inputs and dtypes."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import DEVICES, assert_all_close, assert_per_sample_grads_match_a_loop, available_backends, run, twins

BACKENDS = available_backends()

# float32: the same math, but oneDNN and our GEMMs sum in other orders, and the
# differences pass through T steps of recurrence and every layer. 1e-5 relative
# is about 100 float32 ulps, well above that rounding and far below any wrong term.
TOLERANCE = {torch.float64: {}, torch.float32: {"rtol": 1e-5, "atol": 1e-5}}

INPUTS = ["padded", "padded_batch_first", "unbatched", "unbatched_batch_first", "packed_sorted", "packed_unsorted"]


def make_input(kind, T, B, I, dtype, device, seed=2):
    """``(module options, x, lengths, enforce_sorted, batch)`` for one input kind."""
    gen = torch.Generator().manual_seed(seed)
    batch_first = kind.endswith("batch_first")
    if kind.startswith("unbatched"):
        return {"batch_first": batch_first}, torch.randn(T, I, generator=gen, dtype=dtype).to(device), None, True, None
    x = torch.randn(T, B, I, generator=gen, dtype=dtype).to(device)
    if batch_first:
        x = x.transpose(0, 1).contiguous()
    if not kind.startswith("packed"):
        return {"batch_first": batch_first}, x, None, True, B
    # Lengths include 1 and the maximum T; sorted for enforce_sorted=True.
    lengths = torch.tensor([T, 1] + [int(v) for v in torch.randint(1, T + 1, (B - 2,), generator=gen)])
    if kind == "packed_sorted":
        lengths = lengths.sort(descending=True).values
    return {"batch_first": False}, x, lengths, kind == "packed_sorted", B


def make_hx(ours, batch, dtype, device, seed=3):
    D = 2 if ours.bidirectional else 1
    gen = torch.Generator().manual_seed(seed)
    P = ours.proj_size or ours.hidden_size
    shape = (ours.num_layers * D,) if batch is None else (ours.num_layers * D, batch)
    h0 = torch.randn(*shape, P, generator=gen, dtype=dtype).to(device)
    c0 = torch.randn(*shape, ours.hidden_size, generator=gen, dtype=dtype).to(device)
    return h0, c0


GRID = list(itertools.product([1, 2, 3], [True, False], [False, True], [0, 3], INPUTS, [False, True]))


def check_parity(backend, device, dtype, num_layers, bias, bidirectional, proj_size, kind, with_hx, T=5, B=4, I=3, H=5):
    options, x, lengths, enforce_sorted, batch = make_input(kind, T, B, I, dtype, device)
    ref, ours = twins(
        backend, device, dtype, input_size=I, hidden_size=H, num_layers=num_layers, bias=bias,
        bidirectional=bidirectional, proj_size=proj_size, **options,
    )
    hx = make_hx(ours, batch, dtype, device) if with_hx else None
    expected = run(ref, x, hx, lengths, enforce_sorted)
    got = run(ours, x, hx, lengths, enforce_sorted)
    assert_all_close(got, expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("num_layers,bias,bidirectional,proj_size,kind,with_hx", GRID)
def test_parity_grid(backend, dtype, num_layers, bias, bidirectional, proj_size, kind, with_hx):
    check_parity(backend, "cpu", dtype, num_layers, bias, bidirectional, proj_size, kind, with_hx)


CUDA_GRID = [g for g in GRID if g[0] in (1, 2)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("num_layers,bias,bidirectional,proj_size,kind,with_hx", CUDA_GRID)
def test_parity_grid_cuda(dtype, num_layers, bias, bidirectional, proj_size, kind, with_hx):
    check_parity("python", "cuda", dtype, num_layers, bias, bidirectional, proj_size, kind, with_hx)


@settings(max_examples=30, deadline=None)
@given(
    T=st.integers(1, 7),
    B=st.integers(2, 5),
    I=st.integers(1, 6),
    H=st.integers(2, 6),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    use_proj=st.booleans(),
    packed=st.booleans(),
    seed=st.integers(0, 2**16),
    backend=st.sampled_from(BACKENDS),
)
def test_parity_random_shapes(T, B, I, H, num_layers, bidirectional, use_proj, packed, seed, backend):
    proj_size = H - 1 if use_proj else 0
    ref, ours = twins(backend, input_size=I, hidden_size=H, num_layers=num_layers, bidirectional=bidirectional, proj_size=proj_size, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=gen) if packed else None
    if packed:
        lengths[0] = T
    assert_all_close(run(ours, x, None, lengths, False), run(ref, x, None, lengths, False))


def test_dropout_between_layers_matches_in_training_and_is_off_in_eval():
    ref, ours = twins(input_size=3, hidden_size=4, num_layers=3, dropout=0.5)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    ours.train()
    torch.manual_seed(7)
    a, _ = ours(x)
    torch.manual_seed(7)
    b, _ = ours(x)
    torch.testing.assert_close(a, b)  # same seed, same masks
    torch.manual_seed(8)
    c, _ = ours(x)
    assert not torch.allclose(a, c), "dropout did not change the training output"
    ref.eval(), ours.eval()
    assert_all_close(run(ours, x), run(ref, x))


@pytest.mark.parametrize("device", DEVICES)
def test_eval_mode_backward(device):
    """cuDNN refuses backward in eval mode; this module gives the same gradients as in training."""
    _, ours = twins(device=device, dtype=torch.float32, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 3, device=device)
    train_grads = run(ours.train(), x)
    eval_grads = run(ours.eval(), x)
    assert_all_close(eval_grads, train_grads)


def test_deterministic_same_seed_same_result():
    results = []
    for _ in range(2):
        _, ours = twins(seed=11, input_size=3, hidden_size=4, num_layers=2, dropout=0.3)
        torch.manual_seed(12)
        results.append(run(ours.train(), torch.randn(6, 3, 3, dtype=torch.float64)))
    for a, b in zip(*results):
        assert a is None and b is None or torch.equal(a, b)


def test_large_preactivations_stay_finite():
    ref, ours = twins(input_size=3, hidden_size=4)
    x = torch.full((5, 2, 3), 1e4 / 3, dtype=torch.float64) * torch.tensor([1.0, -1.0]).view(1, 2, 1)
    with torch.no_grad():
        for m in (ref, ours):
            m.weight_ih_l0.fill_(1.0)  # |z| = 1e4
    got, expected = run(ours, x), run(ref, x)
    for t in got:
        if t is not None:
            assert torch.isfinite(t).all()
    assert_all_close(got, expected)


def test_nan_in_input_propagates_as_in_torch():
    ref, ours = twins(input_size=3, hidden_size=4, bidirectional=True)
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    x[2, 1, 0] = float("nan")
    (a, (ha, ca)), (b, (hb, cb)) = ours(x), ref(x)
    for u, v in ((a, b), (ha, hb), (ca, cb)):
        torch.testing.assert_close(u, v, equal_nan=True)
    assert torch.isnan(a[:, 1]).any() and not torch.isnan(a[:, 0]).any()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_dtypes_where_torch_accepts_them(dtype):
    """Against a float64 run, our error is no worse than twice torch.nn.LSTM's own."""
    ref, ours = twins(dtype=dtype, input_size=4, hidden_size=8)
    x = torch.randn(6, 3, 4).to(dtype)
    try:
        expected, _ = ref(x)
    except RuntimeError as error:
        pytest.skip(f"torch.nn.LSTM does not run {dtype} here: {error}")
    got, _ = ours(x)
    assert got.dtype == dtype
    _, exact = twins(input_size=4, hidden_size=8)
    exact.load_state_dict({k: v.double() for k, v in ref.state_dict().items()})
    truth, _ = exact(x.double())
    err_ours = (got.double() - truth).abs().max()
    err_torch = (expected.double() - truth).abs().max()
    assert err_ours <= 2 * err_torch + 1e-3


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_behaves_as_torch(device):
    """Under autocast a float32 LSTM runs in the autocast dtype, as torch.nn.LSTM does.

    On the CPU with a projection, torch.nn.LSTM runs op by op, and autocast
    lowers only its matrix products: its c_n stays in c_0's dtype (float32);
    this module runs the whole layer in one dtype, so only values are compared.
    """
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    ref, ours = twins(device=device, dtype=torch.float32, input_size=4, hidden_size=8, proj_size=3 if device == "cpu" else 0)
    x = torch.randn(6, 3, 4, device=device)
    with torch.autocast(device, dtype=dtype):
        expected, (h_ref, c_ref) = ref(x)
        got, (h_ours, c_ours) = ours(x)
    assert got.dtype == expected.dtype == dtype and h_ours.dtype == h_ref.dtype == dtype
    if device != "cpu":
        assert c_ours.dtype == c_ref.dtype
    tol = {"rtol": 0.02, "atol": 0.02}  # 8 (bfloat16) or 11 (float16) bits of mantissa
    for a, b in ((got, expected), (h_ours, h_ref), (c_ours, c_ref)):
        torch.testing.assert_close(a.float(), b.float(), **tol)
    got.float().sum().backward()
    assert ours.weight_ih_l0.grad is not None and ours.weight_ih_l0.grad.dtype == torch.float32


def autocast_outcome(module, x, hx, device, dtype):
    """The dtypes of ``(output, h_n, c_n)`` under autocast, or the type of the exception raised."""
    try:
        with torch.autocast(device, dtype=dtype):
            out, (h_n, c_n) = module(x, hx)
    except Exception as error:  # compared with torch.nn.LSTM's
        return type(error)
    return out.dtype, h_n.dtype, c_n.dtype


AUTOCAST_DTYPES = {"f32": torch.float32, "f64": torch.float64, "bf16": torch.bfloat16, "f16": torch.float16}
# (device, autocast dtype, the dtypes tried for the module, the input and hx)
AUTOCAST_CASES = [
    pytest.param("cpu", torch.bfloat16, ["f32", "f64", "bf16"], id="cpu-bf16"),
    pytest.param(
        "cuda", torch.float16, ["f32", "f64", "f16", "bf16"], id="cuda-f16",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


@pytest.mark.parametrize("device,autocast_dtype,dtypes", AUTOCAST_CASES)
@pytest.mark.parametrize("proj_size", [0, 2])
def test_autocast_casts_what_autocast_casts(device, autocast_dtype, dtypes, proj_size):
    """Autocast's own rule: a floating tensor but a float64 one goes to the autocast
    dtype. For every mix of module, input and hx dtypes: torch.nn.LSTM's output
    dtypes, or the same type of exception where the dtypes do not meet."""
    for module_dtype, x_dtype, hx_dtype in itertools.product(dtypes, dtypes, [None] + dtypes):
        ref, ours = twins(device=device, dtype=AUTOCAST_DTYPES[module_dtype], input_size=3, hidden_size=4, proj_size=proj_size)
        x = torch.randn(5, 2, 3, device=device, dtype=AUTOCAST_DTYPES[x_dtype])
        hx = None
        if hx_dtype is not None:
            to = {"device": device, "dtype": AUTOCAST_DTYPES[hx_dtype]}
            hx = torch.randn(1, 2, proj_size or 4, **to), torch.randn(1, 2, 4, **to)
        expected = autocast_outcome(ref, x, hx, device, autocast_dtype)
        got = autocast_outcome(ours, x, hx, device, autocast_dtype)
        case = f"module {module_dtype}, input {x_dtype}, hx {hx_dtype}: torch {expected}, ours {got}"
        if device == "cpu" and proj_size and isinstance(expected, tuple):
            # torch.nn.LSTM's op-by-op path (see test_autocast_behaves_as_torch):
            # c_n is compared with the rule, the rest with torch.
            assert isinstance(got, tuple) and got[:2] == expected[:2] and got[2] == got[0], case
        else:
            assert got == expected, case


def test_autocast_leaves_a_float64_module_in_float64():
    """float64 is not eligible for autocast: the results are those without autocast, bit for bit."""
    _, ours = twins(input_size=3, hidden_size=4, num_layers=2, proj_size=2)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    expected = run(ours, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = run(ours, x)
    assert all(t is None or t.dtype == torch.float64 for t in got)
    assert_all_close(got, expected, rtol=0, atol=0)


def test_autocast_names_the_tensor_left_in_float64():
    _, ours = twins(dtype=torch.float64, input_size=3, hidden_size=4)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(
        RuntimeError, match=r"input is torch.bfloat16 and weight_ih_l0 is torch.float64"
    ):
        ours(torch.randn(5, 2, 3))
    hx = torch.zeros(1, 2, 4, dtype=torch.float64), torch.zeros(1, 2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match=r"hx\[0\] is torch.float64"):
        twins(dtype=torch.float32, input_size=3, hidden_size=4)[1](torch.randn(5, 2, 3), hx)


def test_compile_matches_eager():
    """A compiled model gives the eager outputs and gradients."""
    _, ours = twins(dtype=torch.float32, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = torch.randn(4, 2, 3)
    compiled = torch.compile(ours)
    assert_all_close(run(compiled, x), run(ours, x))


def test_compile_after_another_hidden_size_matches_eager():
    """Compiling a second model of another hidden size recompiles the loops with
    symbolic sizes (dynamo's automatic dynamic shapes); the gates are split by
    chunks, not by slices computed from H, which inductor could not index then."""
    torch._dynamo.reset()
    from torch_lstm_manual import LSTMCell

    torch.manual_seed(0)
    cell = LSTMCell(3, 5)
    compiled_cell = torch.compile(cell)
    h = c = torch.randn(4, 5)
    for _ in range(2):
        h, c = compiled_cell(torch.randn(4, 3), (h, c))
    _, ours = twins(dtype=torch.float32, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    x = torch.randn(4, 2, 3)
    assert_all_close(run(torch.compile(ours), x), run(ours, x))


def test_vmap_per_sample_gradients_match_a_loop():
    """torch.nn.LSTM has no vmap batching rule; this module's per-sample gradients
    through torch.func equal a Python loop over the samples."""
    _, ours = twins(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, proj_size=2)
    params = {k: v.detach() for k, v in ours.named_parameters()}
    xs = torch.randn(5, 6, 3, dtype=torch.float64)  # 5 unbatched samples of T=6

    def loss(p, x):
        out, (h, c) = torch.func.functional_call(ours, p, (x,))
        return (out**2).sum() + h.sum() + c.sum()

    assert_per_sample_grads_match_a_loop(loss, params, xs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["padded", "packed_unsorted"])
def test_inference_without_grad_matches_torch(backend, kind):
    """Under no_grad the loops save nothing for backward; the results are the same."""
    options, x, lengths, enforce_sorted, batch = make_input(kind, 6, 4, 3, torch.float64, "cpu")
    ref, ours = twins(backend, input_size=3, hidden_size=5, num_layers=2, bidirectional=True, proj_size=2, **options)
    hx = make_hx(ours, batch, torch.float64, "cpu")
    inp = x if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    with torch.no_grad():
        (a, (ha, ca)), (b, (hb, cb)) = ours(inp, hx), ref(inp, hx)
    a, b = (a.data, b.data) if lengths is not None else (a, b)
    assert_all_close([a, ha, ca], [b, hb, cb])
