"""Training the small AutoencoderKL of the miniature profiles briefly on the dataset's images, cached by content."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from deffiller.data.dataset import MaskImageDataset
from deffiller.models.config import VAEConfig
from deffiller.models.vae import build_vae
from deffiller.training.loop import TrainingTask, LoopConfig, train
from deffiller.utils.io import recover_folder, replace_folder
from deffiller.utils.processes import is_main_process, wait_for_everyone


class VAETask(TrainingTask):
    """Reconstruction MSE + a small KL term on horizontally flipped (p=0.5) images."""

    def __init__(self, vae: AutoencoderKL, kl_weight: float):
        super().__init__()
        self.vae, self.kl_weight = vae, kl_weight

    def trainable_groups(self):
        return {"vae": list(self.vae.parameters())}

    def forward(self, batch, generator):
        images = batch["pixel_values"]
        flip = torch.rand(images.shape[0], generator=generator, device=generator.device) < 0.5
        images = torch.where(flip.to(images.device).view(-1, 1, 1, 1), images.flip(-1), images)
        posterior = self.vae.encode(images).latent_dist
        recon = self.vae.decode(posterior.sample(generator=generator)).sample
        return F.mse_loss(recon, images) + self.kl_weight * posterior.kl().mean()


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, dataset, count: int = 64) -> float:
    """1 / std of the latents (the rule SD's 0.18215 came from), so scaled latents have unit variance."""
    device = next(vae.parameters()).device
    images = torch.stack([dataset[i]["pixel_values"] for i in range(min(count, len(dataset)))]).to(device)
    return float(1.0 / vae.encode(images).latent_dist.mode().std())


def small_vae(cfg: VAEConfig, pairs, image_size: int, cache_root, seed: int = 0, progress: bool = True) -> AutoencoderKL:
    """The VAE for these pairs and settings: loaded from `cache_root` if trained before, else trained (resuming an
    interrupted training) and cached there."""
    key = hashlib.sha256(json.dumps([dataclasses.asdict(cfg), image_size, seed, sorted(p.name for p in pairs)],
                                    sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(cache_root) / f"vae-{key}"
    if (recover_folder(folder) / "config.json").is_file():
        return AutoencoderKL.from_pretrained(folder)
    classes = sorted({p.label for p in pairs})
    dataset = MaskImageDataset(pairs, classes, image_size, mask_channels=len(classes) + 1)
    torch.manual_seed(seed)
    vae = build_vae(cfg, image_size)
    loop = LoopConfig(max_steps=cfg.max_steps, batch_size=min(cfg.batch_size, len(dataset)), lr=cfg.lr, warmup_steps=0,
                      checkpoint_every=cfg.checkpoint_every)
    staging = folder.with_name(f".{folder.name}.partial")
    train(VAETask(vae, cfg.kl_weight), dataset, loop, staging / "train", seed=seed, resume=True, progress=progress,
          collate_fn=_images_only)
    vae.eval()
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae, dataset))
    if is_main_process():
        vae.save_pretrained(staging / "model")
        (staging / "model" / "training_metrics.jsonl").write_bytes((staging / "train" / "metrics.jsonl").read_bytes())
        replace_folder(staging / "model", folder)
        shutil.rmtree(staging)
    wait_for_everyone()
    return vae


def _images_only(items):
    return {"pixel_values": torch.stack([item["pixel_values"] for item in items])}
