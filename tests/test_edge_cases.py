"""Edge cases against ``torch.nn.LSTM``: empty batches, zero-length sequences,
forwards where nothing asks for a gradient, and torch.func transforms over
each parameter."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence

from helpers import assert_all_close, available_backends, twins
from torch_lstm_manual import backends
from torch_lstm_manual.backends import Loops
from torch_lstm_manual.functional import lstm_layer

BACKENDS = available_backends()

# --------------------------------------------------------------------------
# An empty batch (B = 0).

EMPTY_GRID = list(itertools.product([1, 2], [False, True], [0, 2], [False, True], [False, True]))


def empty_run(module, x, hx):
    """Forward and backward; what torch.nn.LSTM's results are compared on."""
    x = x.clone().requires_grad_()
    hx = None if hx is None else tuple(t.clone().requires_grad_() for t in hx)
    out, (h_n, c_n) = module(x, hx)
    outputs = (out, h_n, c_n)
    flags = [(t.shape, t.dtype, t.requires_grad, t.grad_fn is not None) for t in outputs]
    loss = sum(t.sum() for t in outputs)
    wrt = [x] + ([] if hx is None else list(hx)) + list(module.parameters())
    grads = torch.autograd.grad(loss, wrt)  # every parameter is in the graph
    return flags, list(outputs) + list(grads)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("num_layers,bidirectional,proj_size,batch_first,with_hx", EMPTY_GRID)
def test_empty_batch_matches_torch(backend, num_layers, bidirectional, proj_size, batch_first, with_hx):
    """B = 0: empty outputs and states of torch.nn.LSTM's shapes, in the graph,
    and a backward that gives every parameter a zero gradient."""
    ref, ours = twins(
        backend, input_size=3, hidden_size=4, num_layers=num_layers, bidirectional=bidirectional,
        proj_size=proj_size, batch_first=batch_first,
    )
    x = torch.randn((0, 5, 3) if batch_first else (5, 0, 3), dtype=torch.float64)
    hx = None
    if with_hx:
        L = num_layers * (2 if bidirectional else 1)
        hx = torch.randn(L, 0, proj_size or 4, dtype=torch.float64), torch.randn(L, 0, 4, dtype=torch.float64)
    expected_flags, expected = empty_run(ref, x, hx)
    got_flags, got = empty_run(ours, x, hx)
    assert got_flags == expected_flags
    assert_all_close(got, expected)
    with torch.no_grad():
        out, (h_n, c_n) = ours(x, hx)
    assert [out.shape, h_n.shape, c_n.shape] == [t[0] for t in expected_flags]


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_packed_batch_matches_torch(backend):
    """A PackedSequence whose steps hold no rows, which torch.nn.LSTM runs too."""
    ref, ours = twins(backend, input_size=3, hidden_size=4, num_layers=2, bidirectional=True, proj_size=2)
    packed = PackedSequence(torch.randn(0, 3, dtype=torch.float64), torch.tensor([0, 0]))
    (a, (ha, ca)), (b, (hb, cb)) = ours(packed), ref(packed)
    assert_all_close([a.data, ha, ca], [b.data, hb, cb])
    grads = torch.autograd.grad(a.data.sum() + ha.sum() + ca.sum(), list(ours.parameters()))
    assert all(torch.equal(g, torch.zeros_like(p)) for g, p in zip(grads, ours.parameters()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_backend_loop_sees_an_empty_batch(backend, monkeypatch):
    """The empty batch runs the reference loops: a backend is never asked for zero rows."""

    def refuse(*args, **kwargs):
        raise AssertionError("a backend loop was called with an empty batch")

    monkeypatch.setitem(backends.BACKENDS, backend, Loops(refuse, refuse, refuse, refuse))
    _, ours = twins(backend, input_size=3, hidden_size=4, bidirectional=True)
    out, (h_n, c_n) = ours(torch.randn(4, 0, 3, dtype=torch.float64))
    (out.sum() + h_n.sum() + c_n.sum()).backward()
    assert out.shape == (4, 0, 8)


# --------------------------------------------------------------------------
# A zero-length sequence (T = 0): torch.nn.LSTM refuses it.


@pytest.mark.parametrize("shape,batch_first", [((0, 2, 3), False), ((2, 0, 3), True), ((0, 0, 3), False), ((0, 3), False)])
def test_zero_length_sequence_is_refused_as_torch_does(shape, batch_first):
    ref, ours = twins(input_size=3, hidden_size=4, batch_first=batch_first)
    x = torch.randn(shape, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
        ref(x)
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
        ours(x)


def test_zero_length_packed_sequence_and_layer_are_refused():
    _, ours = twins(input_size=3, hidden_size=4)
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0 in RNN, got batch_sizes of length 0"):
        ours(PackedSequence(torch.randn(0, 3, dtype=torch.float64), torch.tensor([], dtype=torch.long)))
    w = torch.randn(16, 3, dtype=torch.float64)
    h, c = torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"at least one time step, got x of shape \(0, 2, 3\)"):
        lstm_layer(torch.randn(0, 2, 3, dtype=torch.float64), h, c, w, torch.randn(16, 4, dtype=torch.float64))


# --------------------------------------------------------------------------
# Grad mode on, but no tensor that asks for a gradient.


def spy_on_saves(monkeypatch, backend) -> list:
    """Record the ``save`` argument of every forward loop the backend runs."""
    loops, saves = backends.BACKENDS[backend], []

    def spy(run, position):
        def wrapped(*args, **kwargs):
            saves.append(kwargs["save"] if "save" in kwargs else args[position] if len(args) > position else True)
            return run(*args, **kwargs)

        return wrapped

    forward_input = None if loops.forward_input is None else spy(loops.forward_input, 7)
    monkeypatch.setitem(backends.BACKENDS, backend, loops._replace(forward=spy(loops.forward, 7), forward_input=forward_input))
    return saves


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_nothing_requires_grad_runs_inference(backend, packed, monkeypatch):
    """With grad mode on and no tensor asking for a gradient, the forward saves
    nothing for a backward pass (there will be none), and the results are the
    ones of torch.nn.LSTM."""
    ref, ours = twins(backend, input_size=3, hidden_size=5, num_layers=2, bidirectional=True, proj_size=2)
    ours.requires_grad_(False)
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    inp = torch.nn.utils.rnn.pack_padded_sequence(x, [6, 4, 1]) if packed else x
    saves = spy_on_saves(monkeypatch, backend)
    packs = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packs.append(t) or t, lambda t: t):
        out, (h_n, c_n) = ours(inp)
    out = out.data if packed else out
    assert saves and not any(saves), f"forward loops ran with save={saves}"
    assert not packs
    for t in (out, h_n, c_n):
        assert t.grad_fn is None and not t.requires_grad
    with torch.no_grad():
        expected, (h_ref, c_ref) = ref(inp)
    expected = expected.data if packed else expected
    assert_all_close([out, h_n, c_n], [expected, h_ref, c_ref])


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_forward_still_saves(backend, monkeypatch):
    """The spy above sees the training forward save: it tells the two paths apart."""
    _, ours = twins(backend, input_size=3, hidden_size=5)
    saves = spy_on_saves(monkeypatch, backend)
    out, _ = ours(torch.randn(4, 2, 3, dtype=torch.float64))
    assert saves and all(saves) and out.grad_fn is not None


def test_forward_mode_ad_is_refused_rather_than_dropped():
    """Forward-mode AD without any tensor that requires grad: LSTMFunction has no
    jvp, and says so, instead of loops that would return no tangent."""
    import torch.autograd.forward_ad as fwAD

    _, ours = twins(input_size=3, hidden_size=4)
    ours.requires_grad_(False)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with fwAD.dual_level(), pytest.raises(NotImplementedError, match="jvp"):
        ours(fwAD.make_dual(x, torch.randn_like(x)))


# --------------------------------------------------------------------------
# torch.func over each parameter.

VMAP_OPTIONS = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, proj_size=2, bias=True)


def per_parameter_grads(ours, params, x, names, batched):
    """``vmap(grad)`` over the parameters ``names`` (a batch of values each in
    ``batched``), and the same gradients from a Python loop over the batch."""

    def loss(p):
        out, (h, c) = torch.func.functional_call(ours, p, (x,))
        return (out**2).sum() + h.sum() + c.sum()

    def grads(*values):
        return torch.func.grad(lambda vs: loss({**params, **dict(zip(names, vs))}))(values)

    got = torch.func.vmap(grads)(*[batched[n] for n in names])
    for s in range(batched[names[0]].shape[0]):
        leaves = {**params, **{n: batched[n][s].clone().requires_grad_() for n in names}}
        one = torch.autograd.grad(loss(leaves), [leaves[n] for n in names])
        for name, g_batched, g in zip(names, got, one):
            torch.testing.assert_close(g_batched[s], g, msg=lambda m: f"{name}, sample {s}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("together", [False, True], ids=["each-alone", "all-together"])
def test_vmap_grad_over_parameters(backend, together):
    """vmap of grad over one parameter at a time (the others unbatched), and over
    all of them at once, equals a loop over the samples."""
    _, ours = twins(backend, **VMAP_OPTIONS)
    params = {k: v.detach() for k, v in ours.named_parameters()}
    gen = torch.Generator().manual_seed(5 if together else 4)
    batched = {k: v + 0.1 * torch.randn(3, *v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}
    x = torch.randn(*((5, 2, 3) if together else (5, 3)), generator=gen, dtype=torch.float64)
    for names in [list(params)] if together else [[name] for name in params]:
        per_parameter_grads(ours, params, x, names, batched)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_over_a_bias_without_grad(backend):
    """vmap alone (no gradient anywhere) over a bias: the inference path with a
    wrapped tensor among its arguments."""
    _, ours = twins(backend, **VMAP_OPTIONS)
    params = {k: v.detach() for k, v in ours.named_parameters()}
    biases = params["bias_hh_l1_reverse"] + torch.randn(3, 16, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)

    def run(b):
        out, (h, c) = torch.func.functional_call(ours, {**params, "bias_hh_l1_reverse": b}, (x,))
        return out, h, c

    got = torch.func.vmap(run)(biases)
    for s in range(3):
        assert_all_close([t[s] for t in got], list(run(biases[s])))
