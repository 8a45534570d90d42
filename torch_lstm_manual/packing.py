"""The packed layout: which rows each time step runs, in which order.

Sequences of different lengths use the layout of
``torch.nn.utils.rnn.PackedSequence``: ``x`` is ``(N, I)``, the rows of step
``t`` are ``batch_sizes[t]`` consecutive rows, and ``batch_sizes`` never grows.
A step computes only the sequences still running. In reverse, each sequence
starts at its own last element, so the running set grows instead of shrinking.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor


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


def _rows_by_step(batch_sizes: Sequence[int], device):
    """``(bs, offsets, step, row)``: the rows of each step (T,), the first row of
    each step (T,), and of every row its step and its place in the step (N,)."""
    bs = torch.tensor(batch_sizes, dtype=torch.long, device=device)  # (T,)
    offsets = torch.cumsum(bs, 0) - bs  # (T,)
    step = torch.repeat_interleave(torch.arange(len(batch_sizes), device=device), bs)  # (N,)
    return bs, offsets, step, torch.arange(step.shape[0], device=device) - offsets[step]


def previous_rows(batch_sizes: Sequence[int], reverse: bool, device) -> Tensor:
    """Index of the row holding each row's previous state, in ``cat([Y, init])``.

    Row ``r`` of step ``t`` follows row ``r`` of the step the loop visited just
    before (``t - 1``, or ``t + 1`` in reverse) when that step ran the sequence,
    else it starts from the initial state, row ``N + r``.
    """
    T, N = len(batch_sizes), sum(batch_sizes)
    bs, offsets, step, row = _rows_by_step(batch_sizes, device)
    prev = step + 1 if reverse else step - 1  # (N,)
    inside = (prev >= 0) & (prev < T)
    prev = prev.clamp(0, T - 1)
    ran = inside & (row < bs[prev])
    return torch.where(ran, offsets[prev] + row, N + row)  # (N,)


def row_sequences(batch_sizes: Sequence[int], device) -> Tensor:
    """The sequence (batch index) of every row, (N,): row ``r`` of a step is sequence ``r``."""
    return _rows_by_step(batch_sizes, device)[3]


def resize(state: Tensor, n: int, init: Tensor, finished: list) -> Tensor:
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


def final(state: Tensor, finished: list) -> Tensor:
    """The state of every sequence, in row order, once the loop is done."""
    if not finished:
        return state
    return torch.cat([state] + finished[::-1])


def recurrent_weight_grad(d_z: Tensor, y: Tensor, h0: Tensor, batch_sizes: Sequence[int], reverse: bool) -> Tensor:
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
