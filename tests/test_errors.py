"""Bad input raises the exception type torch.nn.LSTM raises, with a message that
names what was expected and what arrived."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from torch_lstm_manual import LSTM


def raised_by(make):
    """The exception type ``make()`` raises."""
    with pytest.raises(Exception) as info:
        make()
    return info.type


CONSTRUCTOR = [
    (dict(input_size=3, hidden_size=4, proj_size=4), r"proj_size has to be smaller than hidden_size, got proj_size=4 >= hidden_size=4"),
    (dict(input_size=3, hidden_size=4, proj_size=-1), r"proj_size must be a positive integer or zero .* got -1"),
    (dict(input_size=3, hidden_size=4, dropout=1.5), r"dropout should be a number in range \[0, 1\].* got 1.5"),
    (dict(input_size=3, hidden_size=4, dropout=-0.1), r"dropout should be a number in range \[0, 1\].* got -0.1"),
    (dict(input_size=3, hidden_size=4, dropout=True), r"dropout should be a number .* got True"),
    (dict(input_size=3, hidden_size=0), r"hidden_size must be greater than zero, got 0"),
    (dict(input_size=3, hidden_size=-2), r"hidden_size must be greater than zero, got -2"),
    (dict(input_size=0, hidden_size=4), r"input_size must be greater than zero, got 0"),
    (dict(input_size=3, hidden_size=4, num_layers=0), r"num_layers must be greater than zero, got 0"),
    (dict(input_size=3, hidden_size=4.0), r"hidden_size should be of type int, got: float"),
    (dict(input_size=3, hidden_size=4, bias=1), r"bias should be of type bool, got: int"),
    (dict(input_size=3, hidden_size=4, batch_first="yes"), r"batch_first should be of type bool, got: str"),
]


@pytest.mark.parametrize("kwargs,message", CONSTRUCTOR)
def test_constructor_errors(kwargs, message):
    expected = raised_by(lambda: nn.LSTM(**kwargs))
    with pytest.raises(expected, match=message):
        LSTM(**kwargs)


def test_unknown_backend():
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'python', 'native'\), got 'gpu'"):
        LSTM(3, 4, backend="gpu")


def hx(layers=1, batch=2, h=4, c=4, dtype=torch.float32, device="cpu"):
    return torch.zeros(layers, batch, h, dtype=dtype, device=device), torch.zeros(layers, batch, c, dtype=dtype, device=device)


x = torch.randn(5, 2, 3)
FORWARD = [
    pytest.param((torch.randn(5, 2, 3, 1),), r"Expected input to be 2D or 3D, got 4D", id="rank-4"),
    pytest.param((torch.randn(5),), r"Expected input to be 2D or 3D, got 1D", id="rank-1"),
    pytest.param((torch.randn(5, 2, 6),), r"input.size\(-1\) must be equal to input_size. Expected 3, got 6", id="feature-size"),
    pytest.param((torch.randint(0, 5, (5, 2, 3)),), r"input dtype \(torch.int64\) does not match weight dtype \(torch.float32\)", id="integer-input"),
    pytest.param((x.double(),), r"input dtype \(torch.float64\) does not match weight dtype", id="dtype"),
    pytest.param((x, hx(batch=3)), r"Expected hidden\[0\] size \(1, 2, 4\), got \[1, 3, 4\]", id="hx-batch"),
    pytest.param((x, (hx()[0], torch.zeros(1, 2, 5))), r"Expected hidden\[1\] size \(1, 2, 4\), got \[1, 2, 5\]", id="cx-size"),
    pytest.param((x, (torch.zeros(2, 4), torch.zeros(2, 4))), r"hx and cx should also be 3-D but got \(2-D, 2-D\)", id="hx-rank"),
    pytest.param((torch.randn(5, 3), hx()), r"hx and cx should also be 2-D but got \(3-D, 3-D\)", id="unbatched-hx-rank"),
    pytest.param((x, hx(dtype=torch.float64)), r"hx\[0\] dtype must match the input dtype torch.float32, got torch.float64", id="hx-dtype"),
]


@pytest.mark.parametrize("args,message", FORWARD)
def test_forward_errors(args, message):
    torch.manual_seed(0)
    ref, ours = nn.LSTM(3, 4), LSTM(3, 4)
    expected = raised_by(lambda: ref(*args))
    with pytest.raises(expected, match=message):
        ours(*args)


def test_packed_input_with_wrong_hidden_size():
    ref, ours = nn.LSTM(3, 4), LSTM(3, 4)
    packed = pack_padded_sequence(torch.randn(5, 2, 3), torch.tensor([5, 3]))
    bad = hx(batch=3)
    expected = raised_by(lambda: ref(packed, bad))
    with pytest.raises(expected, match=r"Expected hidden\[0\] size \(1, 2, 4\), got \[1, 3, 4\]"):
        ours(packed, bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_hx_on_another_device():
    ours = LSTM(3, 4)
    with pytest.raises(RuntimeError, match=r"hx\[0\] must be on the input's device cpu, got cuda"):
        ours(x, hx(device="cuda"))


def test_no_bare_assert_in_the_package():
    """``python -O`` removes asserts: user input must never be checked with one."""
    import pathlib

    import torch_lstm_manual

    root = pathlib.Path(torch_lstm_manual.__file__).parent
    for path in root.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not line.strip().startswith("assert "), f"{path}:{number}: {line.strip()}"
