"""Saliency metrics with pysodmetrics: S-measure, MAE, max E-measure, max/mean F-measure, weighted F-measure.

Conventions (those of the CSEPNet evaluation the paper follows, and of the reference numbers in the tests):
a prediction is an 8-bit gray map, bilinearly resized to its mask's size when the sizes differ; masks are
binarised at >127; S-measure alpha = 0.5; F-measure beta^2 = 0.3; E and F curves over 256 thresholds are
averaged over the images first, then maxE / maxF are the maxima of those dataset-mean curves (one threshold
for the whole dataset). pysodmetrics min-max normalises each prediction before scoring, MAE included.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import py_sod_metrics as sod
from PIL import Image

from deffiller.data.masks import binarize
from deffiller.errors import DefFillerError
from deffiller.utils.io import list_images, read_image

METRICS = ("S", "MAE", "maxE", "maxF")  # the paper's four, in its order
REPORT_METRICS = METRICS + ("meanF", "wF")


def to_gray8(pred: np.ndarray) -> np.ndarray:
    """A map in [0,1] (float) or uint8 -> uint8 HxW, truncated like PIL's float-to-8-bit conversion in the official
    test scripts."""
    pred = np.asarray(pred)
    if pred.dtype == np.uint8:
        return pred
    if pred.dtype == bool:
        return pred.astype(np.uint8) * 255
    return np.clip(pred.astype(np.float64) * 255, 0, 255).astype(np.uint8)


def match_size(pred: np.ndarray, shape: tuple[int, int], name: str = "prediction") -> np.ndarray:
    """Bilinearly resize an 8-bit map to `shape` (H, W); different aspect ratios are an error."""
    if pred.shape == tuple(shape):
        return pred
    (ph, pw), (h, w) = pred.shape, shape
    if abs(ph / pw - h / w) > 0.02:
        raise DefFillerError(
            f"{name}: prediction is {pw}x{ph} but its mask is {w}x{h}; the shapes differ beyond a resize, "
            "so the prediction does not belong to this mask"
        )
    return np.asarray(Image.fromarray(pred).resize((w, h), Image.BILINEAR))


def mask_iou_array(mask: np.ndarray, saliency: np.ndarray, name: str = "mask") -> float:
    """IoU of a mask (bool, or uint8 binarised at >127) with a detector's uint8 map binarised at >127 (0.5): the score
    of the generated-pair filter (`detect.filter_iou`) and of the demo's variations; 1 when both are empty."""
    mask = mask if mask.dtype == bool else binarize(mask)
    found = binarize(saliency)
    if mask.shape != found.shape:
        raise DefFillerError(f"{name}: mask is {mask.shape[1]}x{mask.shape[0]} but the map is "
                             f"{found.shape[1]}x{found.shape[0]}")
    union = np.logical_or(mask, found).sum()
    return float(np.logical_and(mask, found).sum() / union) if union else 1.0


class SaliencyMetrics:
    """Accumulate (prediction, mask) pairs with `update`, read the scores with `compute`."""

    def __init__(self):
        self.sm = sod.Smeasure(alpha=0.5)
        self.mae = sod.MAE()
        self.em = sod.Emeasure()
        self.fm = sod.FmeasureV2(metric_handlers={"fm": sod.FmeasureHandler(with_dynamic=True, with_adaptive=False, beta=0.3)})
        self.wfm = sod.WeightedFmeasure()
        self.count = 0

    def update(self, pred: np.ndarray, mask: np.ndarray, name: str = "prediction") -> None:
        """pred: HxW map (uint8, or float in [0,1]); mask: HxW uint8 mask (>127 = defect)."""
        gt = binarize(mask).astype(np.uint8) * 255
        pred = to_gray8(pred)
        if pred.ndim != 2:
            raise DefFillerError(f"{name}: prediction must be a single-channel map, got shape {pred.shape}")
        pred = match_size(pred, gt.shape, name)
        for metric in (self.sm, self.mae, self.em, self.fm, self.wfm):
            metric.step(pred=pred, gt=gt)
        self.count += 1

    def compute(self) -> dict[str, float]:
        if not self.count:
            raise DefFillerError("no predictions were scored")
        f_curve = self.fm.get_results()["fm"]["dynamic"]
        return {
            "S": float(self.sm.get_results()["sm"]),
            "MAE": float(self.mae.get_results()["mae"]),
            "maxE": float(self.em.get_results()["em"]["curve"].max()),
            "maxF": float(f_curve.max()),
            "meanF": float(f_curve.mean()),
            "wF": float(self.wfm.get_results()["wfm"]),
            "n": self.count,
        }


def pair_predictions(pred_dir, gt_dir) -> list[tuple[Path, Path]]:
    """(prediction, mask) paths paired by file stem. Every prediction needs a mask; extra masks are ignored."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for folder, what in ((pred_dir, "prediction"), (gt_dir, "mask")):
        if not folder.is_dir():
            raise DefFillerError(f"{folder}: {what} folder not found")
    preds = list_images(pred_dir)
    masks = {p.stem: p for p in list_images(gt_dir)}
    if not preds:
        raise DefFillerError(f"{pred_dir}: no prediction images (.png/.bmp/.jpg) in this folder")
    if not masks:
        raise DefFillerError(f"{gt_dir}: no mask images (.png/.bmp/.jpg) in this folder")
    orphans = [p for p in preds if p.stem not in masks]
    if orphans:
        listed = ", ".join(p.name for p in orphans[:10]) + (f" and {len(orphans) - 10} more" if len(orphans) > 10 else "")
        raise DefFillerError(
            f"{pred_dir}: {len(orphans)} prediction(s) without a mask of the same name in {gt_dir}: {listed}; "
            "predictions are paired with masks by file name"
        )
    return [(p, masks[p.stem]) for p in preds]


def evaluate_folders(pred_dir, gt_dir) -> dict[str, float]:
    """Score every prediction in `pred_dir` against the same-named mask in `gt_dir`."""
    metrics = SaliencyMetrics()
    for pred, mask in pair_predictions(pred_dir, gt_dir):
        metrics.update(read_image(pred, "L"), read_image(mask, "L"), name=str(pred))
    return metrics.compute()
