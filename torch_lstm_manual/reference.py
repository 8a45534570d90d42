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

:func:`cell_forward` and :func:`cell_backward` are one step of each pass,
:func:`forward_loop` and :func:`backward_loop` run them over the steps. These
are the readable loops, the source of truth: they run wherever autograd
records (double backward), under torch.compile and torch.func transforms, and
every backend is tested against them.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .layer import Grads, Saved, Weights
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


def input_projection(rows: Tensor, w_ih: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor]) -> Tensor:
    """``x W_ih^T + b_ih + b_hh`` for every row: one matrix product, (N, G)."""
    bias = input_bias(b_ih, b_hh)
    return rows.mm(w_ih.t()) if bias is None else torch.addmm(bias, rows, w_ih.t())


# --------------------------------------------------------------------------
# One step of the cell.


def cell_forward(xw: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, w_hr: Optional[Tensor]):
    """One step forward, from the step's input projections ``xw`` (b, G) and
    the previous states ``h`` (b, P), ``c`` (b, H).

    Returns ``(h, c, gates)``: the new states and the activated gates
    ``i|f|g|o`` (b, G).
    """
    z = torch.addmm(xw, h, w_hh.t())  # (b, G)
    z_i, z_f, z_g, z_o = z.chunk(4, 1)  # 4 x (b, H)
    i, f, g, o = torch.sigmoid(z_i), torch.sigmoid(z_f), torch.tanh(z_g), torch.sigmoid(z_o)  # 4 x (b, H)
    c = torch.addcmul(f * c, i, g)  # (b, H)
    m = o * torch.tanh(c)  # (b, H)
    h = m if w_hr is None else m.mm(w_hr.t())  # (b, P)
    return h, c, torch.cat([i, f, g, o], 1)


def cell_backward(dh: Tensor, dc: Tensor, gates: Tensor, c: Tensor, c_prev: Tensor, w_hh: Tensor, w_hr: Optional[Tensor]):
    """One step backward.

    ``dh`` (b, P) is the total gradient reaching ``h_t``, ``dc`` (b, H) the
    gradient carried into ``c_t`` from the step after; ``gates`` (b, G), ``c``
    and ``c_prev`` (b, H) are what the step's forward computed and started from.

    Returns ``(d_z, dh_prev, dc_prev)``: the pre-activation gradients (b, G)
    and the gradients carried to the step before, (b, P) and (b, H).
    """
    H = c.shape[-1]
    i, f, g, o = gates.split(H, 1)  # 4 x (b, H)
    tanh_c = torch.tanh(c)  # (b, H)
    dm = dh if w_hr is None else dh.mm(w_hr)  # (b, H)
    dc = torch.addcmul(dc, dm, o * d_tanh(tanh_c))  # (b, H)
    d_z = torch.cat(  # (b, G)
        [dc * (g * d_sigmoid(i)), dc * (c_prev * d_sigmoid(f)), dc * (i * d_tanh(g)), dm * (tanh_c * d_sigmoid(o))], 1
    )
    return d_z, d_z.mm(w_hh), dc * f


# --------------------------------------------------------------------------
# The time loops, in plain differentiable PyTorch.


def forward_loop(xw: Tensor, h0: Tensor, c0: Tensor, weights: Weights, batch_sizes, reverse: bool, save: bool = True):
    """Run the recurrence over precomputed input projections.

    Args:
        xw: ``x W_ih^T + b_ih + b_hh`` for every row, (N, G).
        h0, c0: initial states, (B, P) and (B, H).
        weights: the layer's :class:`~.layer.Weights`; the loop reads ``w_hh``
            (G, P) and ``w_hr`` (P, H) or None.
        batch_sizes: rows of each step, non-increasing.
        reverse: run the steps from last to first.
        save: keep what the backward pass needs; without it (inference) the
            gates and cell states come back as None.

    Returns:
        ``(y, gates, cs, h_n, c_n)``: outputs (N, P), activated gates ``i|f|g|o``
        (N, G), cell states (N, H), final states (B, P) and (B, H).
    """
    w_hh, w_hr = weights.w_hh, weights.w_hr
    steps = make_steps(batch_sizes, reverse)
    first = steps.order[0]
    h, c = h0[: steps.sizes[first]], c0[: steps.sizes[first]]  # (b, P), (b, H)
    h_done, c_done = [], []
    T = len(steps.sizes)
    ys, gates, cs = [None] * T, [None] * T, [None] * T
    for t in steps.order:
        lo, b = steps.offsets[t], steps.sizes[t]
        h, c = resize(h, b, h0, h_done), resize(c, b, c0, c_done)
        h, c, step_gates = cell_forward(xw[lo : lo + b], h, c, w_hh, w_hr)
        ys[t] = h
        if save:
            cs[t], gates[t] = c, step_gates  # (b, H), (b, G)
    y = torch.cat(ys)  # (N, P)
    gates, cs = (torch.cat(gates), torch.cat(cs)) if save else (None, None)  # (N, G), (N, H)
    return y, gates, cs, final(h, h_done), final(c, c_done)


def backward_loop(grads: Grads, saved: Saved, weights: Weights, batch_sizes, reverse: bool):
    """Backpropagate through the recurrence, from the last step visited to the first.

    Args:
        grads: :class:`~.layer.Grads`, the gradients of ``y``, ``h_n``, ``c_n``.
        saved: :class:`~.layer.Saved`; the loop reads ``gates``, ``cs``, ``c0``.
        weights: :class:`~.layer.Weights`; the loop reads ``w_hh`` and ``w_hr``.
        batch_sizes, reverse: as for :func:`forward_loop`.

    Returns:
        ``(d_z, d_h, d_h0, d_c0, d_b)``: pre-activation gradients (N, G), the
        total gradient reaching each output ``h_t`` (N, P; only with a
        projection, else None), the gradients of the initial states (B, P),
        (B, H), and the bias gradient, the sum of the rows of ``d_z`` (G,).
    """
    d_y, d_hn, d_cn = grads
    gates, cs, c0 = saved.gates, saved.cs, saved.c0
    w_hh, w_hr = weights.w_hh, weights.w_hr
    steps = make_steps(batch_sizes, reverse)
    prev = previous_rows(batch_sizes, reverse, cs.device)  # (N,)
    c_prev = torch.cat([cs, c0]).index_select(0, prev)  # (N, H)
    T = len(steps.sizes)
    d_zs, d_hs = [None] * T, [None] * T
    last = steps.order[-1]
    dh, dc = d_hn[: steps.sizes[last]], d_cn[: steps.sizes[last]]  # (b, P), (b, H)
    dh_done, dc_done = [], []
    for t in reversed(steps.order):
        lo, b = steps.offsets[t], steps.sizes[t]
        rows = slice(lo, lo + b)
        dh, dc = resize(dh, b, d_hn, dh_done), resize(dc, b, d_cn, dc_done)
        dh = d_y[rows] + dh  # (b, P)
        d_hs[t] = dh
        d_zs[t], dh, dc = cell_backward(dh, dc, gates[rows], cs[rows], c_prev[rows], w_hh, w_hr)
    d_z = torch.cat(d_zs)  # (N, G)
    d_h = None if w_hr is None else torch.cat(d_hs)  # (N, P)
    return d_z, d_h, final(dh, dh_done), final(dc, dc_done), d_z.sum(0)
