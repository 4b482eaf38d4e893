"""Training of any registered detector with its official pipeline (`preprocess`) and settings (`train_defaults`),
on the project's training loop (`deffiller.training.loop`).

One run = one network on one list of pairs, in its own folder: the loop's `checkpoints/` (every `checkpoint_every`
steps, for `resume`; removed when the run ends), `model.pt` (final weights), `metrics.jsonl` (loss and lr per step),
`summary.json` (settings, data, backbone weights and their sha256, `train_seconds`: the wall time of the whole
training, summed over resumes). The profile's `detect` section caps epochs / steps and can shrink the input size for
tiny and smoke runs. A run killed at any moment and rerun with `resume` ends with the weights of an uninterrupted
one: batches, augmentation (drawn from the step's generator) and dropout are functions of the step.
"""
from __future__ import annotations

import csv
import math
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset

from deffiller.data.layout import Pair, load_pairs
from deffiller.data.masks import binarize
from deffiller.data.splits import read_manifest
from deffiller.detection.predict import normalize, resize
from deffiller.detection.registry import Detector, Preprocess, TrainDefaults, backbone_arch, create_detector
from deffiller.errors import DefFillerError
from deffiller.models.backbones import torchvision_file
from deffiller.training.loop import CHECKPOINTS, LoopConfig, TrainingTask, checkpoint_dirs, persistent_buffers, train
from deffiller.utils.clock import SUMMARY_KEY
from deffiller.utils.device import resolve_device
from deffiller.utils.io import atomic_path, read_image, write_json
from deffiller.utils.processes import is_main_process, wait_for_everyone


@dataclass
class DetectConfig:
    SECTION: ClassVar[str] = "detect"
    nets: tuple[str, ...] = ("csepnet", "tsernet", "minet")  # networks of the protocols
    epochs: int | None = None  # None = the network's official epochs
    max_steps: int | dict | None = None  # cap on optimiser steps per run, or net -> cap (None, or a net absent: no cap)
    batch_size: int | None = None  # None = the network's official batch size
    input_size: int | None = None  # None = official sizes; else the network input side (sizes rounded to x32)
    weight_decay: float | None = None  # None = Table 4 (MINet 5e-4 as in the paper; its official code uses 0)
    # net -> ImageNet weights of its backbone: a torchvision weights name (IMAGENET1K_V1: torch hub's cache) or a file
    backbone_weights: dict = field(default_factory=dict)  # absent = from scratch
    backbone_download: bool = False  # fetch a named file missing from torch hub's cache through torchvision's API
    checkpoint_every: int = 500  # steps
    eval_batch_size: int = 8
    substitution_per_class: int | None = None  # training masks per class substituted, 9:1 side (None = all, the paper)
    filter_iou: float = 0.6  # generated pairs kept when a real-data detector finds their mask with IoU >= this
    seeds: dict = field(default_factory=dict)  # net -> runs per row of Tables 5/8 (seeds: profile's +0, +1, ...)
    short_training: tuple[str, ...] = ()  # nets whose budget here is too short to converge: their rows say so
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda


def scaled_preprocess(pre: Preprocess, input_size: int | None) -> Preprocess:
    """The official pipeline with every size scaled so the network input is `input_size` (multiples of 32)."""
    if input_size is None:
        return pre
    factor = input_size / (pre.crop_size or pre.train_size)
    to32 = lambda s: max(32, int(round(s * factor / 32)) * 32)  # noqa: E731
    crop = to32(pre.crop_size) if pre.crop_size else None
    return replace(pre, train_size=to32(pre.train_size), crop_size=crop, test_size=to32(pre.test_size))


class SaliencyPairs(Dataset):
    """Image/mask pairs resized to the network's training size: (1,S,S) gray in [0,1] and (1,S,S) mask in {0,1}.
    The random part of the pipeline is `DetectorTask.augment`'s."""

    def __init__(self, pairs: list[Pair], pre: Preprocess):
        self.pairs, self.pre = pairs, pre

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        pair, size = self.pairs[i], self.pre.train_size
        gray = read_image(pair.image, "L")
        mask = binarize(read_image(pair.mask, "L"))
        image = torch.from_numpy(resize(gray.astype(np.float64) / 255.0, size).astype(np.float32))[None]
        target = torch.from_numpy(resize(mask.astype(np.float64), size, order=0).astype(np.float32))[None]
        return image, target


def pairs_from(source, split: str | None = "train", per_class: int | None = None) -> list[Pair]:
    """Pairs of a manifest CSV (its `split` rows when it has any, else all rows) or of a dataset folder."""
    source = Path(source)
    if source.suffix.lower() != ".csv":
        return load_pairs(source, per_class=per_class)
    if not source.is_file():
        raise DefFillerError(f"{source}: manifest not found; write one with `deffiller data split`")
    with open(source, newline="", encoding="utf-8") as fh:
        splits = {row.get("split") for row in csv.DictReader(fh)}
    return read_manifest(source, split if split in splits else None)


def make_optimizer(model: Detector, defaults: TrainDefaults, weight_decay: float) -> torch.optim.Optimizer:
    decay, exempt = [], []
    for param in model.parameters():
        if param.requires_grad:
            (exempt if param.ndim <= 1 and not defaults.decay_bias_and_norm else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]
    if defaults.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=defaults.lr, momentum=defaults.momentum)
    if defaults.optimizer == "adam":
        return torch.optim.Adam(groups, lr=defaults.lr, betas=defaults.betas)
    raise DefFillerError(f"unknown optimizer {defaults.optimizer!r} in the network's train_defaults; use sgd or adam")


def lr_at(defaults: TrainDefaults, epoch: int, epochs: int) -> float:
    if defaults.schedule == "poly":
        return defaults.lr * (1 - epoch / epochs) ** 0.9
    return defaults.lr


class DetectorTask(TrainingTask):
    """A detector's own loss on its training pipeline, with its official optimizer and per-epoch schedule."""

    def __init__(self, net: Detector, pre: Preprocess, epochs: int, steps_per_epoch: int):
        super().__init__()
        self.net, self.pre, self.epochs, self.steps_per_epoch = net, pre, epochs, steps_per_epoch

    def trainable_groups(self):
        return {"net": [p for p in self.net.parameters() if p.requires_grad]}

    def configure_optimizers(self, config: LoopConfig):
        defaults = self.net.train_defaults
        optimizer = make_optimizer(self.net, defaults, config.weight_decay)
        epoch_lr = lambda step: lr_at(defaults, step // self.steps_per_epoch, self.epochs) / defaults.lr  # noqa: E731
        return {"net": (optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, epoch_lr))}

    def checkpoint_extras(self):
        return persistent_buffers(self)  # BatchNorm statistics

    def augment(self, image: torch.Tensor, target: torch.Tensor, generator: torch.Generator):
        """One (1,S,S) pair through the random crop, flip, rotation and jitter -> (3,C,C) input, (1,C,C) target."""
        pre = self.pre
        uniform = lambda low, high: low + (high - low) * torch.rand((), generator=generator,  # noqa: E731
                                                                   device=generator.device).item()
        if pre.crop_size and pre.crop_size < pre.train_size:
            top, left = (int(uniform(0, pre.train_size - pre.crop_size)) for _ in range(2))
            image, target = (t[:, top:top + pre.crop_size, left:left + pre.crop_size] for t in (image, target))
        if pre.hflip and uniform(0, 1) < 0.5:
            image, target = image.flip(-1), target.flip(-1)
        if pre.rotation:
            angle = uniform(-pre.rotation, pre.rotation)
            image = TF.rotate(image, angle, TF.InterpolationMode.BILINEAR)
            target = TF.rotate(target, angle, TF.InterpolationMode.NEAREST)
        if pre.color_jitter:  # brightness and contrast (saturation and hue do nothing to gray images)
            image = TF.adjust_brightness(image, uniform(1 - pre.color_jitter, 1 + pre.color_jitter))
            image = TF.adjust_contrast(image, uniform(1 - pre.color_jitter, 1 + pre.color_jitter))
        return normalize(image[0], pre), target

    def forward(self, batch, generator):
        images, targets = map(torch.stack, zip(*(self.augment(i, t, generator) for i, t in zip(*batch))))
        return self.net.loss(self.net(images), targets)


def train_detector(net: str, pairs: list[Pair], out, cfg: DetectConfig, seed: int = 0,
                   backbone_weights: str | None = None, resume: bool = False) -> Path:
    """Train `net` on `pairs` into folder `out`; returns the path of the final weights (`model.pt`)."""
    out = Path(out)
    if not pairs:
        raise DefFillerError(f"{net}: no training pairs")
    weights = out / "model.pt"
    if not resume and (weights.exists() or checkpoint_dirs(out)):
        raise DefFillerError(f"{out}: a run is already there; pass --resume to continue it or choose another --out")
    if resume and weights.exists() and not checkpoint_dirs(out):
        return weights  # finished
    backbone = backbone_file(net, backbone_weights or cfg.backbone_weights.get(net), cfg.backbone_download)
    device = resolve_device(cfg.device)
    torch.manual_seed(seed)
    model = create_detector(net, backbone_weights=backbone and str(backbone.path))
    defaults, pre = model.train_defaults, scaled_preprocess(model.preprocess, cfg.input_size)
    batch_size = cfg.batch_size or defaults.batch_size
    weight_decay = defaults.weight_decay if cfg.weight_decay is None else cfg.weight_decay
    epochs = cfg.epochs or defaults.epochs
    steps_per_epoch = math.ceil(len(pairs) / batch_size)
    cap = cfg.max_steps.get(net) if isinstance(cfg.max_steps, dict) else cfg.max_steps
    total = epochs * steps_per_epoch if cap is None else min(cap, epochs * steps_per_epoch)
    loop = LoopConfig(max_steps=total, batch_size=batch_size, lr=defaults.lr, weight_decay=weight_decay,
                      checkpoint_every=cfg.checkpoint_every, num_workers=cfg.num_workers,
                      device="cpu" if device.type == "cpu" else "auto")
    run = train(DetectorTask(model, pre, epochs, steps_per_epoch), SaliencyPairs(pairs, pre), loop, out, seed=seed,
                resume=resume, desc=f"train {net}")
    if is_main_process():  # under accelerate launch every process trained the same weights; one writes them
        with atomic_path(weights) as tmp:
            torch.save({"net": net, "model": model.state_dict(), "preprocess": asdict(pre)}, tmp)
        write_json(out / "summary.json", {
            "net": net, "steps": run["step"], "epochs_planned": epochs, "steps_per_epoch": steps_per_epoch,
            "train_pairs": len(pairs), "batch_size": batch_size, "optimizer": defaults.optimizer, "lr": defaults.lr,
            "weight_decay": weight_decay, "schedule": defaults.schedule, "preprocess": asdict(pre),
            "backbone": backbone.describe() if backbone else "none: trained from scratch (no ImageNet weights given)",
            "backbone_sha256": backbone.sha256 if backbone else None,
            "parameters": sum(p.numel() for p in model.parameters()), "device": run["device"], "seed": seed,
            SUMMARY_KEY: run[SUMMARY_KEY],
        })
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)  # the optimiser state is large (3x the weights for Adam)
    wait_for_everyone()
    return weights


def backbone_file(net: str, value: str | None, download: bool = False):
    """The `BackboneFile` that `value` (a torchvision weights name or a path; None = from scratch) names for `net`."""
    if value is None:
        return None
    arch = backbone_arch(net)
    if arch is None:
        raise DefFillerError(f"{net} has no pretrained backbone; remove its entry from detect.backbone_weights")
    return torchvision_file(arch, str(value), download)
