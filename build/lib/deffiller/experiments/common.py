"""Settings and helpers shared by the experiment notebooks: the evaluation subset and its real-data floor, FID rows
(FID per class, AVG, KID, mask adherence), image grids."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import pandas as pd
from PIL import Image

from deffiller.config import Profile
from deffiller.data.dataset import center_crop_resize
from deffiller.data.layout import IMAGE_DIRS, MASK_DIRS, Pair, load_pairs
from deffiller.data.source import DatasetSource
from deffiller.errors import DefFillerError
from deffiller.evaluation.fid import fid_table, profile_cache_dir
from deffiller.evaluation.mask_adherence import JudgeConfig, judge_note, mask_adherence
from deffiller.utils.io import read_image, recover_folder, save_image, staged_folder

REAL = "real"  # the key of the floor row of every FID table
KID, MASK_S, NOTE = "KID AVG", "mask S", "note"


@dataclass
class ExperimentsConfig:
    SECTION: ClassVar[str] = "experiments"
    eval_per_class: int = 300  # masks per class conditioning the generators for FID (the paper: all 300)
    floor_per_class: int | None = None  # real images per class on each side of the `real` floor rows; None = eval_per_class
    inits: tuple[str, ...] = ("sd", "gligen", "scratch")  # Table 1's adapted rows, one DefFiller trained from each
    no_adaptation: str | None = "gligen"  # Table 1's "no adaptation" row: this prior sampled as loaded; None = no row
    main_init: str = "gligen"  # the model of notebooks 05-09 (the paper: GLIGEN-sem init, adapted)
    guidances: tuple[float, ...] = (1.0, 3.0, 5.0, 7.0)  # Table 2 rows
    figure_per_class: int = 2  # examples per class in the qualitative figures
    judge: JudgeConfig = field(default_factory=JudgeConfig)  # the detector scoring mask adherence (`mask S`)


def _copy_pairs(pairs: list[Pair], folder: Path, settings: dict,
                image: Callable[[Path], np.ndarray] | None = None) -> Path:
    """`pairs` copied once into `folder` (dataset layout, staged, then put in place by `staged_folder`), each image
    through `image` when given; a folder written under other `settings` is rebuilt."""
    record = recover_folder(folder) / "settings.json"
    if (folder / MASK_DIRS[0]).is_dir() and (not record.is_file() or json.loads(record.read_text()) == settings):
        return folder
    with staged_folder(folder) as staging:
        for sub in (IMAGE_DIRS[0], MASK_DIRS[0]):
            (staging / sub).mkdir(parents=True)
        for pair in pairs:
            shutil.copy2(pair.mask, staging / MASK_DIRS[0] / pair.mask.name)
            if image is None:
                shutil.copy2(pair.image, staging / IMAGE_DIRS[0] / pair.image.name)
            else:
                save_image(staging / IMAGE_DIRS[0] / pair.image.name, image(pair.image))
        (staging / "settings.json").write_text(json.dumps(settings))
    return folder


def eval_set(profile: Profile, source: DatasetSource) -> Path:
    """The first `eval_per_class` real pairs of each class, copied once into outputs/<profile>/eval_set (dataset layout)."""
    cfg = profile.section(ExperimentsConfig)
    return _copy_pairs(load_pairs(source.root, per_class=cfg.eval_per_class), profile.path("outputs") / "eval_set",
                       {"root": str(source.root), "per_class": cfg.eval_per_class})


def through_resolution(path: Path, image_size: int, source_size: int) -> np.ndarray:
    """A real image down the path a generated one takes: to the generator's size as its training images are
    (centre crop, bicubic), then gray and bicubic to the dataset's size as the generated images are written."""
    small = center_crop_resize(Image.open(path).convert("RGB"), image_size, Image.BICUBIC)
    return np.asarray(small.convert("L").resize((source_size, source_size), Image.BICUBIC))


def floor_sets(profile: Profile, source: DatasetSource) -> tuple[Path, Path]:
    """(reference, floor) of the `real` rows: the first `floor_per_class` real pairs of each class (the eval set when
    that is `eval_per_class`) and the next `floor_per_class`, disjoint, their images through the profile's resolution
    path (`through_resolution`), copied once into outputs/<profile>/floor_set."""
    cfg = profile.section(ExperimentsConfig)
    count = cfg.floor_per_class or cfg.eval_per_class
    pairs = load_pairs(source.root, per_class=profile.data.per_class)
    by_class = {label: [p for p in pairs if p.label == label] for label in dict.fromkeys(p.label for p in pairs)}
    short = {label: len(found) for label, found in by_class.items() if len(found) < 2 * count}
    if short:
        raise DefFillerError(f"{source.root}: the `real` floor rows need 2 x {count} pairs per class (two disjoint sets), "
                             f"but {short} have fewer; set experiments.floor_per_class to at most "
                             f"{min(short.values()) // 2} (or lower experiments.eval_per_class)")
    settings = {"root": str(source.root), "per_class": count, "image_size": profile.data.image_size,
                "source_size": profile.data.source_size}
    floor = _copy_pairs([p for found in by_class.values() for p in found[count:2 * count]],
                        profile.path("outputs") / "floor_set", settings,
                        lambda path: through_resolution(path, profile.data.image_size, profile.data.source_size))
    if count == cfg.eval_per_class:
        return eval_set(profile, source), floor
    reference = _copy_pairs([p for found in by_class.values() for p in found[:count]],
                            profile.path("outputs") / "floor_reference", {"root": str(source.root), "per_class": count})
    return reference, floor


def mask_s(profile: Profile, folder: Path) -> float:
    """The judge's S-measure of a dataset-layout folder's images against their masks (`mask S`; NaN when skipped)."""
    return mask_adherence(folder, profile.section(ExperimentsConfig).judge, profile_cache_dir(profile) / "mask_adherence")


def fid_row(profile: Profile, real_set: Path, fake_set: Path, **key) -> dict:
    """`key` plus the per-class FID and AVG of `fake_set/Source Images` against `real_set/Source Images`, the AVG of
    the per-class KID and the mask adherence of `fake_set` (its images against its own masks)."""
    table = fid_table(real_set / IMAGE_DIRS[0], Path(fake_set) / IMAGE_DIRS[0], profile=profile)
    return {**key, **dict(zip(table["class"], table["fid"])), KID: float(table["kid_mean"].iloc[-1]),
            MASK_S: mask_s(profile, Path(fake_set))}


def floor_row(profile: Profile, source: DatasetSource, key: str, outputs=None) -> dict:
    """The `real` row of an FID table: the floor set against the reference set, both real, at equal counts. With
    `outputs`, its provenance records what the table's `mask S` column measures (the report prints it)."""
    if outputs is not None:
        outputs.extra["mask_adherence"] = judge_note(profile.section(ExperimentsConfig).judge)
    reference, floor = floor_sets(profile, source)
    cfg = profile.section(ExperimentsConfig)
    count = cfg.floor_per_class or cfg.eval_per_class
    note = (f"two disjoint sets of real images, {count} per class; one through {profile.data.image_size} px and back "
            "as generated images are")
    return {**fid_row(profile, reference, floor, **{key: REAL}), NOTE: note}


def fid_frame(rows: list[dict], classes) -> pd.DataFrame:
    """The rows in the tables' column order: key columns, classes, AVG, KID AVG, mask S, note."""
    frame = pd.DataFrame(rows)
    tail = [*classes, "AVG", KID, MASK_S, NOTE]
    ordered = [c for c in frame.columns if c not in tail] + tail
    return frame[[c for c in ordered if c in frame.columns]]


def at_size(image: np.ndarray, size: int, mask: bool = False) -> np.ndarray:
    """An image (bicubic) or mask (nearest) resized to `size` x `size`, so every cell of a figure has one scale."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.NEAREST if mask else Image.BICUBIC))


def example_rows(sets: dict[str, Path], names: list[str], size: int) -> dict[str, list[np.ndarray]]:
    """One row per set, the images of the same file names in every set, each at `size` px."""
    rows = {}
    for label, folder in sets.items():
        rows[label] = [at_size(read_image(Path(folder) / IMAGE_DIRS[0] / f"{n}.bmp"), size) for n in names]
    return rows


def mask_row(folder: Path, names: list[str], size: int) -> list[np.ndarray]:
    return [at_size(read_image(Path(folder) / MASK_DIRS[0] / f"{n}.png"), size, mask=True) for n in names]


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
