"""Training DefFiller (paper eq. 4, model-spec 2): the official trainable set, DDPM noise schedule, grounding
tokens dropped to the null input for a whole batch with probability `drop_prob`, joint horizontal flips."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from deffiller.config import Profile
from deffiller.data.dataset import MaskImageDataset
from deffiller.data.splits import training_pairs
from deffiller.errors import DefFillerError
from deffiller.models.build import DefFillerParts
from deffiller.models.speed import configure_unet, precision
from deffiller.models.text import PromptCache, encode_prompts
from deffiller.pipelines.deffiller import DefFillerPipeline, make_scheduler
from deffiller.training.loop import TrainingTask, LoopConfig, train
from deffiller.training.parts import build_parts
from deffiller.utils.device import resolve_device
from deffiller.utils.io import staged_folder
from deffiller.utils.processes import is_main_process, wait_for_everyone

MODEL_DIR = "model"


@dataclass
class TrainConfig(LoopConfig):
    """The official schedule (AdamW 5e-5, 10k warmup, 30k iterations, batch 2) plus DefFiller's data settings."""

    SECTION: ClassVar[str] = "train"
    trainable: str = "official"  # official: the official set (UNet backbone frozen) | all: the backbone trains too
    drop_prob: float = 0.1  # per batch: grounding tokens -> null input (text and downsampler input never dropped)
    hflip: bool = True
    gradient_checkpointing: bool = True
    beta_start: float = 0.00085
    beta_end: float = 0.012
    train_timesteps: int = 1000
    # speed (deffiller/models/speed.py; mixed_precision is the loop's); the official code: explicit, false x5
    attention: str = "sdpa"  # sdpa | explicit
    tf32: bool = False  # TF32 matmuls (CUDA only)
    channels_last: bool = False
    compile: bool = False  # torch.compile the UNet
    cache_text: bool = True  # encode each class prompt once (the text encoder is frozen)
    cache_latents: bool = False  # keep each image's VAE posterior (as drawn and flipped) for the later epochs


def noise_scheduler(cfg: TrainConfig) -> DDPMScheduler:
    """LDM's "linear" schedule (linspace of sqrt(beta), squared) = diffusers' scaled_linear."""
    return DDPMScheduler(num_train_timesteps=cfg.train_timesteps, beta_start=cfg.beta_start, beta_end=cfg.beta_end,
                         beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False)


class DefFillerTask(TrainingTask):
    def __init__(self, parts: DefFillerParts, cfg: TrainConfig):
        super().__init__()
        self.unet, self.vae, self.text_encoder = parts.unet, parts.vae, parts.text_encoder
        self.tokenizer, self.cfg, self.scheduler = parts.tokenizer, cfg, noise_scheduler(cfg)
        self.requires_grad_(False)
        for params in self.trainable_groups().values():
            for p in params:
                p.requires_grad_(True)
        if cfg.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        else:
            self.unet.disable_gradient_checkpointing()
        configure_unet(self.unet, cfg.attention, cfg.channels_last, cfg.compile)
        self.prompts = PromptCache(self.tokenizer, self.text_encoder) if cfg.cache_text else None
        self.posteriors: dict[tuple[str, bool], torch.Tensor] = {}  # (name, flipped) -> VAE mean and log-variance

    def trainable_groups(self):
        """The official set; with `trainable: all` (a departure for priors that cannot draw steel yet) the UNet's
        backbone joins it as a group of its own."""
        groups = self.unet.trainable_groups()
        if self.cfg.trainable == "official":
            return groups
        if self.cfg.trainable != "all":
            raise DefFillerError(f"train.trainable: {self.cfg.trainable!r}; use official or all")
        official = {id(p) for params in groups.values() for p in params}
        return groups | {"backbone": [p for p in self.unet.parameters() if id(p) not in official]}

    def train(self, mode: bool = True):
        super().train(mode)
        self.vae.eval()
        self.text_encoder.eval()
        return self

    def posterior(self, images, names, flips) -> DiagonalGaussianDistribution:
        """The VAE posterior of `images`; with `cache_latents`, encoded only the first time an image (by name and
        flip) is seen: a drawn latent is then the same as without the cache (same posterior, same noise)."""
        if not self.cfg.cache_latents:
            return self.vae.encode(images).latent_dist
        if names is None:
            raise DefFillerError("train.cache_latents needs each batch's image names (the dataset's 'name' field)")
        keys = [(name, bool(flipped)) for name, flipped in zip(names, flips)]
        new = [i for i, key in enumerate(keys) if key not in self.posteriors]
        if new:
            params = self.vae.encode(images[new]).latent_dist.parameters
            self.posteriors.update((keys[i], p) for i, p in zip(new, params))
        return DiagonalGaussianDistribution(torch.stack([self.posteriors[key] for key in keys]))

    def forward(self, batch, generator):
        images, sem = batch["pixel_values"], batch["sem"]
        count, device = images.shape[0], images.device
        flip = torch.zeros(count, dtype=torch.bool, device=device)
        if self.cfg.hflip:
            flip = (torch.rand(count, generator=generator, device=generator.device) < 0.5).to(device)
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
            sem = torch.where(flip.view(-1, 1, 1, 1), sem.flip(-1), sem)
        with torch.no_grad():
            posterior = self.posterior(images, batch.get("name"), flip.tolist())
            latents = posterior.sample(generator=generator) * self.vae.config.scaling_factor
            text = (self.prompts(batch["prompt"], device) if self.prompts is not None
                    else encode_prompts(self.tokenizer, self.text_encoder, batch["prompt"], device))
        noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(device)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (count,), generator=generator,
                          device=generator.device).to(device)
        dropped = torch.rand((), generator=generator, device=generator.device) < self.cfg.drop_prob
        grounded = torch.full((count,), 0.0 if dropped else 1.0, device=device)
        noisy = self.scheduler.add_noise(latents, noise, t)
        pred = self.unet(noisy, t, text, sem, grounded).sample
        return F.mse_loss(pred.float(), noise.float())


def save_pipeline(parts: DefFillerParts, cfg: TrainConfig, classes, folder) -> Path:
    """`save_pretrained` into a staging folder that replaces `folder`, with PLMS over the training schedule."""
    pipe = DefFillerPipeline(parts.unet, parts.vae, parts.text_encoder, parts.tokenizer,
                             make_scheduler("pndm", noise_scheduler(cfg).config), classes)
    with staged_folder(folder) as staging:
        pipe.save_pretrained(staging)
    return Path(folder)


def train_deffiller(profile: Profile, init: str, out, data=None, train_manifest=None, resume: bool = False,
                    progress: bool = True, overrides: dict | None = None) -> dict:
    """Train DefFiller from `init` (scratch | sd | gligen) into the run folder `out` on the pairs of `data` (a dataset
    folder, or a split manifest whose train rows only are used; also `train_manifest`); the pipeline lands in
    `out/model` (load it with `DefFillerPipeline.from_pretrained` or `deffiller generate --model out`). Returns
    the run summary (also in `out/run_summary.json`). `overrides` replaces fields of the `train` section."""
    cfg = dataclasses.replace(profile.section(TrainConfig), **(overrides or {}))
    out = Path(out)
    pairs, described = training_pairs(profile, data, train_manifest)
    classes = tuple(profile.data.classes)
    dataset = MaskImageDataset(pairs, classes, profile.data.image_size, profile.data.mask_channels, hflip=False)
    if len(dataset) < cfg.batch_size:
        raise DefFillerError(f"{described}: {len(dataset)} training pairs, fewer than train.batch_size={cfg.batch_size}")
    parts = build_parts(profile, init, pairs, progress)
    torch.manual_seed(profile.seed)
    with precision(resolve_device(cfg.device), "no", cfg.tf32):  # mixed precision is the loop's (accelerate)
        summary = train(DefFillerTask(parts, cfg), dataset, cfg, out, seed=profile.seed, resume=resume,
                        progress=progress, run_info={"profile": profile.name, "overrides": profile.overrides,
                                                     "init": init, "data": described, "pairs": len(pairs),
                                                     "provenance": parts.provenance})
    if is_main_process():
        save_pipeline(parts, cfg, classes, out / MODEL_DIR)
    wait_for_everyone()
    summary["model"] = str(out / MODEL_DIR)
    return summary
