"""`train_adabldm`: one ControlNet per defect class on cut-and-paste composites, base SD frozen."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ControlNetModel

from deffiller.baselines.adabldm.backgrounds import make_backgrounds
from deffiller.baselines.adabldm.base import BaseModel, device_of
from deffiller.baselines.adabldm.composites import CompositeDataset
from deffiller.baselines.adabldm.config import AdaBLDMConfig
from deffiller.baselines.adabldm.model import MANIFEST, read_manifest, save_backgrounds, write_manifest
from deffiller.config import Profile
from deffiller.data.layout import Pair, load_pairs
from deffiller.data.splits import read_manifest as read_pairs_manifest
from deffiller.errors import DefFillerError


def build_controlnet(base: BaseModel, cfg: AdaBLDMConfig) -> ControlNetModel:
    """ControlNet initialised from the base UNet; its hint encoder downsamples by the VAE factor."""
    downsamples = base.vae_factor.bit_length() - 1
    channels = tuple(cfg.cond_embedding_channels)
    if len(channels) < downsamples + 1:
        raise DefFillerError(f"adabldm.cond_embedding_channels={list(channels)} needs {downsamples + 1} entries "
                             f"for the base VAE's {base.vae_factor}x downsampling")
    return ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=channels[-downsamples - 1:])


def controlnet_loss(base: BaseModel, controlnet: ControlNetModel, batch: dict, prompt_embeds: torch.Tensor,
                    empty_embeds: torch.Tensor, noise_scheduler) -> torch.Tensor:
    """The LDM noise-prediction loss with the ControlNet residuals added to the frozen UNet."""
    pixels, hint = batch["pixel_values"].to(base.device), batch["hint"].to(base.device)
    with torch.no_grad():
        latents = base.encode(pixels)
    noise = torch.randn_like(latents)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),), device=latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, t)
    n = len(latents)
    down, mid = controlnet(noisy, t, encoder_hidden_states=empty_embeds.expand(n, -1, -1), controlnet_cond=hint,
                           return_dict=False)
    pred = base.unet(noisy, t, encoder_hidden_states=prompt_embeds.expand(n, -1, -1),
                     down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
    target = noise if noise_scheduler.config.prediction_type == "epsilon" else noise_scheduler.get_velocity(latents, noise, t)
    return F.mse_loss(pred, target)


def training_pairs(profile: Profile, data=None, train_manifest=None) -> tuple[list[Pair], str]:
    """(pairs, description): all pairs of `data`, the train rows of `train_manifest`, else the profile's dataset."""
    if train_manifest is not None:
        return read_pairs_manifest(train_manifest, split="train"), f"manifest {train_manifest} (train)"
    if data is None:
        from deffiller.data.source import resolve_dataset

        source = resolve_dataset(profile)
        data = source.root
        described = f"{data}" + (f" [{source.banner}]" if source.synthetic else "")
    else:
        described = str(data)
    return load_pairs(data, per_class=profile.data.per_class), described


def resolve_base_path(profile: Profile, cfg: AdaBLDMConfig, base=None) -> Path | None:
    chosen = base if base is not None else cfg.base
    if chosen is None:
        return None
    path = Path(chosen)
    return path if path.is_absolute() or base is not None else profile.path("weights") / path
