"""Checks of the variant oracle (``variant_oracle.py``) itself: with every
variant off it is ``torch.nn.LSTM``; each variant, on one step, is its formula
written here a second time with torch.nn.functional; masks that should change
nothing change nothing, and the ones that should, do; autograd through it
agrees with finite differences."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from variant_oracle import oracle_lstm, random_masks, variant_params

DT = torch.float64
T, B, I, H = 5, 3, 4, 5


def make_case(num_layers=1, bidirectional=False, proj_size=0, layer_norm=False, peepholes=False, T=T, B=B, seed=0):
    """``(nn.LSTM, params, x, h0, c0)``: float64, params with the variant entries added."""
    torch.manual_seed(seed)
    lstm = nn.LSTM(I, H, num_layers, bidirectional=bidirectional, proj_size=proj_size, dtype=DT)
    params = {name: value.detach().clone() for name, value in lstm.state_dict().items()}
    params.update(variant_params(num_layers, bidirectional, H, layer_norm=layer_norm, peepholes=peepholes, seed=seed))
    D, P = 2 if bidirectional else 1, proj_size or H
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(T, B, I, generator=gen, dtype=DT)
    h0 = torch.randn(num_layers * D, B, P, generator=gen, dtype=DT)
    c0 = torch.randn(num_layers * D, B, H, generator=gen, dtype=DT)
    return lstm, params, x, h0, c0


def options(lstm, **variants):
    return dict(
        num_layers=lstm.num_layers, bidirectional=lstm.bidirectional, proj_size=lstm.proj_size,
        layer_norm=variants.get("layer_norm", False), peepholes=variants.get("peepholes", False),
        masks=variants.get("masks"),
    )  # fmt: skip


def run_oracle(params, x, h0, c0, lengths=None, **opts):
    return oracle_lstm(x, lengths, h0, c0, params, **opts)


def weighted_loss(out, h_n, c_n, seed=5):
    """A loss that weighs every output differently, so that no gradient term cancels."""
    gen = torch.Generator().manual_seed(seed)
    return sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (out, h_n, c_n))


def leaves(*tensors, params):
    """Copies that require grad: the tensors, and a params dict."""
    return [t.clone().requires_grad_() for t in tensors], {k: v.clone().requires_grad_() for k, v in params.items()}


# --- with every variant off: torch.nn.LSTM -----------------------------------------------------

GRID = list(itertools.product([1, 2], [False, True], [0, 3], [None, [5, 2, 4]]))


@pytest.mark.parametrize("num_layers, bidirectional, proj_size, lengths", GRID)
def test_equals_nn_lstm_outputs_and_gradients(num_layers, bidirectional, proj_size, lengths):
    lstm, params, x, h0, c0 = make_case(num_layers, bidirectional, proj_size)

    (xa, h0a, c0a), pa = leaves(x, h0, c0, params=params)
    got = run_oracle(pa, xa, h0a, c0a, lengths, **options(lstm))
    weighted_loss(*got).backward()

    xb, h0b, c0b = (t.clone().requires_grad_() for t in (x, h0, c0))
    if lengths is None:
        out, (h_n, c_n) = lstm(xb, (h0b, c0b))
    else:
        packed = pack_padded_sequence(xb, torch.tensor(lengths), enforce_sorted=False)
        out, (h_n, c_n) = lstm(packed, (h0b, c0b))
        out = pad_packed_sequence(out, total_length=T)[0]
    weighted_loss(out, h_n, c_n).backward()

    for a, b in zip(got, (out, h_n, c_n)):
        torch.testing.assert_close(a, b)
    for a, b in zip((xa, h0a, c0a), (xb, h0b, c0b)):
        torch.testing.assert_close(a.grad, b.grad)
    for name, param in lstm.named_parameters():
        torch.testing.assert_close(pa[name].grad, param.grad, msg=name)


def test_outputs_past_each_length_are_zero():
    lstm, params, x, h0, c0 = make_case(2, True, layer_norm=True, peepholes=True)
    out, _, _ = run_oracle(params, x, h0, c0, [5, 1, 3], **options(lstm, layer_norm=True, peepholes=True))
    assert out[1:, 1].abs().max() == 0 and out[3:, 2].abs().max() == 0
    assert out[:1, 1].abs().min() > 0 and out[:3, 2].abs().min() > 0


# --- each variant against its formula, one step ------------------------------------------------


def one_step_gates(z, c0, peephole=None):
    """i, f, g and c̃ of a step from its pre-activations z (B, 4H); peepholes on c0 when given."""
    z_i, z_f, z_g, z_o = z.chunk(4, dim=1)
    if peephole is not None:
        z_i, z_f = z_i + peephole[0] * c0, z_f + peephole[1] * c0
    i, f, g = z_i.sigmoid(), z_f.sigmoid(), z_g.tanh()
    return i, f, g, z_o, f * c0 + i * g


@pytest.mark.parametrize("gains", ["initial", "random"])
def test_layer_norm_step_equals_f_layer_norm(gains):
    lstm, params, x, h0, c0 = make_case(layer_norm=True, T=1)
    if gains == "initial":  # the values the module starts from
        for name in params:
            if name.startswith("layer_norm_"):
                params[name] = torch.zeros_like(params[name]) if "bias" in name else torch.ones_like(params[name])
    p = params
    xw = F.layer_norm(x[0] @ p["weight_ih_l0"].T, (4 * H,), p["layer_norm_ih_weight_l0"], eps=1e-5)
    xw = xw + p["bias_ih_l0"] + p["bias_hh_l0"]
    r = F.layer_norm(h0[0] @ p["weight_hh_l0"].T, (4 * H,), p["layer_norm_hh_weight_l0"], eps=1e-5)
    i, f, g, z_o, c = one_step_gates(xw + r, c0[0])
    u = F.layer_norm(c, (H,), p["layer_norm_c_weight_l0"], p["layer_norm_c_bias_l0"], eps=1e-5)
    h = z_o.sigmoid() * u.tanh()

    out, h_n, c_n = run_oracle(params, x, h0, c0, **options(lstm, layer_norm=True))
    torch.testing.assert_close(out[0], h)
    torch.testing.assert_close(h_n[0], h)
    torch.testing.assert_close(c_n[0], c)  # the carried cell state is c̃, not its normalised form


def test_peephole_step_equals_formula():
    lstm, params, x, h0, c0 = make_case(peepholes=True, T=1, proj_size=2)
    p = params
    z = x[0] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + p["bias_hh_l0"] + h0[0] @ p["weight_hh_l0"].T
    peephole = p["peephole_l0"]
    i, f, g, z_o, c = one_step_gates(z, c0[0], peephole)
    h = ((z_o + peephole[2] * c).sigmoid() * c.tanh()) @ p["weight_hr_l0"].T  # o peeks at the new c̃

    out, h_n, c_n = run_oracle(params, x, h0, c0, **options(lstm, peepholes=True))
    torch.testing.assert_close(out[0], h)
    torch.testing.assert_close(c_n[0], c)


@pytest.mark.parametrize("kind", ["cell", "hidden"])
def test_zoneout_step_mixes_previous_and_new_state(kind):
    lstm, params, x, h0, c0 = make_case(T=1)
    d = torch.bernoulli(torch.full((1, B, H), 0.5, dtype=DT), generator=torch.Generator().manual_seed(3))
    _, h_plain, c_plain = run_oracle(params, x, h0, c0, **options(lstm))
    _, h_n, c_n = run_oracle(params, x, h0, c0, **options(lstm, masks=[{kind: d}]))
    if kind == "cell":
        torch.testing.assert_close(c_n, d * c0 + (1 - d) * c_plain)
        torch.testing.assert_close(h_n, h_plain)  # h of this step still uses the new c̃
    else:
        torch.testing.assert_close(h_n, d * h0 + (1 - d) * h_plain)
        torch.testing.assert_close(c_n, c_plain)


# --- masks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_zoneout_masks_of_ones_keep_the_initial_states(lengths):
    lstm, params, x, h0, c0 = make_case(2, True, proj_size=3, layer_norm=True, peepholes=True)
    masks = [{"cell": torch.ones(T, B, H, dtype=DT), "hidden": torch.ones(T, B, 3, dtype=DT)} for _ in range(4)]
    opts = options(lstm, layer_norm=True, peepholes=True, masks=masks)
    out, h_n, c_n = run_oracle(params, x, h0, c0, lengths, **opts)
    torch.testing.assert_close(h_n, h0, rtol=0, atol=0)
    torch.testing.assert_close(c_n, c0, rtol=0, atol=0)
    for b, n in enumerate(lengths or [T] * B):
        kept = torch.cat([h0[2, b], h0[3, b]]).expand(n, -1)  # the last layer's two directions
        torch.testing.assert_close(out[:n, b], kept, rtol=0, atol=0)


def test_zoneout_masks_of_zeros_change_nothing():
    lstm, params, x, h0, c0 = make_case(2, True, peepholes=True)
    masks = [{"cell": torch.zeros(T, B, H, dtype=DT), "hidden": torch.zeros(T, B, H, dtype=DT)} for _ in range(4)]
    for a, b in zip(
        run_oracle(params, x, h0, c0, [5, 2, 4], **options(lstm, peepholes=True, masks=masks)),
        run_oracle(params, x, h0, c0, [5, 2, 4], **options(lstm, peepholes=True)),
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_zoneout_mask_time_is_each_sequences_own_time_in_both_directions():
    """d_h = 1 only at the first step of each direction: there the output is h0.
    Forward starts at t = 0, reverse at t = length - 1 (not T - 1)."""
    lengths = [5, 2, 4]
    lstm, params, x, h0, c0 = make_case(1, True)
    fwd, rev = torch.zeros(T, B, H, dtype=DT), torch.zeros(T, B, H, dtype=DT)
    fwd[0] = 1
    for b, n in enumerate(lengths):
        rev[n - 1, b] = 1
    out, _, _ = run_oracle(params, x, h0, c0, lengths, **options(lstm, masks=[{"hidden": fwd}, {"hidden": rev}]))
    plain, _, _ = run_oracle(params, x, h0, c0, lengths, **options(lstm))
    for b, n in enumerate(lengths):
        torch.testing.assert_close(out[0, b, :H], h0[0, b], rtol=0, atol=0)
        torch.testing.assert_close(out[n - 1, b, H:], h0[1, b], rtol=0, atol=0)
        assert not torch.allclose(plain[n - 1, b, H:], h0[1, b])  # the mask, not chance, made them equal


@pytest.mark.parametrize("key", ["weight_hh", "recurrent"])
def test_dropout_masks_of_ones_equal_no_mask(key):
    lstm, params, x, h0, c0 = make_case(2, True, proj_size=3, layer_norm=True)
    shape = {"weight_hh": (4 * H, 3), "recurrent": (B, 3)}[key]
    masks = [{key: torch.ones(shape, dtype=DT)} for _ in range(4)]
    for a, b in zip(
        run_oracle(params, x, h0, c0, [5, 2, 4], **options(lstm, layer_norm=True, masks=masks)),
        run_oracle(params, x, h0, c0, [5, 2, 4], **options(lstm, layer_norm=True)),
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_weight_hh_mask_multiplies_the_recurrent_weight():
    lstm, params, x, h0, c0 = make_case(2, True, peepholes=True)
    masks = random_masks(2, True, T, B, H, H, weight_drop=0.5)
    dropped = dict(params)
    for k, name in enumerate(["weight_hh_l0", "weight_hh_l0_reverse", "weight_hh_l1", "weight_hh_l1_reverse"]):
        dropped[name] = params[name] * masks[k]["weight_hh"]
    got = run_oracle(params, x, h0, c0, [5, 2, 4], **options(lstm, peepholes=True, masks=masks))
    want = run_oracle(dropped, x, h0, c0, [5, 2, 4], **options(lstm, peepholes=True))
    plain = run_oracle(params, x, h0, c0, [5, 2, 4], **options(lstm, peepholes=True))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(got[0], plain[0])


def test_recurrent_mask_multiplies_the_state_entering_w_hh():
    """One step without zoneout: h0 only enters through h0 W_hh^T, so masking it equals masking h0."""
    lstm, params, x, h0, c0 = make_case(1, True, T=1)
    masks = random_masks(1, True, 1, B, H, H, recurrent_dropout=0.5)
    got = run_oracle(params, x, h0, c0, **options(lstm, masks=masks))
    want = run_oracle(params, x, h0 * torch.stack([m["recurrent"] for m in masks]), c0, **options(lstm))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(got[0], run_oracle(params, x, h0, c0, **options(lstm))[0])


def test_each_sequence_runs_as_if_alone():
    """Every variant and mask on, packed lengths: sequence b gives what it gives on its own,
    with x, h0, c0 and the masks cut to it (the zoneout masks to its first length steps)."""
    lengths = [5, 2, 4]
    lstm, params, x, h0, c0 = make_case(2, True, proj_size=3, layer_norm=True, peepholes=True)
    variants = dict(weight_drop=0.3, recurrent_dropout=0.3, zoneout_cell=0.4, zoneout_hidden=0.4)
    masks = random_masks(2, True, T, B, H, 3, **variants)
    out, h_n, c_n = run_oracle(
        params, x, h0, c0, lengths, **options(lstm, layer_norm=True, peepholes=True, masks=masks)
    )
    for b, n in enumerate(lengths):
        cut = [
            {"weight_hh": m["weight_hh"], "recurrent": m["recurrent"][b : b + 1],
             "cell": m["cell"][:n, b : b + 1], "hidden": m["hidden"][:n, b : b + 1]}
            for m in masks
        ]  # fmt: skip
        one = run_oracle(
            params, x[:n, b : b + 1], h0[:, b : b + 1], c0[:, b : b + 1],
            **options(lstm, layer_norm=True, peepholes=True, masks=cut),
        )  # fmt: skip
        # Not bit-equal: x W_ih^T of the whole batch and of one sequence sum in other orders.
        torch.testing.assert_close(out[:n, b : b + 1], one[0])
        torch.testing.assert_close(h_n[:, b : b + 1], one[1])
        torch.testing.assert_close(c_n[:, b : b + 1], one[2])


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(lengths=[5, 0, 4]), "lengths"),
        (dict(lengths=[5, 2]), "lengths"),
        (dict(h0=torch.zeros(1, B, H, dtype=DT)), "h0"),
        (dict(masks=[{}]), "masks"),
        (dict(masks=[{"cell": torch.zeros(T, B, 2, dtype=DT)}] * 2), "cell"),
        (dict(masks=[{"zoneout": torch.zeros(1)}] * 2), "zoneout"),
    ],
)
def test_bad_input_names_the_argument(change, match):
    lstm, params, x, h0, c0 = make_case(1, True)
    args = dict(lengths=None, h0=h0, masks=None) | change
    opts = options(lstm, masks=args["masks"])
    with pytest.raises((ValueError, KeyError), match=match):
        run_oracle(params, x, args["h0"], c0, args["lengths"], **opts)


# --- the oracle is differentiable --------------------------------------------------------------


@pytest.mark.parametrize("num_layers, bidirectional, lengths", [(1, True, [3, 2]), (2, True, [3, 1])])
def test_gradcheck_with_every_variant_on(num_layers, bidirectional, lengths):
    """Autograd through the oracle against finite differences, float64, every
    variant on with fixed masks: its gradients are those of the function it computes."""
    T_, B_, I_, H_, P_ = 3, 2, 2, 3, 2
    D = 2 if bidirectional else 1
    torch.manual_seed(0)
    lstm = nn.LSTM(I_, H_, num_layers, bidirectional=bidirectional, proj_size=P_, dtype=DT)
    params = dict(lstm.state_dict())
    params.update(variant_params(num_layers, bidirectional, H_, layer_norm=True, peepholes=True))
    masks = random_masks(
        num_layers, bidirectional, T_, B_, H_, P_,
        weight_drop=0.3, recurrent_dropout=0.3, zoneout_cell=0.3, zoneout_hidden=0.3, seed=4,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T_, B_, I_, generator=gen, dtype=DT)
    h0 = torch.randn(num_layers * D, B_, P_, generator=gen, dtype=DT)
    c0 = torch.randn(num_layers * D, B_, H_, generator=gen, dtype=DT)
    names = sorted(params)

    def f(x, h0, c0, *values):
        return oracle_lstm(
            x, lengths, h0, c0, dict(zip(names, values)),
            num_layers=num_layers, bidirectional=bidirectional, proj_size=P_,
            layer_norm=True, peepholes=True, masks=masks,
        )  # fmt: skip

    tensors = [t.detach().clone().requires_grad_() for t in [x, h0, c0, *(params[n] for n in names)]]
    assert torch.autograd.gradcheck(f, tensors, fast_mode=num_layers > 1)
