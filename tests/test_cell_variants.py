"""LSTMCell's variants (layer norm, peepholes, zoneout): one step of LSTM's,
which tests/test_variants.py checks against the definitions."""

import pytest
import torch
from torch import nn

from torch_lstm_manual import LSTM, LSTMCell
from torch_lstm_manual.variants import LayerMasks

OPTIONS = {
    "layer_norm": {"layer_norm": True},
    "peepholes": {"peepholes": True},
    "zoneout": {"zoneout_cell": 0.3, "zoneout_hidden": 0.4},
    "all": {"layer_norm": True, "peepholes": True, "zoneout_cell": 0.3, "zoneout_hidden": 0.4},
}


def twins(options, seed=0):
    """A cell and a one-layer LSTM with the same options and parameters, moved
    away from their initial values."""
    torch.manual_seed(seed)
    cell = LSTMCell(3, 5, dtype=torch.float64, **options)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    lstm = LSTM(3, 5, dtype=torch.float64, **options)
    lstm.load_state_dict({f"{name}_l0": p for name, p in cell.state_dict().items()})
    return cell, lstm


@pytest.mark.parametrize("variant", list(OPTIONS))
def test_unrolled_cell_is_the_lstm(variant):
    """30 steps of the cell, with a loss on every state, equal LSTM over the
    sequence (same zoneout masks), outputs and every gradient."""
    cell, lstm = twins(OPTIONS[variant])
    T, B = 30, 4
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    h0, c0 = (torch.randn(B, 5, generator=gen, dtype=torch.float64, requires_grad=True) for _ in "hc")
    d_c, d_h = (torch.bernoulli(torch.full((T, B, 5), 0.35), generator=gen).double() for _ in "ch")
    zoneout = "zoneout_cell" in OPTIONS[variant]
    h, c, hs, cs = h0, c0, [], []
    for t in range(T):
        masks = LayerMasks(cell=d_c[t], hidden=d_h[t]) if zoneout else None
        h, c = cell(x[t], (h, c), masks=masks)
        hs.append(h)
        cs.append(c)
    layer_masks = [LayerMasks(cell=d_c, hidden=d_h)] if zoneout else None
    out, (h_n, c_n) = lstm(x, (h0[None], c0[None]), masks=layer_masks)
    torch.testing.assert_close(torch.stack(hs), out)
    torch.testing.assert_close(c, c_n[0])
    g = torch.randn(T, B, 5, generator=gen, dtype=torch.float64)
    inputs = [x, h0, c0, *cell.parameters()]
    ours = torch.autograd.grad((torch.stack(hs) * g).sum() + c.sum(), inputs)
    lstm_inputs = [x, h0, c0, *lstm.parameters()]
    theirs = torch.autograd.grad((out * g).sum() + c_n.sum(), lstm_inputs)
    for name, a, b in zip(["x", "h0", "c0"] + [n for n, _ in cell.named_parameters()], ours, theirs):
        torch.testing.assert_close(a, b, msg=lambda m: f"d {name}: {m}")


def test_gradcheck_and_gradgradcheck():
    cell, _ = twins(OPTIONS["all"])
    names = [n for n, _ in cell.named_parameters()]
    x, h, c = (torch.randn(2, n, dtype=torch.float64, requires_grad=True) for n in (3, 5, 5))

    def step(x, h, c, *params):
        torch.manual_seed(0)  # the same zoneout masks on every call
        return torch.func.functional_call(cell, dict(zip(names, params)), (x, (h, c)))

    params = tuple(p.detach().requires_grad_() for p in cell.parameters())
    assert torch.autograd.gradcheck(step, (x, h, c, *params))
    assert torch.autograd.gradgradcheck(step, (x, h, c, *params), fast_mode=True)


def test_parameters_unbatched_eval_and_errors():
    cell = LSTMCell(3, 5, layer_norm=True, peepholes=True, zoneout_cell=0.5)
    assert [n for n, _ in cell.named_parameters()] == [
        "weight_ih", "weight_hh", "bias_ih", "bias_hh", "layer_norm_ih_weight", "layer_norm_hh_weight",
        "layer_norm_c_weight", "layer_norm_c_bias", "peephole"]
    assert torch.equal(cell.layer_norm_c_bias, torch.zeros(5)) and torch.equal(cell.layer_norm_hh_weight, torch.ones(20))
    missing, unexpected = cell.load_state_dict(nn.LSTMCell(3, 5).state_dict(), strict=False)
    assert unexpected == [] and len(missing) == 5
    x, h, c = torch.randn(3), torch.randn(5), torch.randn(5)
    h1, c1 = cell.eval()(x, (h, c))
    assert h1.shape == c1.shape == (5,)
    # In eval, zoneout mixes with z: the expectation.
    full = cell(x, (h, c), masks=LayerMasks(cell=torch.full((5,), 0.5)))
    assert torch.equal(full[1], c1)
    with pytest.raises(ValueError, match=r"masks.cell must have shape \(5,\), got \(2, 5\)"):
        cell(x, (h, c), masks=LayerMasks(cell=torch.ones(2, 5)))
    with pytest.raises(ValueError, match="masks must be a LayerMasks with zoneout masks"):
        cell(x, (h, c), masks=LayerMasks(recurrent=torch.ones(1, 5)))
    with pytest.raises(ValueError, match="this cell has neither"):
        LSTMCell(3, 5, layer_norm=True)(x, masks=LayerMasks())
    with pytest.raises(RuntimeError, match="cannot express this LSTMCell's layer_norm, peepholes, zoneout_cell"):
        cell.to_torch()
    with pytest.raises(ValueError, match=r"zoneout_hidden must be a probability, a number in \[0, 1\], got 2"):
        LSTMCell(3, 5, zoneout_hidden=2)
    with pytest.raises(TypeError, match="peepholes should be of type bool"):
        LSTMCell(3, 5, peepholes="yes")
    assert "layer_norm=True" in repr(cell)
