"""Mask adherence: does a generated image show its defect where its conditioning mask puts it?

A judge, a saliency detector trained on real data (the official MINet checkpoint by default), draws its map of each
image of a folder; the S-measure of those maps against the folder's masks of the same name (pysodmetrics, as the
detection tables) is the `mask S` column of the generation tables. The `real` row's score, real images against their
own masks through the same resolution path, is its floor. Scores are cached under the contents of the folder and the
judge, so a table's rerun computes nothing.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from deffiller.config import REPO_ROOT
from deffiller.data.layout import load_pairs
from deffiller.detection.predict import load_detector
from deffiller.detection.protocols import score_model
from deffiller.errors import DefFillerError
from deffiller.utils.device import resolve_device
from deffiller.utils.io import sha256_file, write_json

IF_MISSING = ("error", "skip")


@dataclass
class JudgeConfig:
    net: str = "minet"  # a registered detector (deffiller.detection.nets)
    weights: str = "../shared/weights/minet/MINet.pth"  # its trained weights; a relative path is relative to the repo root
    if_missing: str = "error"  # error | skip (the `mask S` column is left empty and the report says why)
    input_size: int | None = None  # the judge's input side (a multiple of 32); None = the network's official test size
    batch_size: int = 8
    device: str = "auto"

    @property
    def path(self) -> Path:
        return REPO_ROOT / self.weights


def judge_skipped(cfg: JudgeConfig) -> bool:
    """True when the judge's weights are absent and `if_missing` is skip; an error when they are absent otherwise."""
    if cfg.if_missing not in IF_MISSING:
        raise DefFillerError(f"experiments.judge.if_missing: {cfg.if_missing!r}; choose one of {IF_MISSING}")
    if cfg.path.is_file():
        return False
    if cfg.if_missing == "skip":
        return True
    raise DefFillerError(f"{cfg.path}: the {cfg.net} weights of the mask-adherence judge are not there; put the "
                         "official checkpoint there, point experiments.judge.weights at another copy, or set "
                         "experiments.judge.if_missing: skip (the `mask S` column is then left empty)")


def load_judge(cfg: JudgeConfig):
    """The judge network, or None when its weights are absent and `if_missing` is skip."""
    if judge_skipped(cfg):
        return None
    return _loaded_judge(cfg.net, cfg.path, cfg.path.stat().st_mtime_ns, str(resolve_device(cfg.device)), cfg.input_size)


@functools.lru_cache(maxsize=1)
def _loaded_judge(net: str, path: Path, mtime_ns: int, device: str, input_size: int | None):
    """Loaded once per process: a table scores many image sets with the same judge (the file's mtime keys a change)."""
    judge = load_detector(net, path, device)
    if input_size is not None:
        judge.preprocess = dataclasses.replace(judge.preprocess, test_size=input_size)
    return judge


def judge_note(cfg: JudgeConfig) -> str:
    """One line for the report: what the `mask S` column measures, or why it is empty."""
    if not cfg.path.is_file() and cfg.if_missing == "skip":
        return (f"`mask S` is not computed in this run: the judge's weights {cfg.path} are absent "
                "(`experiments.judge.if_missing: skip`), so that column is empty.")
    size = f"{cfg.input_size} px" if cfg.input_size else "its official test size"
    return (f"`mask S`: S-measure of the maps that {cfg.net} ({cfg.path.name}, a detector trained on real data), run at "
            f"{size}, draws on each image, against the image's conditioning mask; the `real` row is real images "
            "against their own masks, the floor.")


def mask_adherence(folder, cfg: JudgeConfig, cache_dir=None) -> float:
    """The judge's S-measure on the image/mask pairs of a dataset-layout folder (NaN when the judge is skipped); the
    judge loads only when the score is not cached."""
    if judge_skipped(cfg):
        return math.nan
    pairs = load_pairs(folder)
    cached = None
    if cache_dir is not None:
        digest = hashlib.sha256(json.dumps([cfg.net, sha256_file(cfg.path), cfg.input_size]).encode())
        for pair in pairs:
            digest.update(f"{pair.name}\0{sha256_file(pair.image)}\0{sha256_file(pair.mask)}\n".encode())
        cached = Path(cache_dir) / f"{digest.hexdigest()[:32]}.json"
        if cached.is_file():
            return json.loads(cached.read_text())["S"]
    scores = score_model(load_judge(cfg), pairs, cfg.batch_size, resolve_device(cfg.device))
    if cached is not None:
        write_json(cached, {"folder": str(folder), **scores})
    return scores["S"]
