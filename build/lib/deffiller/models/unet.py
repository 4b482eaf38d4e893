"""The DefFiller UNet: diffusers' gated (GLIGEN) UNet whose grounding tokens come from a mask encoder, and whose
first convolution also sees the mask through a downsampling network (paper 3.1.2-3.1.4, model-spec 1.3-1.6).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ModelMixin, UNet2DConditionModel  # noqa: F401 (diffusers finds the loader of a custom
# pipeline component by looking up base classes such as ModelMixin in the component's module)
from diffusers.configuration_utils import register_to_config
from timm.models.convnext import ConvNeXt
from torch import nn

from deffiller.errors import DefFillerError
from deffiller.models.backbones import BackboneFile, copy_parts, timm_model


class MaskEncoder(nn.Module):
    """One-hot mask -> layout tokens: 3x3 conv to 3 channels, ConvNeXt features (stride 32) read as tokens, null
    feature where grounding is absent, learned position embedding, MLP (GLIGEN-sem's PositionNet)."""

    def __init__(self, mask_channels: int, out_dim: int, resize: int, depths, dims, hidden: int = 512):
        super().__init__()
        if resize % 32:
            raise DefFillerError(f"model.mask_resize={resize} must be a multiple of 32 (the ConvNeXt stride)")
        self.resize = resize
        self.in_conv = nn.Conv2d(mask_channels, 3, 3, 1, 1)
        self.backbone = ConvNeXt(in_chans=3, depths=tuple(depths), dims=tuple(dims), num_classes=0, global_pool="")
        self.backbone.head = nn.Identity()  # tokens are the stage-4 features; GLIGEN has no final norm or head
        self.pos_embedding = nn.Parameter(torch.empty(1, (resize // 32) ** 2, dims[-1]).normal_(std=0.02))
        self.null_feature = nn.Parameter(torch.zeros(dims[-1]))
        self.linears = nn.Sequential(nn.Linear(dims[-1], hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                     nn.Linear(hidden, out_dim))

    def load_backbone(self, weights: BackboneFile, name: str) -> None:
        """The ConvNeXt's weights from timm's pretrained model `name` (e.g. convnext_tiny.fb_in1k) in `weights`."""
        parts = {part: module for part, module in self.backbone.named_children() if part != "head"}
        copy_parts(parts, timm_model(name, weights.path), ignored=("head.",), where=weights.path)

    def forward(self, sem: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                tokens: torch.Tensor | None = None) -> torch.Tensor:
        """sem (B,C,H,W) one-hot, mask (B,) 1 = grounded, 0 = null input -> tokens (B, N, out_dim); `tokens`
        encoded before (a sampler reuses them at every step) pass through."""
        if tokens is not None:
            return tokens
        sem = F.interpolate(sem, size=(self.resize, self.resize), mode="nearest")
        features = self.backbone.forward_features(self.in_conv(sem))
        objs = features.flatten(2).transpose(1, 2)
        mask = mask.to(objs.dtype).view(-1, 1, 1)
        objs = objs * mask + self.null_feature.view(1, 1, -1) * (1 - mask)
        return self.linears(objs + self.pos_embedding)


class GroundingDownsampler(nn.Module):
    """One-hot mask -> (B, out, latent, latent): nearest resize, then two stride-2 4x4 convs (C -> 16 -> 8)."""

    def __init__(self, mask_channels: int, resize: int, channels=(16, 8)):
        super().__init__()
        self.resize = resize
        self.layers = nn.Sequential(nn.Conv2d(mask_channels, channels[0], 4, 2, 1), nn.SiLU(),
                                    nn.Conv2d(channels[0], channels[1], 4, 2, 1))

    def forward(self, sem: torch.Tensor) -> torch.Tensor:
        return self.layers(F.interpolate(sem, size=(self.resize, self.resize), mode="nearest"))


class DefFillerUNet(UNet2DConditionModel):
    """`UNet2DConditionModel(attention_type="gated")` with `position_net` = `MaskEncoder` and a `downsampler` whose
    output is concatenated after the latent at the input (latent channels first, then mask features)."""

    @register_to_config
    def __init__(
        self,
        sample_size: int = 32,
        latent_channels: int = 4,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types: tuple[str, ...] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        attention_heads: int = 8,
        norm_num_groups: int = 32,
        cross_attention_dim: int = 768,
        mask_channels: int = 152,
        mask_resize: int = 256,
        convnext_depths: tuple[int, ...] = (3, 3, 9, 3),
        convnext_dims: tuple[int, ...] = (96, 192, 384, 768),
        mask_mlp_hidden: int = 512,
        downsampler_resize: int = 128,
        downsampler_channels: tuple[int, ...] = (16, 8),
    ):
        if downsampler_resize != 4 * sample_size:
            raise DefFillerError(f"model.downsampler_resize={downsampler_resize} must be 4x the latent size "
                                 f"{sample_size} (two stride-2 convolutions)")
        super().__init__(
            sample_size=sample_size, in_channels=latent_channels + downsampler_channels[-1], out_channels=latent_channels,
            block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
            down_block_types=tuple(down_block_types), up_block_types=tuple(up_block_types),
            attention_head_dim=attention_heads,  # diffusers' legacy name: SD's value 8 is the number of heads
            norm_num_groups=norm_num_groups, cross_attention_dim=cross_attention_dim, attention_type="gated",
        )
        self.position_net = MaskEncoder(mask_channels, cross_attention_dim, mask_resize, convnext_depths,
                                        convnext_dims, mask_mlp_hidden)
        self.downsampler = GroundingDownsampler(mask_channels, downsampler_resize, downsampler_channels)

    @classmethod
    def extract_init_dict(cls, config_dict, **kwargs):
        # The parent's __init__ records its own arguments too; they are derived from ours, so reading them back
        # would only produce "unexpected config attribute" warnings.
        own = cls._get_init_keys(cls)
        config_dict = {k: v for k, v in config_dict.items() if k in own or k.startswith("_")}
        return super().extract_init_dict(config_dict, **kwargs)

    def encode_grounding(self, sem: torch.Tensor, grounding_mask: torch.Tensor | None = None,
                         dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(downsampler features, grounding tokens) of the one-hot mask `sem` (B,C,H,W); `grounding_mask` (B,):
        1 = mask tokens, 0 = null tokens (the downsampler always sees the mask). They do not depend on the noise
        level, so a sampler computes them once and passes them to every step as `grounding`."""
        if sem.shape[1] != self.config.mask_channels:
            raise DefFillerError(f"mask has {sem.shape[1]} one-hot channels, the model expects {self.config.mask_channels}")
        sem = sem.to(dtype or self.dtype)
        if grounding_mask is None:
            grounding_mask = torch.ones(sem.shape[0], device=sem.device)
        return self.downsampler(sem), self.position_net(sem, grounding_mask)

    def forward(self, sample, timestep, encoder_hidden_states, sem=None, grounding_mask=None, grounding=None,
                return_dict: bool = True):
        """eps prediction for latents `sample` (B,4,h,w) given text states and either the one-hot mask `sem` with
        its `grounding_mask` (see `encode_grounding`) or their `grounding` encoded before."""
        features, tokens = grounding if grounding is not None else self.encode_grounding(sem, grounding_mask, sample.dtype)
        sample = torch.cat([sample, features.to(sample.dtype)], dim=1)
        return super().forward(sample, timestep, encoder_hidden_states, cross_attention_kwargs={"gligen": {"tokens": tokens}},
                               return_dict=return_dict)

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        """The official trainable set: every fuser, the whole mask encoder, the downsampler, conv_in's weight."""
        fusers = [p for n, p in self.named_parameters() if ".fuser." in n]
        return {"fusers": fusers, "mask_encoder": list(self.position_net.parameters()),
                "downsampler": list(self.downsampler.parameters()), "conv_in.weight": [self.conv_in.weight]}
