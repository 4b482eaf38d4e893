"""The paper's two detection protocols, as library functions for the notebooks.

- Data substitution (Table 5): 9:1 split of the real data; each network is trained on the real training
  images ("None"), or on a method's generated images for the same training masks; all are tested on the real
  test split.
- Data expansion (Table 8): 1:5 split; each network is trained on the real training split alone ("None") or
  plus all generated pairs of a method; tested on the real test split.

Optionally (`filter_generated=True`, as the official DefFiller README recommends) generated pairs are kept only
when the network trained on real data ("None") finds their conditioning mask with IoU >= `detect.filter_iou`.
Each (network, method) row is trained `detect.seeds[net]` times (seeds: the profile's, then +1, +2, ...; one run
when the net is not named); the data splits stay those of the profile's seed. Every run lives in
`<out>/<protocol>/<net>/<method>/seed<seed>/` and its scores are cached in `scores.json`, so an interrupted protocol
resumes where it stopped. `seed_table` turns the runs into the tables: mean and sample std over seeds per row.
A run trains with `train_detector` in this process unless the caller passes a `trainer` (the notebooks' launch of
`deffiller detect train` on several processes).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from deffiller.config import Profile
from deffiller.data.layout import Pair, find_dataset, first_per_class, load_pairs
from deffiller.data.splits import expansion_split, substitution_split
from deffiller.detection.metrics import METRICS, SaliencyMetrics, mask_iou_array
from deffiller.detection.predict import load_detector, predict_maps
from deffiller.detection.registry import list_detectors
from deffiller.detection.train import DetectConfig, train_detector
from deffiller.errors import DefFillerError
from deffiller.utils.device import resolve_device
from deffiller.utils.io import list_images, read_image, write_json

BASELINE = "None"  # the method name of real-data-only runs, as in the paper's tables
SHORT_NOTE = "short training"
IDENTICAL_NOTE = "identical: the detector learned nothing"


def score_model(model, pairs: list[Pair], batch_size: int = 8, device: str = "cpu") -> dict[str, float]:
    """Saliency metrics of a model on real pairs, maps at the masks' size."""
    metrics = SaliencyMetrics()
    grays = [read_image(p.image, "L") for p in pairs]
    for pair, pred in zip(pairs, predict_maps(model, grays, batch_size, device)):
        metrics.update(pred, read_image(pair.mask, "L"), pair.name)
    return metrics.compute()


def mask_iou(model, pairs: list[Pair], batch_size: int = 8, device: str = "cpu") -> list[float]:
    """IoU between each pair's mask and the model's map on its image, binarised at 0.5."""
    grays = [read_image(p.image, "L") for p in pairs]
    return [mask_iou_array(read_image(pair.mask, "L"), pred, f"{pair.mask} (image {pair.image})")
            for pair, pred in zip(pairs, predict_maps(model, grays, batch_size, device))]


def filter_pairs(model, pairs: list[Pair], threshold: float, batch_size: int = 8, device: str = "cpu") -> list[Pair]:
    """The generated pairs whose mask the real-data model finds with IoU >= threshold."""
    return [p for p, iou in zip(pairs, mask_iou(model, pairs, batch_size, device)) if iou >= threshold]


def substitute_images(pairs: list[Pair], generated_root) -> list[Pair]:
    """The same masks with a method's generated images (matched by name) in place of the real images."""
    root = Path(generated_root)
    try:
        image_dir = find_dataset(root)[0]
    except DefFillerError:
        image_dir = root
    if not image_dir.is_dir():
        raise DefFillerError(f"{root}: generated image folder not found")
    images = {p.stem: p for p in list_images(image_dir)}
    missing = [p.name for p in pairs if p.name not in images]
    if missing:
        raise DefFillerError(
            f"{image_dir}: no generated image for {len(missing)} training mask(s), e.g. {missing[:5]}; data substitution "
            "needs one generated image per training mask, named like the mask"
        )
    return [Pair(p.name, images[p.name], p.mask, p.label, p.index) for p in pairs]


def _check_named_nets(cfg: DetectConfig) -> None:
    capped = cfg.max_steps if isinstance(cfg.max_steps, dict) else {}
    for key, named in (("seeds", cfg.seeds), ("short_training", cfg.short_training), ("max_steps", capped)):
        unknown = sorted(set(named) - set(list_detectors()))
        if unknown:
            raise DefFillerError(f"detect.{key}: unknown network(s) {unknown}; known: {list_detectors()}")


def run_seeds(cfg: DetectConfig, net: str, seed: int) -> list[int]:
    """The training seeds of each (network, method) row of `net`: `detect.seeds[net]` runs from the profile's seed."""
    count = cfg.seeds.get(net, 1)
    if not isinstance(count, int) or count < 1:
        raise DefFillerError(f"detect.seeds.{net}: {count!r} is not a number of training runs (an integer >= 1)")
    return [seed + i for i in range(count)]


def _run(net, method, seed, train_pairs, test_pairs, out: Path, cfg: DetectConfig, keep_weights: bool,
         extra: dict, trainer=None) -> tuple[dict, Path]:
    """Train (or resume) one run, with `trainer(net, pairs, out, seed) -> weights` when given, and score it on the
    test pairs; cached in `scores.json`."""
    scores_path, weights = out / "scores.json", out / "model.pt"
    if scores_path.exists():
        return json.loads(scores_path.read_text()), weights
    if trainer is None:
        weights = train_detector(net, train_pairs, out, cfg, seed=seed, resume=True)
    else:
        weights = trainer(net, train_pairs, out, seed)
    device = resolve_device(cfg.device)
    scores = score_model(load_detector(net, weights, device), test_pairs, cfg.eval_batch_size, device)
    row = {"network": net, "method": method, "seed": seed, **scores, "n_train": len(train_pairs),
           "n_test": len(test_pairs), **extra}
    write_json(scores_path, row)
    if not keep_weights:
        weights.unlink()
    return row, weights


def _protocol(name, split, make_train, generated: dict, profile: Profile, out, nets, filter_generated,
              keep_weights, trainer) -> pd.DataFrame:
    cfg = profile.section(DetectConfig)
    _check_named_nets(cfg)
    device = resolve_device(cfg.device)
    train, test = split["train"], split["test"]
    rows = []
    for net in nets or cfg.nets:
        for seed in run_seeds(cfg, net, profile.seed):
            folder, run = Path(out) / name / net, f"seed{seed}"
            row, base_weights = _run(net, BASELINE, seed, train, test, folder / BASELINE / run, cfg,
                                     keep_weights or filter_generated, {}, trainer)
            rows.append(row)
            for method, root in generated.items():
                candidates = make_train(train, root)
                extra = {}
                if filter_generated and not (folder / method / run / "scores.json").exists():
                    kept = filter_pairs(load_detector(net, base_weights, device), candidates, cfg.filter_iou,
                                        cfg.eval_batch_size, device)
                    extra = {"n_generated": len(candidates), "n_kept": len(kept)}
                    candidates = kept
                train_pairs = candidates if name == "substitution" else train + candidates
                if not train_pairs:
                    raise DefFillerError(f"{method}: no generated pair passed the IoU >= {cfg.filter_iou} filter "
                                         f"for {net}")
                rows.append(_run(net, method, seed, train_pairs, test, folder / method / run, cfg, keep_weights,
                                 extra, trainer)[0])
    columns = ["network", "method", "seed", *METRICS, "meanF", "wF", "n_train", "n_test"]
    frame = pd.DataFrame(rows)
    return frame[columns + [c for c in frame.columns if c not in columns]]


def seed_table(runs: pd.DataFrame, short_training=()) -> pd.DataFrame:
    """Tables 5 and 8 from the runs of a protocol: per (network, method), each metric's mean over seeds, its sample
    std (NaN for one seed), the number of seeds and a note: SHORT_NOTE for the nets in `short_training`, and
    IDENTICAL_NOTE for rows equal to another row in every metric (a detector whose output does not depend on what
    it was trained on)."""
    groups = runs.groupby(["network", "method"], sort=False)[list(METRICS)]
    table = groups.mean().join(groups.std(ddof=1).add_suffix(" std")).join(groups.size().rename("seeds")).reset_index()
    notes = [[SHORT_NOTE] if net in short_training else [] for net in table["network"]]
    for i in np.flatnonzero(table[list(METRICS)].round(9).duplicated(keep=False)):
        notes[i].append(IDENTICAL_NOTE)
    table["note"] = ["; ".join(n) for n in notes]
    return table


def substitution_pairs(real_root, profile: Profile) -> dict[str, list[Pair]]:
    """The 9:1 split of data substitution, its training side cut to `detect.substitution_per_class` pairs per class
    (the first ones of the seeded split); the test side is never cut."""
    split = substitution_split(load_pairs(real_root, per_class=profile.data.per_class), profile.seed)
    cap = profile.section(DetectConfig).substitution_per_class
    if cap is not None:
        split["train"] = first_per_class(split["train"], cap)
    return split


def substitution(real_root, generated: dict[str, str | Path], profile: Profile, out, nets=None,
                 filter_generated: bool = False, keep_weights: bool = False, trainer=None) -> pd.DataFrame:
    """The runs of Table 5: one row per (network, method, seed); `generated` maps a method name to its folder of
    images named like the real masks (the method's output for the training masks of `substitution_pairs`)."""
    return _protocol("substitution", substitution_pairs(real_root, profile), substitute_images, generated,
                     profile, out, nets, filter_generated, keep_weights, trainer)


def expansion_pairs(real_root, profile: Profile) -> dict[str, list[Pair]]:
    """The 1:5 split of data expansion, seeded by the profile."""
    return expansion_split(load_pairs(real_root, per_class=profile.data.per_class), profile.seed)


def expansion(real_root, generated: dict[str, str | Path], profile: Profile, out, nets=None,
              filter_generated: bool = False, keep_weights: bool = False, trainer=None) -> pd.DataFrame:
    """The runs of Table 8: one row per (network, method, seed); `generated` maps a method name to a folder of
    generated pairs (dataset layout: images and their masks), added to the real training split."""
    return _protocol("expansion", expansion_pairs(real_root, profile), lambda _, root: load_pairs(root), generated,
                     profile, out, nets, filter_generated, keep_weights, trainer)
