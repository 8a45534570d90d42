"""``LSTMCellFunction``, the step ``LSTMCell`` runs: its outputs and every gradient equal
those of ``LSTMFunction`` on a sequence of one step (each backend) and of autograd
through the reference step, for each input that asks for a gradient alone and all
together, without biases, from zero states, and with a gradient on one state only."""

from __future__ import annotations

import pytest
import torch

from helpers import CELL_GRAD_CASES, assert_all_close, available_backends, cell_step_inputs, reference_cell_step, run_cell_step
from torch_lstm_manual import LSTMCell, LSTMFunction
from torch_lstm_manual.cell_function import LSTMCellFunction, lstm_cell

BACKENDS = available_backends()
I, H, B = 3, 5, 4
NAMES = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")


def step_inputs(bias=True, seed=0, dtype=torch.float64):
    return cell_step_inputs(I, H, B, bias, seed, dtype)


run = run_cell_step


def ours(*tensors):
    h, c, _ = LSTMCellFunction.apply(*tensors)
    return h, c


def sequence(backend):
    """LSTMFunction on a sequence of one step with ``backend``."""

    def step(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        _, h, c = LSTMFunction.apply(x.unsqueeze(0), h0, c0, w_ih, w_hh, b_ih, b_hh, *[None] * 9, None, False, backend)[:3]
        return h, c

    return step


reference = reference_cell_step
CASES = CELL_GRAD_CASES


@pytest.mark.parametrize(
    "bias, wanted", CASES, ids=[f"{'bias' if b else 'no_bias'}-" + "+".join(NAMES[k] for k in w) for b, w in CASES]
)
def test_outputs_and_gradients_match_lstm_function_and_reference(bias, wanted):
    tensors = step_inputs(bias)
    got = run(ours, tensors, wanted)
    for backend in BACKENDS:
        assert_all_close(got, run(sequence(backend), tensors, wanted))
    assert_all_close(got, run(reference, tensors, wanted))


@pytest.mark.parametrize("which", [("h",), ("c",)])
def test_gradient_of_one_state_only(which):
    """The other state's gradient is None (not materialized); the results are those of zeros."""
    tensors = step_inputs()
    wanted = tuple(range(len(NAMES)))
    got = run(ours, tensors, wanted, which)
    for backend in BACKENDS:
        assert_all_close(got, run(sequence(backend), tensors, wanted, which))
    assert_all_close(got, run(reference, tensors, wanted, which))


def test_inference_matches_the_recorded_step():
    tensors = step_inputs()
    with torch.no_grad():
        h, c = lstm_cell(*tensors)
    assert_all_close([h, c], run(reference, tensors, (0,))[:2])


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "python"])
def test_cell_step_matches_lstm_function_cell(backend, bias, with_hx):
    """LSTMCell's step (python) against LSTMCell with the native loops: states and every gradient."""
    torch.manual_seed(0)
    step_cell = LSTMCell(I, H, bias, dtype=torch.float64, backend="python")
    loop_cell = LSTMCell(I, H, bias, dtype=torch.float64, backend=backend)
    loop_cell.load_state_dict(step_cell.state_dict(), strict=True)
    x, h0, c0 = (t.requires_grad_() for t in step_inputs()[:3])
    results = []
    for cell in (step_cell, loop_cell):
        h, c = cell(x, (h0, c0) if with_hx else None)
        wrt = [x, *((h0, c0) if with_hx else ()), *cell.parameters()]
        results.append([h, c, *torch.autograd.grad((h * h).sum() + (c * h).sum(), wrt)])
    assert_all_close(*results)


def test_double_backward_matches_reference():
    tensors = [t.requires_grad_() for t in step_inputs()]
    results = []
    for step in (ours, reference):
        h, c = step(*tensors)
        grads = torch.autograd.grad((h * c).sum(), tensors, create_graph=True)
        penalty = sum((g * g).sum() for g in grads)
        results.append(list(torch.autograd.grad(penalty, tensors)))
    assert_all_close(*results)
