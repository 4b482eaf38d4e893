"""DefFiller's parts (UNet, VAE, text encoder, tokenizer) and the UNet of a profile's `model` section; the parts of
each initialisation of Table 1 are assembled by `deffiller.training.parts`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from diffusers import AutoencoderKL
from transformers import CLIPTextModel, CLIPTokenizer

from deffiller.config import Profile
from deffiller.errors import DefFillerError
from deffiller.models.config import ModelConfig
from deffiller.models.unet import DefFillerUNet


@dataclass
class DefFillerParts:
    unet: DefFillerUNet
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    provenance: dict = field(default_factory=dict)  # where each part's weights came from


def vae_factor(vae: AutoencoderKL) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def build_unet(cfg: ModelConfig, image_size: int, mask_channels: int, factor: int, latent_channels: int = 4,
               text_dim: int | None = None) -> DefFillerUNet:
    if image_size % factor:
        raise DefFillerError(f"data.image_size={image_size} is not divisible by the VAE's downsampling factor {factor}")
    latent = image_size // factor
    return DefFillerUNet(
        sample_size=latent, latent_channels=latent_channels, block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block, down_block_types=tuple(cfg.down_block_types),
        up_block_types=tuple(cfg.up_block_types), attention_heads=cfg.attention_heads,
        norm_num_groups=cfg.norm_num_groups, cross_attention_dim=text_dim or cfg.cross_attention_dim,
        mask_channels=mask_channels, mask_resize=cfg.mask_resize, convnext_depths=tuple(cfg.convnext_depths),
        convnext_dims=tuple(cfg.convnext_dims), mask_mlp_hidden=cfg.mask_mlp_hidden, downsampler_resize=4 * latent,
        downsampler_channels=tuple(cfg.downsampler_channels))


def weights_path(profile: Profile, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else profile.path("weights") / path
