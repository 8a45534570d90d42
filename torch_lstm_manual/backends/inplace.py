"""The ``"python"`` backend: the reference loops with autograd off, in place.

With nothing recorded, a loop can write every result in place into buffers
allocated once, instead of collecting the steps and concatenating them, and
update the gates in place. The running states are the first b rows of (B, .)
buffers that start as the initial states (h0, c0; d_hn, d_cn backward): a
sequence that stops running keeps its last state in its row, and one that
starts finds its initial state there, so the final states are the buffers.
Same arguments, same results and the same math as the reference loops, which
run wherever autograd records (double backward), and for the variants of the
cell (layer norm, peepholes, zoneout, recurrent dropout), which these loops
leave to them (``variants=False``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from ..layer import Grads, LoopGrads, Masks, Saved, Weights
from ..packing import make_steps
from ..reference import input_projection
from .loops import Loops


# --------------------------------------------------------------------------
# One step of the cell, in place: the bodies of the loops below, and the step
# that LSTMCell runs.


def cell_forward_inplace(xw: Optional[Tensor], z: Tensor, h: Tensor, c: Tensor, w_hh_t: Tensor,
                         w_hr: Optional[Tensor], m: Optional[Tensor], h_new: Tensor, one: Tensor) -> None:
    """:func:`~torch_lstm_manual.reference.cell_forward`, in place; autograd must be off.

    ``z`` (b, G) receives ``xw + h W_hh^T`` (``xw`` None: ``z`` holds the
    step's input projections on entry) and then the activated gates
    ``i|f|g|o``; ``c`` (b, H) is updated to the new cell state, ``h_new``
    (b, P) receives the new hidden state; ``h`` (b, P) is only read, so it may
    be ``h_new``'s source but not ``h_new`` itself. ``w_hh_t`` is ``W_hh^T``
    (P, G), ``m`` a (b, H) buffer with a projection (else None), ``one`` a
    scalar tensor 1.

    The four gates go through one sigmoid, ``g`` as ``2 sigmoid(2 z_g) - 1``
    (= ``tanh(z_g)``; the two differ by an ulp of 1 at most, not relatively).
    """
    if xw is None:
        z.addmm_(h, w_hh_t)
    else:
        torch.addmm(xw, h, w_hh_t, out=z)
    i, f, g, o = z.chunk(4, 1)  # 4 x (b, H)
    # One sigmoid for the four gates: tanh(u) = 2 sigmoid(2u) - 1.
    g.mul_(2)
    z.sigmoid_()
    g.lerp_(one, -1)  # 2 g - 1
    c.mul_(f).addcmul_(i, g)  # (b, H)
    m_b = h_new if w_hr is None else m  # (b, H)
    torch.tanh(c, out=m_b).mul_(o)
    if w_hr is not None:
        torch.mm(m_b, w_hr.t(), out=h_new)


def cell_backward_inplace(dm: Tensor, dc: Tensor, gates: Tensor, c: Tensor, c_prev: Sequence[Tensor], w_hh: Tensor,
                          d_z: Tensor, dh_prev: Optional[Tensor], one: Tensor) -> None:
    """:func:`~torch_lstm_manual.reference.cell_backward`, in place; autograd must be off.

    ``dm`` (b, H) is the gradient reaching ``m_t`` (``dh`` without a
    projection, ``dh W_hr`` with one), ``dc`` (b, H) the gradient carried into
    ``c_t``, which becomes the one carried to ``c_{t-1}``; ``gates`` (b, G)
    and ``c`` (b, H) are what the step's forward computed, ``c_prev`` the
    cell states it started from as row blocks, (b, H) once stacked. ``d_z``
    (b, G) receives the pre-activation gradients and ``dh_prev`` (b, P),
    unless None, ``d_z W_hh``; it may be ``dm``'s memory, read before.

    Each step computes its own factors from its ``gates`` and ``c`` and writes
    ``d_z`` in place, gate by gate.
    """
    H = c.shape[-1]
    i, f, g, o = gates.chunk(4, 1)  # 4 x (b, H)
    dz_i, dz_f, dz_g, dz_o = d_z.chunk(4, 1)  # 4 x (b, H)
    tanh_c = torch.tanh(c)  # (b, H)
    dc.addcmul_(dm, torch.addcmul(one, tanh_c, tanh_c, value=-1).mul_(o))  # + dm o d_tanh(tanh c)
    # d_sigmoid of the four gates at once, then g's d_tanh in its place.
    torch.addcmul(gates, gates, gates, value=-1, out=d_z)
    torch.addcmul(one, g, g, value=-1, out=dz_g)
    d_z.view(d_z.shape[0], 4, H)[:, :3].mul_(dc.unsqueeze(1))  # i, f, g: times dc
    dz_i.mul_(g)  # dc g d_sigmoid(i)
    dz_g.mul_(i)  # dc i d_tanh(g)
    dz_o.mul_(tanh_c).mul_(dm)  # dm tanh(c) d_sigmoid(o)
    lo = 0
    for block in c_prev:  # dc d_sigmoid(f) c_prev
        rows = block.shape[0]
        if rows:
            dz_f[lo : lo + rows].mul_(block)
            lo += rows
    dc.mul_(f)
    if dh_prev is not None:
        torch.mm(d_z, w_hh, out=dh_prev)


def forward_loop_inplace(xw: Tensor, h0: Tensor, c0: Tensor, weights: Weights, masks: Masks, batch_sizes,
                         reverse: bool, save: bool = True, overwrite_xw: bool = False):
    """:func:`~torch_lstm_manual.reference.forward_loop` of the plain LSTM, in place; autograd must be off.

    Each step is :func:`cell_forward_inplace`. With ``overwrite_xw`` the gates are computed in the memory of ``xw``,
    which the caller gives up (the returned gates are ``xw``).
    """
    w_hh, w_hr = weights.w_hh, weights.w_hr
    H, P = c0.shape[-1], h0.shape[-1]
    steps = make_steps(batch_sizes, reverse)
    w_hh_t = w_hh.t()  # (P, G)
    y = xw.new_empty(xw.shape[0], P)  # (N, P)
    # z and then the activated gates: every row (saved), or one step's rows.
    gates = xw if overwrite_xw else xw.new_empty(xw.shape[0] if save else h0.shape[0], 4 * H)
    cs = xw.new_empty(xw.shape[0], H) if save else None  # (N, H)
    m = None if w_hr is None else xw.new_empty(c0.shape)  # (B, H)
    h, c = h0.clone(), c0.clone()  # running states, (B, P) and (B, H)
    one = xw.new_ones(())
    # Each step's rows, as views taken in one call per tensor.
    xw_t, y_t = xw.split(steps.sizes), y.split(steps.sizes)
    z_t = gates.split(steps.sizes) if save or overwrite_xw else None
    cs_t = cs.split(steps.sizes) if save else None
    for t in steps.order:
        b = steps.sizes[t]
        h_b, c_b = (h, c) if b == h.shape[0] else (h[:b], c[:b])
        z = gates[:b] if z_t is None else z_t[t]  # (b, G)
        cell_forward_inplace(None if overwrite_xw else xw_t[t], z, h_b, c_b, w_hh_t, w_hr,
                             None if m is None else m[:b], y_t[t], one)
        if save:
            cs_t[t].copy_(c_b)
        h_b.copy_(y_t[t])
    return y, (gates if save else None), cs, h, c, None, None


def project_and_forward_inplace(rows: Tensor, h0: Tensor, c0: Tensor, weights: Weights, masks: Masks, batch_sizes,
                                reverse: bool, save: bool = True):
    """:func:`~torch_lstm_manual.backends.loops.project_and_forward` with
    :func:`forward_loop_inplace`, which computes the gates in the memory of the projections."""
    xw = input_projection(rows, weights.w_ih, weights.b_ih, weights.b_hh)  # (N, G)
    return forward_loop_inplace(xw, h0, c0, weights, masks, batch_sizes, reverse, save, overwrite_xw=True)


def backward_loop_inplace(grads: Grads, saved: Saved, weights: Weights, masks: Masks, batch_sizes, reverse: bool):
    """:func:`~torch_lstm_manual.reference.backward_loop` of the plain LSTM, in place; autograd must be off.

    Each step is :func:`cell_backward_inplace` on its rows of ``gates`` and
    ``cs`` (small tensors that stay in cache).
    """
    d_y, d_hn, d_cn = grads
    gates, cs, c0 = saved.gates, saved.cs, saved.c0
    w_hh, w_hr = weights.w_hh, weights.w_hr
    steps = make_steps(batch_sizes, reverse)
    one = cs.new_ones(())
    d_z = gates.new_empty(gates.shape)  # (N, G)
    d_h = None if w_hr is None else d_y.new_empty(d_y.shape)  # (N, P)
    dh, dc = d_hn.clone(), d_cn.clone()  # carried gradients, (B, P) and (B, H)
    # Each step's rows, as views taken in one call per tensor.
    gates_t, d_z_t, cs_t, d_y_t = (a.split(steps.sizes) for a in (gates, d_z, cs, d_y))
    for k in range(len(steps.order) - 1, -1, -1):
        t = steps.order[k]
        b = steps.sizes[t]
        s_t, d_z_s = gates_t[t], d_z_t[t]  # (b, G)
        dh_b, dc_b = (dh, dc) if b == dh.shape[0] else (dh[:b], dc[:b])
        dh_b.add_(d_y_t[t])  # (b, P)
        if w_hr is None:
            dm = dh_b
        else:
            d_h[steps.offsets[t] : steps.offsets[t] + b] = dh_b
            dm = dh_b.mm(w_hr)  # (b, H)
        # c_prev: the previous step's cell states for the rows it ran, then c0.
        if k == 0:
            c_prev = (c0[:b],)
        else:
            ran = min(b, steps.sizes[steps.order[k - 1]])
            c_prev = (cs_t[steps.order[k - 1]][:ran], c0[ran:b])
        cell_backward_inplace(dm, dc_b, s_t, cs_t[t], c_prev, w_hh, d_z_s, dh_b, one)
    return LoopGrads(d_z, None, d_h, dh, dc, d_z.sum(0))


LOOPS = Loops(forward_loop_inplace, backward_loop_inplace, project_and_forward_inplace)
