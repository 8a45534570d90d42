"""The LSTM variants (layer norm, peepholes, zoneout, recurrent dropout, weight
drop) against an independent autograd implementation of their definitions
(:mod:`variant_oracle`), outputs and every gradient, in float64."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from variant_oracle import oracle_lstm, random_masks, variant_params

from helpers import available_backends
import torch_lstm_manual.variants as variants
from torch_lstm_manual import LSTM
from torch_lstm_manual.variants import LayerMasks

BACKENDS = available_backends()
I, H = 3, 5
LENGTHS = [4, 6, 2]  # unsorted: the packed layout sorts them
T, B = max(LENGTHS), len(LENGTHS)

# name -> (module options, mask probabilities for random_masks)
VARIANTS = {
    "layer_norm": ({"layer_norm": True}, {}),
    "peepholes": ({"peepholes": True}, {}),
    "zoneout": ({"zoneout_cell": 0.3, "zoneout_hidden": 0.4}, {"zoneout_cell": 0.3, "zoneout_hidden": 0.4}),
    "recurrent_dropout": ({"recurrent_dropout": 0.25}, {"recurrent_dropout": 0.25}),
    "weight_drop": ({"weight_drop": 0.5}, {"weight_drop": 0.5}),
    "ln+peepholes": ({"layer_norm": True, "peepholes": True}, {}),
    "ln+zoneout": ({"layer_norm": True, "zoneout_cell": 0.3, "zoneout_hidden": 0.4},
                   {"zoneout_cell": 0.3, "zoneout_hidden": 0.4}),
    "all": (
        {"layer_norm": True, "peepholes": True, "zoneout_cell": 0.3, "zoneout_hidden": 0.4, "recurrent_dropout": 0.25,
         "weight_drop": 0.5},
        {"zoneout_cell": 0.3, "zoneout_hidden": 0.4, "recurrent_dropout": 0.25, "weight_drop": 0.5},
    ),
}


def make(options, backend="python", num_layers=1, bidirectional=False, proj_size=0, seed=0):
    """Our LSTM with the options, its parameters moved away from their initial
    values (gains, biases and peepholes too), and those parameters by name."""
    torch.manual_seed(seed)
    lstm = LSTM(I, H, num_layers, bidirectional=bidirectional, proj_size=proj_size, dtype=torch.float64,
                backend=backend, **options)
    params = variant_params(num_layers, bidirectional, H, layer_norm=lstm.layer_norm, peepholes=lstm.peepholes, seed=seed)
    with torch.no_grad():
        for name, value in params.items():
            getattr(lstm, name).copy_(value)
    return lstm


def to_layer_masks(masks, packed_sorted=None):
    """The oracle's masks (padded, batch order) as LSTM.forward takes them:
    padded as they are, or for a PackedSequence in its sorted row layout."""
    out = []
    for mask in masks:
        cell, hidden, rec = mask.get("cell"), mask.get("hidden"), mask.get("recurrent")
        if packed_sorted is not None:
            cell, hidden = (None if m is None else pack_padded_sequence(m, LENGTHS, enforce_sorted=False).data
                            for m in (cell, hidden))
            rec = None if rec is None else rec[packed_sorted]
        out.append(LayerMasks(mask.get("weight_hh"), rec, cell, hidden))
    return out


def run_both(lstm, masks, packed, x, h0, c0):
    """Our module and the oracle on the same input, masks and parameters:
    ``(ours, oracle)``, each ``(out, h_n, c_n)`` with ``out`` padded."""
    params = dict(lstm.named_parameters())
    kw = dict(num_layers=lstm.num_layers, bidirectional=lstm.bidirectional, proj_size=lstm.proj_size,
              layer_norm=lstm.layer_norm, peepholes=lstm.peepholes)
    if packed:
        inp = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
        out, (h_n, c_n) = lstm(inp, (h0, c0), masks=to_layer_masks(masks, inp.sorted_indices))
        out = pad_packed_sequence(out, total_length=T)[0]
    else:
        out, (h_n, c_n) = lstm(x, (h0, c0), masks=to_layer_masks(masks))
    expected = oracle_lstm(x, LENGTHS if packed else None, h0, c0, params, masks=masks, **kw)
    return (out, h_n, c_n), expected


def assert_same_results_and_grads(lstm, masks, packed, seed=1):
    gen = torch.Generator().manual_seed(seed)
    D, P = (2 if lstm.bidirectional else 1), lstm.proj_size or H
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(lstm.num_layers * D, B, P, generator=gen, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(lstm.num_layers * D, B, H, generator=gen, dtype=torch.float64, requires_grad=True)
    ours, expected = run_both(lstm, masks, packed, x, h0, c0)
    for name, a, b in zip(("out", "h_n", "c_n"), ours, expected):
        torch.testing.assert_close(a, b, msg=lambda m: f"{name}: {m}")
    # One loss on every output; every gradient, inputs and parameters.
    weights = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in expected]
    inputs = [x, h0, c0] + list(lstm.parameters())
    names = ["x", "h0", "c0"] + [n for n, _ in lstm.named_parameters()]
    got = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, ours)), inputs, allow_unused=True)
    want = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, expected)), inputs, allow_unused=True)
    for name, a, b in zip(names, got, want):
        assert b is not None, name
        torch.testing.assert_close(a, b, msg=lambda m: f"d {name}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("num_layers, bidirectional, proj_size", [(1, False, 0), (2, True, 3)],
                         ids=["1layer", "2layers-bi-proj"])
def test_matches_the_definitions(backend, variant, packed, num_layers, bidirectional, proj_size):
    options, probabilities = VARIANTS[variant]
    lstm = make(options, backend, num_layers, bidirectional, proj_size)
    masks = random_masks(num_layers, bidirectional, T, B, H, proj_size or H, dtype=torch.float64, **probabilities)
    assert_same_results_and_grads(lstm, masks, packed)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_drawn_masks_are_the_sampled_ones(packed):
    """A training call draws exactly the masks sample_masks draws from the same
    seed, and those masks (as the oracle takes them) give the same results."""
    lstm = make(VARIANTS["all"][0], num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=torch.float64)
    inp = pack_padded_sequence(x, LENGTHS, enforce_sorted=False) if packed else x
    torch.manual_seed(7)
    out = lstm(inp)[0]
    torch.manual_seed(7)
    masks = lstm.sample_masks(inp)
    again = lstm(inp, masks=masks)[0]
    assert torch.equal(out.data if packed else out, again.data if packed else again)
    assert masks[0].cell.shape == ((sum(LENGTHS), H) if packed else (T, B, H))
    assert set(masks[0].cell.unique().tolist()) == {0.0, 1.0}
    assert set(masks[0].recurrent.unique().tolist()) == {0.0, 1 / 0.75}
    torch.manual_seed(8)
    assert not torch.equal(lstm(x)[0], lstm(x)[0])  # fresh masks each call


@pytest.mark.parametrize("p", [0.0, 0.02, 0.1, 0.3, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("few_gaps", [False, True], ids=["one-draw", "many-draws"])
def test_bernoulli_masks_are_bernoulli(monkeypatch, p, few_gaps):
    """Every entry True with probability p, independently: the share of Trues
    at each position over many small masks and over one large one, and of
    adjacent pairs, within five standard errors; the same seed, the same mask.
    ``many-draws``: the gaps drawn a few at a time (the path where the first
    draw does not reach the end)."""
    if few_gaps:
        monkeypatch.setattr(variants, "_gap_draws", lambda mean: 3)
    like = torch.empty(0)

    def within(share, q, n):
        assert abs(share - q) <= 5 * (q * (1 - q) / n) ** 0.5 + 1e-12, (share, q, n)

    torch.manual_seed(0)
    small = torch.stack([variants.bernoulli_mask((3, 4), p, like) for _ in range(4000)]).double()
    assert small.dtype == torch.float64
    for share in small.mean(0).flatten().tolist():
        within(share, p, 4000)
    large = variants.bernoulli_mask((300, 1000), p, like).flatten()
    within(large.double().mean().item(), p, large.numel())
    within((large[1:] & large[:-1]).double().mean().item(), p * p, large.numel() - 1)
    torch.manual_seed(5)
    again = variants.bernoulli_mask((300, 1000), p, like).flatten()
    torch.manual_seed(5)
    assert torch.equal(again, variants.bernoulli_mask((300, 1000), p, like).flatten())


def test_eval_is_the_expectation_and_dropout_the_identity():
    """In eval, zoneout mixes with z everywhere and dropout does nothing."""
    lstm = make(VARIANTS["all"][0], num_layers=2, bidirectional=True).eval()
    masks = [{"cell": torch.full((T, B, H), 0.3, dtype=torch.float64),
              "hidden": torch.full((T, B, H), 0.4, dtype=torch.float64)} for _ in range(4)]
    x, h0, c0 = torch.randn(T, B, I, dtype=torch.float64), torch.randn(4, B, H, dtype=torch.float64), torch.randn(4, B, H, dtype=torch.float64)
    params = dict(lstm.named_parameters())
    expected = oracle_lstm(x, None, h0, c0, params, num_layers=2, bidirectional=True, proj_size=0, layer_norm=True,
                           peepholes=True, masks=masks)
    got = lstm(x, (h0, c0))
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1:])


@pytest.mark.parametrize("option", ["recurrent_dropout", "weight_drop"])
def test_dropping_everything_cuts_the_recurrence(option):
    """p = 1 drops every unit (as F.dropout does): the same as W_hh = 0."""
    lstm = make({option: 1.0, "peepholes": True})
    cut = make({"peepholes": True})
    with torch.no_grad():
        cut.weight_hh_l0.zero_()
    x = torch.randn(T, B, I, dtype=torch.float64)
    out = lstm(x)[0]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, cut(x)[0])


def test_zoneout_of_one_keeps_the_initial_states():
    lstm = make({"zoneout_cell": 1.0, "zoneout_hidden": 1.0, "layer_norm": True})
    x, h0, c0 = torch.randn(T, B, I, dtype=torch.float64), torch.randn(1, B, H, dtype=torch.float64), torch.randn(1, B, H, dtype=torch.float64)
    for mode in (lstm.train(), lstm.eval()):
        out, (h_n, c_n) = mode(x, (h0, c0))
        assert torch.equal(out, h0.expand(T, B, H)) and torch.equal(h_n, h0) and torch.equal(c_n, c0)


def test_zero_probabilities_are_the_plain_lstm():
    options = {"zoneout_cell": 0.0, "zoneout_hidden": 0.0, "recurrent_dropout": 0.0, "weight_drop": 0.0}
    lstm = make(options, num_layers=2, bidirectional=True)
    ref = lstm.to_torch()
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.testing.assert_close(lstm(x)[0], ref(x)[0])
    assert all(m == LayerMasks() for m in lstm.sample_masks(x))


@pytest.mark.parametrize("variant", ["all", "ln+peepholes"])
def test_gradcheck_with_a_fixed_seed(variant):
    """The hand-derived backward of every variant against finite differences;
    the stochastic ones re-seed, so that every call draws the same masks."""
    options = VARIANTS[variant][0]
    lstm = make(options, num_layers=1, bidirectional=True, proj_size=2)
    names = [n for n, _ in lstm.named_parameters()]
    x = torch.randn(3, 2, I, dtype=torch.float64, requires_grad=True)

    def run(x, *params):
        torch.manual_seed(0)
        out, (h, c) = torch.func.functional_call(lstm, dict(zip(names, params)), (x,))
        return out, h, c

    params = tuple(p.detach().requires_grad_() for p in lstm.parameters())
    assert torch.autograd.gradcheck(run, (x, *params))
    assert torch.autograd.gradgradcheck(run, (x, *params), fast_mode=True)
