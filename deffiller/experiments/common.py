"""Settings and helpers shared by the experiment notebooks: the evaluation subset, FID rows, image grids."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from deffiller.config import Profile
from deffiller.data.layout import IMAGE_DIRS, MASK_DIRS, load_pairs
from deffiller.data.source import DatasetSource
from deffiller.evaluation.fid import fid_table
from deffiller.utils.io import read_image, recover_folder, staged_folder


@dataclass
class ExperimentsConfig:
    SECTION: ClassVar[str] = "experiments"
    eval_per_class: int = 300  # masks per class conditioning the generators for FID (the paper: all 300)
    inits: tuple[str, ...] = ("scratch", "sd", "gligen")  # Table 1 rows
    guidances: tuple[float, ...] = (1.0, 3.0, 5.0, 7.0)  # Table 2 rows
    figure_per_class: int = 2  # examples per class in the qualitative figures


def eval_set(profile: Profile, source: DatasetSource) -> Path:
    """The first `eval_per_class` real pairs of each class, copied once into outputs/<profile>/eval_set (dataset layout)."""
    cfg = profile.section(ExperimentsConfig)
    folder = profile.path("outputs") / "eval_set"
    if not (recover_folder(folder) / MASK_DIRS[0]).is_dir():
        with staged_folder(folder) as staging:
            for pair in load_pairs(source.root, per_class=cfg.eval_per_class):
                for src, sub in ((pair.image, IMAGE_DIRS[0]), (pair.mask, MASK_DIRS[0])):
                    (staging / sub).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, staging / sub / src.name)
    return folder


def fid_row(profile: Profile, real_set: Path, fake_set: Path, **key) -> dict:
    """`key` plus the per-class FID and AVG of `fake_set/Source Images` against `real_set/Source Images`."""
    table = fid_table(real_set / IMAGE_DIRS[0], Path(fake_set) / IMAGE_DIRS[0], profile=profile)
    return {**key, **dict(zip(table["class"], table["fid"]))}


def fid_frame(rows: list[dict], classes) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    ordered = [c for c in frame.columns if c not in (*classes, "AVG")] + [*classes, "AVG"]
    return frame[[c for c in ordered if c in frame.columns]]


def example_rows(sets: dict[str, Path], names: list[str]) -> dict[str, list[np.ndarray]]:
    """One row per set (mask first, then images), same file names in every set."""
    rows = {}
    for label, folder in sets.items():
        rows[label] = [read_image(Path(folder) / IMAGE_DIRS[0] / f"{n}.bmp") for n in names]
    return rows


def example_names(folder: Path, classes, per_class: int) -> list[str]:
    prefixes = {"inclusion": "In", "patches": "Pa", "scratches": "Sc"}
    stems = sorted(p.stem for p in (folder / MASK_DIRS[0]).iterdir())
    return [s for label in classes for s in [x for x in stems if x.startswith(prefixes[label] + "_")][:per_class]]


def training_seconds(run_dir: Path) -> float:
    """Wall seconds of a run's whole training, summed over its resumes, from its `run_summary.json` (every trainer
    writes one; DefFiller and the mask DDPM beside their checkpoints, DFMGAN and AdaBLDM per stage and class). NaN when
    the run has no summary or recorded no time (runs from before the time was recorded)."""
    import json

    from deffiller.training.loop import SUMMARY
    from deffiller.utils.clock import summary_seconds

    path = Path(run_dir) / SUMMARY
    return summary_seconds(json.loads(path.read_text())) if path.is_file() else float("nan")
