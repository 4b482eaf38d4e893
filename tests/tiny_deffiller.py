"""Helpers for the DefFiller tests: the tiny profile with outputs under a temporary folder, and tiny random parts."""
from __future__ import annotations

import torch

from deffiller.config import load_profile


def tiny_profile(tmp_path, **overrides):
    """The tiny profile writing under tmp_path, with a 2-step VAE (a trained VAE is not what these tests check)."""
    return load_profile("tiny", {"paths.outputs": str(tmp_path / "outputs"), "vae.max_steps": 2, **overrides})


def tiny_parts(profile, seed: int = 0):
    """DefFiller parts with random weights: no VAE training."""
    from deffiller.models.build import DefFillerParts, build_unet, vae_factor
    from deffiller.models.config import ModelConfig, VAEConfig
    from deffiller.models.text import offline_tokenizer, random_text_encoder
    from deffiller.models.vae import build_vae

    cfg = profile.section(ModelConfig)
    torch.manual_seed(seed)
    vae = build_vae(profile.section(VAEConfig), profile.data.image_size).requires_grad_(False).eval()
    tokenizer = offline_tokenizer(cfg.max_length)
    text = random_text_encoder(tokenizer, cfg.cross_attention_dim, cfg.text_layers, cfg.text_heads,
                               cfg.text_intermediate, cfg.max_length).requires_grad_(False).eval()
    unet = build_unet(cfg, profile.data.image_size, profile.data.mask_channels, vae_factor(vae))
    # gates open, so that the fusers (and hence the mask tokens) change the output
    for name, p in unet.named_parameters():
        if name.endswith(("alpha_attn", "alpha_dense")):
            p.data.fill_(0.5)
    return DefFillerParts(unet, vae, text, tokenizer, {"unet": "random"})
