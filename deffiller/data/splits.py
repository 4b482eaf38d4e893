"""Train/test splits as manifests (CSV), so every later step names exactly which files it used.

- standard: 540 train / 360 test, image n of a class is test iff (n-1) mod 100 >= 60 (the split of
  the published CSEPNet/TSERNet maps and the MINet checkpoint);
- substitution (paper 4.3.2): 9:1 train:test, stratified by class, shuffled by seed;
- expansion (paper 4.4.3): 1:5 train:test, stratified by class, shuffled by seed.

Every generator (DefFiller, the mask DDPM, AdaBLDM, DFMGAN) can train on a split's train rows only
(`training_pairs`), so that it never sees the pairs a detector is later tested on.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

from deffiller.data.layout import Pair, index_of, load_pairs
from deffiller.data.source import resolve_dataset
from deffiller.errors import DefFillerError
from deffiller.utils.io import atomic_path

MANIFEST_COLUMNS = ("name", "label", "image", "mask", "split")


def is_standard_test(index: int) -> bool:
    return (index - 1) % 100 >= 60


def standard_split(pairs: list[Pair]) -> dict[str, list[Pair]]:
    return {
        "train": [p for p in pairs if not is_standard_test(p.index)],
        "test": [p for p in pairs if is_standard_test(p.index)],
    }


def ratio_split(pairs: list[Pair], train_parts: int, test_parts: int, seed: int) -> dict[str, list[Pair]]:
    """Per class, shuffle with `seed` and give round(n * train/(train+test)) pairs to train."""
    rng = random.Random(seed)
    split = {"train": [], "test": []}
    for label in sorted({p.label for p in pairs}):
        members = sorted((p for p in pairs if p.label == label), key=lambda p: (p.index, p.name))
        rng.shuffle(members)
        n_train = round(len(members) * train_parts / (train_parts + test_parts))
        split["train"] += sorted(members[:n_train], key=lambda p: (p.index, p.name))
        split["test"] += sorted(members[n_train:], key=lambda p: (p.index, p.name))
    return split


def substitution_split(pairs: list[Pair], seed: int = 0) -> dict[str, list[Pair]]:
    return ratio_split(pairs, 9, 1, seed)


def expansion_split(pairs: list[Pair], seed: int = 0) -> dict[str, list[Pair]]:
    return ratio_split(pairs, 1, 5, seed)


SPLITS = {"standard": standard_split, "substitution": substitution_split, "expansion": expansion_split}


def make_split(pairs: list[Pair], kind: str, seed: int = 0) -> dict[str, list[Pair]]:
    if kind not in SPLITS:
        raise DefFillerError(f"unknown split {kind!r}; choose one of {sorted(SPLITS)}")
    return standard_split(pairs) if kind == "standard" else SPLITS[kind](pairs, seed)


def write_manifest(path, pairs_by_split: dict[str, list[Pair]]) -> Path:
    """One CSV row per pair: name, label, image, mask, split (absolute paths)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(MANIFEST_COLUMNS)
        for split, pairs in pairs_by_split.items():
            for p in pairs:
                writer.writerow((p.name, p.label, p.image.resolve(), p.mask.resolve(), split))
    return path


def split_pairs(path, split: str = "train") -> list[Pair]:
    """The `split` rows of a manifest that has a split column; all rows of one without (a plain list of pairs)."""
    path = Path(path)
    if not path.is_file():
        raise DefFillerError(f"{path}: manifest not found; write one with `deffiller data split`")
    with open(path, newline="", encoding="utf-8") as fh:
        has_splits = "split" in (csv.DictReader(fh).fieldnames or ())
    return read_manifest(path, split if has_splits else None)


def training_pairs(profile, data=None, train_manifest=None) -> tuple[list[Pair], str]:
    """(pairs, description) a generator trains on: the train rows of the manifest `train_manifest` (or `data` when it
    is a .csv), all pairs of the dataset folder `data`, else the profile's dataset (`profile.data.per_class` caps the
    folders, never a manifest)."""
    if train_manifest is None and data is not None and Path(data).suffix.lower() == ".csv":
        data, train_manifest = None, data
    if train_manifest is not None:
        return split_pairs(train_manifest), f"{train_manifest} (train rows)"
    note = ""
    if data is None:
        source = resolve_dataset(profile)
        data, note = source.root, f" [{source.banner}]" if source.synthetic else ""
    return load_pairs(data, per_class=profile.data.per_class), f"{data}{note}"


def read_manifest(path, split: str | None = None) -> list[Pair]:
    """Pairs of a manifest, optionally only those of one split; relative paths resolve against the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise DefFillerError(f"{path}: manifest not found; write one with `deffiller data split`")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"name", "image", "mask", "label"} - set(reader.fieldnames or ())
        if missing:
            raise DefFillerError(f"{path}: manifest lacks column(s) {sorted(missing)}; expected {MANIFEST_COLUMNS}")
        rows = list(reader)
    pairs = []
    for row in rows:
        if split is not None and row.get("split") != split:
            continue
        image, mask = (Path(row[k]) if Path(row[k]).is_absolute() else path.parent / row[k] for k in ("image", "mask"))
        pairs.append(Pair(row["name"], image, mask, row["label"], index_of(row["name"])))
    if not pairs:
        raise DefFillerError(f"{path}: no pairs" + (f" in split {split!r}" if split else ""))
    return pairs
