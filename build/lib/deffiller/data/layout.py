"""The SD-Saliency-900 folder layout, and pairing of images with masks by name.

Published layout: `SD-saliency-900/Source Images/In_1.bmp` + `SD-saliency-900/Ground truth/In_1.png`.
The official DefFiller code renames the folders `Source_Images` / `Ground_truth`; both are read.
Images and masks are paired by file stem, never by sort order (the official code pairs two separately
sorted lists by index, which silently mis-pairs as soon as one file is missing).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deffiller.errors import DefFillerError
from deffiller.utils.io import IMAGE_SUFFIXES

DATASET_DIR = "SD-saliency-900"
IMAGE_DIRS = ("Source Images", "Source_Images", "images", "Image")
MASK_DIRS = ("Ground truth", "Ground_truth", "masks", "Mask")
CLASS_PREFIXES = {"In": "inclusion", "Pa": "patches", "Sc": "scratches"}
NAME_PATTERN = re.compile(r"^(?P<prefix>[A-Za-z]+)_(?P<index>\d+)$")


@dataclass(frozen=True)
class Pair:
    name: str  # file stem shared by image and mask, e.g. "In_12"
    image: Path
    mask: Path
    label: str  # class name, e.g. "inclusion"
    index: int  # n in <prefix>_<n>


def class_of(name: str, prefixes: dict[str, str] = CLASS_PREFIXES) -> str:
    """Class name from a file stem `<prefix>_<n>`; DefFillerError for an unknown prefix."""
    match = NAME_PATTERN.match(Path(name).stem)
    if not match or match["prefix"] not in prefixes:
        known = ", ".join(f"{p}_<n> ({c})" for p, c in prefixes.items())
        raise DefFillerError(f"{name}: unknown class prefix; names must look like {known}")
    return prefixes[match["prefix"]]


def index_of(name: str) -> int:
    match = NAME_PATTERN.match(Path(name).stem)
    return int(match["index"]) if match else -1


def _first_existing(root: Path, names) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def find_dataset(root) -> tuple[Path, Path]:
    """(image_dir, mask_dir) of a dataset folder, given the folder itself or its parent."""
    root = Path(root)
    for candidate in (root, root / DATASET_DIR):
        images, masks = _first_existing(candidate, IMAGE_DIRS), _first_existing(candidate, MASK_DIRS)
        if images and masks:
            return images, masks
    raise DefFillerError(
        f"{root}: no dataset found; expected '{IMAGE_DIRS[0]}/' and '{MASK_DIRS[0]}/' (or "
        f"'{IMAGE_DIRS[1]}/', '{MASK_DIRS[1]}/') in it or in {root / DATASET_DIR}. "
        "Get SD-Saliency-900 with `deffiller data download --out data/` or synthesise one with `deffiller data synth`."
    )


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in files:
                raise DefFillerError(f"{path}: duplicate name, {files[path.stem].name} has the same stem; keep one")
            files[path.stem] = path
    return files


def scan(root, prefixes: dict[str, str] = CLASS_PREFIXES):
    """Pairs plus the problems found: (pairs, [(path, reason), ...]). Used by `load_pairs` and `data check`."""
    image_dir, mask_dir = find_dataset(root)
    images, masks = _by_stem(image_dir), _by_stem(mask_dir)
    pairs, problems = [], []
    for stem in sorted(set(images) | set(masks), key=lambda s: (s.split("_")[0], index_of(s), s)):
        if stem not in masks:
            problems.append((images[stem], f"image without mask: expected {mask_dir / (stem + '.png')}"))
            continue
        if stem not in images:
            problems.append((masks[stem], f"mask without image: expected {image_dir / (stem + '.bmp')}"))
            continue
        try:
            label = class_of(stem, prefixes)
        except DefFillerError as exc:
            problems.append((images[stem], str(exc).split(": ", 1)[1]))
            continue
        pairs.append(Pair(stem, images[stem], masks[stem], label, index_of(stem)))
    return pairs, problems


def load_pairs(root, prefixes: dict[str, str] = CLASS_PREFIXES, per_class: int | None = None) -> list[Pair]:
    """All mask/image pairs of a dataset folder, sorted by class then index.

    Unpaired files or unknown prefixes are errors (run `deffiller data check` for the full list).
    `per_class` keeps the first N pairs of each class (small profiles).
    """
    pairs, problems = scan(root, prefixes)
    if problems:
        listed = "\n".join(f"  {path}: {reason}" for path, reason in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DefFillerError(f"{root}: {len(problems)} problem(s):\n{listed}{more}\nRun `deffiller data check {root}`.")
    if not pairs:
        raise DefFillerError(f"{root}: no image/mask pairs found")
    return pairs if per_class is None else first_per_class(pairs, per_class)


def first_per_class(pairs: list[Pair], n: int) -> list[Pair]:
    """The first `n` pairs of each class, in their order."""
    counts: dict[str, int] = {}
    kept = []
    for pair in pairs:
        counts[pair.label] = counts.get(pair.label, 0) + 1
        if counts[pair.label] <= n:
            kept.append(pair)
    return kept
