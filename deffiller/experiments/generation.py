"""Notebooks 04 and 05: DefFiller under the three initialisations (Table 1, Fig. 4) and the guidance sweep (Table 2, Fig. 5)."""
from __future__ import annotations

import json
from pathlib import Path

from deffiller.config import Profile
from deffiller.data.layout import MASK_DIRS
from deffiller.experiments.common import (ExperimentsConfig, eval_set, example_names, example_rows, fid_frame, fid_row,
                                          training_seconds)
from deffiller.experiments.data import start
from deffiller.pipelines.deffiller import SampleConfig
from deffiller.pipelines.generate import generate_from_masks
from deffiller.reporting.figures import image_grid
from deffiller.reporting.outputs import Outputs
from deffiller.training.deffiller import train_deffiller
from deffiller.utils.io import read_image


def model_run(profile: Profile, init: str, root: Path | None = None) -> Path:
    """DefFiller's run folder under `root` (default: the profile's outputs)."""
    return Path(root or profile.path("outputs")) / f"deffiller_{init}"


def generated(profile: Profile, name: str, root: Path | None = None) -> Path:
    return Path(root or profile.path("outputs")) / "generated" / name


def train(profile: Profile, source, init: str, root: Path | None = None, train_split: Path | None = None) -> dict:
    """Train (or finish, or reuse) DefFiller from `init` on all pairs of the dataset, as the official code does, or on
    the train rows of the manifest `train_split` only; the run lives under `root` (default: the profile's outputs)."""
    return train_deffiller(profile, init, model_run(profile, init, root), data=source.root, train_manifest=train_split,
                           resume=True, progress=False)


def generate(profile: Profile, init: str, masks: Path, name: str, guidance: float | None = None,
             root: Path | None = None) -> Path:
    """The images of the model trained from `init` under `root` for `masks`, into `<root>/generated/<name>`."""
    cfg = profile.section(SampleConfig)
    out = generated(profile, name, root)
    generate_from_masks(model_run(profile, init, root), masks, out,
                        guidance=cfg.guidance if guidance is None else guidance, steps=cfg.steps, seed=profile.seed,
                        scheduler=cfg.scheduler, batch_size=cfg.batch_size, source_size=profile.data.source_size,
                        device=cfg.device, progress=False, speed=cfg)
    return out


def _mask_row(real: Path, names: list[str]) -> list:
    return [read_image(real / MASK_DIRS[0] / f"{n}.png") for n in names]


def training_strategies(profile: Profile) -> Outputs:
    """Table 1 and Fig. 4."""
    source, outputs = start(profile, "04_training_strategies")
    cfg = profile.section(ExperimentsConfig)
    real = eval_set(profile, source)
    rows, sets = [], {}
    for init in cfg.inits:
        summary = train(profile, source, init)
        outputs.extra.setdefault("training", {})[init] = {"steps": summary.get("step"), "final_loss": summary.get("final_loss"),
                                                          "seconds": training_seconds(model_run(profile, init))}
        sets[init] = generate(profile, init, real / MASK_DIRS[0], f"deffiller_{init}_gt")
        rows.append(fid_row(profile, real, sets[init], strategy=init))
    outputs.table("table1", fid_frame(rows, profile.data.classes), "FID of generated images under the training strategies")
    names = example_names(real, profile.data.classes, cfg.figure_per_class)
    grid = {"mask": _mask_row(real, names), "real": example_rows({"real": real}, names)["real"], **example_rows(sets, names)}
    outputs.figure("fig4", image_grid(grid, names))
    outputs.finish()
    return outputs


def guidance_sweep(profile: Profile, init: str | None = None) -> Outputs:
    """Table 2 and Fig. 5 with the model of notebook 04 trained from `init` (default: the last of `experiments.inits`,
    GLIGEN in the paper)."""
    source, outputs = start(profile, "05_guidance")
    cfg = profile.section(ExperimentsConfig)
    init = init or cfg.inits[-1]
    real = eval_set(profile, source)
    train(profile, source, init)  # reuses notebook 04's run
    rows, sets = [], {}
    for guidance in cfg.guidances:
        sets[f"w={guidance:g}"] = generate(profile, init, real / MASK_DIRS[0], f"deffiller_{init}_gt_w{guidance:g}", guidance)
        rows.append(fid_row(profile, real, sets[f"w={guidance:g}"], guidance=guidance))
    outputs.table("table2", fid_frame(rows, profile.data.classes), f"FID under guidance scales (model: {init} init)")
    names = example_names(real, profile.data.classes, cfg.figure_per_class)
    outputs.figure("fig5", image_grid({"mask": _mask_row(real, names), **example_rows(sets, names)}, names))
    outputs.extra["init"] = init
    outputs.finish()
    return outputs


def run_summary(profile: Profile, init: str) -> dict:
    return json.loads((model_run(profile, init) / "run_summary.json").read_text())
