r"""One layer, one direction of an LSTM, with backpropagation through time written out.

Notation and gate order follow ``torch.nn.LSTM``. For time step ``t`` (rows are
sequences, ``G = 4H``; ``P = H`` when there is no projection)::

    z_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh          (B, G) = [z_i | z_f | z_g | z_o]
    i_t = sigmoid(z_i)    f_t = sigmoid(z_f)    g_t = tanh(z_g)    o_t = sigmoid(z_o)
    c_t = f_t * c_{t-1} + i_t * g_t                           (B, H)
    m_t = o_t * tanh(c_t)                                     (B, H)
    h_t = m_t W_hr^T   with a projection,   h_t = m_t  without (B, P)

The backward pass runs the same steps in reverse order. With ``dh_t`` the total
gradient reaching ``h_t`` (from the output ``y_t = h_t`` and from step ``t+1``)
and ``dc_t`` the gradient carried into the cell from step ``t+1``::

    dm_t   = dh_t W_hr           (projection)       dm_t = dh_t  (none)
    dc_t  += dm_t * o_t * (1 - tanh(c_t)^2)
    dz_o   = dm_t * tanh(c_t) * o_t (1 - o_t)        d_sigmoid(s) = s (1 - s)
    dz_i   = dc_t * g_t * i_t (1 - i_t)
    dz_f   = dc_t * c_{t-1} * f_t (1 - f_t)
    dz_g   = dc_t * i_t * (1 - g_t^2)                d_tanh(u)    = 1 - u^2
    dc_{t-1} = dc_t * f_t                  (carried to step t-1)
    dh_{t-1} += dz_t W_hh                  (carried to step t-1)

Once the loop is done, every weight gradient is one matrix product over all
steps (``Z``, ``X``, ``H_prev``, ``M`` stack the rows of every step)::

    dX = dZ W_ih        dW_ih = dZ^T X        dW_hh = dZ^T H_prev
    db_ih = db_hh = sum of the rows of dZ     dW_hr = dH^T M

and ``dh_0``, ``dc_0`` are what the loop carries out of the first step.

Sequences of different lengths run in the packed layout of
``torch.nn.utils.rnn.PackedSequence`` (see :mod:`.packing`).

The variants (each off unless its tensors are given; ``LN(v) = (v - mean(v))
* rstd``, ``rstd = 1 / sqrt(var(v) + 1e-5)`` over the row, ``v_hat = LN(v)``)::

    layer norm   z_t = g_ih * LN(x_t W_ih^T) + g_hh * LN(r_t) + b_ih + b_hh,  r_t = h_{t-1} W_hh^T
                 m_t = o_t * tanh(u_t),  u_t = g_c * LN(c~_t) + b_c     (the carried c_t is not normalised)
    peepholes    z_i += p_i * c_{t-1}    z_f += p_f * c_{t-1}    z_o += p_o * c~_t
    zoneout      c~_t, h~_t: the step above;  c_t = d_c * c_{t-1} + (1 - d_c) * c~_t,  h_t likewise with d_h
    recurrent    r_t = (m_rec * h_{t-1}) W_hh^T     (one mask per sequence)
    dropout

and their derivatives, in the order the backward step takes them::

    zoneout      dh~ = dh (1 - d_h),  dc~ = dc (1 - d_c);  d_h * dh and d_c * dc go to the step before
    layer norm   du = dm o (1 - tanh(u)^2),  dg_c += du c^,  db_c += du,  dc~ += dLN(g_c du)
                 with dLN(e) = rstd * (e - mean(e) - v^ * mean(e * v^))    (through the mean and variance)
    peepholes    dc~ += dz_o p_o;  dc_{t-1} += dz_i p_i + dz_f p_f;  dp_i, dp_f, dp_o += dz_i c_{t-1}, dz_f c_{t-1}, dz_o c~
    layer norm   dg_hh += dz r^,  dr = dLN(g_hh dz),  dh_{t-1} = dr W_hh,  and after the loop
                 d(x W_ih^T) = dLN(g_ih dZ),  dg_ih = sum of dZ * LN(x W_ih^T)
    recurrent    dh_{t-1} = (dr W_hh) * m_rec,  dW_hh = dR^T (M_rec * H_prev)
    dropout

Weight drop multiplies ``W_hh`` by its mask before the loops, so ``dW_hh``
reaches the weights through the mask.

:func:`step_forward` and :func:`step_backward` are one step of each pass
(:func:`cell_forward` and :func:`cell_backward` without the variants),
:func:`forward_loop` and :func:`backward_loop` run them over the steps. These
are the readable loops, the source of truth: they run wherever autograd
records (double backward), under torch.compile and torch.func transforms, and
every backend is tested against them.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .layer import Grads, LoopGrads, Masks, Saved, Weights
from .packing import final, make_steps, previous_rows, resize

# --------------------------------------------------------------------------
# Derivative helpers, written in terms of the activation's output.


def d_sigmoid(s: Tensor) -> Tensor:
    """Derivative of sigmoid at the point where it returned ``s``."""
    return s * (1 - s)


def d_tanh(u: Tensor) -> Tensor:
    """Derivative of tanh at the point where it returned ``u``."""
    return 1 - u * u


# --------------------------------------------------------------------------
# The input projection: one matrix product over all steps.


def input_bias(b_ih: Optional[Tensor], b_hh: Optional[Tensor]) -> Optional[Tensor]:
    """``b_ih + b_hh``, (G,), or whichever is given, or None."""
    return b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)


def input_projection(rows: Tensor, w_ih: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor],
                     ln_ih: Optional[Tensor] = None) -> Tensor:
    """``x W_ih^T + b_ih + b_hh`` for every row: one matrix product, (N, G).
    With the layer norm gain ``ln_ih`` (G,): ``ln_ih * LN(x W_ih^T) + b_ih + b_hh``."""
    bias = input_bias(b_ih, b_hh)
    if ln_ih is not None:
        xw = normalize(rows.mm(w_ih.t()))[0] * ln_ih  # (N, G)
        return xw if bias is None else xw + bias
    return rows.mm(w_ih.t()) if bias is None else torch.addmm(bias, rows, w_ih.t())


# --------------------------------------------------------------------------
# Layer normalisation over the last dimension, and its derivative.

EPS = 1e-5  # the eps of F.layer_norm


def normalize(v: Tensor):
    """``(v_hat, rstd)``: ``v_hat = (v - mean(v)) * rstd`` with ``rstd = 1 / sqrt(var(v) + eps)``
    (biased variance) over the last dimension; ``rstd`` keeps that dimension, (b, 1).
    ``F.layer_norm(v, ..., gamma, beta)`` is ``gamma * v_hat + beta``."""
    mean = v.mean(-1, keepdim=True)
    centred = v - mean
    rstd = torch.rsqrt((centred * centred).mean(-1, keepdim=True) + EPS)
    return centred * rstd, rstd


def d_normalize(d_v_hat: Tensor, v_hat: Tensor, rstd: Tensor) -> Tensor:
    """The gradient of ``v`` from the gradient ``d_v_hat`` of ``v_hat = normalize(v)``,
    through the mean and the variance::

        dv = rstd * (d_v_hat - mean(d_v_hat) - v_hat * mean(d_v_hat * v_hat))
    """
    mean_d = d_v_hat.mean(-1, keepdim=True)
    mean_dv = (d_v_hat * v_hat).mean(-1, keepdim=True)
    return rstd * (d_v_hat - mean_d - v_hat * mean_dv)


# --------------------------------------------------------------------------
# One step of the cell.


def step_forward(xw: Tensor, h: Tensor, c: Tensor, weights: Weights, rec: Optional[Tensor] = None,
                 keep_c: Optional[Tensor] = None, keep_h: Optional[Tensor] = None):
    """One step forward with every variant, from the step's input projections
    ``xw`` (b, G) (with layer norm: ``gamma_ih * LN(x W_ih^T) + b``) and the
    carried states ``h`` (b, P), ``c`` (b, H).

    ``rec`` (b, P): the recurrent dropout mask; ``keep_c`` (b, H), ``keep_h``
    (b, P): the zoneout masks, 1 where the previous state is kept; None: off.

    Returns ``(h, c, gates, r_hat, r_rstd)``: the carried states, the
    activated gates ``i|f|g|o`` (b, G), and with layer norm the normalised
    recurrent products (b, G) and their ``rstd`` (b,) (else None).
    """
    hr = h if rec is None else h * rec  # (b, P)
    if weights.ln_hh is None:
        z, r_hat, r_rstd = torch.addmm(xw, hr, weights.w_hh.t()), None, None  # (b, G)
    else:
        r_hat, r_rstd = normalize(hr.mm(weights.w_hh.t()))  # (b, G), (b, 1)
        z = torch.addcmul(xw, r_hat, weights.ln_hh)  # (b, G)
        r_rstd = r_rstd.squeeze(1)  # (b,)
    z_i, z_f, z_g, z_o = z.chunk(4, 1)  # 4 x (b, H)
    if weights.peephole is not None:
        p_i, p_f, p_o = weights.peephole  # 3 x (H,)
        z_i, z_f = torch.addcmul(z_i, p_i, c), torch.addcmul(z_f, p_f, c)
    i, f, g = torch.sigmoid(z_i), torch.sigmoid(z_f), torch.tanh(z_g)  # 3 x (b, H)
    c_new = torch.addcmul(f * c, i, g)  # the candidate cell state (b, H)
    if weights.peephole is not None:
        z_o = torch.addcmul(z_o, p_o, c_new)
    o = torch.sigmoid(z_o)  # (b, H)
    u = c_new if weights.ln_c is None else torch.addcmul(weights.ln_c_bias, normalize(c_new)[0], weights.ln_c)
    m = o * torch.tanh(u)  # (b, H)
    h_new = m if weights.w_hr is None else m.mm(weights.w_hr.t())  # (b, P)
    if keep_c is not None:
        c_new = keep_c * c + (1 - keep_c) * c_new
    if keep_h is not None:
        h_new = keep_h * h + (1 - keep_h) * h_new
    return h_new, c_new, torch.cat([i, f, g, o], 1), r_hat, r_rstd


def cell_forward(xw: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, w_hr: Optional[Tensor]):
    """One step forward of the plain LSTM: :func:`step_forward` with no variant.

    Returns ``(h, c, gates)``: the new states and the activated gates
    ``i|f|g|o`` (b, G).
    """
    return step_forward(xw, h, c, Weights(None, w_hh, w_hr=w_hr))[:3]


class StepGrads(NamedTuple):
    """What :func:`step_backward` returns for one step."""

    d_z: Tensor  # pre-activation gradients (b, G)
    d_r: Tensor  # gradients of the recurrent products h W_hh^T (b, G): d_z without layer norm
    d_h_new: Tensor  # gradient reaching the new output before zoneout, (b, P)
    dh_prev: Tensor  # carried to the step before, (b, P)
    dc_prev: Tensor  # (b, H)
    d_ln_c: Optional[Tensor] = None  # layer norm of c: the rows of d gamma_c (b, H)
    d_ln_c_bias: Optional[Tensor] = None  # and of d beta_c (b, H)
    d_peephole: Optional[Tensor] = None  # the rows of d p_i, d p_f, d p_o: (3, b, H)


def step_backward(dh: Tensor, dc: Tensor, gates: Tensor, c: Tensor, c_prev: Tensor, weights: Weights,
                  r_hat: Optional[Tensor] = None, r_rstd: Optional[Tensor] = None, rec: Optional[Tensor] = None,
                  keep_c: Optional[Tensor] = None, keep_h: Optional[Tensor] = None) -> StepGrads:
    """One step backward with every variant.

    ``dh`` (b, P) is the total gradient reaching the carried ``h_t``, ``dc``
    (b, H) the gradient carried into ``c_t`` from the step after; ``gates``
    (b, G), ``c`` and ``c_prev`` (b, H) are what the step's forward computed
    and started from (the carried states), ``r_hat``, ``r_rstd``, ``rec``,
    ``keep_c``, ``keep_h`` as :func:`step_forward` used and returned them.
    """
    H = c.shape[-1]
    w_hh, w_hr, peephole = weights.w_hh, weights.w_hr, weights.peephole
    i, f, g, o = gates.split(H, 1)  # 4 x (b, H)
    dh_kept = dc_kept = None
    if keep_h is not None:  # zoneout: the kept share goes straight to the step before
        dh, dh_kept = dh * (1 - keep_h), dh * keep_h
    if keep_c is not None:
        dc, dc_kept = dc * (1 - keep_c), dc * keep_c
        c = torch.addcmul(f * c_prev, i, g)  # the candidate cell state, as step_forward computed it
    dm = dh if w_hr is None else dh.mm(w_hr)  # (b, H)
    d_ln_c = d_ln_c_bias = None
    if weights.ln_c is None:
        tanh_u = torch.tanh(c)  # (b, H)
        dc = torch.addcmul(dc, dm, o * d_tanh(tanh_u))
    else:
        c_hat, c_rstd = normalize(c)
        tanh_u = torch.tanh(torch.addcmul(weights.ln_c_bias, c_hat, weights.ln_c))
        du = dm * o * d_tanh(tanh_u)  # (b, H)
        d_ln_c, d_ln_c_bias = du * c_hat, du
        dc = dc + d_normalize(du * weights.ln_c, c_hat, c_rstd)
    dz_o = dm * (tanh_u * d_sigmoid(o))
    if peephole is not None:
        dc = torch.addcmul(dc, dz_o, peephole[2])
    dz_i, dz_f, dz_g = dc * (g * d_sigmoid(i)), dc * (c_prev * d_sigmoid(f)), dc * (i * d_tanh(g))
    d_z = torch.cat([dz_i, dz_f, dz_g, dz_o], 1)  # (b, G)
    dc_prev = dc * f
    d_peephole = None
    if peephole is not None:
        dc_prev = dc_prev + dz_i * peephole[0] + dz_f * peephole[1]
        d_peephole = torch.stack([dz_i * c_prev, dz_f * c_prev, dz_o * c])
    if dc_kept is not None:
        dc_prev = dc_prev + dc_kept
    d_r = d_z if weights.ln_hh is None else d_normalize(d_z * weights.ln_hh, r_hat, r_rstd.unsqueeze(1))
    dh_prev = d_r.mm(w_hh)  # (b, P)
    if rec is not None:
        dh_prev = dh_prev * rec
    if dh_kept is not None:
        dh_prev = dh_prev + dh_kept
    return StepGrads(d_z, d_r, dh, dh_prev, dc_prev, d_ln_c, d_ln_c_bias, d_peephole)


def cell_backward(dh: Tensor, dc: Tensor, gates: Tensor, c: Tensor, c_prev: Tensor, w_hh: Tensor, w_hr: Optional[Tensor]):
    """One step backward of the plain LSTM: :func:`step_backward` with no variant.

    Returns ``(d_z, dh_prev, dc_prev)``: the pre-activation gradients (b, G)
    and the gradients carried to the step before, (b, P) and (b, H).
    """
    grads = step_backward(dh, dc, gates, c, c_prev, Weights(None, w_hh, w_hr=w_hr))
    return grads.d_z, grads.dh_prev, grads.dc_prev


# --------------------------------------------------------------------------
# The time loops, in plain differentiable PyTorch.


def forward_loop(xw: Tensor, h0: Tensor, c0: Tensor, weights: Weights, masks: Masks, batch_sizes, reverse: bool,
                 save: bool = True):
    """Run the recurrence over precomputed input projections.

    Args:
        xw: the input projections of every row, (N, G) (:func:`input_projection`).
        h0, c0: initial states, (B, P) and (B, H).
        weights: the layer's :class:`~.layer.Weights`; the loop reads all but
            ``w_ih``, ``b_ih``, ``b_hh`` and ``ln_ih``.
        masks: the layer's :class:`~.layer.Masks` (``NO_MASKS``: none).
        batch_sizes: rows of each step, non-increasing.
        reverse: run the steps from last to first.
        save: keep what the backward pass needs; without it (inference) the
            gates and cell states come back as None.

    Returns:
        ``(y, gates, cs, h_n, c_n, r_hat, r_rstd)``: outputs (N, P), activated
        gates ``i|f|g|o`` (N, G), carried cell states (N, H), final states
        (B, P) and (B, H), and with layer norm the normalised recurrent
        products (N, G) and their ``rstd`` (N,) (else None).
    """
    steps = make_steps(batch_sizes, reverse)
    first = steps.order[0]
    h, c = h0[: steps.sizes[first]], c0[: steps.sizes[first]]  # (b, P), (b, H)
    h_done, c_done = [], []
    T = len(steps.sizes)
    ys, gates, cs, r_hats, r_rstds = [None] * T, [None] * T, [None] * T, [None] * T, [None] * T
    for t in steps.order:
        lo, b = steps.offsets[t], steps.sizes[t]
        h, c = resize(h, b, h0, h_done), resize(c, b, c0, c_done)
        h, c, step_gates, r_hat, r_rstd = step_forward(
            xw[lo : lo + b], h, c, weights, *_step_masks(masks, lo, b, xw.dtype)
        )
        ys[t] = h
        if save:
            cs[t], gates[t], r_hats[t], r_rstds[t] = c, step_gates, r_hat, r_rstd  # (b, H), (b, G), (b, G), (b,)
    y = torch.cat(ys)  # (N, P)
    gates, cs = (torch.cat(gates), torch.cat(cs)) if save else (None, None)  # (N, G), (N, H)
    r_hat, r_rstd = (torch.cat(r_hats), torch.cat(r_rstds)) if save and weights.ln_hh is not None else (None, None)
    return y, gates, cs, final(h, h_done), final(c, c_done), r_hat, r_rstd


def cell_outputs(saved: Saved, weights: Weights, masks: Masks, batch_sizes, reverse: bool) -> Tensor:
    """``m = o * tanh(u)`` of every row (N, H), from what the forward pass saved:
    the outputs before the projection, for ``dW_hr = d_h^T M``."""
    H = saved.cs.shape[-1]
    i, f, g, o = saved.gates.split(H, 1)  # 4 x (N, H)
    c = saved.cs  # (N, H)
    if masks.cell is not None:  # the candidate states, from the carried ones
        prev = previous_rows(batch_sizes, reverse, c.device)  # (N,)
        c = torch.addcmul(f * torch.cat([c, saved.c0]).index_select(0, prev), i, g)
    if weights.ln_c is not None:
        c = torch.addcmul(weights.ln_c_bias, normalize(c)[0], weights.ln_c)
    return o * torch.tanh(c)


def _step_masks(masks: Masks, lo: int, b: int, dtype: torch.dtype):
    """The masks of the step whose rows are ``lo ... lo + b - 1``: ``(rec, keep_c, keep_h)``,
    the zoneout ones in ``dtype`` (they may come as bool)."""
    rec, keep_c, keep_h = masks
    return (
        None if rec is None else rec[:b],
        None if keep_c is None else keep_c[lo : lo + b].to(dtype),
        None if keep_h is None else keep_h[lo : lo + b].to(dtype),
    )


def backward_loop(grads: Grads, saved: Saved, weights: Weights, masks: Masks, batch_sizes, reverse: bool) -> LoopGrads:
    """Backpropagate through the recurrence, from the last step visited to the first.

    Args:
        grads: :class:`~.layer.Grads`, the gradients of ``y``, ``h_n``, ``c_n``.
        saved: :class:`~.layer.Saved`; the loop reads ``gates``, ``cs``, ``c0``
            and, with layer norm, ``r_hat`` and ``r_rstd``.
        weights, masks: as for :func:`forward_loop`.
        batch_sizes, reverse: as for :func:`forward_loop`.

    Returns a :class:`~.layer.LoopGrads`: the pre-activation gradients
    ``d_z`` (N, G); with layer norm the gradients ``d_r`` of the recurrent
    products (N, G); with a projection the gradient ``d_h`` reaching each new
    output before zoneout (N, P); the gradients of the initial states (B, P),
    (B, H); the bias gradient, the sum of the rows of ``d_z`` (G,); and the
    gradients of the layer norm gains and peepholes whose options are on.
    """
    d_y, d_hn, d_cn = grads
    gates, cs, c0, r_hat, r_rstd = saved.gates, saved.cs, saved.c0, saved.r_hat, saved.r_rstd
    steps = make_steps(batch_sizes, reverse)
    prev = previous_rows(batch_sizes, reverse, cs.device)  # (N,)
    c_prev = torch.cat([cs, c0]).index_select(0, prev)  # (N, H)
    T = len(steps.sizes)
    per_step = [None] * T
    last = steps.order[-1]
    dh, dc = d_hn[: steps.sizes[last]], d_cn[: steps.sizes[last]]  # (b, P), (b, H)
    dh_done, dc_done = [], []
    for t in reversed(steps.order):
        lo, b = steps.offsets[t], steps.sizes[t]
        rows = slice(lo, lo + b)
        dh, dc = resize(dh, b, d_hn, dh_done), resize(dc, b, d_cn, dc_done)
        dh = d_y[rows] + dh  # (b, P)
        step = step_backward(
            dh, dc, gates[rows], cs[rows], c_prev[rows], weights,
            None if r_hat is None else r_hat[rows], None if r_rstd is None else r_rstd[rows],
            *_step_masks(masks, lo, b, cs.dtype),
        )
        per_step[t] = step
        dh, dc = step.dh_prev, step.dc_prev
    d_z = torch.cat([s.d_z for s in per_step])  # (N, G)

    def total(field, keep=False):  # the rows of every step, or their sum
        parts = [getattr(s, field) for s in per_step]
        if parts[0] is None:
            return None
        return torch.cat(parts, -2) if keep else torch.cat(parts, -2).sum(-2)

    return LoopGrads(
        d_z,
        None if weights.ln_hh is None else total("d_r", keep=True),
        None if weights.w_hr is None else total("d_h_new", keep=True),
        final(dh, dh_done),
        final(dc, dc_done),
        d_z.sum(0),
        None if weights.ln_hh is None else (d_z * r_hat).sum(0),
        total("d_ln_c"),
        total("d_ln_c_bias"),
        total("d_peephole"),
    )
