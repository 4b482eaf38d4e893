"""A minimal accelerate loop for one class's ControlNet: AdamW, JSONL log, atomic checkpoints, resume.

Written here because the project's generic loop (deffiller/training/loop.py) had not landed when it was needed.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import ControlNetModel
from tqdm.auto import tqdm

from deffiller.baselines.adabldm.base import BaseModel
from deffiller.baselines.adabldm.config import AdaBLDMConfig


def swap_in(staging: Path, folder: Path) -> None:
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


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


def fit_controlnet(base: BaseModel, controlnet: ControlNetModel, dataset, prompt_embeds: torch.Tensor,
                   empty_embeds: torch.Tensor, cfg: AdaBLDMConfig, run_dir, resume: bool = False, seed: int = 0,
                   progress: bool = True) -> tuple[int, float]:
    """Train `controlnet` in place; returns (optimiser steps done, last loss). Only the ControlNet is optimised."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(cpu=base.device.type == "cpu")
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    controlnet, optimizer = accelerator.prepare(controlnet, optimizer)
    batches_per_epoch = -(-len(dataset) // cfg.batch_size)
    total = cfg.epochs * batches_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * batches_per_epoch)
    checkpoint, step, loss = run_dir / "checkpoint", 0, float("nan")
    if resume and (checkpoint / "step.json").is_file():
        accelerator.load_state(checkpoint)
        step = json.loads((checkpoint / "step.json").read_text())["step"]
    noise_scheduler = base.noise_scheduler()
    bar = tqdm(total=total, initial=step, desc=f"adabldm {dataset.label}", disable=not progress)
    with open(run_dir / "train_log.jsonl", "a", encoding="utf-8") as log:
        while step < total:
            epoch = step // batches_per_epoch
            order = torch.Generator().manual_seed(seed * 1000 + epoch)  # the same batches again after a resume
            loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=order)
            loader = accelerator.skip_first_batches(loader, step % batches_per_epoch)
            for batch in loader:
                started = time.perf_counter()
                loss_t = controlnet_loss(base, controlnet, batch, prompt_embeds, empty_embeds, noise_scheduler)
                accelerator.backward(loss_t)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step, loss = step + 1, float(loss_t.detach())
                log.write(json.dumps({"step": step, "epoch": epoch, "loss": loss,
                                      "seconds": round(time.perf_counter() - started, 4)}) + "\n")
                log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                if step % cfg.checkpoint_every == 0 or step == total:
                    staging = run_dir / ".checkpoint.partial"
                    shutil.rmtree(staging, ignore_errors=True)
                    accelerator.save_state(staging)
                    (staging / "step.json").write_text(json.dumps({"step": step}))
                    swap_in(staging, checkpoint)
                if step >= total:
                    break
    bar.close()
    return step, loss
