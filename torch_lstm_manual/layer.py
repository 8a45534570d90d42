"""The tensors of one layer in one direction, by name, as the loops of every
backend take them.

A new kind of cell adds its extra tensors here (layer-norm gains, peephole
weights: to :class:`Weights`; what its backward pass needs: to :class:`Saved`)
and the loops read them by name. Every structure is a NamedTuple: built in
one C call, unpacked like the tuple it is.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from torch import Tensor


class Weights(NamedTuple):
    """The parameters of one layer and direction; ``G = 4H``, ``P = H`` without a projection."""

    w_ih: Optional[Tensor]  # (G, I); None for the loops over precomputed projections
    w_hh: Tensor  # (G, P)
    b_ih: Optional[Tensor] = None  # (G,)
    b_hh: Optional[Tensor] = None  # (G,)
    w_hr: Optional[Tensor] = None  # (P, H): the projection of h


class Grads(NamedTuple):
    """The gradients reaching a layer's outputs, as the backward pass receives them."""

    d_y: Tensor  # (N, P)
    d_hn: Tensor  # (B, P)
    d_cn: Tensor  # (B, H)


class Saved(NamedTuple):
    """What the forward pass keeps for the backward pass (rows as in the loops:
    ``N`` rows, padded inputs flattened)."""

    gates: Tensor  # activated gates i|f|g|o, (N, G)
    cs: Tensor  # cell states, (N, H)
    c0: Tensor  # initial cell state, (B, H)
    h0: Optional[Tensor] = None  # initial output state, (B, P)
    rows: Optional[Tensor] = None  # the layer's inputs, (N, I)
    y: Optional[Tensor] = None  # the layer's outputs, (N, P)


class Needs(NamedTuple):
    """Which inputs of ``LSTMFunction`` want a gradient, by name
    (``Needs._make(ctx.needs_input_grad[:8])``)."""

    x: bool = True
    h0: bool = True
    c0: bool = True
    w_ih: bool = True
    w_hh: bool = True
    b_ih: bool = True
    b_hh: bool = True
    w_hr: bool = True


ALL = Needs()
