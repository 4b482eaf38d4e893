"""Notebook 06: the baselines. AdaBLDM (one ControlNet per class on the SD-like/SD-1.4 base) generates from the
dataset's masks and from the DDPM's new masks; DFMGAN (one model per class) draws its own mask/image pairs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from deffiller.baselines.adabldm import generate_adabldm, train_adabldm
from deffiller.baselines.dfmgan.generate import generate_dfmgan
from deffiller.baselines.dfmgan.train import train_dfmgan
from deffiller.config import Profile
from deffiller.data.layout import MASK_DIRS
from deffiller.experiments.common import ExperimentsConfig, eval_set, training_seconds
from deffiller.experiments.data import start
from deffiller.experiments.launch import data_args, launch, requested_processes
from deffiller.experiments.masks import generated_masks_dir
from deffiller.experiments.priors import prior_paths
from deffiller.reporting.outputs import Outputs


def run_dir(profile: Profile, method: str, root: Path | None = None):
    return Path(root or profile.path("outputs")) / method


def generated(profile: Profile, name: str, root: Path | None = None):
    return Path(root or profile.path("outputs")) / "generated" / name


def adabldm(profile: Profile, data, root: Path | None = None, train_split: Path | None = None) -> Path:
    """Train (or reuse) AdaBLDM on `data` (only the train rows of the manifest `train_split` when given) from the
    profile's SD prior under `root` (default: the profile's outputs); returns the run folder."""
    folder, base = run_dir(profile, "adabldm", root), prior_paths(profile)[0]
    if requested_processes() > 1:
        launch(profile, ["baseline", "adabldm", "train", *data_args(data, train_split), "--base", str(base), "--out",
                         str(folder), "--resume"])
    else:
        train_adabldm(profile, data=data, train_manifest=train_split, base=base, out_dir=folder, resume=True,
                      progress=False)
    return folder


def adabldm_images(profile: Profile, masks: Path, name: str, root: Path | None = None) -> Path:
    """AdaBLDM's images for the masks in `masks` into `<root>/generated/<name>`, from its models under `root`."""
    folder, out = run_dir(profile, "adabldm", root), generated(profile, name, root)
    if requested_processes() > 1:
        launch(None, ["baseline", "adabldm", "generate", "--model", str(folder), "--masks", str(masks), "--out",
                      str(out), "--seed", str(profile.seed)])
    else:
        generate_adabldm(folder, masks, out, seed=profile.seed, progress=False)
    return out


def adabldm_new(profile: Profile, root: Path | None = None) -> Path:
    """AdaBLDM's images (`adabldm_new`) for the mask DDPM's new masks, both under `root`."""
    return adabldm_images(profile, generated_masks_dir(profile, root) / MASK_DIRS[0], "adabldm_new", root)


def dfmgan(profile: Profile, data, root: Path | None = None, train_split: Path | None = None) -> Path:
    """Train (or reuse) DFMGAN on `data` (only the train rows of the manifest `train_split` when given) under `root`
    (default: the profile's outputs), and draw `dfmgan_new`, its own pairs; returns the run folder."""
    folder, out = run_dir(profile, "dfmgan", root), generated(profile, "dfmgan_new", root)
    per_class = profile.section(ExperimentsConfig).eval_per_class
    if requested_processes() > 1:
        launch(profile, ["baseline", "dfmgan", "train", *data_args(data, train_split), "--out", str(folder), "--resume"])
        launch(None, ["baseline", "dfmgan", "generate", "--model", str(folder), "--per-class", str(per_class), "--out",
                      str(out), "--seed", str(profile.seed)])
    else:
        train_dfmgan(profile, data=data, train_manifest=train_split, out_dir=folder, resume=True, progress=False)
        generate_dfmgan(folder, per_class, out, seed=profile.seed, progress=False)
    return folder


def run(profile: Profile) -> Outputs:
    source, outputs = start(profile, "06_baselines")
    real = eval_set(profile, source)
    sd_path, _ = prior_paths(profile)
    rows = []

    folder = adabldm(profile, source.root)
    adabldm_new(profile)
    adabldm_images(profile, real / MASK_DIRS[0], "adabldm_gt")
    rows.append({"method": "AdaBLDM", "models": "one ControlNet per class", "base": str(sd_path),
                 "train seconds": training_seconds_tree(folder)})

    folder = dfmgan(profile, source.root)
    rows.append({"method": "DFMGAN", "models": "stage 1 + one stage-2 model per class", "base": "-",
                 "train seconds": training_seconds_tree(folder)})
    outputs.table("baselines", pd.DataFrame(rows), "Baselines trained by this run")
    outputs.extra["adabldm_base"] = str(sd_path)
    outputs.finish()
    return outputs


def training_seconds_tree(folder) -> float:
    """Wall seconds of a baseline's whole training: the sum over the runs under its folder (DFMGAN: stage 1 and stage 2
    of every class; AdaBLDM: every class), each from its run summary; NaN when there is no run, or a run (a folder with
    a metrics log) has no summary or recorded no time."""
    from deffiller.training.loop import METRICS, SUMMARY

    runs = {path.parent for name in (METRICS, SUMMARY) for path in Path(folder).rglob(name)}
    return sum(training_seconds(run) for run in sorted(runs)) if runs else float("nan")
