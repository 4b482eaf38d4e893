"""StyleGAN2 building blocks as plain PyTorch ops: no custom CUDA kernels, so they run (and double-backward) anywhere.

Equalised learning rate: weights are stored as N(0, 1) / lr_mul and scaled at run time by lr_mul / sqrt(fan_in).
Resampling uses the [1, 3, 3, 1] FIR filter: upsampling is a strided transposed depthwise conv, downsampling
a blurred stride-2 conv, which is what upfirdn2d computes for this filter.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def fir_kernel() -> torch.Tensor:
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = taps[:, None] * taps[None, :]
    return kernel / kernel.sum()


def _depthwise(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return kernel.to(x.dtype).expand(x.shape[1], 1, *kernel.shape)


def upsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """2x upsampling: zero insertion then the FIR filter (gain 4 keeps the mean)."""
    return F.conv_transpose2d(x, _depthwise(kernel * 4, x), stride=2, padding=1, groups=x.shape[1])


def blur(x: torch.Tensor, kernel: torch.Tensor, pad: int) -> torch.Tensor:
    return F.conv2d(F.pad(x, [pad] * 4), _depthwise(kernel, x), groups=x.shape[1])


def lrelu(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) with StyleGAN's sqrt(2) gain, times an extra `gain`."""
    return F.leaky_relu(x, 0.2) * (SQRT2 * gain)


class EqualLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain, self.lr_mul, self.activation = lr_mul / math.sqrt(in_features), lr_mul, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return lrelu(x) if self.activation else x


class EqualConv2d(nn.Module):
    """Conv with equalised lr, optional FIR 2x downsampling, bias and lrelu; `gain` scales the output."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: bool = False, down: bool = False, gain: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.activation, self.down, self.gain = activation, down, gain
        self.register_buffer("kernel", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, k = self.weight * self.weight_gain, self.weight.shape[-1]
        if self.down:  # blur to (H + 1) or (H - 1), then a stride-2 conv lands on H / 2
            x = F.conv2d(blur(x, self.kernel, (k + 1) // 2), weight, self.bias, stride=2)
        else:
            x = F.conv2d(x, weight, self.bias, padding=k // 2)
        return lrelu(x, self.gain) if self.activation else x * self.gain


class ModulatedConv2d(nn.Module):
    """Style-modulated conv: per-sample weights scaled by the style, optionally demodulated to unit output variance.

    Runs as one grouped conv over the batch. Without demodulation (ToRGB heads) the styles carry the
    weight gain instead, as in StyleGAN2.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int, demodulate: bool = True,
                 up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate, self.up = demodulate, up
        self.register_buffer("kernel", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, c, _, _ = x.shape
        styles = self.affine(w)
        weight = self.weight[None] * styles[:, None, :, None, None] * self.weight_gain
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8)
        if self.up:
            x = upsample2d(x, self.kernel)
        out, k = weight.shape[1], weight.shape[-1]
        y = F.conv2d(x.reshape(1, n * c, *x.shape[2:]), weight.reshape(n * out, c, k, k), padding=k // 2, groups=n)
        return y.reshape(n, out, *y.shape[2:])
