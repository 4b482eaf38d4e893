"""DFMGAN's networks: a StyleGAN2 generator (skip architecture) with defect residual blocks and a mask head,
and the resnet discriminator used for images (D) and for image+mask pairs (D_match).

Stage 1 trains the backbone alone. Stage 2 adds, at every resolution >= `res_start`, a defect block that reads
the same features as the backbone block and adds its output to them. The first defect block also draws the
mask (a 1-channel ToRGB-like head); later ones upsample it. Defect features are multiplied by (mask >= 0), so
the backbone is only changed inside the mask. A separate defect mapping network styles the defect blocks.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from deffiller.baselines.dfmgan.layers import EqualConv2d, EqualLinear, ModulatedConv2d, fir_kernel, lrelu, upsample2d

NOISE_MODES = ("random", "const", "none")


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // resolution, channel_max)


def check_resolution(resolution: int, res_start: int | None = None) -> None:
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution {resolution} must be a power of two >= 8")
    if res_start is not None and not (res_start & (res_start - 1) == 0 and 8 <= res_start <= resolution):
        raise ValueError(f"res_start {res_start} must be a power of two between 8 and the resolution {resolution}")


class MappingNetwork(nn.Module):
    """z -> w through `layers` lrelu FC layers at 1/100 learning rate, broadcast to `num_ws` style inputs.

    Tracks the running mean of w (for truncation) while training.
    """

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, layers: int, lr_mul: float = 0.01,
                 w_avg_beta: float = 0.995):
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.fcs = nn.ModuleList(EqualLinear(a, b, lr_mul=lr_mul, activation=True) for a, b in zip(dims, dims[1:]))
        self.num_ws, self.w_avg_beta = num_ws, w_avg_beta
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation: float = 1.0, track: bool = True) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for fc in self.fcs:
            x = fc(x)
        if self.training and track:
            self.w_avg.copy_(x.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if truncation != 1.0:
            x = self.w_avg.lerp(x, truncation)
        return x[:, None].repeat(1, self.num_ws, 1)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv, per-pixel noise with a learned strength, bias, lrelu."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = self.conv(x, w)
        if noise_mode == "random":
            x = x + torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        return lrelu(x + self.bias[None, :, None, None])


class ToImage(nn.Module):
    """Modulated 1x1 conv without demodulation: features -> image (or mask) channels."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One backbone resolution: (const or upsampling conv), conv, then its ToImage added to the upsampled image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int):
        super().__init__()
        if resolution == 4:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.to_image = ToImage(out_channels, img_channels, w_dim)
        self.num_conv = 1 if resolution == 4 else 2
        self.register_buffer("kernel", fir_kernel(), persistent=False)

    def forward(self, x, img, ws, res_x=None, noise_mode="random"):
        """ws: [N, num_conv + 1, w_dim]; res_x: defect features added before ToImage (stage 2)."""
        if self.num_conv == 1:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode)
        if res_x is not None:
            x = x + res_x
        y = self.to_image(x, ws[:, self.num_conv])
        return x, y if img is None else upsample2d(img, self.kernel) + y


class DefectBlock(nn.Module):
    """A defect residual block: upsampling conv and conv on the backbone's input features, gated by the mask.

    The first one (at res_start) draws the mask from its features with a 1-channel head; later ones get the
    previous mask and upsample it.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, draws_mask: bool):
        super().__init__()
        self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.to_mask = ToImage(out_channels, 1, w_dim) if draws_mask else None
        self.num_conv, self.num_ws = 2, 3 if draws_mask else 2
        self.register_buffer("kernel", fir_kernel(), persistent=False)

    def forward(self, x, mask, ws, noise_mode="random"):
        """-> (gated defect features, mask logits at this resolution; the mask is on where >= 0)."""
        res_x = self.conv1(self.conv0(x, ws[:, 0], noise_mode), ws[:, 1], noise_mode)
        mask = self.to_mask(res_x, ws[:, 2]) if self.to_mask is not None else upsample2d(mask, self.kernel)
        return res_x * (mask >= 0).to(res_x.dtype), mask


class SynthesisNetwork(nn.Module):
    def __init__(self, w_dim: int, resolution: int, img_channels: int, channel_base: int, channel_max: int,
                 res_start: int | None = None):
        super().__init__()
        check_resolution(resolution, res_start)
        self.resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
        self.res_start = res_start

        def ch(res):
            return channels_at(res, channel_base, channel_max)

        self.blocks = nn.ModuleDict({
            f"b{r}": SynthesisBlock(ch(r // 2) if r > 4 else 0, ch(r), w_dim, r, img_channels) for r in self.resolutions
        })
        self.num_ws = sum(b.num_conv for b in self.blocks.values()) + 1
        self.defect_blocks = nn.ModuleDict({
            f"b{r}": DefectBlock(ch(r // 2), ch(r), w_dim, r, draws_mask=r == res_start)
            for r in self.resolutions if res_start is not None and r >= res_start
        })
        self.num_defect_ws = sum(b.num_conv for b in self.defect_blocks.values()) + 1 if res_start else 0

    def forward(self, ws, defect_ws=None, noise_mode="random"):
        """-> (image [N, C, R, R] in about [-1, 1], mask logits [N, 1, R, R] or None without defect blocks).

        Like StyleGAN2, consecutive blocks share one style: a block's ToImage style is the next block's first.
        """
        x = img = mask = None
        wi = di = 0
        for res in self.resolutions:
            block, res_x = self.blocks[f"b{res}"], None
            if f"b{res}" in self.defect_blocks:
                defect = self.defect_blocks[f"b{res}"]
                res_x, mask = defect(x, mask, defect_ws[:, di : di + defect.num_ws], noise_mode)
                di += defect.num_conv
            x, img = block(x, img, ws[:, wi : wi + block.num_conv + 1], res_x, noise_mode)
            wi += block.num_conv
        return img, mask


class Generator(nn.Module):
    """Mapping + synthesis; with `res_start` also the defect mapping and defect blocks (DFMGAN stage 2)."""

    def __init__(self, z_dim: int, w_dim: int, resolution: int, img_channels: int, channel_base: int,
                 channel_max: int, mapping_layers: int, res_start: int | None = None):
        super().__init__()
        self.z_dim = z_dim
        self.synthesis = SynthesisNetwork(w_dim, resolution, img_channels, channel_base, channel_max, res_start)
        self.mapping = MappingNetwork(z_dim, w_dim, self.synthesis.num_ws, mapping_layers)
        self.defect_mapping = (MappingNetwork(z_dim, w_dim, self.synthesis.num_defect_ws, mapping_layers)
                               if res_start else None)

    def defect_parameters(self) -> list[nn.Parameter]:
        """What stage 2 trains: the defect mapping and the defect blocks (with the mask head)."""
        return [*self.defect_mapping.parameters(), *self.synthesis.defect_blocks.parameters()]

    def forward(self, z, defect_z=None, truncation: float = 1.0, noise_mode: str = "random"):
        ws = self.mapping(z, truncation)
        defect_ws = None if self.defect_mapping is None else self.defect_mapping(defect_z, truncation)
        return self.synthesis(ws, defect_ws, noise_mode)


def minibatch_std(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Append the std over groups of samples (averaged over channels and pixels) as one more feature map."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    while n % g:
        g -= 1
    y = x.reshape(g, n // g, c, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean(dim=[1, 2, 3])
    return torch.cat([x, y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)], dim=1)


class DiscriminatorBlock(nn.Module):
    """Resnet block: two 3x3 convs (the second downsamples) plus a 1x1 downsampling skip, each scaled by sqrt(1/2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        half = math.sqrt(0.5)
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation=True, down=True, gain=half)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=True, gain=half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.conv1(self.conv0(x))


class Discriminator(nn.Module):
    """StyleGAN2 resnet discriminator -> one logit per sample. D_match is the same net on image+mask channels."""

    def __init__(self, resolution: int, in_channels: int, channel_base: int, channel_max: int, mbstd_group: int = 4):
        super().__init__()
        check_resolution(resolution)

        def ch(res):
            return channels_at(res, channel_base, channel_max)

        self.from_image = EqualConv2d(in_channels, ch(resolution), 1, activation=True)
        resolutions = [2**i for i in range(int(math.log2(resolution)), 2, -1)]
        self.blocks = nn.Sequential(*(DiscriminatorBlock(ch(r), ch(r // 2)) for r in resolutions))
        self.mbstd_group = mbstd_group
        self.conv = EqualConv2d(ch(4) + 1, ch(4), 3, activation=True)
        self.fc = EqualLinear(ch(4) * 16, ch(4), activation=True)
        self.out = EqualLinear(ch(4), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.from_image(x))
        x = self.conv(minibatch_std(x, self.mbstd_group))
        return self.out(self.fc(x.flatten(1)))
