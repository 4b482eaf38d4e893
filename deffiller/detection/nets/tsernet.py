"""TSERNet (Han, Li, Liu, IEEE TIM 2022): two-stage edge-reuse network for steel-defect saliency.

Stage 1 is a BASNet-style encoder-decoder: a ResNet-34 without its stem (a 3x3 input conv keeps full resolution),
two extra stages of three 512-channel BasicBlocks, residual conv units (RCU) on every stage and a dilated bridge.
An edge branch (deep stage-6 context added to stage 2, then the multi-scale MSF block) predicts a full-resolution
edge map that every decoder stage reuses in its EFBI block (edge-aware foreground/background integration).
Stage 2 is a small U-Net on the coarse map whose ERM decoder blocks reuse the edge map again and which predicts a
residual. 13 outputs. Re-implemented after github.com/monxxcn/TSERNet: 236,779,918 parameters like the original,
whose checkpoint names map through `convert_state_dict` (names read from the official source; no official
checkpoint was at hand to compare outputs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, resnet34

from deffiller.detection.losses import bce_loss, iou_loss, ssim_loss
from deffiller.detection.nets._backbone import load_torchvision_backbone, rename_state_dict
from deffiller.detection.registry import Detector, Preprocess, TrainDefaults, register_detector

ENCODER_CHANNELS = (64, 128, 256, 512, 512, 512)  # stages 1-6 at strides 1, 2, 4, 8, 16, 32
DECODER_OUT = (64, 64, 128, 256, 512, 512)  # decoder stage i maps ENCODER_CHANNELS[i] -> DECODER_OUT[i]
EDGE_INDEX = 8  # position of the edge logits among the outputs
F_BETA2 = 0.3


def _resize(x, size):
    return x if x.shape[2:] == tuple(size) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, kernel=3, dilation=1):
        super().__init__(nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class RCU(nn.Module):
    """Residual conv unit: x + (BN-ReLU-conv) x 2."""

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(*(layer for _ in range(2) for layer in (
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1))))

    def forward(self, x):
        return x + self.body(x)


class MSF(nn.Module):
    """Multi-scale fusion: 1x1 reduction, four parallel dilated 3x3 convs (d = 1, 2, 4, 6), 3x3 conv to 1 channel."""

    def __init__(self, cin, channels):
        super().__init__()
        self.reduce = ConvBNReLU(cin, channels, kernel=1)
        self.branches = nn.ModuleList(ConvBNReLU(channels, channels, dilation=d) for d in (1, 2, 4, 6))
        self.score = nn.Conv2d(4 * channels, 1, 3, padding=1)

    def forward(self, x):
        x = self.reduce(x)
        return self.score(torch.cat([branch(x) for branch in self.branches], 1))


class EFBI(nn.Module):
    """Edge-aware foreground/background integration. Background: the encoder feature re-weighted by the reverse
    attention sigmoid(-decoder feature). Foreground: the decoder feature gated by sigmoid(-edge logits), with
    the edge logits added back. Output = background + convs(foreground)."""

    def __init__(self, channels):
        super().__init__()
        stack = lambda: nn.Sequential(*(ConvBNReLU(channels, channels) for _ in range(3)))  # noqa: E731
        self.encoder_in = ConvBNReLU(channels, channels)
        self.background = stack()
        self.decoder_in = ConvBNReLU(channels, channels)
        self.foreground = stack()
        self.fuse = stack()
        # Declared in the official EFBI but never called by its forward (they get no gradient): kept so that the
        # parameter count (236,779,918) and the checkpoint layout are those of the published model.
        self.unused = nn.Sequential(ConvBNReLU(channels, 2 * channels), ConvBNReLU(2 * channels, 2 * channels))

    def forward(self, encoder_feature, decoder_feature, edge):
        background = self.background(torch.sigmoid(-decoder_feature) * self.encoder_in(encoder_feature))
        foreground = self.foreground(torch.sigmoid(-edge) * self.decoder_in(decoder_feature)) + edge
        return background + self.fuse(foreground)


class ERM(nn.Module):
    """Edge-aware refinement: the local contrast relu(x - avgpool3x3(x)) of the skip feature is merged with the
    (projected) edge logits, and the result is fused with the upsampled deep and the skip features."""

    def __init__(self, channels):
        super().__init__()
        self.edge_in = nn.Conv2d(1, channels, 3, padding=1)
        self.edge_merge = ConvBNReLU(2 * channels, channels)
        self.fuse = ConvBNReLU(3 * channels, channels)

    def forward(self, deep, skip, edge):
        contrast = F.relu(skip - F.avg_pool2d(skip, 3, 1, 1))
        edge_feature = self.edge_merge(torch.cat([self.edge_in(edge), contrast], 1))
        return self.fuse(torch.cat([deep, skip, edge_feature], 1))


class RefineNet(nn.Module):
    """Stage 2: a 5-level, 64-channel U-Net on the coarse logits with ERM decoders; returns the refined logits
    (coarse + predicted residual) and four side logits at input size."""

    def __init__(self, channels=64, levels=5):
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1)
        self.encoders = nn.ModuleList(ConvBNReLU(channels, channels) for _ in range(levels))
        self.decoders = nn.ModuleList(ERM(channels) for _ in range(levels - 1))
        self.residual = nn.Conv2d(channels, 1, 3, padding=1)
        self.sides = nn.ModuleList(nn.Conv2d(channels, 1, 3, padding=1) for _ in range(levels - 1))

    def forward(self, coarse, edge):
        skips, h = [], self.stem(coarse)
        for i, encoder in enumerate(self.encoders):
            h = encoder(h if i == 0 else F.max_pool2d(h, 2, ceil_mode=True))
            skips.append(h)
        decoded = [None] * len(self.decoders)
        for i in reversed(range(len(self.decoders))):
            skip = skips[i]
            decoded[i] = self.decoders[i](_resize(h, skip.shape[2:]), skip, _resize(edge, skip.shape[2:]))
            h = decoded[i]
        size = coarse.shape[2:]
        return [coarse + self.residual(decoded[0])] + [_resize(side(d), size) for side, d in zip(self.sides, decoded)]


def _stacked(name: str, offset: int = 0):
    """Rename an official flat conv-BN-ReLU Sequential index n to our block index.layer (n // 3 + offset).(n % 3)."""
    return lambda m: f"{name}.{int(m[1]) // 3 + offset}.{int(m[1]) % 3}."


_EFBI_PARTS = {"convert": "encoder_in.0", "bn": "encoder_in.1", "convs3": "decoder_in", "convs1": "unused.0",
               "convs2": "unused.1"}
_OFFICIAL_RENAMES = [  # (pattern, replacement) applied in order to every official name
    (r"^inconv\.", "stem.0."), (r"^inbn\.", "stem.1."),
    (r"^resb([56])_(\d)\.", lambda m: f"encoder{m[1]}.{int(m[2]) - 1}."),
    (r"^RCU(\d)\.Conv(\d)\.(\d)\.", lambda m: f"rcus.{int(m[1]) - 1}.body.{3 * (int(m[2]) - 1) + int(m[3])}."),
    (r"^Resume6_(\d)\.", lambda m: f"edge_context.{int(m[1]) - 1}."), (r"^getHigherSideInfo\.0\.", "edge_context.3."),
    (r"^MSF\.convert\.", "edge_msf.reduce.0."), (r"^MSF\.bn\.", "edge_msf.reduce.1."),
    (r"^MSF\.branch(\d)\.", lambda m: f"edge_msf.branches.{int(m[1]) - 1}."), (r"^MSF\.", "edge_msf."),
    (r"^adjust\.", "edge_head.0."), (r"^Enout_edge\.", "edge_head.1."),
    (r"^(conv|bn)bg_(\w)\.", lambda m: f"bridge.{'1m2'.index(m[2])}.{int(m[1] == 'bn')}."),
    (r"^(conv|bn)(\d)d_(\w)\.", lambda m: f"decoders.{int(m[2]) - 1}.{'1m2'.index(m[3])}.{int(m[1] == 'bn')}."),
    (r"^EFBI(\d)\.", lambda m: f"efbi.{int(m[1]) - 1}."),
    (r"^(efbi\.\d)\.(convert|bn|convs3|convs1|convs2)\.", lambda m: f"{m[1]}.{_EFBI_PARTS[m[2]]}."),
    (r"\.convs\.(\d+)\.", _stacked(".background")), (r"\.convs4\.(\d+)\.", _stacked(".foreground")),
    (r"\.convs5\.(\d+)\.", _stacked(".fuse")),
    (r"^outconvb\.", "bridge_head."), (r"^outconv(\d)\.", lambda m: f"side_heads.{int(m[1]) - 1}."),
    (r"^subnet\.conv0\.", "refine.stem."), (r"^subnet\.conv_d0\.", "refine.residual."),
    (r"^subnet\.(conv|bn)(\d)\.", lambda m: f"refine.encoders.{int(m[2]) - 1}.{int(m[1] == 'bn')}."),
    (r"^subnet\.d(\d)conv\.", lambda m: f"refine.sides.{int(m[1]) - 1}."),
    (r"^subnet\.Decoder(\d)\.", lambda m: f"refine.decoders.{int(m[1]) - 1}."),
    (r"\.adaptEdge\.", ".edge_in."), (r"\.getFinalEdge\.", ".edge_merge."), (r"\.getFinalInfo\.", ".fuse."),
]


@register_detector("tsernet", backbone="resnet34")
class TSERNet(Detector):
    preprocess = Preprocess(train_size=256, crop_size=224, test_size=256, divide_by_max=True, minmax_output=True)
    # train.py: Adam, no weight decay. Neither the repo (epoch_num is a placeholder) nor DefFiller's Table 4 gives the
    # training length: 100 epochs (13.5k iterations on 540 images) is our choice, the same as CSEPNet's.
    train_defaults = TrainDefaults(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=4, epochs=100)

    def __init__(self):
        super().__init__()
        c = ENCODER_CHANNELS
        resnet = resnet34()
        self.stem = ConvBNReLU(3, c[0])
        self.encoder1, self.encoder2 = resnet.layer1, resnet.layer2
        self.encoder3, self.encoder4 = resnet.layer3, resnet.layer4
        self.encoder5 = nn.Sequential(*(BasicBlock(c[4], c[4]) for _ in range(3)))
        self.encoder6 = nn.Sequential(*(BasicBlock(c[5], c[5]) for _ in range(3)))
        self.rcus = nn.ModuleList(RCU(ch) for ch in c)

        self.edge_context = nn.Sequential(*(ConvBNReLU(c[5], c[5]) for _ in range(3)),
                                          nn.Conv2d(c[5], c[1], 3, padding=1), nn.ReLU(inplace=True))
        self.edge_msf = MSF(c[1], 64)
        self.edge_head = nn.Sequential(nn.Conv2d(1, c[1], 3, padding=1), nn.Conv2d(c[1], 1, 3, padding=1))

        self.bridge = nn.Sequential(*(ConvBNReLU(c[5], c[5], dilation=2) for _ in range(3)))
        self.efbi = nn.ModuleList(EFBI(ch) for ch in c)
        self.decoders = nn.ModuleList(
            nn.Sequential(ConvBNReLU(cin, cin), ConvBNReLU(cin, cin, dilation=2 if i == 5 else 1),
                          ConvBNReLU(cin, cout, dilation=2 if i == 5 else 1))
            for i, (cin, cout) in enumerate(zip(c, DECODER_OUT))
        )
        self.side_heads = nn.ModuleList(nn.Conv2d(ch, 1, 3, padding=1) for ch in DECODER_OUT)
        self.bridge_head = nn.Conv2d(c[5], 1, 3, padding=1)
        self.refine = RefineNet()

    def encode(self, x):
        h1 = self.encoder1(self.stem(x))
        h2 = self.encoder2(h1)
        h3 = self.encoder3(h2)
        h4 = self.encoder4(h3)
        h5 = self.encoder5(F.max_pool2d(h4, 2, ceil_mode=True))
        h6 = self.encoder6(F.max_pool2d(h5, 2, ceil_mode=True))
        return [rcu(h) for rcu, h in zip(self.rcus, (h1, h2, h3, h4, h5, h6))]

    def forward(self, x):
        """Logits: [refined map, d1..d6 (stage 1 decoder), bridge, edge (EDGE_INDEX), 4 refinement side outputs]."""
        size = x.shape[2:]
        features = self.encode(x)
        stride2 = features[1]
        context = _resize(self.edge_context(features[5]), stride2.shape[2:])
        edge = _resize(self.edge_head(self.edge_msf(stride2 + context)), size)

        bridge = self.bridge(features[5])
        h, decoded = bridge, [None] * len(features)
        for i in reversed(range(len(features))):
            feature = features[i]
            fused = self.efbi[i](feature, _resize(h, feature.shape[2:]), _resize(edge, feature.shape[2:]))
            h = decoded[i] = self.decoders[i](fused)

        sides = [_resize(head(d), size) for head, d in zip(self.side_heads, decoded)]
        refined, *refine_sides = self.refine(sides[0], edge)
        return [refined, *sides, _resize(self.bridge_head(bridge), size), edge, *refine_sides]

    def load_backbone(self, path: str) -> None:
        """Load a torchvision resnet34 ImageNet state dict; like the official model, only layer1-4 are used."""
        layers = {f"layer{i}": getattr(self, f"encoder{i}") for i in range(1, 5)}
        load_torchvision_backbone(layers, path, "resnet34", ignored=("conv1.", "bn1.", "fc."))

    @staticmethod
    def convert_state_dict(official: dict) -> dict:
        """Official `TSERNet` checkpoint names -> this module's (for the released trained model)."""
        return rename_state_dict(official, _OFFICIAL_RENAMES)

    def loss(self, outputs, target):
        edge_target = mask_edges(target)
        saliency = outputs[:EDGE_INDEX] + outputs[EDGE_INDEX + 1:]
        return sum(hybrid_loss(o, target) for o in saliency) + balanced_bce_loss(outputs[EDGE_INDEX], edge_target)


def f_measure_loss(logits: torch.Tensor, target: torch.Tensor, beta2: float = F_BETA2) -> torch.Tensor:
    """1 - soft F-measure per image (beta^2 = 0.3), averaged over the batch."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    tp = (prob * target).sum(1)
    f = (1 + beta2) * tp / (beta2 * target.sum(1) + prob.sum(1) + 1e-10)
    return (1 - f).mean()


def hybrid_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (bce_loss(logits, target) + ssim_loss(logits, target) + iou_loss(logits, target)
            + f_measure_loss(logits, target))


def balanced_bce_loss(logits: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE over the batch: edge pixels weighted by the negative fraction, background pixels by
    1.1 x the positive fraction (as in the official train.py)."""
    positive = edges.mean()
    weights = torch.where(edges > 0.5, 1 - positive, 1.1 * positive)
    return F.binary_cross_entropy_with_logits(logits, edges, weight=weights)


def mask_edges(mask: torch.Tensor, width: int = 1) -> torch.Tensor:
    """Edge ground truth from a {0,1} mask (B,1,H,W): the morphological gradient (3x3 dilation minus erosion,
    repeated `width` times), i.e. a band 2*width pixels wide across the mask boundary. The image border is not an
    edge."""
    kernel = 2 * width + 1
    dilated = F.max_pool2d(mask, kernel, 1, width)
    eroded = -F.max_pool2d(-mask, kernel, 1, width)
    return dilated - eroded
