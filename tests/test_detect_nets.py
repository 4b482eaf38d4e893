"""CSEPNet and TSERNet: output contract, parameter counts against the official models, losses, edge ground truth
(loading ImageNet backbone weights: tests/test_backbones.py). Small inputs keep this fast on CPU (TSERNet is 237M
parameters: built once for the module)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from deffiller.detection.registry import Detector, create_detector, list_detectors
from deffiller.detection.nets.csepnet import consistency_enhanced_loss
from deffiller.detection.nets.tsernet import EDGE_INDEX, balanced_bce_loss, f_measure_loss, mask_edges

OFFICIAL_PARAMS = {"csepnet": 18_775_142, "tsernet": 236_779_918}  # measured on the official models
N_OUTPUTS = {"csepnet": 5, "tsernet": 13}


@pytest.fixture(scope="module")
def nets() -> dict[str, Detector]:
    torch.manual_seed(0)
    return {name: create_detector(name) for name in OFFICIAL_PARAMS}


def _batch(size: int, batch: int = 2):
    torch.manual_seed(1)
    image = torch.randn(batch, 3, size, size)
    target = torch.zeros(batch, 1, size, size)
    target[0, :, size // 4: size // 2, size // 8: size - size // 8] = 1  # a wide bar
    target[1, :, size // 2:, size // 3: size // 2] = 1  # a bar touching the bottom border
    return image, target


def test_registered():
    assert {"csepnet", "tsernet"} <= set(list_detectors())


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_count_matches_official(nets, name):
    count = sum(p.numel() for p in nets[name].parameters())
    assert abs(count - OFFICIAL_PARAMS[name]) <= 0.005 * OFFICIAL_PARAMS[name], count


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_outputs_are_logits_at_input_size(nets, name):
    net = nets[name].eval()
    torch.manual_seed(1)
    with torch.no_grad():
        outputs = net(torch.randn(1, 3, 32, 64))  # non-square on purpose
    assert len(outputs) == N_OUTPUTS[name]
    assert all(o.shape == (1, 1, 32, 64) for o in outputs)
    assert all(torch.isfinite(o).all() for o in outputs)
    # logits, not probabilities: random init gives values outside [0, 1]
    assert any(((o < 0) | (o > 1)).any() for o in outputs)


def _freeze_dropout(net: nn.Module) -> None:
    for module in net.modules():
        if isinstance(module, nn.Dropout):
            module.eval()


def test_csepnet_loss_decreases_on_a_tiny_batch(nets):
    net = nets["csepnet"].train()
    _freeze_dropout(net)  # deterministic steps: only the optimisation changes the loss
    image, target = _batch(32)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = net.loss(net(image), target)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.99 * losses[0], losses


def test_tsernet_optimisation_step(nets):
    net = nets["tsernet"].train()
    image, target = _batch(32)
    outputs = net(image)
    loss = net.loss(outputs, target)
    assert torch.isfinite(loss) and loss.item() > 0
    before = net.refine.residual.weight.detach().clone()
    loss.backward()
    edge_head = net.edge_head[-1].weight
    assert edge_head.grad is not None and edge_head.grad.abs().sum() > 0  # the edge loss reaches the edge branch
    torch.optim.SGD(net.parameters(), lr=1e-2).step()
    assert not torch.equal(before, net.refine.residual.weight)
    assert len(outputs) == 13 and outputs[EDGE_INDEX].shape == target.shape


def test_mask_edges_morphological_gradient():
    mask = torch.zeros(1, 1, 12, 12)
    mask[..., 3:8, 4:9] = 1  # a 5x5 square
    mask[..., 10:, 0:3] = 1  # a block in the bottom-left corner
    edges = mask_edges(mask)[0, 0]
    assert set(edges.unique().tolist()) == {0.0, 1.0}
    # the band straddles the boundary of the square: its outer ring and the first ring outside it
    ring = torch.zeros(12, 12)
    ring[2:9, 3:10] = 1
    ring[4:7, 5:8] = 0
    assert torch.equal(edges[:9], ring[:9])
    # the image border is not an edge: only the block's inner side is
    assert edges[11, 0] == 0 and edges[10, 0] == 1 and edges[11, 2] == 1 and edges[11, 3] == 1 and edges[11, 4] == 0
    assert mask_edges(torch.zeros(1, 1, 8, 8)).sum() == 0 and mask_edges(torch.ones(1, 1, 8, 8)).sum() == 0
    assert mask_edges(mask, width=2).sum() > edges.sum()


def test_loss_terms_reward_the_right_answer():
    _, target = _batch(32)
    good, bad = (target * 2 - 1) * 12, -(target * 2 - 1) * 12
    assert consistency_enhanced_loss(good, target) < 1e-3 < 0.9 < consistency_enhanced_loss(bad, target)
    assert f_measure_loss(good, target) < 1e-3 < 0.9 < f_measure_loss(bad, target)
    edges = mask_edges(target)
    assert balanced_bce_loss((edges * 2 - 1) * 12, edges) < 1e-3 < balanced_bce_loss(-(edges * 2 - 1) * 12, edges)
    # class balance: missing every edge pixel costs about as much as missing all background pixels
    miss_edges = balanced_bce_loss(torch.full_like(edges, -12.0), edges)
    miss_background = balanced_bce_loss(torch.full_like(edges, 12.0), edges)
    assert 0.5 < miss_edges / miss_background < 1.5


@pytest.mark.parametrize("name, official, ours", [
    ("csepnet", "encoder8.4.weight", "encoder.27.weight"),
    ("csepnet", "Gate5.ca.fc2.weight", "attention.4.channel_mlp.2.weight"),
    ("csepnet", "CSC16.conv1.bn.running_var", "csc.3.adapt.1.running_var"),
    ("csepnet", "CSC2.sa1.conv1.weight", "csc.0.attend_fine.conv.weight"),
    ("csepnet", "sim16.csweight.sa1.conv1.weight", "csfi.4.fuse.attend_coarse.conv.weight"),
    ("csepnet", "sim1.contrast4.bn1.bias", "csfi.0.h_merge.1.gate.1.bias"),
    ("csepnet", "sim4.bnl_1.weight", "csfi.2.l_merge.0.1.weight"),
    ("csepnet", "upconv2.conv.weight", "up.1.0.weight"),
    ("csepnet", "decoder.decoder5.4.bn.running_mean", "side_decoders.3.5.running_mean"),
    ("csepnet", "decoder.S2.bias", "side_decoders.0.7.bias"),
    ("csepnet", "decoder.S1.weight", "head1.weight"),
    ("tsernet", "inbn.running_mean", "stem.1.running_mean"),
    ("tsernet", "resb6_3.bn2.weight", "encoder6.2.bn2.weight"),
    ("tsernet", "RCU4.Conv2.2.weight", "rcus.3.body.5.weight"),
    ("tsernet", "getHigherSideInfo.0.bias", "edge_context.3.bias"),
    ("tsernet", "MSF.branch4.1.weight", "edge_msf.branches.3.1.weight"),
    ("tsernet", "bnbg_m.bias", "bridge.1.1.bias"),
    ("tsernet", "conv6d_2.weight", "decoders.5.2.0.weight"),
    ("tsernet", "EFBI3.convs4.7.bias", "efbi.2.foreground.2.1.bias"),
    ("tsernet", "EFBI6.convs2.1.weight", "efbi.5.unused.1.1.weight"),
    ("tsernet", "EFBI1.bn.running_var", "efbi.0.encoder_in.1.running_var"),
    ("tsernet", "outconvb.weight", "bridge_head.weight"),
    ("tsernet", "subnet.bn5.bias", "refine.encoders.4.1.bias"),
    ("tsernet", "subnet.Decoder4.getFinalEdge.0.weight", "refine.decoders.3.edge_merge.0.weight"),
    ("tsernet", "subnet.d3conv.bias", "refine.sides.2.bias"),
])
def test_official_checkpoint_names_convert(nets, name, official, ours):
    state = nets[name].state_dict()
    converted = nets[name].convert_state_dict({official: state[ours]})
    assert list(converted) == [ours]


def test_csweight_concat_order_is_swapped(nets):
    weight = nets["csepnet"].state_dict()["csfi.1.fuse.weight.0.0.weight"]  # (64, 128, 3, 3): (fine, coarse) inputs
    official = torch.cat([weight[:, 64:], weight[:, :64]], dim=1)  # the official conv sees (coarse, fine)
    converted = nets["csepnet"].convert_state_dict({"sim8.csweight.conv_cat.conv.weight": official})
    assert torch.equal(converted["csfi.3.fuse.weight.0.0.weight"], weight)
