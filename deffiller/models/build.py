"""Assembling DefFiller's parts (UNet, VAE, text encoder, tokenizer) for an initialisation strategy of Table 1:
`scratch` (nothing pretrained), `sd` (SD-1.4 UNet/VAE/CLIP, conv_in widened 4 -> 12 with zeros), `gligen` (the
original GLIGEN-sem checkpoint: UNet, fusers, mask encoder, downsampler, VAE and text encoder)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from transformers import CLIPTextModel, CLIPTokenizer

from deffiller.config import Profile
from deffiller.errors import DefFillerError
from deffiller.models.config import ModelConfig, VAEConfig
from deffiller.models.text import offline_tokenizer, random_text_encoder
from deffiller.models.unet import DefFillerUNet
from deffiller.models.vae import small_vae

INITS = ("scratch", "sd", "gligen")


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


def build_parts(profile: Profile, init: str, pairs=None, progress: bool = True) -> DefFillerParts:
    """The parts for `init`; `scratch` trains (or loads from cache) a small VAE on `pairs` first."""
    if init not in INITS:
        raise DefFillerError(f"unknown init {init!r}; choose one of {INITS}")
    cfg = profile.section(ModelConfig)
    torch.manual_seed(profile.seed)
    if init == "scratch":
        if not pairs:
            raise DefFillerError("--init scratch trains its VAE on the training pairs, but none were given")
        vae = small_vae(profile.section(VAEConfig), pairs, profile.data.image_size, profile.path("outputs") / "vae_cache",
                        seed=profile.seed, progress=progress)
        torch.manual_seed(profile.seed)  # the same random weights whether the VAE was trained now or cached
        tokenizer = offline_tokenizer(cfg.max_length)
        text_encoder = random_text_encoder(tokenizer, cfg.cross_attention_dim, cfg.text_layers, cfg.text_heads,
                                           cfg.text_intermediate, cfg.max_length)
        unet = build_unet(cfg, profile.data.image_size, profile.data.mask_channels, vae_factor(vae),
                          vae.config.latent_channels)
        provenance = {"unet": "random", "vae": "small VAE trained on the training images", "text_encoder": "random"}
    elif init == "sd":
        from deffiller.models.convert import load_sd_parts

        return load_sd_parts(profile, cfg)
    else:
        from deffiller.models.convert import load_gligen_parts

        return load_gligen_parts(profile, cfg)
    for module in (vae, text_encoder):
        module.requires_grad_(False).eval()
    return DefFillerParts(unet, vae, text_encoder, tokenizer, provenance)
