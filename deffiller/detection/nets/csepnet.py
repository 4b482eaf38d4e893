"""CSEPNet (Ding, Li, Liu, Wang, Measurement 2022): cross-scale edge purification network for steel-defect saliency.

A VGG16-bn encoder (5 stages, strides 1-16) whose stages pass through CBAM and a 3x3 channel reduction; a top-down
decoder of CSFI blocks (two-resolution feature integration with "contrast" edge purification and gated fusion)
joined by CSC cross-scale connections; five deeply supervised outputs, each trained with BCE + IoU + (1 - SSIM) +
CEL. Re-implemented after github.com/showmaker369/CSEPNet (`CSEPNet_VGG16`): 18,775,142 parameters like the original,
whose checkpoint names map through `convert_state_dict` (names read from the official source; no official
checkpoint was at hand to compare outputs).
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from deffiller.detection.losses import bce_loss, iou_loss, ssim_loss
from deffiller.detection.nets._backbone import load_torchvision_backbone, rename_state_dict
from deffiller.detection.registry import Detector, Preprocess, TrainDefaults, register_detector

STAGE_ENDS = (6, 13, 23, 33, 43)  # vgg16_bn.features[:43] cut after each conv block (the last max-pool is dropped)
STAGE_CHANNELS = (64, 128, 256, 512, 512)
REDUCED_CHANNELS = (32, 64, 64, 64, 64)


def _resize(x, like, align_corners=False):
    if x.shape[2:] == like.shape[2:]:
        return x
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=align_corners)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, kernel=3, bias=False):
        super().__init__(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SpatialAttention(nn.Module):
    """sigmoid(conv7x7(max over channels)): a (B,1,H,W) gate."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 7, padding=3, bias=False)

    def forward(self, x):
        return torch.sigmoid(self.conv(x.amax(dim=1, keepdim=True)))


class CBAM(nn.Module):
    """Channel attention from the global max-pool only (no average-pool path), then spatial attention."""

    def __init__(self, channels):
        super().__init__()
        self.channel_mlp = nn.Sequential(nn.Conv2d(channels, channels // 16, 1, bias=False), nn.ReLU(),
                                         nn.Conv2d(channels // 16, channels, 1, bias=False))
        self.spatial = SpatialAttention()

    def forward(self, x):
        x = x * torch.sigmoid(self.channel_mlp(x.amax(dim=(2, 3), keepdim=True)))
        return x * self.spatial(x)


class Contrast(nn.Module):
    """Edge purification: the local contrast x - avgpool3x3(x) drives a channel-wise gate, x * (1 + gate)."""

    def __init__(self, channels):
        super().__init__()
        self.gate = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.Sigmoid())

    def forward(self, x):
        return x + x * self.gate(x - F.avg_pool2d(x, 3, 1, 1, count_include_pad=True))


class CrossScaleFusion(nn.Module):
    """Fuse a fine feature with an upsampled coarse one: each is re-weighted by the other's spatial attention,
    the pair predicts a sigmoid weight w, and the output is fusion(w*(fine + coarse)) (CSC) or, with
    `complementary`, fusion(w*coarse + (1-w)*fine) (CSEPNet's CSWeight)."""

    def __init__(self, coarse_channels, channels, complementary=False):
        super().__init__()
        self.complementary = complementary
        self.adapt = ConvBNReLU(coarse_channels, channels)
        self.attend_fine = SpatialAttention()
        self.attend_coarse = SpatialAttention()
        self.weight = nn.Sequential(ConvBNReLU(2 * channels, channels), nn.Conv2d(channels, channels, 3, padding=1),
                                    nn.Sigmoid())
        self.fusion = ConvBNReLU(channels, channels)

    def forward(self, fine, coarse):
        coarse = self.adapt(_resize(coarse, fine))
        fine_gated = fine + fine * self.attend_coarse(coarse)
        coarse_gated = coarse + coarse * self.attend_fine(fine)
        w = self.weight(torch.cat([fine_gated, coarse_gated], 1))
        return self.fusion(w * coarse + (1 - w) * fine if self.complementary else w * (fine + coarse))


class CSFI(nn.Module):
    """Cross-scale feature integration: an octave-like pair of branches at full (h) and half (l) resolution that
    exchange information twice, purified by Contrast units, merged by a complementary CrossScaleFusion, plus a
    residual to the input."""

    def __init__(self, channels, low_channels):
        super().__init__()
        c, lc = channels, low_channels
        self.h_in = ConvBNReLU(c, c, bias=True)
        self.l_in = ConvBNReLU(c, lc, bias=True)
        self.h_contrast, self.l_contrast = Contrast(c), Contrast(lc)
        self.h_mid, self.l_mid = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(lc, lc, 3, padding=1)
        self.l_to_h, self.h_to_l = nn.Conv2d(lc, c, 3, padding=1), nn.Conv2d(c, lc, 3, padding=1)
        self.h_merge = nn.Sequential(ConvBNReLU(c, c, bias=True), Contrast(c))
        self.l_merge = nn.Sequential(ConvBNReLU(lc, lc, bias=True), Contrast(lc))
        self.h_out, self.l_out = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(lc, lc, 3, padding=1)
        self.fuse = CrossScaleFusion(lc, c, complementary=True)
        self.project = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        h = self.h_mid(self.h_contrast(self.h_in(x)))
        low = self.l_mid(self.l_contrast(self.l_in(F.avg_pool2d(x, 2))))
        h_merged = self.h_merge(h + self.l_to_h(_resize(low, h)))
        l_merged = self.l_merge(low + self.h_to_l(F.avg_pool2d(h, 2)))
        return self.project(self.fuse(self.h_out(h_merged), self.l_out(l_merged)) + x)


class SideDecoder(nn.Sequential):
    """Three 3x3 conv blocks, dropout 0.5, a x2 transposed conv, then a 3x3 conv to one logit channel."""

    def __init__(self, channels=64):
        super().__init__(*(ConvBNReLU(channels, channels) for _ in range(3)), nn.Dropout(0.5),
                         nn.ConvTranspose2d(channels, channels, 2, stride=2, bias=False), nn.BatchNorm2d(channels),
                         nn.ReLU(inplace=True), nn.Conv2d(channels, 1, 3, padding=1))


def consistency_enhanced_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pang et al.'s CEL, (|P - P.T| + |T - P.T|) / (|P| + |T|), summed over the whole batch."""
    prob = torch.sigmoid(logits)
    overlap = prob * target
    return ((prob - overlap).sum() + (target - overlap).sum()) / (prob.sum() + target.sum() + eps)


_SCALE = {"1": 0, "2": 1, "4": 2, "8": 3, "16": 4}  # the official names carry the stage stride
def _swap_csweight_inputs(key: str, value):
    """CSWeight's official conv concatenates (coarse, fine); ours (fine, coarse)."""
    if re.fullmatch(r"csfi\.\d\.fuse\.weight\.0\.0\.weight", key):
        return torch.cat(value.chunk(2, dim=1)[::-1], dim=1)
    return value


_OFFICIAL_RENAMES = [  # (pattern, replacement) applied in order to every official name
    (r"\.conv\.", ".0."), (r"\.bn\.", ".1."),  # conv-BN-ReLU blocks
    (r"^encoder(\d+)\.(\d+)", lambda m: f"encoder.{((0,) + STAGE_ENDS)[_SCALE[m[1]]] + int(m[2])}"),
    (r"^Gate(\d)\.ca\.fc1", lambda m: f"attention.{int(m[1]) - 1}.channel_mlp.0"),
    (r"^Gate(\d)\.ca\.fc2", lambda m: f"attention.{int(m[1]) - 1}.channel_mlp.2"),
    (r"^Gate(\d)\.sa\.conv1", lambda m: f"attention.{int(m[1]) - 1}.spatial.conv"),
    (r"^con_AIM(\d)", lambda m: f"reduce.{int(m[1]) - 1}"),
    (r"^CSC(\d+)\.", lambda m: f"csc.{_SCALE[m[1]] - 1}."),  # CSC16 joins the stride-8 stage
    (r"^sim(\d+)\.", lambda m: f"csfi.{_SCALE[m[1]]}."),
    (r"^upconv(\d+)\.", lambda m: f"up.{_SCALE[m[1]]}."),
    (r"^decoder\.S1\.", "head1."),
    (r"^decoder\.S(\d)\.", lambda m: f"side_decoders.{int(m[1]) - 2}.7."),
    (r"^decoder\.decoder(\d)\.4\.Deconv\.", lambda m: f"side_decoders.{int(m[1]) - 2}.4."),
    (r"^decoder\.decoder(\d)\.4\.1\.", lambda m: f"side_decoders.{int(m[1]) - 2}.5."),
    (r"^decoder\.decoder(\d)\.", lambda m: f"side_decoders.{int(m[1]) - 2}."),
    (r"^(csfi\.\d)\.csweight\.sa1\.conv1", r"\1.fuse.attend_coarse.conv"),  # CSWeight's sa1 sees the coarse input
    (r"^(csfi\.\d)\.csweight\.sa2\.conv1", r"\1.fuse.attend_fine.conv"),
    (r"^(csc\.\d)\.sa1\.conv1", r"\1.attend_fine.conv"),
    (r"^(csc\.\d)\.sa2\.conv1", r"\1.attend_coarse.conv"),
    (r"\.csweight\.", ".fuse."),
    (r"\.conv1\.", ".adapt."), (r"\.conv_cat\.", ".weight.0."), (r"\.conv2\.", ".weight.1."),
    (r"\.h2h_0\.", ".h_in.0."), (r"\.bnh_0\.", ".h_in.1."), (r"\.h2l_0\.", ".l_in.0."), (r"\.bnl_0\.", ".l_in.1."),
    (r"\.contrast3\.", ".h_contrast."), (r"\.contrast1\.", ".l_contrast."),
    (r"\.contrast4\.", ".h_merge.1."), (r"\.contrast2\.", ".l_merge.1."),
    (r"\.h2h_1\.", ".h_mid."), (r"\.l2l_1\.", ".l_mid."), (r"\.l2h_1\.", ".l_to_h."), (r"\.h2l_1\.", ".h_to_l."),
    (r"\.h1h_1\.", ".h_merge.0.0."), (r"\.bnh_1\.", ".h_merge.0.1."),
    (r"\.l2l_0\.", ".l_merge.0.0."), (r"\.bnl_1\.", ".l_merge.0.1."),
    (r"\.h2h_2\.", ".h_out."), (r"\.l2l_2\.", ".l_out."), (r"\.conv_out\.", ".project."),
    (r"\.conv_1\.", ".gate.0."), (r"\.bn1\.", ".gate.1."),
]


@register_detector("csepnet", backbone="vgg16_bn")
class CSEPNet(Detector):
    preprocess = Preprocess(train_size=256, crop_size=None, test_size=256, hflip=True, rotation=10.0,
                            color_jitter=0.1, resize_back="nearest")
    # config.py + solver.py: SGD "sgd_trick", poly 0.9 stepped per epoch. The official trick exempts parameters whose
    # name contains "bias" or "bn" from weight decay (which misses the VGG BN layers); here every bias and norm is.
    train_defaults = TrainDefaults(optimizer="sgd", lr=1e-3, weight_decay=5e-4, batch_size=4, epochs=100,
                                   momentum=0.9, schedule="poly", decay_bias_and_norm=False)

    def __init__(self):
        super().__init__()
        self.encoder = make_layers(cfgs["D"], batch_norm=True)[: STAGE_ENDS[-1]]
        for m in self.encoder.modules():  # torchvision's VGG init (make_layers alone leaves PyTorch defaults)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.attention = nn.ModuleList(CBAM(c) for c in STAGE_CHANNELS)
        self.reduce = nn.ModuleList(nn.Conv2d(c, r, 3, padding=1) for c, r in zip(STAGE_CHANNELS, REDUCED_CHANNELS))
        self.csfi = nn.ModuleList(CSFI(r, r // 2) for r in REDUCED_CHANNELS)
        # after each stage's CSFI: a conv block to the next finer stage's width, then a CSC joining that stage
        self.up = nn.ModuleList(ConvBNReLU(r, REDUCED_CHANNELS[max(i - 1, 0)]) for i, r in enumerate(REDUCED_CHANNELS))
        self.csc = nn.ModuleList(CrossScaleFusion(r, r) for r in REDUCED_CHANNELS[:-1])
        self.classifier = nn.Conv2d(REDUCED_CHANNELS[0], 1, 1)
        self.head1 = nn.Conv2d(1, 1, 3, padding=1)
        self.side_decoders = nn.ModuleList(SideDecoder(r) for r in REDUCED_CHANNELS[1:])

    def forward(self, x):
        features, h = [], x
        for start, end, attention, reduce in zip((0,) + STAGE_ENDS[:-1], STAGE_ENDS, self.attention, self.reduce):
            h = self.encoder[start:end](h)
            features.append(reduce(attention(h)))
        sides, h = [None] * len(features), None
        for i in reversed(range(len(features))):
            h = features[i] if h is None else self.csc[i](features[i], h)
            sides[i] = self.csfi[i](h)
            h = self.up[i](sides[i])
        outputs = [self.head1(self.classifier(h))]
        return outputs + [_resize(dec(side), x, align_corners=True) for dec, side in zip(self.side_decoders, sides[1:])]

    def load_backbone(self, path: str) -> None:
        """Load a torchvision vgg16_bn ImageNet state dict into the encoder (its classifier is ignored)."""
        load_torchvision_backbone({"features": self.encoder}, path, "vgg16_bn", ignored=("classifier.",))

    @staticmethod
    def convert_state_dict(official: dict) -> dict:
        """Official `CSEPNet_VGG16` checkpoint names -> this module's (for the released trained parameters)."""
        return rename_state_dict(official, _OFFICIAL_RENAMES, _swap_csweight_inputs)

    def loss(self, outputs, target):
        return sum(bce_loss(o, target) + iou_loss(o, target) + ssim_loss(o, target)
                   + consistency_enhanced_loss(o, target) for o in outputs)
