"""state_dict round trips, ``from_torch``, ``to_torch`` and ``replace_lstms``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import DEVICES, assert_all_close, run
from torch_lstm_manual import LSTM, replace_lstms

OPTIONS = [
    dict(input_size=3, hidden_size=5),
    dict(input_size=3, hidden_size=5, num_layers=3, bidirectional=True, proj_size=2, bias=False, batch_first=True),
]


@pytest.mark.parametrize("options", OPTIONS)
def test_state_dict_loads_both_ways_strictly(options):
    ref, ours = nn.LSTM(**options), LSTM(**options)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert a.shape == b.shape, name
    ours.load_state_dict(ref.state_dict(), strict=True)
    back = nn.LSTM(**options)
    back.load_state_dict(ours.state_dict(), strict=True)
    for a, b in zip(back.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)


def test_initialisation_matches_torch():
    torch.manual_seed(3)
    ref = nn.LSTM(3, 16, num_layers=2)
    torch.manual_seed(3)
    ours = LSTM(3, 16, num_layers=2)
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    assert repr(ours) == "LSTM(3, 16, num_layers=2)"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("options", OPTIONS)
def test_from_torch_and_to_torch_keep_weights_device_dtype_mode(device, options):
    ref = nn.LSTM(**options, device=device, dtype=torch.float64).eval()
    ours = LSTM.from_torch(ref)
    assert not ours.training and ours.weight_ih_l0.dtype == torch.float64 and ours.weight_ih_l0.device.type == device
    assert all(a is b for a, b in zip(ours.parameters(), ref.parameters())), "parameters are shared"
    x = torch.randn(4, 2, 3, dtype=torch.float64, device=device)
    assert_all_close(run(ours.train(), x), run(ref.train(), x))
    back = ours.eval().to_torch()
    assert isinstance(back, nn.LSTM) and not back.training
    assert all(a is b for a, b in zip(back.parameters(), ours.parameters()))
    assert_all_close(run(back, x), run(ref, x))


class Tagger(nn.Module):
    """A small model of several layers with LSTMs at two depths."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.encoder = nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.stack = nn.Sequential(nn.Linear(12, 5), nn.LSTM(5, 3, batch_first=True))
        self.head = nn.Linear(3, 2)

    def forward(self, tokens):
        out, _ = self.encoder(self.embed(tokens))
        out, _ = self.stack[1](self.stack[0](out))
        return self.head(out)


def test_replace_lstms_in_a_model():
    torch.manual_seed(0)
    model = Tagger().double()
    tokens = torch.randint(0, 10, (3, 7))
    expected = model(tokens)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert replace_lstms(model) == 2
    assert isinstance(model.encoder, LSTM) and isinstance(model.stack[1], LSTM)
    assert not any(isinstance(m, nn.LSTM) for m in model.modules())
    torch.testing.assert_close(model(tokens), expected)
    before = model.encoder.weight_hh_l1_reverse.detach().clone()
    model(tokens).sum().backward()
    optimizer.step()  # built before the replacement: still updates the shared parameters
    assert not torch.equal(model.encoder.weight_hh_l1_reverse, before)


def test_from_torch_rejects_other_modules():
    with pytest.raises(TypeError, match="from_torch expects a torch.nn.LSTM, got GRU"):
        LSTM.from_torch(nn.GRU(3, 4))
