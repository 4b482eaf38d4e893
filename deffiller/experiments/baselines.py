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
from deffiller.experiments.masks import generated_masks_dir
from deffiller.experiments.priors import prior_paths
from deffiller.reporting.outputs import Outputs


def run_dir(profile: Profile, method: str):
    return profile.path("outputs") / method


def generated(profile: Profile, name: str):
    return profile.path("outputs") / "generated" / name


def run(profile: Profile) -> Outputs:
    source, outputs = start(profile, "06_baselines")
    cfg = profile.section(ExperimentsConfig)
    real = eval_set(profile, source)
    sd_path, _ = prior_paths(profile)
    rows = []

    train_adabldm(profile, data=source.root, base=sd_path, out_dir=run_dir(profile, "adabldm"), resume=True, progress=False)
    generate_adabldm(run_dir(profile, "adabldm"), real / MASK_DIRS[0], generated(profile, "adabldm_gt"), seed=profile.seed,
                     progress=False)
    generate_adabldm(run_dir(profile, "adabldm"), generated_masks_dir(profile) / MASK_DIRS[0],
                     generated(profile, "adabldm_new"), seed=profile.seed, progress=False)
    rows.append({"method": "AdaBLDM", "models": "one ControlNet per class", "base": str(sd_path),
                 "train seconds": training_seconds_tree(run_dir(profile, "adabldm"))})

    train_dfmgan(profile, data=source.root, out_dir=run_dir(profile, "dfmgan"), resume=True, progress=False)
    generate_dfmgan(run_dir(profile, "dfmgan"), cfg.eval_per_class, generated(profile, "dfmgan_new"), seed=profile.seed,
                    progress=False)
    rows.append({"method": "DFMGAN", "models": "stage 1 + one stage-2 model per class", "base": "-",
                 "train seconds": training_seconds_tree(run_dir(profile, "dfmgan"))})
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
