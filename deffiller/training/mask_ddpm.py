"""Training the mask producer (`deffiller.models.mask_ddpm`): its `masks` config section, the mask dataset, the
DDPM objective and the training entry point (`deffiller masks train`)."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from deffiller.config import Profile
from deffiller.data.layout import Pair
from deffiller.data.masks import binarize
from deffiller.data.splits import training_pairs
from deffiller.errors import DefFillerError
from deffiller.models.mask_ddpm import build_scheduler, build_unet
from deffiller.pipelines.mask_sampling import MODEL_DIR, MaskClasses, MaskDDPMPipeline, save_mask_model
from deffiller.training.loop import SUMMARY, LoopConfig, TrainingTask, train
from deffiller.utils.io import read_image
from deffiller.utils.processes import is_main_process


@dataclass
class MaskDDPMConfig(LoopConfig):
    """The `masks` section: the DDPM's architecture and schedule, the loop's settings (LoopConfig) and sampling."""

    SECTION: ClassVar[str] = "masks"
    resolution: int = 64  # the DDPM's mask side
    block_out_channels: tuple[int, ...] = (128, 128, 256, 256, 512, 512)  # diffusers' 64 px DDPM recipe
    attention_levels: tuple[int, ...] = (4,)  # down/up levels with self-attention (0 = full resolution)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    train_timesteps: int = 1000
    beta_schedule: str = "linear"
    prediction: str = "epsilon"  # epsilon (DDPM, the paper) | sample (predict the clean mask)
    epochs: int = 200
    max_steps: int | None = None  # optimiser steps; None: `epochs` passes over the masks
    batch_size: int = 32
    lr: float = 1.0e-4
    warmup_steps: int = 500
    checkpoint_every: int = 1000
    hflip: bool = True  # mirror left-right: keeps the vertical rolling direction of the defects
    sampler: str = "ddpm"  # ddpm | ddim (deterministic, fewer steps)
    sampling_steps: int = 1000
    sample_batch_size: int = 64
    upsample: str = "nearest"  # nearest: binarise then resize (the paper); bilinear: resize then binarise (smooth edges)
    per_class: int = 300  # masks drawn per class (the paper: 300)

    def steps_for(self, masks: int) -> int:
        return self.max_steps if self.max_steps is not None else self.epochs * math.ceil(masks / self.batch_size)


def load_mask(path, resolution: int) -> np.ndarray:
    """float32 {-1, 1} mask at `resolution` from a mask file of any size (area resize between two binarisations)."""
    foreground = binarize(read_image(path, "L")).astype(np.float32)
    resized = cv2.resize(foreground, (resolution, resolution), interpolation=cv2.INTER_AREA)
    return np.where(resized > 0.5, 1.0, -1.0).astype(np.float32)


class MaskDataset(torch.utils.data.Dataset):
    """Items: mask (1, R, R) in {-1, 1} and its class index; all masks are read once, up front (900 x 64 x 64 is tiny)."""

    def __init__(self, pairs: list[Pair], classes, resolution: int):
        self.classes = tuple(classes)
        unknown = sorted({p.label for p in pairs} - set(self.classes))
        if unknown:
            raise DefFillerError(f"unknown class(es) {unknown} in the training masks; known classes: {list(self.classes)}")
        if not pairs:
            raise DefFillerError("no training masks")
        self.masks = torch.from_numpy(np.stack([load_mask(p.mask, resolution) for p in pairs]))[:, None]
        self.labels = torch.tensor([self.classes.index(p.label) for p in pairs])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"mask": self.masks[i], "label": self.labels[i]}


class MaskDDPMTask(TrainingTask):
    """The DDPM objective for the training loop: MSE between the UNet's prediction and its target (the noise, or the
    clean mask under `prediction_type="sample"`) at a uniform timestep.

    All randomness (flip, noise, timestep) comes from the step's generator, so a resumed run repeats it exactly.
    """

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler, hflip: bool = True):
        super().__init__()
        self.unet, self.scheduler, self.hflip = unet, scheduler, hflip

    def trainable_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return {"unet": list(self.unet.parameters())}

    def forward(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        clean, device = batch["mask"], generator.device
        if self.hflip:
            flip = torch.rand(len(clean), generator=generator, device=device) < 0.5
            clean = torch.where(flip[:, None, None, None], clean.flip(-1), clean)
        noise = torch.randn(clean.shape, generator=generator, device=device, dtype=clean.dtype)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(clean),), generator=generator, device=device)
        noisy = self.scheduler.add_noise(clean, noise, t)
        target = clean if self.scheduler.config.prediction_type == "sample" else noise
        return F.mse_loss(self.unet(noisy, t, class_labels=batch["label"]).sample.float(), target.float())


def train_mask_ddpm(profile: Profile, out_dir, data=None, train_manifest=None, resume: bool = False,
                    progress: bool = True) -> dict:
    """Train the mask DDPM on the ground-truth masks into `out_dir`: the model in `out_dir/model`, checkpoints,
    metrics.jsonl and run_summary.json beside it (the project's loop). Returns the run summary."""
    cfg = profile.section(MaskDDPMConfig)
    pairs, described = training_pairs(profile, data, train_manifest)
    dataset = MaskDataset(pairs, profile.data.classes, cfg.resolution)
    torch.manual_seed(profile.seed)
    unet, scheduler = build_unet(cfg, len(dataset.classes)), build_scheduler(cfg)
    loop_config = dataclasses.replace(cfg, max_steps=cfg.steps_for(len(dataset)))
    run_info = {"profile": profile.name, "overrides": profile.overrides, "data": described, "masks": len(dataset),
                "classes": list(dataset.classes)}
    summary = train(MaskDDPMTask(unet, scheduler, cfg.hflip), dataset, loop_config, out_dir, seed=profile.seed,
                    resume=resume, progress=progress, run_info=run_info)
    if is_main_process():
        classes = MaskClasses(tuple(profile.data.classes), tuple(profile.data.prefixes))
        save_mask_model(MaskDDPMPipeline(unet.to("cpu").eval(), scheduler), Path(out_dir) / MODEL_DIR, classes,
                        profile.name)
    return mask_run(out_dir, summary)


def mask_run(out_dir, summary: dict | None = None) -> dict:
    """What `train_mask_ddpm` returns for the run in `out_dir`: its summary (read from the folder when not given, as
    after a launched `deffiller masks train`) with its step count and model folder."""
    summary = summary or json.loads((Path(out_dir) / SUMMARY).read_text())
    return {**summary, "steps": summary["step"], "model": str(Path(out_dir) / MODEL_DIR)}
