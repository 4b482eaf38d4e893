"""`train_adabldm`: one ControlNet per defect class on cut-and-paste composites, base SD frozen, on the shared loop."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ControlNetModel

from deffiller.baselines.adabldm.backgrounds import make_backgrounds
from deffiller.baselines.adabldm.base import RANDOM_BASE, BaseModel, check_base, random_base
from deffiller.baselines.adabldm.composites import CompositeDataset
from deffiller.baselines.adabldm.config import AdaBLDMConfig
from deffiller.baselines.adabldm.model import MANIFEST, read_manifest, save_backgrounds, write_manifest
from deffiller.baselines.common import training_set
from deffiller.config import Profile
from deffiller.errors import DefFillerError
from deffiller.training.loop import CHECKPOINTS, TrainingTask, train
from deffiller.utils.device import resolve_device
from deffiller.utils.io import recover_folder, staged_folder
from deffiller.utils.processes import is_main_process, wait_for_everyone


class ControlNetTask(TrainingTask):
    """The LDM noise-prediction loss with the ControlNet's residuals added to the frozen base UNet; the UNet
    sees the class prompt and the ControlNet the empty one, as in the code."""

    def __init__(self, base: BaseModel, controlnet: ControlNetModel, prompt_embeds: torch.Tensor,
                 empty_embeds: torch.Tensor):
        super().__init__()
        self.unet, self.vae, self.controlnet, self.scheduler = base.unet, base.vae, controlnet, base.noise_scheduler()
        self.register_buffer("prompt_embeds", prompt_embeds, persistent=False)
        self.register_buffer("empty_embeds", empty_embeds, persistent=False)

    def trainable_groups(self):
        return {"controlnet": list(self.controlnet.parameters())}

    def train(self, mode: bool = True):
        super().train(mode)
        self.unet.eval()
        self.vae.eval()
        return self

    def forward(self, batch, generator):
        pixels, hint = batch["pixel_values"], batch["hint"]
        n, device = len(pixels), pixels.device
        with torch.no_grad():
            latents = self.vae.encode(pixels).latent_dist.sample(generator) * self.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(device)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (n,), generator=generator,
                          device=generator.device).to(device)
        noisy = self.scheduler.add_noise(latents, noise, t)
        down, mid = self.controlnet(noisy, t, encoder_hidden_states=self.empty_embeds.expand(n, -1, -1),
                                    controlnet_cond=hint, return_dict=False)
        pred = self.unet(noisy, t, encoder_hidden_states=self.prompt_embeds.expand(n, -1, -1),
                         down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        target = noise if self.scheduler.config.prediction_type == "epsilon" else self.scheduler.get_velocity(latents, noise, t)
        return F.mse_loss(pred.float(), target.float())


def build_controlnet(base: BaseModel, cfg: AdaBLDMConfig) -> ControlNetModel:
    """ControlNet initialised from the base UNet; its hint encoder downsamples by the VAE factor."""
    downsamples = base.vae_factor.bit_length() - 1
    channels = tuple(cfg.cond_embedding_channels)
    if len(channels) < downsamples + 1:
        raise DefFillerError(f"adabldm.cond_embedding_channels={list(channels)} needs {downsamples + 1} entries "
                             f"for the base VAE's {base.vae_factor}x downsampling")
    return ControlNetModel.from_unet(base.unet, conditioning_embedding_out_channels=channels[-downsamples - 1:])


def resolve_base_path(profile: Profile, cfg: AdaBLDMConfig, base=None) -> Path | None:
    chosen = base if base is not None else cfg.base
    if chosen is None:
        return None
    path = Path(chosen)
    return path if path.is_absolute() or base is not None else profile.path("weights") / path


def training_steps(cfg: AdaBLDMConfig, composites: int) -> int:
    steps = cfg.epochs * -(-composites // cfg.batch_size)
    return steps if cfg.max_steps is None else min(cfg.max_steps, steps)


def save_controlnet(controlnet: ControlNetModel, folder: Path) -> None:
    """save_pretrained into a staging folder that replaces `folder`, so a crash never leaves a half-written model."""
    with staged_folder(folder) as staging:
        controlnet.save_pretrained(staging)


def train_adabldm(profile: Profile, data=None, train_manifest=None, base=None, out_dir=None, classes=None,
                  resume: bool = False, progress: bool = True) -> dict:
    """Train one ControlNet per class into `out_dir` (default <outputs>/adabldm); returns the run summary.

    Classes already finished in `out_dir` are skipped; an unfinished one continues from its last checkpoint
    with `resume`, and is an error without it (nothing is overwritten).
    """
    cfg = profile.section(AdaBLDMConfig)
    given = resolve_base_path(profile, cfg, base)
    if given is not None:
        check_base(given)
    pairs, described, classes = training_set(profile, data, train_manifest, classes)
    out_dir = Path(out_dir or profile.path("outputs") / "adabldm")
    base_path = given or out_dir / RANDOM_BASE
    meta = read_manifest(out_dir) if (out_dir / MANIFEST).is_file() else {"classes": []}
    recorded = (meta.get("base", str(base_path.resolve())), meta.get("image_size", profile.data.image_size))
    if recorded != (str(base_path.resolve()), profile.data.image_size):
        raise DefFillerError(f"{out_dir} holds classes trained on base {recorded[0]} at {recorded[1]} px, not "
                             f"{base_path} at {profile.data.image_size} px; choose another --out")
    lines = [f"AdaBLDM on {described}; base {base_path}; backgrounds: {cfg.background}"]
    if given is None:
        missing = not recover_folder(base_path).is_dir()
        wait_for_everyone()  # every process has looked before the main one writes the base
        if missing:
            random_base(profile, pairs, base_path, progress)
        lines.append(f"RANDOM BASE: adabldm.base is null and no --base was given, so {base_path} holds an untrained "
                     "SD-format base of the profile's `model` dimensions (only its VAE learned the training images, as "
                     "`deffiller train --init scratch`); the images show the method's mechanics, not its quality. "
                     "Pass --base with a Stable Diffusion folder for the real method.")
    meta.update(base=str(base_path.resolve()), random_base=given is None, config=dataclasses.asdict(cfg),
                image_size=profile.data.image_size, source_size=profile.data.source_size, background=cfg.background,
                data=described, profile=profile.name, seed=profile.seed)
    meta.setdefault("runs", {})
    model = BaseModel.load(base_path, resolve_device(cfg.device))
    for label in classes:
        class_dir = out_dir / label
        if label in meta["classes"]:
            lines.append(f"{label}: already trained in {class_dir}, skipped")
            continue
        if class_dir.exists() and not resume:
            raise DefFillerError(f"{class_dir} exists; pass --resume to continue it or choose another --out")
        class_pairs = [p for p in pairs if p.label == label]
        backgrounds = make_backgrounds(class_pairs, cfg.background, profile.data.image_size, cfg.background_dilate,
                                       cfg.inpaint_radius, cfg.min_crop)
        wait_for_everyone()  # every process has checked class_dir before the main one writes into it
        if is_main_process():
            save_backgrounds(class_dir / "backgrounds", backgrounds)
        dataset = CompositeDataset(class_pairs, backgrounds, cfg.composites, profile.data.image_size, profile.seed,
                                   cfg.scale_jitter)
        torch.manual_seed(profile.seed)
        controlnet = build_controlnet(model, cfg)
        task = ControlNetTask(model, controlnet, model.embed([cfg.prompt.format(label=label)]), model.embed([""]))
        run = train(task, dataset, dataclasses.replace(cfg, max_steps=training_steps(cfg, len(dataset))), class_dir,
                    seed=profile.seed, resume=resume, progress=progress,
                    run_info={"method": "AdaBLDM", "class": label, "base": str(base_path), "data": described})
        meta["classes"].append(label)
        meta["runs"][label] = {"pairs": len(class_pairs), "backgrounds": len(backgrounds), "composites": len(dataset),
                               "steps": run["step"], "final_loss": run["final_loss"]}
        if is_main_process():
            save_controlnet(controlnet, class_dir / "controlnet")
            write_manifest(out_dir, meta)
            shutil.rmtree(class_dir / CHECKPOINTS, ignore_errors=True)  # the finished ControlNet supersedes them
        wait_for_everyone()
        lines.append(f"{label}: {len(class_pairs)} pairs, {len(backgrounds)} {cfg.background} backgrounds, "
                     f"{run['step']} steps, last loss {run['final_loss']:.4f} -> {class_dir / 'controlnet'}")
    if is_main_process():
        write_manifest(out_dir, meta)
    return {"out_dir": out_dir, "lines": lines, **meta}
