"""Notebook 02: the mask producer (paper 4.4.1): train the DDPM, draw new masks, Table 6 (with its `real` floor row:
real masks against disjoint real masks through the producer's resolution) and Fig. 8."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deffiller.config import Profile
from deffiller.data.layout import MASK_DIRS
from deffiller.evaluation.fid import fid_table
from deffiller.evaluation.mask_quality import mask_quality, quality_table
from deffiller.experiments.common import KID, NOTE, REAL, ExperimentsConfig, eval_set, floor_sets
from deffiller.experiments.data import start
from deffiller.experiments.launch import data_args, launch, requested_processes
from deffiller.pipelines.mask_sampling import sample_masks, to_binary
from deffiller.reporting.outputs import Outputs
from deffiller.training.mask_ddpm import MaskDDPMConfig, load_mask, mask_run, train_mask_ddpm
from deffiller.utils.io import list_images, recover_folder, save_image, staged_folder


def run_dir(profile: Profile, root: Path | None = None):
    return Path(root or profile.path("outputs")) / "mask_ddpm"


def generated_masks_dir(profile: Profile, root: Path | None = None):
    """Where the new masks land (`Ground truth/` at 200 px, `masks_<image size>/` at DefFiller's size, each one resize
    from the mask generator's); notebooks 06-09 read them (the generators through `masks_<image size>/`)."""
    return Path(root or profile.path("outputs")) / "generated_masks"


def new_masks(profile: Profile, data, root: Path | None = None, train_split: Path | None = None) -> dict:
    """Train (or reuse) the mask DDPM on the masks of `data` (only the train rows of the manifest `train_split` when
    given) under `root` (default: the profile's outputs), and draw the new masks; returns the run summary."""
    cfg = profile.section(MaskDDPMConfig)
    folder, out = run_dir(profile, root), generated_masks_dir(profile, root)
    if requested_processes() > 1:
        launch(profile, ["masks", "train", "--out", str(folder), *data_args(data, train_split), "--resume"])
        launch(profile, ["masks", "sample", "--model", str(folder), "--out", str(out)])
        return mask_run(folder)
    summary = train_mask_ddpm(profile, folder, data=data, train_manifest=train_split, resume=True)
    sample_masks(summary["model"], out, cfg.per_class, seed=profile.seed,
                 steps=cfg.sampling_steps, sampler=cfg.sampler, source_size=profile.data.source_size,
                 image_size=profile.data.image_size, upsample=cfg.upsample, batch_size=cfg.sample_batch_size,
                 device=cfg.device, progress=False)
    return summary


def fid_row(report: dict, classes) -> dict:
    row = {"source": "this run"} | {label: report["classes"][label].get("fid") for label in classes}
    row["AVG"] = sum(row[label] for label in classes) / len(classes)
    row[KID] = sum(report["classes"][label].get("kid_mean") for label in classes) / len(classes)
    return row


def round_trip(path, cfg: MaskDDPMConfig, size: int) -> np.ndarray:
    """A real mask down the path a generated one takes: to the DDPM's resolution as its training masks are, then to
    `size` as `sample_masks` writes them."""
    return to_binary(torch.from_numpy(load_mask(path, cfg.resolution))[None, None], size, cfg.upsample)[0]


def floor_masks(profile: Profile, floor: Path) -> Path:
    """The floor set's masks through the producer's resolution path, written once beside them."""
    cfg = profile.section(MaskDDPMConfig)
    folder = floor / f"masks_r{cfg.resolution}_{cfg.upsample}"
    if not recover_folder(folder).is_dir():
        with staged_folder(folder) as staging:
            for path in list_images(floor / MASK_DIRS[0]):
                save_image(staging / path.name, round_trip(path, cfg, profile.data.source_size))
    return folder


def mask_floor_row(profile: Profile, source) -> dict:
    """Table 6's `real` row: real masks against disjoint real masks through the producer's resolution path."""
    reference, floor = floor_sets(profile, source)
    table = fid_table(reference / MASK_DIRS[0], floor_masks(profile, floor), profile=profile)
    cfg, masks = profile.section(ExperimentsConfig), profile.section(MaskDDPMConfig)
    count = cfg.floor_per_class or cfg.eval_per_class
    return {"source": REAL, **dict(zip(table["class"], table["fid"])), KID: float(table["kid_mean"].iloc[-1]),
            NOTE: f"two disjoint sets of real masks, {count} per class; one through {masks.resolution} px and back "
                  "as generated masks are"}


def run(profile: Profile) -> Outputs:
    source, outputs = start(profile, "02_mask_ddpm")
    cfg = profile.section(MaskDDPMConfig)
    summary = new_masks(profile, source.root)
    real = eval_set(profile, source)  # all 300 masks per class in the paper profile
    report = mask_quality(real, generated_masks_dir(profile), outputs.folder / "mask_quality", profile=profile)
    outputs.table("table6", pd.DataFrame([fid_row(report, profile.data.classes), mask_floor_row(profile, source)]),
                  "FID of masks generated by the DDPM (per class); `real`: the floor, two disjoint sets of real masks")
    outputs.table("mask_quality", quality_table(report), "Generated vs real masks: area, components, memorisation")
    from deffiller.evaluation.mask_quality import masks_figure

    outputs.figure("fig8", masks_figure(real, generated_masks_dir(profile)))
    outputs.extra["mask_ddpm"] = {"steps": summary.get("steps"), "final_loss": summary.get("final_loss"),
                                  "per_class": cfg.per_class, "sampler": cfg.sampler, "sampling_steps": cfg.sampling_steps}
    outputs.finish()
    return outputs
