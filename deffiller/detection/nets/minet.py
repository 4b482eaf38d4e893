"""MINet (Shen, Zhou, Liu, IEEE TII 2024): a 0.28M-parameter real-time saliency network for strip-steel defects.

A from-scratch backbone of multiscale interactive (MI) modules and a U-shaped decoder of depthwise-separable
convolutions with five deeply supervised outputs. Re-implemented after github.com/Kunye-Shen/MINet; the
official checkpoint loads through `convert_state_dict`.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from deffiller.detection.losses import bce_loss, ssim_loss
from deffiller.detection.registry import Detector, Preprocess, TrainDefaults, register_detector

ENCODER_CHANNELS = (16, 32, 64, 96, 128)
MI_MODULES = (3, 4, 6, 3)  # MI modules in encoder stages 2-5
DILATIONS = (1, 2, 4, 8)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, kernel=3, stride=1, dilation=1, groups=1, relu=True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, dilation * (kernel // 2), dilation, groups, bias=False),
                  nn.BatchNorm2d(cout)]
        super().__init__(*layers, *([nn.ReLU(inplace=True)] if relu else []))


class DSConv(nn.Sequential):
    """Depthwise 3x3 (optionally strided / dilated) then pointwise 1x1, each with BN + ReLU."""

    def __init__(self, cin, cout, stride=1, dilation=1):
        super().__init__(ConvBNReLU(cin, cin, 3, stride, dilation, groups=cin), ConvBNReLU(cin, cout, 1))


class MIModule(nn.Module):
    """Depthwise 3x3 at four dilations; each channel's four responses are reduced 4->1 on their own (a grouped
    1x1 conv over the channel-major interleaved stack), then a 1x1 conv mixes channels; residual + ReLU."""

    def __init__(self, channels):
        super().__init__()
        self.dilated = nn.ModuleList(ConvBNReLU(channels, channels, 3, dilation=d, groups=channels) for d in DILATIONS)
        self.interact = ConvBNReLU(len(DILATIONS) * channels, channels, 1, groups=channels)
        self.fuse = ConvBNReLU(channels, channels, 1)

    def forward(self, x):
        scales = torch.stack([conv(x) for conv in self.dilated], dim=2).flatten(1, 2)  # (B, C*4, H, W)
        return F.relu(self.fuse(self.interact(scales)) + x)


def _upsample(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


@register_detector("minet")
class MINet(Detector):
    preprocess = Preprocess(train_size=368, crop_size=336, test_size=368, mean=(0.4669,) * 3, std=(0.2437,) * 3,
                            divide_by_max=True, minmax_output=True)
    # Paper Table 4 (the official train.py uses weight_decay=0); 1803 epochs as in train.py.
    train_defaults = TrainDefaults(optimizer="adam", lr=4e-3, weight_decay=5e-4, batch_size=32, epochs=1803)

    def __init__(self):
        super().__init__()
        c = ENCODER_CHANNELS
        stages = [ConvBNReLU(3, c[0], 3, stride=2)]
        for cin, cout, n in zip(c[:-1], c[1:], MI_MODULES):
            stages.append(nn.Sequential(DSConv(cin, cout, stride=2), *(MIModule(cout) for _ in range(n))))
        self.encoders = nn.ModuleList(stages)
        decoder_out = (c[0],) + c[:-1]  # stage i decodes c[i] channels into decoder_out[i]
        self.decoders = nn.ModuleList(
            nn.Sequential(DSConv(cin, cin, dilation=2), DSConv(cin, cout)) for cin, cout in zip(c, decoder_out)
        )
        self.heads = nn.ModuleList(nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(ch, 1, 1)) for ch in decoder_out)

    def forward(self, x):
        features = []
        h = x
        for stage in self.encoders:
            h = stage(h)
            features.append(h)
        decoded = [None] * len(features)
        for i in reversed(range(len(features))):
            skip = features[i] if i == len(features) - 1 else features[i] + _upsample(decoded[i + 1], features[i].shape[2:])
            decoded[i] = self.decoders[i](skip)
        # Upsampled as probabilities, like the official code (it differs from upsampling logits by ~0.001 S).
        size = x.shape[2:]
        return [torch.logit(_upsample(torch.sigmoid(head(d)), size), eps=1e-6) for head, d in zip(self.heads, decoded)]

    def loss(self, outputs, target):
        return sum(bce_loss(o, target) + ssim_loss(o, target) for o in outputs)

    @staticmethod
    def convert_state_dict(official: dict) -> dict:
        """Official checkpoint names -> this module's; the per-channel 4->1 convs become one grouped conv."""
        renamed, per_channel = {}, {}
        for key, value in official.items():
            key = re.sub(r"^encoder(\d)", lambda m: f"encoders.{int(m[1]) - 1}", key)
            key = re.sub(r"^decoder(\d)", lambda m: f"decoders.{int(m[1]) - 1}", key)
            key = re.sub(r"^conv_out(\d)", lambda m: f"heads.{int(m[1]) - 1}", key)
            key = re.sub(r"(^|\.)conv\.(?=\d)", r"\1", key).replace("Dconv.", "dilated.").replace("Pfusion.", "fuse.")
            match = re.match(r"(.*)\.Pconv\.(\d+)\.(\d\..*)$", key)
            if match:
                per_channel.setdefault((match[1], match[3]), {})[int(match[2])] = value
            else:
                renamed[key] = value
        for (module, param), channels in per_channel.items():
            stacked = [channels[i] for i in range(len(channels))]
            if param.endswith("num_batches_tracked"):
                renamed[f"{module}.interact.{param}"] = max(stacked)
            else:
                renamed[f"{module}.interact.{param}"] = torch.cat([t.reshape(1, *t.shape[1:]) for t in stacked])
        return renamed
