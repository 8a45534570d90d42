"""The variants as a module: parameters, state_dict, conversions, errors, and
the transforms (vmap, torch.compile, eval-mode backward)."""

import io
import math

import pytest
import torch
from torch import nn
from variant_oracle import random_masks

from torch_lstm_manual import LSTM, LSTMCell
from torch_lstm_manual.functional import lstm_layer
from torch_lstm_manual.variants import LayerMasks

ALL = {"layer_norm": True, "peepholes": True, "zoneout_cell": 0.1, "zoneout_hidden": 0.2, "recurrent_dropout": 0.25,
       "weight_drop": 0.5}


def test_parameter_names_shapes_and_initial_values():
    lstm = LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=2, layer_norm=True, peepholes=True)
    state = lstm.state_dict()
    plain = nn.LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=2).state_dict()
    extra = {k: tuple(v.shape) for k, v in state.items() if k not in plain}
    for s in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        assert extra.pop(f"layer_norm_ih_weight{s}") == (32,)
        assert extra.pop(f"layer_norm_hh_weight{s}") == (32,)
        assert extra.pop(f"layer_norm_c_weight{s}") == (8,)
        assert extra.pop(f"layer_norm_c_bias{s}") == (8,)
        assert extra.pop(f"peephole{s}") == (3, 8)
        assert torch.equal(state[f"layer_norm_ih_weight{s}"], torch.ones(32))
        assert torch.equal(state[f"layer_norm_c_bias{s}"], torch.zeros(8))
        p = state[f"peephole{s}"]
        assert p.abs().max() <= 1 / math.sqrt(8) and p.std() > 0.05
    assert extra == {}
    assert [k for k in state if k in plain] == list(plain)  # nn.LSTM's names first, in its order
    assert len(lstm.all_weights) == 4 and len(lstm.all_weights[0]) == 5 + 5


def test_plain_state_dict_fills_the_shared_weights():
    ref = nn.LSTM(3, 8, num_layers=2, dtype=torch.float64)
    lstm = LSTM(3, 8, num_layers=2, dtype=torch.float64, layer_norm=True)
    missing, unexpected = lstm.load_state_dict(ref.state_dict(), strict=False)
    assert unexpected == [] and sorted(missing) == sorted(k for k in lstm.state_dict() if k.startswith("layer_norm_"))
    assert all(torch.equal(lstm.state_dict()[k], v) for k, v in ref.state_dict().items())
    again = LSTM(3, 8, num_layers=2, dtype=torch.float64, layer_norm=True)
    again.load_state_dict(lstm.state_dict())  # strict, both ways
    assert all(torch.equal(again.state_dict()[k], v) for k, v in lstm.state_dict().items())


def test_to_torch_only_where_nn_lstm_expresses_the_module():
    for options in ({"layer_norm": True}, {"peepholes": True}, {"zoneout_cell": 0.1}, {"zoneout_hidden": 0.1}):
        lstm = LSTM(3, 4, **options)
        for mode in (lstm.train(), lstm.eval()):
            with pytest.raises(RuntimeError, match=f"cannot express this LSTM's {next(iter(options))}"):
                mode.to_torch()
    lstm = LSTM(3, 4, recurrent_dropout=0.3, weight_drop=0.5, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="recurrent_dropout, weight_drop .in training mode"):
        lstm.to_torch()
    ref = lstm.eval().to_torch()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert isinstance(ref, nn.LSTM) and not ref.training
    torch.testing.assert_close(lstm(x)[0], ref(x)[0])


@pytest.mark.parametrize("name", ["zoneout_cell", "zoneout_hidden", "recurrent_dropout", "weight_drop"])
@pytest.mark.parametrize("value", [-0.1, 1.5, "0.1", True, float("nan")])
def test_probabilities_outside_0_1_raise(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a probability, a number in \\[0, 1\\], got"):
        LSTM(3, 4, **{name: value})


@pytest.mark.parametrize("name", ["layer_norm", "peepholes"])
def test_switches_must_be_bools(name):
    with pytest.raises(TypeError, match=f"{name} should be of type bool, got: int"):
        LSTM(3, 4, **{name: 1})


def test_variant_options_are_keyword_only_and_shown():
    with pytest.raises(TypeError):
        LSTM(3, 4, 1, True, False, 0.0, False, 0, None, None, True)
    assert "layer_norm=True" in repr(LSTM(3, 4, layer_norm=True))
    assert "zoneout_cell=0.1" in repr(LSTM(3, 4, zoneout_cell=0.1))


def test_bad_masks_name_the_argument():
    x, h, c = torch.randn(4, 2, 3), torch.zeros(2, 5), torch.zeros(2, 5)
    w_ih, w_hh = torch.randn(20, 3), torch.randn(20, 5)
    cases = [
        ({"recurrent_mask": torch.ones(3, 5)}, ValueError, r"recurrent_mask must have shape \(2, 5\), got \(3, 5\)"),
        ({"cell_mask": torch.ones(4, 2, 4)}, ValueError, r"cell_mask must have shape \(4, 2, 5\), got \(4, 2, 4\)"),
        ({"hidden_mask": torch.ones(8, 5)}, ValueError, r"hidden_mask must have shape \(4, 2, 5\)"),
        ({"weight_hh_mask": torch.ones(20, 4)}, ValueError, r"weight_hh_mask must have shape \(20, 5\)"),
        ({"peephole": torch.ones(4, 5)}, ValueError, r"peephole must have shape \(3, 5\)"),
        ({"peephole": torch.ones(3, 5, dtype=torch.float64)}, ValueError, "peephole must be torch.float32"),
        ({"layer_norm": (torch.ones(20),) * 3}, TypeError, "layer_norm must be a tuple .* of length 3"),
        ({"layer_norm": (torch.ones(20), torch.ones(20), torch.ones(5), torch.ones(4))}, ValueError,
         r"layer_norm's beta_c must have shape \(5,\)"),
        ({"recurrent_mask": [1.0]}, TypeError, "recurrent_mask must be a Tensor, got list"),
        ({"cell_mask": torch.ones(4, 2, 5, dtype=torch.float64)}, ValueError,
         "cell_mask must be torch.float32 or torch.bool on cpu like the input, got torch.float64"),
        ({"recurrent_mask": torch.ones(2, 5, dtype=torch.bool)}, ValueError,
         "recurrent_mask must be torch.float32 on cpu like the input, got torch.bool"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            lstm_layer(x, h, c, w_ih, w_hh, **kwargs)
    lstm = LSTM(3, 5, num_layers=2, zoneout_cell=0.1)
    with pytest.raises(ValueError, match="masks must be a list of 2 LayerMasks .* got list of length 1"):
        lstm(x, masks=[LayerMasks()])


@pytest.mark.parametrize("backend", ["python", "native"])
def test_zoneout_masks_are_drawn_as_bool_and_read_as_floats(request, backend):
    """In training the zoneout masks come as bool (a quarter of the memory);
    the same masks as floats give the same outputs and gradients; in eval
    they are the expectation z, in the input's dtype."""
    if backend == "native":
        request.getfixturevalue("native_loops")
    torch.manual_seed(0)
    lstm = LSTM(3, 5, num_layers=2, zoneout_cell=0.3, zoneout_hidden=0.2, backend=backend)
    x = torch.randn(6, 4, 3)
    masks = lstm.sample_masks(x)
    assert all(m.cell.dtype == torch.bool and m.hidden.dtype == torch.bool for m in masks)
    assert 0 < masks[0].cell.float().mean() < 1
    as_floats = [m._replace(cell=m.cell.float(), hidden=m.hidden.float()) for m in masks]
    results = []
    for given in (masks, as_floats):
        lstm.zero_grad()
        x_ = x.clone().requires_grad_()
        out, (h, c) = lstm(x_, masks=given)
        (out.square().sum() + h.sum() + c.sum()).backward()
        results.append([out, h, c, x_.grad, *(p.grad for p in lstm.parameters())])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    lstm.eval()
    eval_masks = lstm.sample_masks(x)[0]
    assert eval_masks.cell.dtype == torch.float32 and (eval_masks.cell == 0.3).all()


def test_functional_masks_are_the_module_s():
    """lstm_layer with explicit masks gives what the module gives with the same masks."""
    torch.manual_seed(0)
    lstm = LSTM(3, 5, dtype=torch.float64, **ALL)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    mask = lstm.sample_masks(x)[0]
    w = [None if n is None else getattr(lstm, n) for n in lstm._layer_names[0]]
    y, h, c = lstm_layer(x, torch.zeros(2, 5, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.float64), *w[:5],
                         layer_norm=tuple(w[5:9]), peephole=w[9], weight_hh_mask=mask.weight_hh,
                         recurrent_mask=mask.recurrent, cell_mask=mask.cell, hidden_mask=mask.hidden,
                         backend=lstm.backend)
    out, (h_n, c_n) = lstm(x, masks=[mask])
    assert torch.equal(y, out) and torch.equal(h, h_n[0]) and torch.equal(c, c_n[0])


def test_eval_mode_backward():
    lstm = LSTM(3, 5, num_layers=2, bidirectional=True, dtype=torch.float64, **ALL).eval()
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    lstm(x)[0].sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in lstm.parameters())
    assert lstm.weight_hh_l0.grad.abs().sum() > 0 and lstm.peephole_l1_reverse.grad.abs().sum() > 0


def test_vmap_per_sample_gradients_with_given_masks():
    """Per-sample gradients under vmap equal a loop over the samples, each with
    its own masks (given, as vmap needs)."""
    torch.manual_seed(0)
    lstm = LSTM(3, 5, dtype=torch.float64, **ALL)
    params = {k: v.detach() for k, v in lstm.named_parameters()}
    n, T = 3, 4
    x = torch.randn(n, T, 1, 3, dtype=torch.float64)
    masks = [random_masks(1, False, T, 1, 5, 5, dtype=torch.float64, seed=s, zoneout_cell=0.1, zoneout_hidden=0.2,
                          recurrent_dropout=0.25, weight_drop=0.5)[0] for s in range(n)]
    stacked = {k: torch.stack([m[k] for m in masks]) for k in masks[0]}

    def loss(params, x, weight_hh, recurrent, cell, hidden):
        mask = LayerMasks(weight_hh, recurrent, cell, hidden)
        out = torch.func.functional_call(lstm, params, (x,), {"masks": [mask]})[0]
        return (out ** 2).sum()

    keys = ("weight_hh", "recurrent", "cell", "hidden")
    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0, 0, 0, 0))(params, x, *(stacked[k] for k in keys))
    for s in range(n):
        one = torch.func.grad(loss)(params, x[s], *(masks[s][k] for k in keys))
        for name in params:
            torch.testing.assert_close(grads[name][s], one[name], msg=lambda m: f"{name}, sample {s}: {m}")


def test_compile_matches_eager():
    """Compiled (inductor), every variant on, masks given: the eager outputs and gradients."""
    torch.manual_seed(0)
    lstm = LSTM(3, 4, dtype=torch.float32, **ALL)
    x = torch.randn(3, 2, 3)
    masks = lstm.sample_masks(x)

    def run(model):
        out, (h, c) = model(x, masks=masks)
        loss = out.sum() + (h * c).sum()
        return [loss, *torch.autograd.grad(loss, list(lstm.parameters()))]

    for got, want in zip(run(torch.compile(lstm)), run(lstm)):
        torch.testing.assert_close(got, want)


def test_modules_pickled_before_the_variants_still_run():
    """A whole module saved by torch.save before the variants existed (no
    option attributes, five parameter names per layer) loads and runs plain."""
    lstm = LSTM(3, 4, num_layers=2, dtype=torch.float64)
    cell = LSTMCell(3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    expected = lstm(x)[0], cell(x[0])[0]
    for module in (lstm, cell):
        for name in ("layer_norm", "peepholes", "zoneout_cell", "zoneout_hidden", "recurrent_dropout", "weight_drop"):
            module.__dict__.pop(name, None)
    lstm._layer_names = [names[:5] for names in lstm._layer_names]
    buffer = io.BytesIO()
    torch.save((lstm, cell), buffer)
    buffer.seek(0)
    lstm, cell = torch.load(buffer, weights_only=False)
    assert torch.equal(lstm(x)[0], expected[0]) and torch.equal(cell(x[0])[0], expected[1])
