"""The speed comparison's baselines (benchmarks/variant_baselines.py) compute the
same math as the variant oracle: outputs, final states and every gradient, in
float64, so that a time ratio compares like with like."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from variant_oracle import oracle_lstm, random_masks, variant_params


def _load_baselines():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "variant_baselines.py"
    spec = importlib.util.spec_from_file_location("variant_baselines", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


baselines = _load_baselines()

DT = torch.float64
T, B, I, H = 6, 3, 4, 5


def lstm_state(layer_norm=False, peepholes=False, seed=0):
    """A single-layer LSTM's state_dict with the variant entries, float64."""
    torch.manual_seed(seed)
    state = nn.LSTM(I, H, dtype=DT).state_dict()
    state.update(variant_params(1, False, H, layer_norm=layer_norm, peepholes=peepholes, seed=seed))
    return state


def inputs(seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=DT) for shape in [(T, B, I), (1, B, H), (1, B, H)]]


def weighted_loss(out, h_n, c_n, seed=5):
    gen = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (out, h_n, c_n))


def compare(module, state, run_baseline, *, layer_norm=False, peepholes=False, masks=None):
    """Outputs and the gradients of x, h0, c0 and every parameter, baseline against oracle."""
    x, h0, c0 = inputs()
    xa, h0a, c0a = (t.clone().requires_grad_() for t in (x, h0, c0))
    out, (h_n, c_n) = run_baseline(module, xa, (h0a, c0a))
    weighted_loss(out, h_n, c_n).backward()

    xb, h0b, c0b = (t.clone().requires_grad_() for t in (x, h0, c0))
    params = {name: state[name].clone().requires_grad_() for name in module.STATE_NAMES}
    want = oracle_lstm(
        xb, None, h0b, c0b, params,
        num_layers=1, bidirectional=False, proj_size=0, layer_norm=layer_norm, peepholes=peepholes, masks=masks,
    )  # fmt: skip
    weighted_loss(*want).backward()

    for a, b in zip((out, h_n, c_n), want):
        torch.testing.assert_close(a, b)
    for a, b in zip((xa, h0a, c0a), (xb, h0b, c0b)):
        torch.testing.assert_close(a.grad, b.grad)
    mine = dict(module.named_parameters())
    for theirs, ours in module.STATE_NAMES.items():
        torch.testing.assert_close(mine[ours].grad, params[theirs].grad, msg=theirs)


def test_layer_norm_lstm_equals_the_oracle():
    state = lstm_state(layer_norm=True)
    module = baselines.LayerNormLSTM.from_state_dict(state)
    compare(module, state, lambda m, x, hx: m(x, hx), layer_norm=True)


def test_peephole_lstm_equals_the_oracle():
    state = lstm_state(peepholes=True)
    module = baselines.PeepholeLSTM.from_state_dict(state)
    compare(module, state, lambda m, x, hx: m(x, hx), peepholes=True)


def test_zoneout_lstm_equals_the_oracle_with_the_same_masks():
    state = lstm_state()
    module = baselines.ZoneoutLSTM.from_state_dict(state, zoneout_cell=0.3, zoneout_hidden=0.4)
    masks = random_masks(1, False, T, B, H, H, zoneout_cell=0.3, zoneout_hidden=0.4, seed=7)
    d_c, d_h = masks[0]["cell"], masks[0]["hidden"]
    compare(module.train(), state, lambda m, x, hx: m(x, hx, masks=(d_c, d_h)), masks=masks)


def test_zoneout_lstm_in_evaluation_mixes_with_the_probabilities():
    state = lstm_state()
    module = baselines.ZoneoutLSTM.from_state_dict(state, zoneout_cell=0.3, zoneout_hidden=0.4).eval()
    masks = [{"cell": torch.full((T, B, H), 0.3, dtype=DT), "hidden": torch.full((T, B, H), 0.4, dtype=DT)}]
    compare(module, state, lambda m, x, hx: m(x, hx), masks=masks)


def test_zoneout_lstm_draws_a_mask_per_step_in_training():
    """Without given masks, training draws 0/1 masks: outputs differ between calls
    and from evaluation, and each output is a state kept or a new one."""
    module = baselines.ZoneoutLSTM(I, H, zoneout_cell=0.5, zoneout_hidden=0.5, dtype=DT)
    x, h0, c0 = inputs()
    torch.manual_seed(0)
    first = module.train()(x, (h0, c0))[0]
    second = module(x, (h0, c0))[0]
    assert not torch.equal(first, second)
    assert not torch.allclose(first, module.eval()(x, (h0, c0))[0])
    kept = first[1:] == first[:-1]  # d_h = 1 keeps the previous output exactly
    assert 0 < kept.double().mean() < 1


@pytest.mark.parametrize("name", sorted(baselines.BASELINES))
def test_every_baseline_takes_the_weights_of_its_lstm(name):
    cls, lstm_options, kwargs = baselines.BASELINES[name]
    state = lstm_state(layer_norm=lstm_options.get("layer_norm", False), peepholes=lstm_options.get("peepholes", False))
    state = {k: v.float() for k, v in state.items()}
    module = cls.from_state_dict(state, **kwargs)
    assert next(module.parameters()).dtype == torch.float32
    mine = module.state_dict()
    for theirs, ours in cls.STATE_NAMES.items():
        assert torch.equal(mine[ours], state[theirs]), theirs
    out, (h_n, c_n) = module(torch.randn(T, B, I))
    assert out.shape == (T, B, H) and h_n.shape == c_n.shape == (1, B, H)


def test_from_state_dict_names_what_is_missing():
    state = lstm_state()
    with pytest.raises(KeyError, match="peephole_l0"):
        baselines.PeepholeLSTM.from_state_dict(state)
