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

Sequences of different lengths use the packed layout of
``torch.nn.utils.rnn.PackedSequence``: ``x`` is ``(N, I)``, the rows of step
``t`` are ``batch_sizes[t]`` consecutive rows, and ``batch_sizes`` never grows.
A step computes only the sequences still running. In reverse, each sequence
starts at its own last element, so the running set grows instead of shrinking.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable, NamedTuple, Optional, Sequence

import torch
from torch import Tensor

# --------------------------------------------------------------------------
# Derivative helpers, written in terms of the activation's output.


def d_sigmoid(s: Tensor) -> Tensor:
    """Derivative of sigmoid at the point where it returned ``s``."""
    return s * (1 - s)


def d_tanh(u: Tensor) -> Tensor:
    """Derivative of tanh at the point where it returned ``u``."""
    return 1 - u * u


# --------------------------------------------------------------------------
# The packed layout.


class Steps(NamedTuple):
    """Row ranges of the time steps, in the order the forward loop visits them."""

    order: tuple  # step indices, forward loop order
    offsets: tuple  # first row of each step (indexed by step)
    sizes: tuple  # rows of each step (indexed by step)


def make_steps(batch_sizes: Sequence[int], reverse: bool) -> Steps:
    sizes = tuple(int(b) for b in batch_sizes)
    offsets, start = [], 0
    for b in sizes:
        offsets.append(start)
        start += b
    order = tuple(range(len(sizes) - 1, -1, -1)) if reverse else tuple(range(len(sizes)))
    return Steps(order, tuple(offsets), sizes)


def previous_rows(batch_sizes: Sequence[int], reverse: bool, device) -> Tensor:
    """Index of the row holding each row's previous state, in ``cat([Y, init])``.

    Row ``r`` of step ``t`` follows row ``r`` of the step the loop visited just
    before (``t - 1``, or ``t + 1`` in reverse) when that step ran the sequence,
    else it starts from the initial state, row ``N + r``.
    """
    T, N = len(batch_sizes), sum(batch_sizes)
    bs = torch.tensor(batch_sizes, dtype=torch.long, device=device)  # (T,)
    offsets = torch.cumsum(bs, 0) - bs  # (T,)
    step = torch.repeat_interleave(torch.arange(T, device=device), bs)  # (N,)
    row = torch.arange(N, device=device) - offsets[step]  # (N,)
    prev = step + 1 if reverse else step - 1  # (N,)
    inside = (prev >= 0) & (prev < T)
    prev = prev.clamp(0, T - 1)
    ran = inside & (row < bs[prev])
    return torch.where(ran, offsets[prev] + row, N + row)  # (N,)


def _recurrent_weight_grad(d_z: Tensor, y: Tensor, h0: Tensor, batch_sizes: Sequence[int], reverse: bool) -> Tensor:
    """``dW_hh = dZ^T H_prev`` (G, P) without gathering ``H_prev`` (N, P): one
    product per run of rows whose previous states lie contiguous in ``y`` or ``h0``."""
    N, B = d_z.shape[0], batch_sizes[0]
    if batch_sizes[-1] == B:  # every step runs every sequence: H_prev is y shifted by one step
        first, later, before = (d_z[N - B :], d_z[: N - B], y[B:]) if reverse else (d_z[:B], d_z[B:], y[: N - B])
        return first.t().mm(h0) + later.t().mm(before)  # (G, P)
    steps = make_steps(batch_sizes, reverse)
    blocks, prev = [], None  # [first row of d_z, 0 (y) or 1 (h0), first row there, rows]
    for t in steps.order:
        lo, b = steps.offsets[t], steps.sizes[t]
        ran = 0 if prev is None else min(b, steps.sizes[prev])
        if ran:
            blocks.append([lo, 0, steps.offsets[prev], ran])
        if b > ran:
            blocks.append([lo + ran, 1, ran, b - ran])
        prev = t
    merged = []
    for block in sorted(blocks):
        last = merged[-1] if merged else None
        if last and last[1] == block[1] and last[0] + last[3] == block[0] and last[2] + last[3] == block[2]:
            last[3] += block[3]
        else:
            merged.append(block)
    d_w_hh = None
    for lo, source, start, n in merged:
        term = d_z[lo : lo + n].t().mm((y, h0)[source][start : start + n])  # (G, P)
        d_w_hh = term if d_w_hh is None else d_w_hh + term
    return d_w_hh


def _resize(state: Tensor, n: int, init: Tensor, finished: list) -> Tensor:
    """Fit the running state to the ``n`` sequences of the next step.

    Rows that stop running are kept aside in ``finished``; rows that start
    running are taken from ``init``.
    """
    m = state.shape[0]
    if n > m:
        return torch.cat([state, init[m:n]])
    if n < m:
        finished.append(state[n:])
        return state[:n]
    return state


def _final(state: Tensor, finished: list) -> Tensor:
    """The state of every sequence, in row order, once the loop is done."""
    if not finished:
        return state
    return torch.cat([state] + finished[::-1])


# --------------------------------------------------------------------------
# The reference time loops, in plain differentiable PyTorch.


def forward_loop(xw, h0, c0, w_hh, w_hr, batch_sizes, reverse, save=True):
    """Run the recurrence over precomputed input projections.

    Args:
        xw: ``x W_ih^T + b_ih + b_hh`` for every row, (N, G).
        h0, c0: initial states, (B, P) and (B, H).
        w_hh: (G, P). w_hr: (P, H) or None.
        batch_sizes: rows of each step, non-increasing.
        reverse: run the steps from last to first.
        save: keep what the backward pass needs; without it (inference) the
            gates and cell states come back as None.

    Returns:
        ``(y, gates, cs, h_n, c_n)``: outputs (N, P), activated gates ``i|f|g|o``
        (N, G), cell states (N, H), final states (B, P) and (B, H).
    """
    H = c0.shape[-1]
    steps = make_steps(batch_sizes, reverse)
    w_hh_t = w_hh.t()  # (P, G)
    w_hr_t = None if w_hr is None else w_hr.t()  # (H, P)
    first = steps.order[0]
    h, c = h0[: steps.sizes[first]], c0[: steps.sizes[first]]  # (b, P), (b, H)
    h_done, c_done = [], []
    ys, gates, cs = [None] * len(steps.sizes), [None] * len(steps.sizes), [None] * len(steps.sizes)
    for t in steps.order:
        lo, b = steps.offsets[t], steps.sizes[t]
        h, c = _resize(h, b, h0, h_done), _resize(c, b, c0, c_done)
        z = torch.addmm(xw[lo : lo + b], h, w_hh_t)  # (b, G)
        i_f = torch.sigmoid(z[:, : 2 * H])  # (b, 2H)
        g = torch.tanh(z[:, 2 * H : 3 * H])  # (b, H)
        o = torch.sigmoid(z[:, 3 * H :])  # (b, H)
        c = torch.addcmul(i_f[:, H:] * c, i_f[:, :H], g)  # (b, H)
        m = o * torch.tanh(c)  # (b, H)
        h = m if w_hr_t is None else m.mm(w_hr_t)  # (b, P)
        ys[t] = h
        if save:
            cs[t], gates[t] = c, torch.cat([i_f, g, o], 1)  # (b, H), (b, G)
    y = torch.cat(ys)  # (N, P)
    gates, cs = (torch.cat(gates), torch.cat(cs)) if save else (None, None)  # (N, G), (N, H)
    return y, gates, cs, _final(h, h_done), _final(c, c_done)


def backward_loop(d_y, d_hn, d_cn, gates, cs, c0, w_hh, w_hr, batch_sizes, reverse):
    """Backpropagate through the recurrence, from the last step visited to the first.

    Returns:
        ``(d_z, d_h, d_h0, d_c0, d_b)``: pre-activation gradients (N, G), the
        total gradient reaching each output ``h_t`` (N, P; only with a
        projection, else None), the gradients of the initial states (B, P),
        (B, H), and the bias gradient, the sum of the rows of ``d_z`` (G,).
    """
    H = cs.shape[-1]
    steps = make_steps(batch_sizes, reverse)
    i, f, g, o = gates.split(H, 1)  # 4 x (N, H)
    prev = previous_rows(batch_sizes, reverse, cs.device)  # (N,)
    c_prev = torch.cat([cs, c0]).index_select(0, prev)  # (N, H)
    tanh_c = torch.tanh(cs)  # (N, H)
    # Factors of each step that do not depend on the carried gradients.
    dc_dm = o * d_tanh(tanh_c)  # (N, H)
    dz_o_dm = tanh_c * d_sigmoid(o)  # (N, H)
    dz_ifg_dc = torch.stack([g * d_sigmoid(i), c_prev * d_sigmoid(f), i * d_tanh(g)], 1)  # (N, 3, H)
    T = len(steps.sizes)
    d_zs, d_hs = [None] * T, [None] * T
    last = steps.order[-1]
    dh, dc = d_hn[: steps.sizes[last]], d_cn[: steps.sizes[last]]  # (b, P), (b, H)
    dh_done, dc_done = [], []
    for t in reversed(steps.order):
        lo, b = steps.offsets[t], steps.sizes[t]
        rows = slice(lo, lo + b)
        dh, dc = _resize(dh, b, d_hn, dh_done), _resize(dc, b, d_cn, dc_done)
        dh = d_y[rows] + dh  # (b, P)
        dm = dh if w_hr is None else dh.mm(w_hr)  # (b, H)
        dc = torch.addcmul(dc, dm, dc_dm[rows])  # (b, H)
        dz_ifg = dc.unsqueeze(1) * dz_ifg_dc[rows]  # (b, 3, H)
        d_z = torch.cat([dz_ifg.flatten(1), dm * dz_o_dm[rows]], 1)  # (b, G)
        d_zs[t], d_hs[t] = d_z, dh
        dc = dc * f[rows]  # (b, H)
        dh = d_z.mm(w_hh)  # (b, P)
    d_z = torch.cat(d_zs)  # (N, G)
    d_h = None if w_hr is None else torch.cat(d_hs)  # (N, P)
    return d_z, d_h, _final(dh, dh_done), _final(dc, dc_done), d_z.sum(0)


# --------------------------------------------------------------------------
# The same loops with autograd off, as LSTMFunction runs them.
#
# With nothing recorded, a loop can write every result in place into buffers
# allocated once, instead of collecting the steps and concatenating them, and
# update the gates in place. The running states are the first b rows of (B, .)
# buffers that start as the initial states (h0, c0; d_hn, d_cn backward): a
# sequence that stops running keeps its last state in its row, and one that
# starts finds its initial state there, so the final states are the buffers.
# Same arguments, same results and the same math as the loops above, which
# stay the reference (and run wherever autograd records: double backward).


def forward_loop_inplace(xw, h0, c0, w_hh, w_hr, batch_sizes, reverse, save=True, overwrite_xw=False):
    """:func:`forward_loop`, in place; autograd must be off.

    The four gates go through one sigmoid, ``g`` as ``2 sigmoid(2 z_g) - 1``
    (= ``tanh(z_g)``; the two differ by an ulp of 1 at most, not relatively).
    With ``overwrite_xw`` the gates are computed in the memory of ``xw``,
    which the caller gives up (the returned gates are ``xw``).
    """
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


def project_and_forward_inplace(rows, w_ih, b_ih, b_hh, h0, c0, w_hh, w_hr, batch_sizes, reverse, save=True):
    """:func:`project_and_forward` with :func:`forward_loop_inplace`, which
    computes the gates in the memory of the projections."""
    xw = input_projection(rows, w_ih, b_ih, b_hh)  # (N, G)
    return forward_loop_inplace(xw, h0, c0, w_hh, w_hr, batch_sizes, reverse, save, overwrite_xw=True)


def backward_loop_inplace(d_y, d_hn, d_cn, gates, cs, c0, w_hh, w_hr, batch_sizes, reverse):
    """:func:`backward_loop`, in place; autograd must be off.

    Each step computes its own factors from its rows of ``gates`` and ``cs``
    (small tensors that stay in cache) and writes ``d_z`` in place, gate by gate.
    """
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


def input_bias(b_ih: Optional[Tensor], b_hh: Optional[Tensor]) -> Optional[Tensor]:
    """``b_ih + b_hh``, (G,), or whichever is given, or None."""
    return b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)


def input_projection(rows, w_ih, b_ih, b_hh):
    """``x W_ih^T + b_ih + b_hh`` for every row: one matrix product, (N, G)."""
    bias = input_bias(b_ih, b_hh)
    return rows.mm(w_ih.t()) if bias is None else torch.addmm(bias, rows, w_ih.t())


def project_and_forward(loops, rows, w_ih, b_ih, b_hh, h0, c0, w_hh, w_hr, batch_sizes, reverse, save=True):
    """``loops.forward(input_projection(rows, w_ih, b_ih, b_hh), h0, ...)``."""
    xw = input_projection(rows, w_ih, b_ih, b_hh)  # (N, G)
    return loops.forward(xw, h0, c0, w_hh, w_hr, batch_sizes, reverse, save)


def backward_and_products(loops, d_y, d_hn, d_cn, gates, cs, c0, w_hh, w_hr, batch_sizes, reverse, rows, w_ih, y, h0,
                          need_x=True, need_w_ih=True, need_w_hh=True):
    """``loops.backward``, then the products of the backward pass over all steps.

    ``rows`` (N, I) are the layer's inputs, ``y`` (N, P) its outputs. Returns
    ``(d_x, d_h, d_h0, d_c0, d_w_ih, d_w_hh, d_b)``: ``d_x = dZ W_ih`` (N, I),
    ``dW_ih = dZ^T X`` (G, I), ``dW_hh = dZ^T H_prev`` (G, P), each None where
    not needed, and the rest as from ``backward_loop``.
    """
    d_z, d_h, d_h0, d_c0, d_b = loops.backward(d_y, d_hn, d_cn, gates, cs, c0, w_hh, w_hr, batch_sizes, reverse)
    d_x = d_z.mm(w_ih) if need_x else None  # (N, I)
    d_w_ih = d_z.t().mm(rows) if need_w_ih else None  # (G, I)
    d_w_hh = _recurrent_weight_grad(d_z, y, h0, batch_sizes, reverse) if need_w_hh else None  # (G, P)
    return d_x, d_h, d_h0, d_c0, d_w_ih, d_w_hh, d_b


class Loops(NamedTuple):
    forward: Callable  # forward_loop's arguments, ``save`` included, and results
    backward: Callable  # backward_loop's arguments and results
    # project_and_forward's arguments (but ``loops``) and results, where a
    # backend runs the two together; None: project_and_forward.
    forward_input: Optional[Callable] = None
    # backward_and_products' arguments (but ``loops``) and results, where a
    # backend runs them together; None: backward_and_products.
    backward_input: Optional[Callable] = None


# The readable loops: where autograd records them (double backward) and under
# torch.compile and torch.func transforms.
REFERENCE = Loops(forward_loop, backward_loop)

# Implementations of the two time loops, by backend name, run with autograd
# off. Every entry takes the same arguments and returns the same results as
# the reference.
BACKENDS = {"python": Loops(forward_loop_inplace, backward_loop_inplace, project_and_forward_inplace)}


def _needs_reference(*values) -> bool:
    """Whether the reference loops must run: under torch.compile, which traces
    them, or when any tensor among ``values`` is wrapped by a torch.func
    transform (vmap, grad, ...), which the in-place loops do not support.

    Callers pass every argument they hold (values that are not tensors are
    skipped), so that no tensor is left out of the rule.
    """
    if torch.compiler.is_compiling():
        return True
    return any(isinstance(v, Tensor) and torch._C._functorch.is_functorch_wrapped_tensor(v) for v in values)


def _choose_loops(backend: str, rows: Tensor, values) -> Loops:
    """The loops that run ``rows`` (N, I): the reference ones where
    :func:`_needs_reference` says so for ``values`` or where there are no rows
    (an empty batch, which no backend is asked to handle), else ``backend``'s."""
    if rows.shape[0] == 0 or _needs_reference(*values):
        return REFERENCE
    return BACKENDS[backend]


def _forward(*inputs, save):
    """:class:`LSTMFunction`'s forward; ``inputs`` are its arguments, in its order."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, backend = inputs
    rows = x if batch_sizes is not None else x.flatten(0, 1)  # (N, I)
    sizes = batch_sizes if batch_sizes is not None else (x.shape[1],) * x.shape[0]
    loops = _choose_loops(backend, rows, inputs)
    args = (rows, w_ih, b_ih, b_hh, h0, c0, w_hh, w_hr, sizes, reverse, save)
    run = loops.forward_input or functools.partial(project_and_forward, loops)
    y, gates, cs, h_n, c_n = run(*args)
    if batch_sizes is None:
        y = y.view(x.shape[0], x.shape[1], y.shape[-1])  # (T, B, P); B may be 0
    return y, h_n, c_n, gates, cs


# --------------------------------------------------------------------------
# The autograd Function.


class LSTMFunction(torch.autograd.Function):
    """One LSTM layer in one direction over a whole sequence; see the module docstring.

    ``apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, backend)``

    Args:
        x: input, (T, B, I) when ``batch_sizes`` is None, else packed rows (N, I).
        h0: (B, P). c0: (B, H).
        w_ih: (G, I). w_hh: (G, P). b_ih, b_hh: (G,) or None. w_hr: (P, H) or None.
        batch_sizes: None, or the rows of each step (non-increasing ints).
        reverse: run from the last step to the first (each sequence from its own end).
        backend: name of the time-loop implementation in ``BACKENDS``.

    Returns ``(y, h_n, c_n, gates, cs)``: the output ((T, B, P) or (N, P)), the
    final states, and the two saved intermediates, which are not
    differentiable outputs. Use :func:`lstm_layer` for the first three alone.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, backend):
        return _forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, backend, save=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, backend = inputs
        y, _, _, gates, cs = output
        ctx.mark_non_differentiable(gates, cs)
        # Unused outputs get None, not zeros: no (N, G) zeros for ``gates`` in backward.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, y, gates, cs)
        ctx.batch_sizes, ctx.reverse, ctx.backend = batch_sizes, reverse, backend

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, y, gates, cs = saved
        d_y, d_hn, d_cn, _d_gates, _d_cs = grads
        need = ctx.needs_input_grad
        d_y = torch.zeros_like(y) if d_y is None else d_y
        d_hn = torch.zeros_like(h0) if d_hn is None else d_hn
        d_cn = torch.zeros_like(c0) if d_cn is None else d_cn
        padded = ctx.batch_sizes is None
        rows = x.flatten(0, 1) if padded else x  # (N, I)
        sizes = (x.shape[1],) * x.shape[0] if padded else ctx.batch_sizes
        y = y.flatten(0, 1) if padded else y  # (N, P)
        d_y = d_y.flatten(0, 1) if padded else d_y  # (N, P)
        if torch.is_grad_enabled():
            # Double backward: recompute the intermediates with autograd watching,
            # so that the hand-derived backward below is itself differentiable.
            xw = input_projection(rows, w_ih, b_ih, b_hh)  # (N, G)
            y, gates, cs, _, _ = forward_loop(xw, h0, c0, w_hh, w_hr, sizes, ctx.reverse)
            loops = REFERENCE
        else:
            loops = _choose_loops(ctx.backend, rows, saved + grads)

        run = loops.backward_input or functools.partial(backward_and_products, loops)
        d_x, d_h, d_h0, d_c0, d_w_ih, d_w_hh, d_b = run(
            d_y, d_hn, d_cn, gates, cs, c0, w_hh, w_hr, sizes, ctx.reverse, rows, w_ih, y, h0, need[0], need[3], need[4]
        )
        d_b_ih = d_b_hh = d_w_hr = None
        if need[0]:
            d_x = d_x.view_as(x) if padded else d_x
        if need[5] or need[6]:
            d_b_ih = d_b if need[5] else None
            d_b_hh = (d_b.clone() if need[5] else d_b) if need[6] else None
        if need[7]:
            H = cs.shape[-1]
            m = gates[:, 3 * H :] * torch.tanh(cs)  # (N, H)
            d_w_hr = d_h.t().mm(m)  # (P, H)
        return (
            d_x,
            d_h0 if need[1] else None,
            d_c0 if need[2] else None,
            d_w_ih,
            d_w_hh,
            d_b_ih,
            d_b_hh,
            d_w_hr,
            None,
            None,
            None,
        )


# Function.apply binds the arguments to ``inspect.signature(forward)`` on every
# call (with setup_context); computed once here, that is ~60 us less per layer.
LSTMFunction.forward.__signature__ = inspect.signature(LSTMFunction.forward)


def _forward_ad_level() -> int:
    """The innermost forward-mode AD level entered (``torch.autograd.forward_ad.dual_level``), -1 outside."""
    return getattr(torch.autograd.forward_ad, "_current_level", -1)


def lstm_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor] = None,
    b_hh: Optional[Tensor] = None,
    w_hr: Optional[Tensor] = None,
    batch_sizes: Optional[Sequence[int]] = None,
    reverse: bool = False,
    backend: str = "python",
):
    """Run :class:`LSTMFunction` and return ``(y, h_n, c_n)``."""
    if backend == "native":
        from .native import require  # built on first use

        require(x)  # and runs float32 / float64 CPU tensors only
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    sizes = None if batch_sizes is None else tuple(int(b) for b in batch_sizes)
    if (x.shape[0] if sizes is None else len(sizes)) == 0:
        what = f"x of shape {tuple(x.shape)}" if sizes is None else "batch_sizes ()"
        raise ValueError(f"lstm_layer expects at least one time step, got {what}")
    inputs = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, sizes, bool(reverse), backend)
    if not (torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in inputs)):
        # Inference (grad mode off, or no tensor that asks for a gradient): no
        # graph to record, so nothing to save for a backward pass.
        if _forward_ad_level() >= 0:
            # Forward-mode AD needs LSTMFunction (which reports that it has no
            # jvp) rather than loops that would drop the tangents.
            return LSTMFunction.apply(*inputs)[:3]
        return _forward(*inputs, save=False)[:3]
    y, h_n, c_n, _, _ = LSTMFunction.apply(*inputs)
    return y, h_n, c_n
