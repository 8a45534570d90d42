"""``NativeLSTMCellFunction``, the native step that ``LSTMCell`` runs with ``backend="native"``
(and ``"auto"`` where the extension runs the input): its outputs and every gradient equal
those of autograd through the reference step, for each input that asks for a gradient
alone and all together, without biases, with a gradient on one state only, in float32
and float64, from inputs that are not contiguous; bad arguments are named."""

from __future__ import annotations

import pytest
import torch

from helpers import CELL_GRAD_CASES, assert_all_close, cell_step_inputs, needs_native, reference_cell_step, run_cell_step
from torch_lstm_manual import LSTMCell
from torch_lstm_manual.cell_function import NativeLSTMCellFunction, lstm_cell

pytestmark = needs_native

I, H, B = 3, 20, 4  # H = 20: 16 + 4 units, a vector and scalar rest where the build has AVX-512 (8 + 8 + 4 for AVX2)
NAMES = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")


def step_inputs(bias=True, seed=0, dtype=torch.float64):
    return cell_step_inputs(I, H, B, bias, seed, dtype)


run = run_cell_step


def native(*tensors):
    h, c, _ = NativeLSTMCellFunction.apply(*tensors)
    return h, c


reference = reference_cell_step
CASES = CELL_GRAD_CASES


@pytest.mark.parametrize(
    "bias, wanted", CASES, ids=[f"{'bias' if b else 'no_bias'}-" + "+".join(NAMES[k] for k in w) for b, w in CASES]
)
def test_outputs_and_gradients_match_the_reference(bias, wanted):
    tensors = step_inputs(bias)
    assert_all_close(run(native, tensors, wanted), run(reference, tensors, wanted))


@pytest.mark.parametrize("which", [("h",), ("c",)])
def test_gradient_of_one_state_only(which):
    """The other state's gradient reaches the step as None; the results are those of zeros."""
    tensors = step_inputs()
    wanted = tuple(range(len(NAMES)))
    assert_all_close(run(native, tensors, wanted, which), run(reference, tensors, wanted, which))


def test_float32_matches_the_reference():
    """float32, where the build's vector arithmetic runs the units (H = 20 leaves a scalar rest)."""
    tensors = step_inputs(dtype=torch.float32)
    wanted = tuple(range(len(NAMES)))
    assert_all_close(run(native, tensors, wanted), run(reference, tensors, wanted))


def test_inputs_that_are_not_contiguous():
    """Transposed, expanded and strided inputs, and gradients expanded from a scalar."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = step_inputs()
    strided = [
        x.t().contiguous().t(),  # (B, I), column-major
        h0[:1].expand(B, H),  # stride 0 along the batch
        torch.cat([c0, c0], 1)[:, ::2],  # every other column
        w_ih.t().contiguous().t(),
        w_hh.t().contiguous().t(),
        torch.stack([b_ih, b_ih], 1)[:, 0],
        b_hh,
    ]
    dense = [t.contiguous() for t in strided]
    wanted = tuple(range(len(NAMES)))
    assert_all_close(run(native, strided, wanted), run(reference, dense, wanted))

    def summed(step):
        leaves = [t.detach().clone().requires_grad_() for t in strided]
        h, c = step(*leaves)
        (h.sum() + c.sum()).backward()  # d_h and d_c reach the step expanded from a scalar
        return [leaf.grad for leaf in leaves]

    assert_all_close(summed(native), summed(reference))


def test_inference_matches_the_recorded_step():
    tensors = step_inputs()
    with torch.no_grad():
        h, c = lstm_cell(*tensors, native=True)
    assert_all_close([h, c], run(reference, tensors, (0,))[:2])


def test_double_backward_goes_through_the_reference():
    tensors = [t.detach().clone().requires_grad_() for t in step_inputs()]
    inputs = [tensors[0], tensors[1], tensors[3]]

    def loss(step):
        h, c = step(*tensors)
        grads = torch.autograd.grad((h * h).sum() + c.sum(), inputs, create_graph=True)
        return torch.autograd.grad(sum((g * g).sum() for g in grads), inputs)

    assert_all_close(loss(native), loss(reference))


@pytest.mark.parametrize("backend", ["auto", "native"])
def test_lstm_cell_runs_the_native_step(backend, monkeypatch):
    """``LSTMCell`` with ``auto`` or ``native`` runs the native step on float32 and float64 CPU input."""
    calls = []
    apply = NativeLSTMCellFunction.forward

    def counted(*args):
        calls.append(len(args))
        return apply(*args)

    monkeypatch.setattr(NativeLSTMCellFunction, "forward", staticmethod(counted))
    cell = LSTMCell(I, H, backend=backend, dtype=torch.float64)
    x = torch.randn(B, I, dtype=torch.float64)
    with torch.no_grad():
        cell(x)
    assert calls == []  # inference: the step alone, no Function
    cell(x)[0].sum().backward()
    assert calls == [7] and cell.weight_hh.grad is not None


@pytest.mark.parametrize(
    "index, shape, name",
    [(1, (B, H + 1), "h0"), (2, (B + 1, H), "c0"), (3, (4 * H, I + 1), "w_ih"), (4, (4 * H, H - 1), "w_hh"),
     (5, (4 * H + 1,), "b_ih"), (6, (H,), "b_hh")],
)
def test_bad_shapes_are_named(index, shape, name):
    tensors = step_inputs()
    tensors[index] = torch.zeros(shape, dtype=torch.float64)
    with torch.no_grad(), pytest.raises(RuntimeError, match=rf"{name} must be \("):
        lstm_cell(*tensors, native=True)


def test_a_dtype_that_differs_is_named():
    tensors = step_inputs()
    tensors[4] = tensors[4].float()
    with torch.no_grad(), pytest.raises(RuntimeError, match="w_hh must be a CPU tensor of dtype Double, got Float"):
        lstm_cell(*tensors, native=True)


@pytest.mark.parametrize("backend", ["auto", "native"])
def test_vmap_per_sample_gradients_go_through_the_reference(backend):
    """Under torch.func the native step gives way to the reference step, as the Python step does."""
    torch.manual_seed(0)
    cell = LSTMCell(I, H, backend=backend, dtype=torch.float64)
    params = {k: v.detach() for k, v in cell.named_parameters()}
    xs = torch.randn(3, 2, I, dtype=torch.float64)  # 3 samples of 2 unbatched steps

    def loss(p, x):
        h, c = torch.func.functional_call(cell, p, (x[0],))
        h, c = torch.func.functional_call(cell, p, (x[1], (h, c)))
        return (h**2).sum() + c.sum()

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, xs)
    for k in range(xs.shape[0]):
        looped = torch.func.grad(loss)(params, xs[k])
        assert_all_close([per_sample[n][k] for n in params], [looped[n] for n in params])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["auto", "native"])
def test_compile_matches_eager(backend):
    """A cell compiled before its first call (the backend is resolved while tracing) equals eager."""
    torch.manual_seed(0)
    cell = LSTMCell(I, H, backend=backend)
    x = torch.randn(3, B, I)
    twin = LSTMCell(I, H, backend=backend)
    twin.load_state_dict(cell.state_dict())
    compiled = torch.compile(twin)

    def unroll(module):
        h = c = None
        for t in range(x.shape[0]):
            h, c = module(x[t], None if h is None else (h, c))
        h.sum().backward()
        return [h.detach(), c.detach(), *(p.grad for p in module.parameters())]

    assert_all_close(unroll(compiled), unroll(cell))


def test_a_dtype_the_extension_does_not_run_is_named():
    tensors = [None if t is None else t.to(torch.bfloat16) for t in step_inputs()]
    with torch.no_grad(), pytest.raises(RuntimeError, match="x must be a float32 or float64 CPU tensor, got BFloat16"):
        lstm_cell(*tensors, native=True)
