"""The checks and casts of the inputs of :class:`~torch_lstm_manual.lstm.LSTM`,
with ``torch.nn.LSTM``'s exception types and wording."""

from __future__ import annotations

import torch
from torch import Tensor


def check_hx(lstm, hx, batched: bool, batch: int, x: Tensor):
    """``(h0, c0)`` of ``hx`` as ``torch.nn.LSTM`` checks them, batched: (L*D, B, P), (L*D, B, H)."""
    D = 2 if lstm.bidirectional else 1
    if not isinstance(hx, (tuple, list)) or len(hx) != 2 or not all(isinstance(t, Tensor) for t in hx):
        raise TypeError(f"hx must be a tuple (h_0, c_0) of two tensors, got {type(hx).__name__}")
    h0, c0 = hx
    want = 3 if batched else 2
    if h0.dim() != want or c0.dim() != want:
        kind = "batched 3-D" if batched else "unbatched 2-D"
        raise RuntimeError(
            f"For {kind} input, hx and cx should also be {want}-D but got ({h0.dim()}-D, {c0.dim()}-D) tensors"
        )
    if not batched:
        h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
    for i, (t, size) in enumerate(((h0, lstm.proj_size or lstm.hidden_size), (c0, lstm.hidden_size))):
        expected = (lstm.num_layers * D, batch, size)
        if tuple(t.shape) != expected:
            raise RuntimeError(f"Expected hidden[{i}] size {expected}, got {list(t.shape)}")
        if t.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
            raise RuntimeError(f"hx[{i}] dtype must match the input dtype {x.dtype}, got {t.dtype}")
        if t.device != x.device:
            raise RuntimeError(f"hx[{i}] must be on the input's device {x.device}, got {t.device}")
    return h0, c0


def check_input(lstm, x: Tensor, packed: bool) -> None:
    """Check the input ``x`` (the rows of a PackedSequence, or a batched tensor) as ``torch.nn.LSTM`` does."""
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a Tensor or a PackedSequence, got {type(x).__name__}")
    weight = lstm.weight_ih_l0
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(
            f"RNN input dtype ({x.dtype}) does not match weight dtype ({weight.dtype}). "
            f"Convert input: input.to({weight.dtype}), or convert model: model.to({x.dtype})"
        )
    want = 2 if packed else 3
    if x.dim() != want:
        raise RuntimeError(f"input must have {want} dimensions, got {x.dim()}")
    if x.size(-1) != lstm.input_size:
        raise RuntimeError(
            f"input.size(-1) must be equal to input_size. Expected {lstm.input_size}, got {x.size(-1)}"
        )
    if x.device != weight.device:
        raise RuntimeError(f"input must be on the parameters' device {weight.device}, got {x.device}")


def autocast_inputs(lstm, x, h0, c0, weights, device_type):
    """Cast as autocast casts the arguments of an op it runs in lower precision
    (ATen's ``is_eligible``): every floating tensor on the autocast device but
    a float64 one goes to the autocast dtype. The tensors must then agree, as
    torch.nn.LSTM's kernels require."""
    dtype = torch.get_autocast_dtype(device_type)

    def cast(t):
        eligible = t is not None and t.is_floating_point() and t.dtype != torch.float64 and t.device.type == device_type
        return t.to(dtype) if eligible else t

    x, h0, c0 = cast(x), cast(h0), cast(c0)
    weights = [[cast(w) for w in ws] for ws in weights]
    named = [("hx[0]", h0), ("hx[1]", c0)] + [
        (name, w) for names, ws in zip(lstm._layer_names, weights) for name, w in zip(names, ws) if w is not None
    ]
    for name, t in named:
        if t.dtype != x.dtype:
            raise RuntimeError(
                f"Under autocast to {dtype}, which casts every floating tensor but float64 ones, the input "
                f"is {x.dtype} and {name} is {t.dtype}: expected one dtype for the input, hx and the parameters"
            )
    return x, h0, c0, weights
