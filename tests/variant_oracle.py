"""An independent reference for the LSTM variants: the forward pass written
straight from the definitions, one sequence and one step at a time, with
autograd for the backward.

It shares no code with ``torch_lstm_manual``: the tests compare the library's
hand-derived forward and backward against it. It favours plain, checkable
statements over speed; run it in float64 on small shapes.

The step, for one sequence (rows (1, .)), following the definitions:

    hr = h_prev * m_rec                          recurrent dropout (else hr = h_prev)
    r  = hr W_hh^T                               W_hh times the weight-drop mask
    z  = xw_t + γ_hh * LN(r)   (layer norm)      xw = γ_ih * LN(x W_ih^T) + b_ih + b_hh
    z  = xw_t + r              (otherwise)       xw = x W_ih^T + b_ih + b_hh
    z_i += p_i * c_prev, z_f += p_f * c_prev     (peepholes)
    c̃ = f * c_prev + i * g
    z_o += p_o * c̃                               (peepholes)
    u  = γ_c * LN(c̃) + β_c     (layer norm, else u = c̃)
    h̃ = (o * tanh(u)) W_hr^T   (projection, else o * tanh(u))
    c  = d_c * c_prev + (1 - d_c) * c̃,  h = d_h * h_prev + (1 - d_h) * h̃   (zoneout, else c̃, h̃)
    y_t = h
"""

from __future__ import annotations

import torch

EPS = 1e-5
MASK_KEYS = ("weight_hh", "recurrent", "cell", "hidden")


def normalize(v: torch.Tensor) -> torch.Tensor:
    """(v - mean(v)) / sqrt(var(v) + eps) over the last dim, biased variance, no affine."""
    mean = v.mean(dim=-1, keepdim=True)
    var = ((v - mean) ** 2).mean(dim=-1, keepdim=True)
    return (v - mean) / torch.sqrt(var + EPS)


def _weights(params: dict, layer: int, direction: int, layer_norm_on: bool, peepholes: bool) -> dict:
    """The tensors of one layer and direction, by their role; absent ones are None."""
    s = f"l{layer}" + ("_reverse" if direction else "")

    def get(name, needed=True):
        if name not in params and needed:
            raise KeyError(f"oracle_lstm: params has no {name!r}")
        return params.get(name)

    return {
        "w_ih": get(f"weight_ih_{s}"),
        "w_hh": get(f"weight_hh_{s}"),
        "b_ih": get(f"bias_ih_{s}", needed=False),
        "b_hh": get(f"bias_hh_{s}", needed=False),
        "w_hr": get(f"weight_hr_{s}", needed=False),
        "ln_ih": get(f"layer_norm_ih_weight_{s}") if layer_norm_on else None,
        "ln_hh": get(f"layer_norm_hh_weight_{s}") if layer_norm_on else None,
        "ln_c": get(f"layer_norm_c_weight_{s}") if layer_norm_on else None,
        "ln_c_bias": get(f"layer_norm_c_bias_{s}") if layer_norm_on else None,
        "peephole": get(f"peephole_{s}") if peepholes else None,
    }


def input_part(x: torch.Tensor, w: dict) -> torch.Tensor:
    """xw = γ_ih * LN(x W_ih^T) + b_ih + b_hh (layer norm) or x W_ih^T + b_ih + b_hh; (..., G)."""
    xw = x @ w["w_ih"].T
    if w["ln_ih"] is not None:
        xw = w["ln_ih"] * normalize(xw)
    if w["b_ih"] is not None:
        xw = xw + w["b_ih"]
    if w["b_hh"] is not None:
        xw = xw + w["b_hh"]
    return xw


def step(xw_t, h_prev, c_prev, w, w_hh, m_rec=None, d_c=None, d_h=None):
    """One step of one sequence: xw_t (1, G), h_prev (1, P), c_prev (1, H) -> carried (h, c).

    ``w_hh`` is the recurrent weight after weight drop; ``m_rec`` (P,) the
    recurrent dropout mask, ``d_c`` (H,) and ``d_h`` (P,) the zoneout masks of
    this step, each None where that option is off.
    """
    hr = h_prev if m_rec is None else h_prev * m_rec
    r = hr @ w_hh.T  # (1, G)
    if w["ln_hh"] is not None:
        z = xw_t + w["ln_hh"] * normalize(r)
    else:
        z = xw_t + r
    z_i, z_f, z_g, z_o = z.chunk(4, dim=-1)
    if w["peephole"] is not None:
        p_i, p_f, p_o = w["peephole"]
        z_i = z_i + p_i * c_prev
        z_f = z_f + p_f * c_prev
    i, f, g = torch.sigmoid(z_i), torch.sigmoid(z_f), torch.tanh(z_g)
    c_cand = f * c_prev + i * g
    if w["peephole"] is not None:
        z_o = z_o + p_o * c_cand
    o = torch.sigmoid(z_o)
    if w["ln_c"] is not None:
        u = w["ln_c"] * normalize(c_cand) + w["ln_c_bias"]
    else:
        u = c_cand
    m = o * torch.tanh(u)
    h_cand = m @ w["w_hr"].T if w["w_hr"] is not None else m
    c = c_cand if d_c is None else d_c * c_prev + (1 - d_c) * c_cand
    h = h_cand if d_h is None else d_h * h_prev + (1 - d_h) * h_cand
    return h, c


def _check(x, lengths, h0, c0, masks, num_layers, D, P):
    if x.dim() != 3:
        raise ValueError(f"oracle_lstm: x must be (T, B, I), got shape {tuple(x.shape)}")
    T, B, _ = x.shape
    H = c0.shape[-1]
    if tuple(h0.shape) != (num_layers * D, B, P):
        raise ValueError(f"oracle_lstm: h0 must have shape {(num_layers * D, B, P)}, got {tuple(h0.shape)}")
    if tuple(c0.shape) != (num_layers * D, B, H):
        raise ValueError(f"oracle_lstm: c0 must have shape {(num_layers * D, B, H)}, got {tuple(c0.shape)}")
    if lengths is None:
        lengths = [T] * B
    lengths = [int(n) for n in lengths]
    if len(lengths) != B or any(not 1 <= n <= T for n in lengths):
        raise ValueError(f"oracle_lstm: lengths must be {B} ints in [1, {T}], got {lengths}")
    if masks is not None:
        if len(masks) != num_layers * D:
            raise ValueError(f"oracle_lstm: masks must be a list of {num_layers * D} dicts, got {len(masks)}")
        expected = {"weight_hh": (4 * H, P), "recurrent": (B, P), "cell": (T, B, H), "hidden": (T, B, P)}
        for k, mask in enumerate(masks):
            for key, value in mask.items():
                if key not in MASK_KEYS:
                    raise KeyError(f"oracle_lstm: masks[{k}] has an unknown key {key!r}; expected {MASK_KEYS}")
                if value is not None and tuple(value.shape) != expected[key]:
                    raise ValueError(
                        f"oracle_lstm: masks[{k}][{key!r}] must have shape {expected[key]}, got {tuple(value.shape)}"
                    )
    return lengths


def oracle_lstm(x, lengths, h0, c0, params, *, num_layers, bidirectional, proj_size, layer_norm, peepholes, masks):
    """The LSTM with its variants, by autograd. Returns ``(out, h_n, c_n)``.

    Args:
        x: (T, B, I), time-major, padded.
        lengths: None (every sequence runs T steps) or B ints. Sequence b runs
            x[0:lengths[b], b]; the reverse direction starts from its last element.
        h0: (L*D, B, P); c0: (L*D, B, H).
        params: state_dict names of ``torch.nn.LSTM`` (``weight_ih_l0``, ...)
            and of the variants (``layer_norm_ih_weight_l0``, ``peephole_l0_reverse``, ...).
        num_layers, bidirectional, proj_size (0 = none): as in ``torch.nn.LSTM``.
        layer_norm, peepholes: whether those variants are on.
        masks: None, or L*D dicts (index layer * D + direction) with optional keys
            ``weight_hh`` (G, P), ``recurrent`` (B, P) (both already scaled),
            ``cell`` (T, B, H) and ``hidden`` (T, B, P) (zoneout, 1 = keep the
            previous state). Entry [t, b] of a zoneout mask is used at step t of
            sequence b, the same t as x[t, b], in both directions.

    Returns:
        out (T, B, D*P), zero past each sequence's length; h_n (L*D, B, P) and
        c_n (L*D, B, H), the states each sequence carried out of its last step.
    """
    D = 2 if bidirectional else 1
    H = c0.shape[-1]
    P = proj_size or H
    lengths = _check(x, lengths, h0, c0, masks, num_layers, D, P)
    T, B, _ = x.shape
    layer_input = x
    h_n, c_n = [], []
    for layer in range(num_layers):
        direction_outs = []
        for direction in range(D):
            k = layer * D + direction
            w = _weights(params, layer, direction, layer_norm, peepholes)
            mask = masks[k] if masks is not None else {}
            w_hh = w["w_hh"] if mask.get("weight_hh") is None else w["w_hh"] * mask["weight_hh"]
            xw = input_part(layer_input, w)  # (T, B, G)
            sequence_outs = []
            for b in range(B):
                n = lengths[b]
                rows = [x.new_zeros(P)] * T
                h, c = h0[k, b : b + 1], c0[k, b : b + 1]  # (1, P), (1, H)
                times = range(n - 1, -1, -1) if direction else range(n)
                for t in times:
                    h, c = step(
                        xw[t, b : b + 1],
                        h,
                        c,
                        w,
                        w_hh,
                        m_rec=None if mask.get("recurrent") is None else mask["recurrent"][b],
                        d_c=None if mask.get("cell") is None else mask["cell"][t, b],
                        d_h=None if mask.get("hidden") is None else mask["hidden"][t, b],
                    )
                    rows[t] = h[0]
                sequence_outs.append(torch.stack(rows))  # (T, P)
                h_n.append(h[0])
                c_n.append(c[0])
            direction_outs.append(torch.stack(sequence_outs, dim=1))  # (T, B, P)
        layer_input = torch.cat(direction_outs, dim=-1)  # (T, B, D*P)
    h_n = torch.stack(h_n).reshape(num_layers * D, B, P)
    c_n = torch.stack(c_n).reshape(num_layers * D, B, H)
    return layer_input, h_n, c_n


def variant_params(num_layers, bidirectional, hidden_size, *, layer_norm, peepholes, dtype=torch.float64, seed=0):
    """Random variant parameters by their state_dict names, to add to an ``nn.LSTM`` state_dict.

    Gains near 1 and biases near 0 rather than the initial ones and zeros, so
    that a gain or bias used in the wrong place shows.
    """
    gen = torch.Generator().manual_seed(seed)
    H, G = hidden_size, 4 * hidden_size
    out = {}
    for layer in range(num_layers):
        for s in ["", "_reverse"] if bidirectional else [""]:
            if layer_norm:
                out[f"layer_norm_ih_weight_l{layer}{s}"] = 1 + 0.3 * torch.randn(G, generator=gen, dtype=dtype)
                out[f"layer_norm_hh_weight_l{layer}{s}"] = 1 + 0.3 * torch.randn(G, generator=gen, dtype=dtype)
                out[f"layer_norm_c_weight_l{layer}{s}"] = 1 + 0.3 * torch.randn(H, generator=gen, dtype=dtype)
                out[f"layer_norm_c_bias_l{layer}{s}"] = 0.3 * torch.randn(H, generator=gen, dtype=dtype)
            if peepholes:
                bound = 1 / H**0.5
                out[f"peephole_l{layer}{s}"] = (2 * torch.rand(3, H, generator=gen, dtype=dtype) - 1) * bound
    return out


def random_masks(num_layers, bidirectional, T, B, H, P, *, weight_drop=0.0, recurrent_dropout=0.0,
                 zoneout_cell=0.0, zoneout_hidden=0.0, dtype=torch.float64, seed=0):
    """Training-mode masks for :func:`oracle_lstm`: dropout masks scaled by 1/(1-p), zoneout masks of 0/1."""
    gen = torch.Generator().manual_seed(seed)

    def keep(p, *shape):  # 1/(1-p) with probability 1-p, else 0
        return torch.bernoulli(torch.full(shape, 1 - p, dtype=dtype), generator=gen) / (1 - p)

    masks = []
    for _ in range(num_layers * (2 if bidirectional else 1)):
        mask = {}
        if weight_drop:
            mask["weight_hh"] = keep(weight_drop, 4 * H, P)
        if recurrent_dropout:
            mask["recurrent"] = keep(recurrent_dropout, B, P)
        if zoneout_cell:
            mask["cell"] = torch.bernoulli(torch.full((T, B, H), zoneout_cell, dtype=dtype), generator=gen)
        if zoneout_hidden:
            mask["hidden"] = torch.bernoulli(torch.full((T, B, P), zoneout_hidden, dtype=dtype), generator=gen)
        masks.append(mask)
    return masks
