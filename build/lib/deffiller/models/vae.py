"""The small AutoencoderKL of the miniature profiles (trained by `deffiller.training.vae`)."""
from __future__ import annotations

from diffusers import AutoencoderKL

from deffiller.models.config import VAEConfig


def build_vae(cfg: VAEConfig, image_size: int) -> AutoencoderKL:
    levels = len(cfg.block_out_channels)
    return AutoencoderKL(block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
                         norm_num_groups=cfg.norm_num_groups, latent_channels=cfg.latent_channels,
                         down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
                         sample_size=image_size)
