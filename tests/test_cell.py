"""``LSTMCell`` against ``torch.nn.LSTMCell``: outputs and every gradient, one step and
an unrolled loop, the autograd extras (double backward, vmap, compile, eval),
bad input, conversions and ``state_dict``."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from helpers import assert_all_close, assert_per_sample_grads_match_a_loop, available_backends
from torch_lstm_manual import LSTM, LSTMCell, replace_lstms

BACKENDS = available_backends()

# float32: the same math, but the GEMMs of nn.LSTMCell (x W_ih^T and h W_hh^T
# as two products, then the biases) and ours (one product with the summed
# bias, then h W_hh^T; tanh(g) as 2 sigmoid(2 g) - 1) round in other orders.
# A step sums I + H + 2 products per gate; the errors are a few float32 ulps
# per step and grow along the 30-step loop. 1e-5 relative (about 100 ulps),
# as for LSTM's parity, is well above that rounding and far below any wrong term.
TOLERANCE = {torch.float64: {}, torch.float32: {"rtol": 1e-5, "atol": 1e-5}}

I, H, B = 3, 5, 4


def twins(backend="python", dtype=torch.float64, bias=True, seed=0, input_size=I, hidden_size=H):
    """A ``torch.nn.LSTMCell`` and an :class:`LSTMCell` with the same weights (through ``state_dict``)."""
    torch.manual_seed(seed)
    ref = nn.LSTMCell(input_size, hidden_size, bias, dtype=dtype)
    ours = LSTMCell(input_size, hidden_size, bias, dtype=dtype, backend=backend)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def inputs(batched, with_hx, dtype, steps=1, seed=2):
    """``(xs, hx)``: ``steps`` inputs (B, I) or (I,), and (h_0, c_0) or None."""
    gen = torch.Generator().manual_seed(seed)
    shape = (B,) if batched else ()
    xs = [torch.randn(*shape, I, generator=gen, dtype=dtype) for _ in range(steps)]
    hx = tuple(torch.randn(*shape, H, generator=gen, dtype=dtype) for _ in range(2)) if with_hx else None
    return xs, hx


def unroll(cell, xs, hx, seed=1):
    """Run ``cell`` over ``xs`` from ``hx``, a loss on every state (fixed random
    weights), and its gradients: ``[h_1, c_1, ..., h_T, c_T, d_x..., d_h0, d_c0, d_param...]``."""
    xs = [x.detach().clone().requires_grad_() for x in xs]
    leaves = None if hx is None else [t.detach().clone().requires_grad_() for t in hx]
    state = None if leaves is None else tuple(leaves)
    states = []
    for x in xs:
        state = cell(x, state)
        states += state
    gen = torch.Generator().manual_seed(seed)
    loss = sum((s * torch.randn(s.shape, generator=gen, dtype=s.dtype)).sum() for s in states)
    wrt = xs + (leaves or []) + list(cell.parameters())
    grads = list(torch.autograd.grad(loss, wrt))
    d_xs, grads = grads[: len(xs)], grads[len(xs) :]
    d_hx = [None, None] if hx is None else [grads.pop(0), grads.pop(0)]
    return [*states, *d_xs, *d_hx, *grads]


GRID = list(itertools.product([True, False], [True, False], [True, False]))  # bias, batched, with_hx


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias,batched,with_hx", GRID)
def test_parity_one_step(backend, dtype, bias, batched, with_hx):
    ref, ours = twins(backend, dtype, bias)
    xs, hx = inputs(batched, with_hx, dtype)
    got, expected = unroll(ours, xs, hx), unroll(ref, xs, hx)
    assert got[0].shape == expected[0].shape == ((B, H) if batched else (H,))
    assert_all_close(got, expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("batched", [True, False])
def test_parity_unrolled_30_steps(backend, dtype, batched):
    """A loop of 30 steps with a loss on every state: every state and every gradient."""
    ref, ours = twins(backend, dtype)
    xs, hx = inputs(batched, True, dtype, steps=30)
    assert_all_close(unroll(ours, xs, hx), unroll(ref, xs, hx), **TOLERANCE[dtype])


@pytest.mark.parametrize("backend", BACKENDS)
def test_inference_without_grad_matches_torch(backend):
    ref, ours = twins(backend)
    xs, hx = inputs(True, True, torch.float64)
    with torch.no_grad():
        assert_all_close(list(ours(xs[0], hx)), list(ref(xs[0], hx)))
        assert_all_close(list(ours(xs[0])), list(ref(xs[0])))


def test_empty_batch_matches_torch():
    ref, ours = twins()
    x = torch.randn(0, I, dtype=torch.float64)
    assert_all_close(list(ours(x)), list(ref(x)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_and_gradgradcheck(backend, bias):
    _, ours = twins(backend, bias=bias)
    xs, hx = inputs(True, True, torch.float64)
    tensors = [xs[0], *hx, *(p.detach() for p in ours.parameters())]
    tensors = [t.clone().requires_grad_() for t in tensors]
    names = [name for name, _ in ours.named_parameters()]

    def step(x, h0, c0, *params):
        return torch.func.functional_call(ours, dict(zip(names, params)), (x, (h0, c0)))

    assert torch.autograd.gradcheck(step, tensors)
    assert torch.autograd.gradgradcheck(step, tensors)


def test_vmap_per_sample_gradients_match_a_loop():
    """Per-sample gradients of a 4-step unrolled loss through torch.func equal a loop over the samples."""
    _, ours = twins()
    params = {k: v.detach() for k, v in ours.named_parameters()}
    xs = torch.randn(6, 4, I, dtype=torch.float64)  # 6 samples of 4 unbatched steps

    def loss(p, x):
        h, c = torch.func.functional_call(ours, p, (x[0],))
        total = h.sum()
        for t in range(1, x.shape[0]):
            h, c = torch.func.functional_call(ours, p, (x[t], (h, c)))
            total = total + (h**2).sum() + c.sum()
        return total

    assert_per_sample_grads_match_a_loop(loss, params, xs)


def test_compile_matches_eager():
    _, ours = twins(dtype=torch.float32)
    xs, hx = inputs(True, True, torch.float32, steps=3)
    compiled = torch.compile(ours)
    assert_all_close(unroll(compiled, xs, hx), unroll(ours, xs, hx))


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_mode_backward(backend):
    _, ours = twins(backend, torch.float32)
    xs, hx = inputs(True, True, torch.float32, steps=3)
    train_grads = unroll(ours.train(), xs, hx)
    assert_all_close(unroll(ours.eval(), xs, hx), train_grads)


@pytest.mark.parametrize("state_dtype", [torch.float32, torch.bfloat16, None], ids=["f32", "bf16", "none"])
def test_autocast_returns_what_torch_returns(state_dtype):
    """Under autocast nn.LSTMCell lowers its two products only; the states come
    out in the dtype bfloat16 and ``c_0`` promote to. Same dtypes here; the
    values differ by nn.LSTMCell's rounding of the gate pre-activations to
    bfloat16 (2^-8 relative, and about 0.01 absolute for values near 1), so 2e-2."""
    ref, ours = twins(dtype=torch.float32)
    xs, hx = inputs(True, state_dtype is not None, torch.float32)
    hx = None if hx is None else tuple(t.to(state_dtype) for t in hx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, expected = unroll(ours, xs, hx), unroll(ref, xs, hx)
    for a, b in zip(got, expected):
        if b is not None:
            assert a.dtype == b.dtype
    assert_all_close(got, expected, rtol=2e-2, atol=2e-2)


# --------------------------------------------------------------------------
# Bad input: the exception type of torch.nn.LSTMCell for each.

x2, h2 = torch.randn(2, I), torch.randn(2, H)
ERRORS = {
    "3-D input": (ValueError, "Expected input to be 1D or 2D, got 3D", lambda: (torch.randn(1, 2, I),)),
    "0-D input": (ValueError, "Expected input to be 1D or 2D, got 0D", lambda: (torch.tensor(1.0),)),
    "input size": (RuntimeError, "input has inconsistent input_size: got 4, expected 3", lambda: (torch.randn(2, 4),)),
    "unbatched input size": (RuntimeError, "inconsistent input_size: got 4", lambda: (torch.randn(4),)),
    "3-D h": (ValueError, r"Expected hx\[0\] to be 1D or 2D, got 3D", lambda: (x2, (torch.randn(1, 2, H), h2))),
    "3-D c": (ValueError, r"Expected hx\[1\] to be 1D or 2D, got 3D", lambda: (x2, (h2, torch.randn(1, 2, H)))),
    "h batch": (RuntimeError, "Input batch size 2 doesn't match hidden0 batch size 3", lambda: (x2, (torch.randn(3, H), h2))),
    "c batch": (RuntimeError, "Input batch size 2 doesn't match hidden1 batch size 3", lambda: (x2, (h2, torch.randn(3, H)))),
    "h size": (RuntimeError, "hidden0 has inconsistent hidden_size: got 6, expected 5", lambda: (x2, (torch.randn(2, 6), h2))),
    "c size": (RuntimeError, "hidden1 has inconsistent hidden_size: got 6, expected 5", lambda: (x2, (h2, torch.randn(2, 6)))),
    "1-D hx, batched input": (RuntimeError, r"batched 2-D input, hx\[0\] should also be 2-D", lambda: (x2, (torch.randn(H),) * 2)),
    "2-D hx, unbatched input": (RuntimeError, r"unbatched 1-D input, hx\[0\]", lambda: (torch.randn(I), (torch.randn(1, H),) * 2)),
    "input dtype": (RuntimeError, r"input dtype \(torch.float64\) does not match weight dtype", lambda: (x2.double(),)),
    "integer input": (RuntimeError, r"input dtype \(torch.int64\) does not match", lambda: (torch.ones(2, I, dtype=torch.long),)),
    "h dtype": (RuntimeError, r"hx\[0\] dtype must match the input dtype torch.float32, got torch.float64", lambda: (x2, (h2.double(), h2))),
    "one state": (RuntimeError, "expects two hidden states", lambda: (x2, (h2,))),
    "three states": (RuntimeError, "expects two hidden states", lambda: (x2, (h2, h2, h2))),
    "hx a tensor": (TypeError, "hx must be a tuple", lambda: (x2, h2)),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_input_raises_what_torch_raises(case):
    error, message, make_args = ERRORS[case]
    args = make_args()
    with pytest.raises(error):
        nn.LSTMCell(I, H)(*args)
    with pytest.raises(error, match=message):
        LSTMCell(I, H)(*args)


def test_bad_input_torch_does_not_check():
    """Where torch.nn.LSTMCell fails by accident (AttributeError) or computes in
    mixed precision, the cell names the argument instead."""
    cell = LSTMCell(I, H)
    with pytest.raises(TypeError, match="input must be a Tensor, got list"):
        cell([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match=r"hx\[1\] must be a Tensor, got int"):
        cell(x2, (h2, 1))
    with pytest.raises(RuntimeError, match=r"hx\[1\] dtype must match the input dtype torch.float32, got torch.float64"):
        cell(x2, (h2, h2.double()))
    with pytest.raises(RuntimeError, match="input must be on the parameters' device cpu, got meta"):
        cell(torch.randn(2, I, device="meta"))


def test_hx_as_a_list_as_torch():
    ref, ours = twins()
    xs, hx = inputs(True, True, torch.float64)
    assert_all_close(list(ours(xs[0], list(hx))), list(ref(xs[0], list(hx))))


def test_constructor_errors():
    with pytest.raises(ValueError, match="backend must be one of"):
        LSTMCell(I, H, backend="cuda")
    with pytest.raises(TypeError, match="hidden_size should be of type int, got: float"):
        LSTMCell(I, 5.0)
    with pytest.raises(ValueError, match="input_size must be greater than zero, got 0"):
        LSTMCell(0, H)
    with pytest.raises(TypeError, match="bias should be of type bool, got: int"):
        LSTMCell(I, H, bias=1)


# --------------------------------------------------------------------------
# Parameters, conversions, replace_lstms.


def test_parameters_initialisation_and_repr_match_torch():
    for bias in (True, False):
        torch.manual_seed(3)
        ref = nn.LSTMCell(I, 16, bias)
        torch.manual_seed(3)
        ours = LSTMCell(I, 16, bias)
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
        for a, b in zip(ours.parameters(), ref.parameters()):
            assert torch.equal(a, b)
        assert repr(ours) == repr(ref)
        assert ours.bias_ih is None if not bias else ours.bias_ih.shape == (4 * 16,)
    assert repr(LSTMCell(I, H, backend="python")) == "LSTMCell(3, 5, backend='python')"


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_loads_both_ways_strictly(bias):
    ref, ours = nn.LSTMCell(I, H, bias), LSTMCell(I, H, bias)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    back = nn.LSTMCell(I, H, bias)
    back.load_state_dict(ours.state_dict(), strict=True)
    for a, b in zip(back.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bias", [True, False])
def test_from_torch_and_to_torch_keep_weights_dtype_mode(bias):
    ref = nn.LSTMCell(I, H, bias, dtype=torch.float64).eval()
    ours = LSTMCell.from_torch(ref, backend="python")
    assert isinstance(ours, LSTMCell) and not ours.training and ours.backend == "python"
    assert ours.weight_ih.dtype == torch.float64 and ours.weight_ih.device.type == "cpu"
    assert all(a is b for a, b in zip(ours.parameters(), ref.parameters())), "parameters are shared"
    xs, hx = inputs(True, True, torch.float64, steps=3)
    assert_all_close(unroll(ours, xs, hx), unroll(ref, xs, hx))
    back = ours.to_torch()
    assert isinstance(back, nn.LSTMCell) and not back.training and back.bias == bias
    assert all(a is b for a, b in zip(back.parameters(), ours.parameters()))
    assert_all_close(unroll(back, xs, hx), unroll(ref, xs, hx))


def test_from_torch_rejects_other_modules():
    with pytest.raises(TypeError, match="from_torch expects a torch.nn.LSTMCell, got GRUCell"):
        LSTMCell.from_torch(nn.GRUCell(I, H))


class Decoder(nn.Module):
    """An encoder LSTM and a decoder LSTMCell run in a loop."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.LSTM(3, 4, batch_first=True)
        self.step = nn.ModuleDict({"cell": nn.LSTMCell(3, 4)})
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        _, (h, c) = self.encoder(x)
        state, out = (h[0], c[0]), []
        for _ in range(3):
            state = self.step["cell"](self.head(state[0]), state)
            out.append(self.head(state[0]))
        return torch.stack(out, 1)


def test_replace_lstms_replaces_lstm_and_lstm_cell():
    torch.manual_seed(0)
    model = Decoder().double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    expected = model(x)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert replace_lstms(model) == 2
    assert isinstance(model.encoder, LSTM) and isinstance(model.step["cell"], LSTMCell)
    assert not any(isinstance(m, (nn.LSTM, nn.LSTMCell)) for m in model.modules())
    torch.testing.assert_close(model(x), expected)
    before = model.step["cell"].weight_hh.detach().clone()
    model(x).sum().backward()
    optimizer.step()  # built before the replacement: still updates the shared parameters
    assert not torch.equal(model.step["cell"].weight_hh, before)


def test_backend_option_changes_take_effect():
    """The backend resolved for a device and dtype is cached per option; setting
    ``backend`` afterwards is not hidden by the cache."""
    ref, ours = twins("python")
    xs, hx = inputs(True, True, torch.float64)
    ours(xs[0], hx)
    ours.backend = "auto"
    assert_all_close(list(ours(xs[0], hx)), list(ref(xs[0], hx)))
    assert ("auto", torch.device("cpu"), torch.float64) in ours._backends
