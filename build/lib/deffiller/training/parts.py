"""The parts DefFiller starts training from, for each initialisation strategy of Table 1: `scratch` (nothing
pretrained; a small VAE trained on the training pairs), `sd` (SD-1.4 UNet/VAE/CLIP, conv_in widened 4 -> 12 with
zeros), `gligen` (the original GLIGEN-sem checkpoint: UNet, fusers, mask encoder, downsampler, VAE and text encoder)."""
from __future__ import annotations

import torch

from deffiller.config import Profile
from deffiller.errors import DefFillerError
from deffiller.models.build import DefFillerParts, build_unet, vae_factor
from deffiller.models.config import ModelConfig, VAEConfig
from deffiller.models.convert import load_gligen_parts, load_sd_parts
from deffiller.models.text import offline_tokenizer, random_text_encoder
from deffiller.training.vae import small_vae

INITS = ("scratch", "sd", "gligen")


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
        return load_sd_parts(profile, cfg)
    else:
        return load_gligen_parts(profile, cfg)
    for module in (vae, text_encoder):
        module.requires_grad_(False).eval()
    return DefFillerParts(unet, vae, text_encoder, tokenizer, provenance)
