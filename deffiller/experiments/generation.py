"""Notebooks 04 and 05: DefFiller under the paper's training strategies (Table 1, Fig. 4) and the guidance sweep
(Table 2, Fig. 5). Every FID table ends with the `real` floor row; Table 1 also writes `fid_seeds.csv`, the main
model's FID under a second sampling seed, the spread the report judges differences against."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from deffiller.config import Profile
from deffiller.data.layout import MASK_DIRS
from deffiller.experiments.common import (NOTE, ExperimentsConfig, eval_set, example_names, example_rows, fid_frame,
                                          fid_row, floor_row, mask_row, training_seconds)
from deffiller.experiments.data import start
from deffiller.experiments.launch import data_args, launch, requested_processes
from deffiller.pipelines.deffiller import SampleConfig
from deffiller.pipelines.generate import generate_from_masks
from deffiller.reporting.figures import image_grid
from deffiller.reporting.outputs import Outputs
from deffiller.reporting.paper import paper_table
from deffiller.training.deffiller import train_deffiller
from deffiller.training.loop import SUMMARY

NO_ADAPTATION = "no adaptation"  # Table 1's first row: the prior sampled as loaded


def model_run(profile: Profile, init: str, adapted: bool = True, root: Path | None = None) -> Path:
    """The run folder under `root` (default: the profile's outputs) of DefFiller trained from `init` (`adapted`), or of
    the `init` prior saved untrained."""
    return Path(root or profile.path("outputs")) / (f"deffiller_{init}" if adapted else f"deffiller_{init}_no_adaptation")


def generated(profile: Profile, name: str, root: Path | None = None) -> Path:
    return Path(root or profile.path("outputs")) / "generated" / name


def train(profile: Profile, source, init: str, adapted: bool = True, root: Path | None = None,
          train_split: Path | None = None) -> dict:
    """Train (or finish, or reuse) DefFiller from `init` on all pairs of the dataset, as the official code does, or on
    the train rows of the manifest `train_split` only; the run lives under `root` (default: the profile's outputs).
    Not `adapted`: zero training steps, the prior as loaded (with its new mask encoder) saved as a pipeline."""
    out = model_run(profile, init, adapted, root)
    if adapted and requested_processes() > 1:
        launch(profile, ["train", "--init", init, "--out", str(out), *data_args(source.root, train_split), "--resume"])
        return json.loads((out / SUMMARY).read_text())
    return train_deffiller(profile, init, out, data=source.root, train_manifest=train_split, resume=True,
                           progress=False, overrides=None if adapted else {"max_steps": 0})


def generate(profile: Profile, init: str, masks: Path, name: str, guidance: float | None = None,
             adapted: bool = True, seed: int | None = None, root: Path | None = None) -> Path:
    """The images of the model trained from `init` under `root` for `masks`, into `<root>/generated/<name>`."""
    cfg = profile.section(SampleConfig)
    out = generated(profile, name, root)
    if requested_processes() > 1:
        launch(profile, ["generate", "--model", str(model_run(profile, init, adapted, root)), "--masks", str(masks),
                         "--out", str(out), "--guidance", str(cfg.guidance if guidance is None else guidance),
                         "--seed", str(profile.seed if seed is None else seed)])
        return out
    generate_from_masks(model_run(profile, init, adapted, root), masks, out,
                        guidance=cfg.guidance if guidance is None else guidance, steps=cfg.steps,
                        seed=profile.seed if seed is None else seed, scheduler=cfg.scheduler,
                        batch_size=cfg.batch_size, source_size=profile.data.source_size, device=cfg.device,
                        progress=False, speed=cfg)
    return out


def table1_rows(cfg: ExperimentsConfig) -> list[tuple[str, str, bool]]:
    """(row label, init, adapted) of Table 1: the paper's "no adaptation" row first (the `no_adaptation` prior
    sampled as loaded), then one model adapted from each of `inits`."""
    first = [(NO_ADAPTATION, cfg.no_adaptation, False)] if cfg.no_adaptation else []
    return first + [(init, init, True) for init in cfg.inits]


def table1_note(label: str, init: str, steps: int) -> str:
    """What a Table 1 row is; a row the paper's Table 1 does not have is marked "beyond the paper"."""
    what = f"{init} prior as loaded, {steps} training steps" if label == NO_ADAPTATION else f"{init} init, {steps} training steps"
    return what if label in set(paper_table("table1")["strategy"]) else f"{what}; beyond the paper"


def training_strategies(profile: Profile) -> Outputs:
    """Table 1, `fid_seeds.csv` and Fig. 4."""
    source, outputs = start(profile, "04_training_strategies")
    cfg = profile.section(ExperimentsConfig)
    real = eval_set(profile, source)
    size = profile.data.source_size
    rows, sets = [], {}
    for label, init, adapted in table1_rows(cfg):
        summary = train(profile, source, init, adapted)
        outputs.extra.setdefault("training", {})[label] = {
            "init": init, "steps": summary.get("step"), "final_loss": summary.get("final_loss"),
            "seconds": training_seconds(model_run(profile, init, adapted))}
        name = f"deffiller_{init}_gt" if adapted else f"deffiller_{init}_no_adaptation_gt"
        sets[label] = generate(profile, init, real / MASK_DIRS[0], name, adapted=adapted)
        rows.append({**fid_row(profile, real, sets[label], strategy=label),
                     NOTE: table1_note(label, init, summary.get("step"))})
    rows.append(floor_row(profile, source, "strategy", outputs))
    outputs.table("table1", fid_frame(rows, profile.data.classes), "FID of generated images under the training "
                  "strategies; `real`: the floor, two disjoint sets of real images")
    outputs.table("fid_seeds", seed_spread(profile, real, rows), f"The main model ({cfg.main_init} init, guidance "
                  f"{profile.section(SampleConfig).guidance:g}) under two sampling seeds: the spread of its FID")
    names = example_names(real, profile.data.classes, cfg.figure_per_class)
    grid = {"mask": mask_row(real, names, size), "real": example_rows({"real": real}, names, size)["real"],
            **example_rows(sets, names, size)}
    outputs.figure("fig4", image_grid(grid, names))
    outputs.finish()
    return outputs


def seed_spread(profile: Profile, real: Path, rows: list[dict]) -> pd.DataFrame:
    """FID (per class, AVG, KID, mask S) of the main model from the eval masks under the profile's seed (its Table 1
    row) and under seed + 1."""
    cfg = profile.section(ExperimentsConfig)
    main = next((row for row in rows if row["strategy"] == cfg.main_init), None)
    if main is None:
        main = fid_row(profile, real, generate(profile, cfg.main_init, real / MASK_DIRS[0], f"deffiller_{cfg.main_init}_gt"))
    other = generate(profile, cfg.main_init, real / MASK_DIRS[0], f"deffiller_{cfg.main_init}_gt_seed{profile.seed + 1}",
                     seed=profile.seed + 1)
    seeds = [{**main, "seed": profile.seed}, fid_row(profile, real, other, seed=profile.seed + 1)]
    return fid_frame([{k: v for k, v in row.items() if k not in ("strategy", NOTE)} for row in seeds],
                     profile.data.classes)


def guidance_sweep(profile: Profile, init: str | None = None) -> Outputs:
    """Table 2 and Fig. 5 with the model of notebook 04 trained from `init` (default: `experiments.main_init`, GLIGEN
    in the paper)."""
    source, outputs = start(profile, "05_guidance")
    cfg = profile.section(ExperimentsConfig)
    init = init or cfg.main_init
    real = eval_set(profile, source)
    size = profile.data.source_size
    train(profile, source, init)  # reuses notebook 04's run
    rows, sets = [], {}
    default = profile.section(SampleConfig).guidance
    for guidance in cfg.guidances:  # the profile's own scale is notebook 04's set, not made twice
        name = f"deffiller_{init}_gt" if guidance == default else f"deffiller_{init}_gt_w{guidance:g}"
        sets[f"w={guidance:g}"] = generate(profile, init, real / MASK_DIRS[0], name, guidance)
        rows.append(fid_row(profile, real, sets[f"w={guidance:g}"], guidance=guidance))
    rows.append(floor_row(profile, source, "guidance", outputs))
    outputs.table("table2", fid_frame(rows, profile.data.classes), f"FID under guidance scales (model: {init} init); "
                  "`real`: the floor, two disjoint sets of real images")
    names = example_names(real, profile.data.classes, cfg.figure_per_class)
    grid = {"mask": mask_row(real, names, size), "real": example_rows({"real": real}, names, size)["real"],
            **example_rows(sets, names, size)}
    outputs.figure("fig5", image_grid(grid, names))
    outputs.extra["init"] = init
    outputs.finish()
    return outputs


def run_summary(profile: Profile, init: str) -> dict:
    return json.loads((model_run(profile, init) / SUMMARY).read_text())
