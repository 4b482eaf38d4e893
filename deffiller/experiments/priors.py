"""Notebook 03: the pretrained priors of Table 1.

`paper`: the real SD-1.4 folder and GLIGEN-sem checkpoint must be in `paths.weights` (checked, hashed).
`tiny`/`smoke`: miniature stand-ins are pretrained briefly on broad captioned scenes (deffiller.data.shapes) and
saved in the same formats as the real ones -- an "SD-like" text-to-image prior as a diffusers SD folder, and a
"GLIGEN-like" prior (the SD-like one plus fusers, mask encoder and downsampler trained on semantic maps) as an
original GLIGEN checkpoint -- so `--init sd|gligen` runs the very same loading code as with the real weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd
import torch
import torch.nn.functional as F

from deffiller.config import Profile
from deffiller.data.layout import load_pairs
from deffiller.data.shapes import SceneDataset
from deffiller.errors import DefFillerError
from deffiller.experiments.data import start
from deffiller.models.build import vae_factor, weights_path
from deffiller.models.config import ModelConfig, VAEConfig
from deffiller.models.convert import save_original_gligen_checkpoint, save_sd_folder, sd_unet_like
from deffiller.models.text import encode_prompts, offline_tokenizer, random_text_encoder
from deffiller.reporting.outputs import Outputs
from deffiller.training.deffiller import DefFillerTask, TrainConfig, noise_scheduler
from deffiller.training.loop import TrainingTask, LoopConfig, train
from deffiller.training.parts import build_parts
from deffiller.training.vae import small_vae
from deffiller.utils.io import recover_folder


@dataclass
class PriorsConfig(LoopConfig):
    SECTION: ClassVar[str] = "priors"
    source: str = "stand_in"  # stand_in: build the miniature priors below; pretrained: the real SD-1.4 / GLIGEN-sem files
    scenes: int = 2000  # captioned scenes the stand-ins learn from
    sd_steps: int = 2000  # text-to-image pretraining of the SD-like stand-in
    gligen_steps: int = 1000  # grounding pretraining of the GLIGEN-like stand-in (SD-like frozen, as GLIGEN)


class TextToImageTask(TrainingTask):
    """Plain latent diffusion on captions: the whole UNet trains, VAE and text encoder frozen."""

    def __init__(self, unet, vae, tokenizer, text_encoder, scheduler):
        super().__init__()
        self.unet, self.vae, self.tokenizer, self.text_encoder, self.scheduler = unet, vae, tokenizer, text_encoder, scheduler
        self.vae.requires_grad_(False)
        self.text_encoder.requires_grad_(False)

    def trainable_groups(self):
        return {"unet": list(self.unet.parameters())}

    def forward(self, batch, generator):
        images, device = batch["pixel_values"], batch["pixel_values"].device
        with torch.no_grad():
            latents = self.vae.encode(images).latent_dist.sample(generator=generator) * self.vae.config.scaling_factor
            text = encode_prompts(self.tokenizer, self.text_encoder, batch["prompt"], device)
        noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(device)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(latents),), generator=generator,
                          device=generator.device).to(device)
        pred = self.unet(self.scheduler.add_noise(latents, noise, t), t, text).sample
        return F.mse_loss(pred.float(), noise.float())


def prior_paths(profile: Profile) -> tuple[Path, Path]:
    cfg = profile.section(ModelConfig)
    return weights_path(profile, cfg.sd_weights), weights_path(profile, cfg.gligen_weights)


def build_sd_like(profile: Profile, pairs, out: Path, cfg: PriorsConfig) -> Path:
    model = profile.section(ModelConfig)
    size = profile.data.image_size
    vae = small_vae(profile.section(VAEConfig), pairs, size, profile.path("outputs") / "vae_cache", seed=profile.seed,
                    progress=False)
    tokenizer = offline_tokenizer(model.max_length)
    torch.manual_seed(profile.seed)
    text_encoder = random_text_encoder(tokenizer, model.cross_attention_dim, model.text_layers, model.text_heads,
                                       model.text_intermediate, model.max_length)
    unet = sd_unet_like(model, size, vae_factor(vae), vae.config.latent_channels)
    schedule = noise_scheduler(profile.section(TrainConfig))
    scenes = SceneDataset(cfg.scenes, size, profile.data.mask_channels, seed=profile.seed)
    loop = LoopConfig(**{k: getattr(cfg, k) for k in LoopConfig.__dataclass_fields__} | {"max_steps": cfg.sd_steps})
    train(TextToImageTask(unet, vae, tokenizer, text_encoder, schedule), scenes, loop, out.parent / "sd_like_run",
          seed=profile.seed, resume=True, progress=False, run_info={"prior": "SD-like stand-in", "scenes": cfg.scenes})
    return save_sd_folder(unet, vae, text_encoder, tokenizer, out, schedule)


def build_gligen_like(profile: Profile, out: Path, cfg: PriorsConfig) -> Path:
    parts = build_parts(profile, "sd", progress=False)
    train_cfg = TrainConfig(**{k: getattr(cfg, k) for k in LoopConfig.__dataclass_fields__} | {"max_steps": cfg.gligen_steps},
                            gradient_checkpointing=False)
    scenes = SceneDataset(cfg.scenes, profile.data.image_size, profile.data.mask_channels, seed=profile.seed + 1)
    train(DefFillerTask(parts, train_cfg), scenes, train_cfg, out.parent / "gligen_like_run", seed=profile.seed,
          resume=True, progress=False, run_info={"prior": "GLIGEN-like stand-in", "scenes": cfg.scenes})
    return save_original_gligen_checkpoint(parts, out)


def build_stand_ins(profile: Profile, pairs) -> tuple[Path, Path]:
    """The miniature SD-like and GLIGEN-like priors at the profile's `model.sd_weights` / `model.gligen_weights`, built
    where missing (the SD-like one's VAE learns the images of `pairs`); returns their paths."""
    cfg = profile.section(PriorsConfig)
    sd_path, gligen_path = prior_paths(profile)
    if not recover_folder(sd_path).exists():
        build_sd_like(profile, pairs, sd_path, cfg)
    if not gligen_path.exists():
        build_gligen_like(profile, gligen_path, cfg)
    return sd_path, gligen_path


def run(profile: Profile) -> Outputs:
    source, outputs = start(profile, "03_priors")
    sd_path, gligen_path = prior_paths(profile)
    source_kind = profile.section(PriorsConfig).source
    if source_kind not in ("stand_in", "pretrained"):
        raise DefFillerError(f"config {profile.name}.priors.source: {source_kind!r}; use stand_in or pretrained")
    if source_kind == "pretrained":
        missing = [str(p) for p in (sd_path, gligen_path) if not p.exists()]
        if missing:
            raise DefFillerError(
                f"priors.source is pretrained, so the real priors are needed: {', '.join(missing)}. Put the diffusers folder of "
                "CompVis/stable-diffusion-v1-4 and the file diffusion_pytorch_model.bin of gligen/gligen-generation-sem there "
                "(or set model.sd_weights / model.gligen_weights)")
        kind = "real"
    else:
        build_stand_ins(profile, load_pairs(source.root, per_class=profile.data.per_class))
        kind = "miniature stand-in pretrained on synthetic captioned scenes"
    outputs.add_weights("sd", sd_path if sd_path.is_file() else sd_path / "unet" / "diffusion_pytorch_model.safetensors")
    outputs.add_weights("gligen", gligen_path)
    outputs.table("priors", pd.DataFrame([{"prior": "SD-1.4" if kind == "real" else "SD-like", "kind": kind, "path": str(sd_path)},
                                          {"prior": "GLIGEN-sem" if kind == "real" else "GLIGEN-like", "kind": kind,
                                           "path": str(gligen_path)}]), "Pretrained priors used by Table 1")
    outputs.finish()
    return outputs
