"""The tensors of one layer in one direction, by name, as the loops of every
backend take them.

The variants of the cell (layer norm, peepholes, zoneout, recurrent dropout;
see :mod:`torch_lstm_manual.reference`) add their tensors here: gains and
peephole weights to :class:`Weights`, masks to :class:`Masks`, what their
backward pass needs to :class:`Saved`, their gradients to :class:`LoopGrads`;
a field is None where its option is off, and the loops read them by name.
Every structure is a NamedTuple: built in one C call, unpacked like the tuple
it is.
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
    ln_ih: Optional[Tensor] = None  # (G,): layer norm gain of x W_ih^T
    ln_hh: Optional[Tensor] = None  # (G,): layer norm gain of h W_hh^T
    ln_c: Optional[Tensor] = None  # (H,): layer norm gain of the cell state
    ln_c_bias: Optional[Tensor] = None  # (H,): and its bias
    peephole: Optional[Tensor] = None  # (3, H): peephole weights of i, f, o

    @property
    def plain(self) -> bool:
        """Whether these are the weights of the plain LSTM: no layer norm, no peepholes."""
        return self.ln_hh is None and self.peephole is None


class Masks(NamedTuple):
    """The masks of the stochastic variants, in the loops' row layout (None: off)."""

    recurrent: Optional[Tensor] = None  # (B, P): recurrent dropout, on h_{t-1} before W_hh, scaled
    cell: Optional[Tensor] = None  # (N, H): zoneout of c, 1 keeps the previous state (eval: z); float or bool
    hidden: Optional[Tensor] = None  # (N, P): zoneout of h; float or bool

    @property
    def none(self) -> bool:
        """Whether no mask is given."""
        return self.recurrent is None and self.cell is None and self.hidden is None


NO_MASKS = Masks()


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
    r_hat: Optional[Tensor] = None  # layer norm: the normalised recurrent products, (N, G)
    r_rstd: Optional[Tensor] = None  # and their 1 / sqrt(var + eps), (N,)


class LoopGrads(NamedTuple):
    """What a backward loop returns: the gradients of the loop's own inputs."""

    d_z: Tensor  # pre-activation gradients, (N, G)
    d_r: Optional[Tensor]  # layer norm: gradients of the recurrent products h W_hh^T, (N, G); else d_z is
    d_h: Optional[Tensor]  # with a projection: the gradient reaching each output before zoneout, (N, P)
    d_h0: Tensor  # (B, P)
    d_c0: Tensor  # (B, H)
    d_b: Tensor  # the sum of the rows of d_z, (G,)
    d_ln_hh: Optional[Tensor] = None  # (G,)
    d_ln_c: Optional[Tensor] = None  # (H,)
    d_ln_c_bias: Optional[Tensor] = None  # (H,)
    d_peephole: Optional[Tensor] = None  # (3, H)


class Needs(NamedTuple):
    """Which inputs of ``LSTMFunction`` want a gradient, by name
    (``Needs._make(ctx.needs_input_grad[:13])``)."""

    x: bool = True
    h0: bool = True
    c0: bool = True
    w_ih: bool = True
    w_hh: bool = True
    b_ih: bool = True
    b_hh: bool = True
    w_hr: bool = True
    ln_ih: bool = True
    ln_hh: bool = True
    ln_c: bool = True
    ln_c_bias: bool = True
    peephole: bool = True


ALL = Needs()
