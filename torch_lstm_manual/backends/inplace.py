"""The ``"python"`` backend: the reference loops with autograd off, in place.

With nothing recorded, a loop can write every result in place into buffers
allocated once, instead of collecting the steps and concatenating them, and
update the gates in place. The running states are the first b rows of (B, .)
buffers that start as the initial states (h0, c0; d_hn, d_cn backward): a
sequence that stops running keeps its last state in its row, and one that
starts finds its initial state there, so the final states are the buffers.
Same arguments, same results and the same math as the reference loops, which
run wherever autograd records (double backward).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..layer import Grads, Saved, Weights
from ..packing import make_steps
from ..reference import input_projection
from .loops import Loops


def forward_loop_inplace(xw: Tensor, h0: Tensor, c0: Tensor, weights: Weights, batch_sizes, reverse: bool,
                         save: bool = True, overwrite_xw: bool = False):
    """:func:`~torch_lstm_manual.reference.forward_loop`, in place; autograd must be off.

    The four gates go through one sigmoid, ``g`` as ``2 sigmoid(2 z_g) - 1``
    (= ``tanh(z_g)``; the two differ by an ulp of 1 at most, not relatively).
    With ``overwrite_xw`` the gates are computed in the memory of ``xw``,
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
        if overwrite_xw:
            z.addmm_(h_b, w_hh_t)
        else:
            torch.addmm(xw_t[t], h_b, w_hh_t, out=z)
        i, f, g, o = z.split(H, 1)
        # One sigmoid for the four gates: tanh(u) = 2 sigmoid(2u) - 1.
        g.mul_(2)
        z.sigmoid_()
        g.lerp_(one, -1)  # 2 g - 1
        c_b.mul_(f).addcmul_(i, g)  # (b, H)
        if save:
            cs_t[t].copy_(c_b)
        m_b = y_t[t] if w_hr is None else m[:b]  # (b, H)
        torch.tanh(c_b, out=m_b).mul_(o)
        if w_hr is not None:
            torch.mm(m_b, w_hr.t(), out=y_t[t])
        h_b.copy_(y_t[t])
    return y, (gates if save else None), cs, h, c


def project_and_forward_inplace(rows: Tensor, h0: Tensor, c0: Tensor, weights: Weights, batch_sizes, reverse: bool,
                                save: bool = True):
    """:func:`~torch_lstm_manual.backends.loops.project_and_forward` with
    :func:`forward_loop_inplace`, which computes the gates in the memory of the projections."""
    xw = input_projection(rows, weights.w_ih, weights.b_ih, weights.b_hh)  # (N, G)
    return forward_loop_inplace(xw, h0, c0, weights, batch_sizes, reverse, save, overwrite_xw=True)


def backward_loop_inplace(grads: Grads, saved: Saved, weights: Weights, batch_sizes, reverse: bool):
    """:func:`~torch_lstm_manual.reference.backward_loop`, in place; autograd must be off.

    Each step computes its own factors from its rows of ``gates`` and ``cs``
    (small tensors that stay in cache) and writes ``d_z`` in place, gate by gate.
    """
    d_y, d_hn, d_cn = grads
    gates, cs, c0 = saved.gates, saved.cs, saved.c0
    w_hh, w_hr = weights.w_hh, weights.w_hr
    H = cs.shape[-1]
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
        i, f, g, o = s_t.split(H, 1)  # 4 x (b, H)
        dz_i, dz_f, dz_g, dz_o = d_z_s.split(H, 1)  # 4 x (b, H)
        dh_b, dc_b = (dh, dc) if b == dh.shape[0] else (dh[:b], dc[:b])
        dh_b.add_(d_y_t[t])  # (b, P)
        if w_hr is None:
            dm = dh_b
        else:
            d_h[steps.offsets[t] : steps.offsets[t] + b] = dh_b
            dm = dh_b.mm(w_hr)  # (b, H)
        tanh_c = torch.tanh(cs_t[t])  # (b, H)
        dc_b.addcmul_(dm, torch.addcmul(one, tanh_c, tanh_c, value=-1).mul_(o))  # + dm o d_tanh(tanh c)
        # d_sigmoid of the four gates at once, then g's d_tanh in its place.
        torch.addcmul(s_t, s_t, s_t, value=-1, out=d_z_s)
        torch.addcmul(one, g, g, value=-1, out=dz_g)
        d_z_s.view(b, 4, H)[:, :3].mul_(dc_b.unsqueeze(1))  # i, f, g: times dc
        dz_i.mul_(g)  # dc g d_sigmoid(i)
        dz_g.mul_(i)  # dc i d_tanh(g)
        dz_o.mul_(tanh_c).mul_(dm)  # dm tanh(c) d_sigmoid(o)
        # dc d_sigmoid(f) c_prev; c_prev: the previous step's cell states for
        # the rows it ran, else c0.
        ran = 0 if k == 0 else min(b, steps.sizes[steps.order[k - 1]])
        if ran:
            dz_f[:ran].mul_(cs_t[steps.order[k - 1]][:ran])
        if ran < b:
            dz_f[ran:].mul_(c0[ran:b])
        dc_b.mul_(f)
        torch.mm(d_z_t[t], w_hh, out=dh_b)
    return d_z, d_h, dh, dc, d_z.sum(0)


LOOPS = Loops(forward_loop_inplace, backward_loop_inplace, project_and_forward_inplace)
