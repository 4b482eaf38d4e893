"""The frozen base model: a Stable-Diffusion-format diffusers folder (real SD-1.4/1.5, a miniature stand-in, or, with
no base given, a random one built from the profile's dimensions)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from deffiller.config import Profile
from deffiller.errors import DefFillerError
from deffiller.models.build import vae_factor
from deffiller.models.config import ModelConfig
from deffiller.models.convert import save_sd_folder, sd_unet_like
from deffiller.training.parts import build_parts
from deffiller.utils.io import recover_folder
from deffiller.utils.processes import is_main_process, wait_for_everyone

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
GET_IT = (
    "put a diffusers-format Stable Diffusion folder there (for the paper profile: CompVis/stable-diffusion-v1-4, "
    "e.g. `huggingface-cli download CompVis/stable-diffusion-v1-4 --local-dir weights/stable-diffusion-v1-4` on a "
    "machine with internet), or pass --base pointing at one"
)
RANDOM_BASE = "random_base"  # where a model folder keeps the random base it was trained on


def random_base(profile: Profile, pairs, folder, progress: bool = True) -> Path:
    """An SD folder with what `deffiller train --init scratch` starts from (the small VAE trained on `pairs`, a random
    text encoder; `vae` and `model` sections) and a random plain SD UNet of the `model` section's dimensions."""
    parts = build_parts(profile, "scratch", pairs, progress)
    unet = sd_unet_like(profile.section(ModelConfig), profile.data.image_size, vae_factor(parts.vae),
                        parts.vae.config.latent_channels)
    if is_main_process():
        save_sd_folder(unet, parts.vae, parts.text_encoder, parts.tokenizer, folder)
    wait_for_everyone()
    return Path(folder)


def check_base(path) -> Path:
    """The base folder, or a DefFillerError naming what is missing and where it should be."""
    path = recover_folder(path)
    if not path.is_dir():
        raise DefFillerError(f"{path}: base model folder not found; {GET_IT}")
    missing = [c for c in COMPONENTS if not (path / c).is_dir()]
    if missing:
        raise DefFillerError(f"{path}: not a Stable-Diffusion diffusers folder, missing {missing}; {GET_IT}")
    return path


@dataclass
class BaseModel:
    """UNet, VAE, text encoder and tokenizer of the base, frozen, on one device; schedulers built from its config."""

    path: Path
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler_config: dict

    @classmethod
    def load(cls, path, device: torch.device | str = "cpu") -> BaseModel:
        path = check_base(path)
        try:
            parts = dict(
                unet=UNet2DConditionModel.from_pretrained(path, subfolder="unet", local_files_only=True),
                vae=AutoencoderKL.from_pretrained(path, subfolder="vae", local_files_only=True),
                text_encoder=CLIPTextModel.from_pretrained(path / "text_encoder", local_files_only=True),
                tokenizer=CLIPTokenizer.from_pretrained(path / "tokenizer", local_files_only=True),
                scheduler_config=dict(DDPMScheduler.load_config(path, subfolder="scheduler", local_files_only=True)),
            )
        except (OSError, ValueError, KeyError) as exc:
            raise DefFillerError(f"{path}: cannot load the base model ({exc}); {GET_IT}") from exc
        for module in (parts["unet"], parts["vae"], parts["text_encoder"]):
            module.requires_grad_(False).eval().to(device)
        return cls(path=path, **parts)

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def noise_scheduler(self) -> DDPMScheduler:
        return DDPMScheduler.from_config(self.scheduler_config)

    def ddim_scheduler(self) -> DDIMScheduler:
        return DDIMScheduler.from_config(self.scheduler_config)

    @torch.no_grad()
    def embed(self, prompts: list[str]) -> torch.Tensor:
        length = min(self.tokenizer.model_max_length, self.text_encoder.config.max_position_embeddings)
        tokens = self.tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        return self.text_encoder(tokens.input_ids.to(self.device))[0]

    def encode(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1,1] -> scaled latents (a posterior sample, as the code's get_first_stage_encoding)."""
        return self.vae.encode(pixels).latent_dist.sample(generator) * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents / self.vae.config.scaling_factor).sample
