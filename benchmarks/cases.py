"""The shapes that ``speed.py`` and ``memory.py`` measure, and how to build them.

A case is one LSTM and one batch. Padded cases run every implementation on
the same (T, B, I) tensor. Packed cases draw lengths uniform in [T/4, T] (the
longest is T), and run our LSTM on the PackedSequence against nn.LSTM twice:
on the same PackedSequence, and on the padded (T, B, I) tensor it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from torch_lstm_manual import LSTM


@dataclass(frozen=True)
class Case:
    T: int
    B: int
    I: int
    H: int
    layers: int = 1
    bidirectional: bool = False
    packed: bool = False

    @property
    def name(self) -> str:
        extra = (f" L{self.layers}" if self.layers > 1 else "") + (" bi" if self.bidirectional else "")
        return f"{'packed ' if self.packed else ''}T={self.T} B={self.B} I={self.I} H={self.H}{extra}"


CASES = [
    Case(80, 64, 32, 128),
    Case(200, 64, 128, 128),
    Case(200, 32, 128, 256),
    Case(500, 16, 64, 64),
    Case(50, 256, 128, 512),
    Case(20, 1, 8, 16),
    Case(80, 64, 128, 128, packed=True),
    Case(200, 64, 128, 128, packed=True),
    Case(400, 64, 128, 128, packed=True),
    Case(400, 64, 128, 128, layers=2, bidirectional=True, packed=True),  # IMDB-like classifier
]
QUICK = [CASES[0], CASES[1], CASES[5], CASES[6]]

# Implementations: (label, module kind, input kind). Ours runs packed cases packed.
IMPLS = {
    "nn": ("torch", "native"),
    "nn padded": ("torch", "padded"),
    "python": ("python", "native"),
    "native": ("native", "native"),
}


def impls_for(case: Case) -> list:
    return [name for name in IMPLS if case.packed or name != "nn padded"]


def make_batch(case: Case, seed: int = 0):
    """``(x, lengths)``: the padded input (T, B, I) and the lengths (None if padded)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(case.T, case.B, case.I, generator=gen)
    if not case.packed:
        return x, None
    lengths = torch.randint(case.T // 4, case.T + 1, (case.B,), generator=gen)
    lengths[0] = case.T
    return x, lengths


def make_model(case: Case, impl: str) -> nn.Module:
    torch.manual_seed(0)
    module, _ = IMPLS[impl]
    kwargs = dict(num_layers=case.layers, bidirectional=case.bidirectional)
    if module == "torch":
        return nn.LSTM(case.I, case.H, **kwargs)
    return LSTM(case.I, case.H, **kwargs, backend=module)


def model_input(case: Case, impl: str, x, lengths, requires_grad: bool = False):
    """What ``impl`` runs: the padded tensor, or the PackedSequence (unsorted
    lengths), as a leaf that requires grad for training (as after an embedding)."""
    if lengths is None or IMPLS[impl][1] == "padded":
        return x.detach().requires_grad_(requires_grad)
    packed = pack_padded_sequence(x.detach(), lengths, enforce_sorted=False)
    return packed._replace(data=packed.data.requires_grad_(requires_grad))


def input_leaf(inp):
    """The tensor whose ``.grad`` a training step fills."""
    return inp.data if isinstance(inp, PackedSequence) else inp


def train_step(model: nn.Module, inp) -> None:
    """Forward and backward, with a loss on every output and the final states."""
    out, (h_n, c_n) = model(inp)
    out = out.data if isinstance(out, PackedSequence) else out
    (out.square().mean() + h_n.square().mean() + c_n.square().mean()).backward()


def infer(model: nn.Module, inp) -> None:
    with torch.no_grad():
        model(inp)
