"""MINet: the official checkpoint reproduces its published-split scores, exact equivalence of the grouped 4->1
reduction with the official per-channel convolutions, shapes, parameter count, training signal."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deffiller.config import REPO_ROOT
from deffiller.data.layout import load_pairs
from deffiller.data.splits import standard_split
from deffiller.detection.nets.minet import MINet
from deffiller.detection.predict import load_detector
from deffiller.detection.protocols import score_model
from deffiller.detection.registry import create_detector
from deffiller.errors import DefFillerError

OFFICIAL = REPO_ROOT.parent / "shared" / "weights" / "minet" / "MINet.pth"


@pytest.fixture(scope="module")
def official_state():
    if not OFFICIAL.is_file():
        pytest.skip(f"official MINet checkpoint not found at {OFFICIAL}")
    return torch.load(OFFICIAL, map_location="cpu", weights_only=True)


def test_parameter_count_and_registry():
    assert sum(p.numel() for p in create_detector("minet").parameters()) == 277_477


@pytest.mark.parametrize("size", [(64, 64), (70, 96)])
def test_five_outputs_at_input_size(size):
    net = MINet().eval()
    with torch.no_grad():
        outputs = net(torch.randn(2, 3, *size))
    assert len(outputs) == 5 and all(o.shape == (2, 1, *size) for o in outputs)


def _bn(x, state, prefix):
    return F.batch_norm(x, state[prefix + "running_mean"], state[prefix + "running_var"], state[prefix + "weight"],
                        state[prefix + "bias"], training=False, eps=1e-5)


def test_grouped_reduction_equals_official_per_channel_convs(official_state):
    """The first MI module of stage 2, computed the official way (C separate 4->1 convs over each channel's
    four scales) from the official tensors, equals our module with the converted weights."""
    net = MINet().eval()
    net.load_state_dict(MINet.convert_state_dict(official_state))
    module = net.encoders[1][1]
    torch.manual_seed(0)
    x = torch.randn(2, 32, 20, 20)
    with torch.no_grad():
        ours = module(x)
        p = "encoder2.1."
        scales = [F.relu(_bn(F.conv2d(x, official_state[f"{p}Dconv.{i}.conv.0.weight"], padding=2**i, dilation=2**i,
                                      groups=32), official_state, f"{p}Dconv.{i}.conv.1.")) for i in range(4)]
        reduced = []
        for c in range(32):
            stacked = torch.cat([s[:, c:c + 1] for s in scales], 1)
            y = F.conv2d(stacked, official_state[f"{p}Pconv.{c}.conv.0.weight"])
            reduced.append(F.relu(_bn(y, official_state, f"{p}Pconv.{c}.conv.1.")))
        fused = F.relu(_bn(F.conv2d(torch.cat(reduced, 1), official_state[f"{p}Pfusion.conv.0.weight"]),
                           official_state, f"{p}Pfusion.conv.1."))
        official = F.relu(fused + x)
    torch.testing.assert_close(ours, official, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_official_checkpoint_reproduces_published_split_scores(official_state, sd900):
    """Official preprocessing (rescale 368, divide by max, mean 0.4669 / std 0.2437, min-max output, bilinear
    back to 200x200) on the 360 standard test images: S .8667, MAE .0274, maxE .9595, maxF .8571."""
    test = standard_split(load_pairs(sd900))["test"]
    assert len(test) == 360
    scores = score_model(load_detector("minet", OFFICIAL), test, batch_size=20)
    expected = {"S": 0.8667, "MAE": 0.0274, "maxE": 0.9595, "maxF": 0.8571}
    assert {k: scores[k] for k in expected} == pytest.approx(expected, abs=0.002)


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    net = MINet().train()
    x = torch.randn(4, 3, 64, 64)
    target = torch.zeros(4, 1, 64, 64)
    target[:, :, 16:40, 20:30] = 1
    optimizer = torch.optim.Adam(net.parameters(), lr=4e-3)
    losses = []
    for _ in range(12):
        loss = net.loss(net(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses


def test_bad_weights(tmp_path):
    with pytest.raises(DefFillerError, match="not found"):
        load_detector("minet", tmp_path / "absent.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(DefFillerError, match="cannot read weights"):
        load_detector("minet", corrupt)
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(DefFillerError, match="not minet weights"):
        load_detector("minet", other)
