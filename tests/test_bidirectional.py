"""The two directions of a bidirectional layer at once on the native loops
(:func:`~torch_lstm_manual.functional.bidirectional_layer`): the same results,
bit for bit, as the two one after the other, and only where that path applies.

Each test runs a module twice, the two directions at once and (with
``runs_both`` off) one after the other, and counts the calls of
``forward_both`` and ``backward_both``. With two threads at H = 64 and B = 16
the loops one after the other run on two threads each (without a projection;
see threads_for in native/parallel.h), the two at once on one each.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence

import torch_lstm_manual.functional as functional
import torch_lstm_manual.native as native
from torch_lstm_manual import LSTM

from helpers import needs_native, run


@pytest.fixture
def threads():
    """Set torch's thread count for one test: ``threads(n)``."""
    old = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(old)


@pytest.fixture
def both(monkeypatch):
    """Count the calls of forward_both and backward_both; ``both.off()`` makes
    the layers run their directions one after the other."""

    class Both:
        calls = {"forward": 0, "backward": 0}

        def off(self):
            monkeypatch.setattr(functional, "runs_both", lambda *args: False)

        def on(self):
            monkeypatch.setattr(functional, "runs_both", runs_both)

    runs_both = functional.runs_both
    for name in ("forward", "backward"):
        def counted(*args, name=name, real=getattr(functional, f"{name}_both")):
            Both.calls[name] += 1
            return real(*args)

        monkeypatch.setattr(functional, f"{name}_both", counted)
    return Both()


def assert_equal(got, expected):
    assert len(got) == len(expected)
    for k, (a, b) in enumerate(zip(got, expected)):
        assert (a is None) == (b is None), f"item {k}: one side is None"
        assert a is None or torch.equal(a, b), f"item {k} differs by {(a - b).abs().max().item()}"


def model(dtype, layers=2, proj_size=0, hidden_size=64, **kwargs):
    torch.manual_seed(0)
    return LSTM(5, hidden_size, layers, bidirectional=True, proj_size=proj_size, backend="native", dtype=dtype,
                **kwargs)


def inputs(m, dtype, hx):
    torch.manual_seed(1)
    x = torch.randn(6, 16, 5, dtype=dtype)
    lengths = torch.tensor([6, 2, 5, 1, 3, 6, 4, 2] * 2)  # unsorted, uneven
    state = None
    if hx:
        P = m.proj_size or m.hidden_size
        state = (torch.randn(2 * m.num_layers, 16, P, dtype=dtype), torch.randn(2 * m.num_layers, 16, m.hidden_size, dtype=dtype))
    return x, lengths, state


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("layers, proj_size, hx", [(1, 0, False), (2, 0, True), (2, 40, True)],
                         ids=["1layer", "2layers-hx", "2layers-proj-hx"])
def test_both_at_once_equal_one_after_the_other(dtype, packed, layers, proj_size, hx, threads, both):
    """Outputs, final states and every gradient (input, hx, parameters)."""
    threads(2)
    m = model(dtype, layers, proj_size)
    x, lengths, state = inputs(m, dtype, hx)
    lengths = lengths if packed else None
    got = run(m, x, state, lengths, enforce_sorted=False)
    assert both.calls == {"forward": layers, "backward": layers}
    both.off()
    assert_equal(got, run(m, x, state, lengths, enforce_sorted=False))
    assert both.calls == {"forward": layers, "backward": layers}


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_inference_runs_both_at_once(dtype, threads, both):
    """Under no_grad the forward passes run at once, nothing saved."""
    threads(2)
    m = model(dtype)
    x, lengths, state = inputs(m, dtype, True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    with torch.no_grad():
        got = [m(packed, state), m(x, state)]
    assert both.calls == {"forward": 4, "backward": 0}
    both.off()
    with torch.no_grad():
        expected = [m(packed, state), m(x, state)]
    for (out, (h, c)), (out_e, (h_e, c_e)) in zip(got, expected):
        data = [t.data if isinstance(t, PackedSequence) else t for t in (out, out_e)]
        assert_equal([data[0], h, c], [data[1], h_e, c_e])


@needs_native
def test_three_threads_split_two_and_one(threads, both):
    """With three threads one direction's loops run on a team of two inside the
    new thread's share, the other on one: the same results."""
    threads(3)
    m = model(torch.float32, hidden_size=96)
    x, lengths, state = inputs(m, torch.float32, True)
    assert native.load() is None and native._ext.split_free(96, True)
    got = run(m, x, state, lengths, enforce_sorted=False)
    assert both.calls == {"forward": 2, "backward": 2}
    both.off()
    assert_equal(got, run(m, x, state, lengths, enforce_sorted=False))


@needs_native
def test_not_where_the_thread_count_changes_results(threads, both):
    """float32 at H = 72 on AVX-512: on two threads the second one's units
    start at 40, in another kind of vector than on one thread, so the two
    directions at once (one thread each) would not give the same results:
    they run one after the other. float64 has no such vectors."""
    threads(2)
    expected = native.load() is None and native._ext.split_free(72, True)
    for dtype, at_once in ((torch.float32, expected), (torch.float64, True)):
        both.on()
        both.calls.update(forward=0, backward=0)
        m = model(dtype, layers=1, hidden_size=72)
        x, _, state = inputs(m, dtype, True)
        got = run(m, x, state)
        assert both.calls == ({"forward": 1, "backward": 1} if at_once else {"forward": 0, "backward": 0}), dtype
        both.off()
        assert_equal(got, run(m, x, state))


@needs_native
@pytest.mark.parametrize("case", ["one_thread", "python", "peepholes", "double_backward", "vmap"])
def test_one_after_the_other_where_both_at_once_does_not_apply(case, threads, both):
    """One thread; the Python loops; a variant of the cell; double backward
    (the recorded backward pass: the reference loops, one after the other;
    the same gradients); torch.func transforms (the reference loops)."""
    threads(1 if case == "one_thread" else 2)
    m = model(torch.float64, layers=1, peepholes=case == "peepholes")
    if case == "python":
        m.backend = "python"
    x, _, _ = inputs(m, torch.float64, False)
    if case == "vmap":
        params = {k: v.detach() for k, v in m.named_parameters()}
        torch.func.vmap(torch.func.grad(lambda p, x: torch.func.functional_call(m, p, (x,))[0].sum()),
                        in_dims=(None, 1))(params, x)
        assert both.calls == {"forward": 0, "backward": 0}
        return
    if case != "double_backward":
        run(m, x)
        assert both.calls == {"forward": 0, "backward": 0}
        return

    def gradient_norm():
        xs = x.clone().requires_grad_()
        out, _ = m(xs)
        (d_x,) = torch.autograd.grad((out**2).sum(), xs, create_graph=True)
        recorded = dict(both.calls)
        # Through d_x's graph the gradient reaches out again: a plain backward pass.
        return recorded, [d_x] + list(torch.autograd.grad((d_x**2).sum(), [xs, *m.parameters()]))

    recorded, got = gradient_norm()
    assert recorded == {"forward": 1, "backward": 0}
    assert both.calls == {"forward": 1, "backward": 1}
    both.off()
    assert_equal(got, gradient_norm()[1])


@needs_native
def test_an_error_in_either_direction_is_raised():
    """An error of the call on the new thread reaches the caller once both are over."""
    assert native.load() is None
    x, c0 = torch.randn(4, 3), torch.zeros(2, 5)
    good = (x, torch.randn(20, 3), None, torch.zeros(2, 5), c0, torch.randn(20, 5), None, [2, 2], False, True)
    bad = good[:3] + (torch.zeros(2, 4),) + good[4:]
    with pytest.raises(RuntimeError, match=r"h0 must be \(2, 5\)"):
        native._ext.forward_input_both(good, bad)
    with pytest.raises(RuntimeError, match=r"h0 must be \(2, 5\)"):
        native._ext.forward_input_both(bad, good)


@needs_native
def test_input_with_other_uses_gets_the_same_gradient(threads, both):
    """Where x feeds other operations too, created before and after the layer,
    its gradient adds up the same terms in the same order."""
    threads(2)
    m = model(torch.float32, layers=1)
    x, _, _ = inputs(m, torch.float32, False)

    def d_x():
        xs = x.clone().requires_grad_()
        before = xs.sin()
        out, (h, c) = m(xs)
        loss = (out * out.detach().cos()).sum() + h.sum() + (before * xs.exp()).sum() + xs.tanh().sum()
        return torch.autograd.grad(loss, xs)

    got = d_x()
    assert both.calls == {"forward": 1, "backward": 1}
    both.off()
    assert_equal(got, d_x())
