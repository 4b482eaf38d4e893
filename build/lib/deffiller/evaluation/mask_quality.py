"""How good are generated masks? Per-class FID against the real masks (paper Table 6) and what the paper leaves out.

Beyond FID, per class: the distributions of defect area (share of the image) and of connected components
(8-connectivity) of generated against real masks (summaries and the two-sample Kolmogorov-Smirnov statistic),
the generated masks that are empty or all foreground (counted, then left out of the distributions), and a
memorisation check: the IoU of each generated mask with its nearest real mask of the same class, beside the same
nearest-neighbour IoU among the real masks themselves (what "as similar as two real masks" looks like).
Fig. 8's layout, real masks beside generated ones per class, is `masks_figure`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy.stats import ks_2samp  # noqa: E402

from deffiller.data.layout import CLASS_PREFIXES, MASK_DIRS, class_of, index_of  # noqa: E402
from deffiller.errors import DefFillerError  # noqa: E402
from deffiller.utils.io import atomic_path, list_images, read_image, write_json  # noqa: E402

REPORT_FILE, FIGURE_FILE, GRID_FILE = "mask_quality.json", "mask_quality.png", "fig8_masks.png"
NOT_A_MASK_SHARE = 0.25  # more grey pixels than this: an image, not a (slightly anti-aliased) mask
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class MaskSet:
    """Binary masks of a folder by class, read at one common size."""

    folder: Path
    masks: dict[str, np.ndarray]  # class -> (N, S, S) bool
    names: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return next(iter(self.masks.values())).shape[-1]


def mask_folder(folder) -> Path:
    """The folder holding the masks: `folder` itself, or its `Ground truth/` (a dataset or `deffiller masks sample` output)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DefFillerError(f"{folder}: not a folder; give a folder of masks (In_1.png, ...) or a dataset folder")
    return next((folder / name for name in MASK_DIRS if (folder / name).is_dir()), folder)


def read_mask_set(folder, size: int | None = None, class_map: dict[str, str] | None = None) -> MaskSet:
    """All masks of a folder, binarised at >127 and nearest-resized to `size` (default: the first mask's size).

    Unknown name prefixes and files that are images rather than masks are errors; masks with a few grey
    (anti-aliased) pixels are binarised with a warning.
    """
    folder, class_map = mask_folder(folder), class_map or CLASS_PREFIXES
    files = list_images(folder)
    if not files:
        raise DefFillerError(f"{folder}: no mask files (.png/.bmp/...) found")
    by_class: dict[str, list] = {}
    names: dict[str, list[str]] = {}
    grey_files = []
    for path in sorted(files, key=lambda p: (p.stem.split("_")[0], index_of(p.stem), p.stem)):
        label = class_of(path.stem, class_map)
        mask = read_image(path, "L")
        grey = float(((mask > 0) & (mask < 255)).mean())
        if grey > NOT_A_MASK_SHARE:
            raise DefFillerError(f"{path}: {grey:.0%} of its pixels are neither 0 nor 255; this looks like an image, "
                                 "not a mask; give a folder of binary masks")
        if grey:
            grey_files.append(path.name)
        size = size or mask.shape[0]
        if mask.shape != (size, size):
            mask = np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST))
        by_class.setdefault(label, []).append(mask > 127)
        names.setdefault(label, []).append(path.stem)
    notes = []
    if grey_files:
        notes.append(f"{folder}: {len(grey_files)} non-binary mask(s) binarised at >127 (e.g. {grey_files[0]})")
    return MaskSet(folder, {k: np.stack(v) for k, v in by_class.items()}, names, notes)


def components(mask: np.ndarray) -> int:
    count, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return count - 1


def summary(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return {"n": 0}
    return {"n": int(values.size), "mean": float(values.mean()), "std": float(values.std()),
            **{f"q{round(q * 100):02d}": float(np.quantile(values, q)) for q in QUANTILES}}


def nearest_iou(queries: np.ndarray, references: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """For each query mask, the highest IoU with any reference mask (itself excluded when the sets are the same)."""
    q = queries.reshape(len(queries), -1).astype(np.float32)
    r = references.reshape(len(references), -1).astype(np.float32)
    intersection = q @ r.T
    union = q.sum(1)[:, None] + r.sum(1)[None] - intersection
    iou = np.where(union > 0, intersection / np.maximum(union, 1), 1.0)
    if exclude_self:
        np.fill_diagonal(iou, -np.inf)
    return iou.max(1)


def _distribution(real: np.ndarray, fake: np.ndarray) -> dict:
    out = {"real": summary(real), "fake": summary(fake), "ks": None, "ks_pvalue": None}
    if len(real) and len(fake):
        with warnings.catch_warnings():  # tied values (component counts) make scipy fall back from the exact p-value
            warnings.simplefilter("ignore", RuntimeWarning)
            test = ks_2samp(real, fake)
        out.update(ks=float(test.statistic), ks_pvalue=float(test.pvalue))
    return out


def compare_class(real: np.ndarray, fake: np.ndarray, iou_threshold: float = 0.9) -> tuple[dict, dict]:
    """(report, per-mask values) for one class; degenerate generated masks are counted, then left out."""
    area_real, area_fake = real.mean((1, 2)), fake.mean((1, 2))
    empty, full = area_fake == 0, area_fake == 1
    kept = fake[~(empty | full)]
    comps_real = np.array([components(m) for m in real])
    comps_fake = np.array([components(m) for m in kept])
    iou_fake = nearest_iou(kept, real) if len(kept) else np.zeros(0)
    iou_real = nearest_iou(real, real, exclude_self=True) if len(real) > 1 else np.zeros(0)
    report = {
        "n_real": len(real), "n_fake": len(fake), "fake_empty": int(empty.sum()), "fake_full": int(full.sum()),
        "fake_kept": len(kept), "real_empty": int((area_real == 0).sum()), "real_full": int((area_real == 1).sum()),
        "area": _distribution(area_real, area_fake[~(empty | full)]),
        "components": _distribution(comps_real, comps_fake),
        "memorisation": {
            "nearest_real_iou": summary(iou_fake), "iou_threshold": iou_threshold,
            "share_above": float((iou_fake >= iou_threshold).mean()) if len(iou_fake) else None,
            "real_to_other_real_iou": summary(iou_real),
        },
    }
    values = {"area": (area_real, area_fake[~(empty | full)]), "components": (comps_real, comps_fake),
              "nearest IoU": (iou_real, iou_fake)}
    return report, values


def compare_sets(real: MaskSet, fake: MaskSet, iou_threshold: float = 0.9) -> tuple[dict, dict]:
    """(per-class reports, per-class values) over the classes both sets have; warns about the others."""
    shared = [c for c in real.masks if c in fake.masks]
    if not shared:
        raise DefFillerError(f"{real.folder} ({sorted(real.masks)}) and {fake.folder} ({sorted(fake.masks)}) share no class")
    notes = [f"class {c!r} only in {where.folder}: not compared" for where, other in ((real, fake), (fake, real))
             for c in where.masks if c not in other.masks]
    reports, values = {}, {}
    for label in shared:
        reports[label], values[label] = compare_class(real.masks[label], fake.masks[label], iou_threshold)
        degenerate = reports[label]["fake_empty"] + reports[label]["fake_full"]
        if degenerate:
            notes.append(f"{label}: {degenerate} of {reports[label]['n_fake']} generated masks are empty or all "
                         "foreground; left out of the distributions")
    return {"classes": reports, "warnings": real.warnings + fake.warnings + notes}, values


def quality_figure(values: dict):
    """Histograms of real against generated masks: one row per statistic, one column per class."""
    stats = ("area", "components", "nearest IoU")
    fig, axes = plt.subplots(len(stats), len(values), figsize=(3.2 * len(values), 2.4 * len(stats)), squeeze=False)
    for col, (label, per_stat) in enumerate(values.items()):
        for row, stat in enumerate(stats):
            ax, (real, fake) = axes[row, col], per_stat[stat]
            both = np.concatenate([real, fake]).astype(float)
            if stat == "components":
                bins = np.arange(-0.5, (both.max() if both.size else 1) + 1.5)
            else:
                bins = np.linspace(0, max(both.max(), 1e-3) if both.size and stat == "area" else 1, 25)
            labels = ("real vs other real", "generated vs nearest real") if stat == "nearest IoU" else ("real", "generated")
            ax.hist(real, bins=bins, density=True, alpha=0.5, label=labels[0])
            ax.hist(fake, bins=bins, density=True, alpha=0.5, label=labels[1])
            ax.set_xlabel({"area": "defect area (share of image)", "components": "connected components",
                           "nearest IoU": "IoU with nearest real mask"}[stat], fontsize=8)
            ax.tick_params(labelsize=7)
            if row == 0:
                ax.set_title(label, fontsize=9)
            if col == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def masks_figure(real, fake, per_class: int = 4, class_map: dict[str, str] | None = None):
    """Fig. 8: per class (rows), the first `per_class` real masks, then the first `per_class` generated ones."""
    real = real if isinstance(real, MaskSet) else read_mask_set(real, class_map=class_map)
    fake = fake if isinstance(fake, MaskSet) else read_mask_set(fake, class_map=class_map)
    labels = [c for c in real.masks if c in fake.masks]
    if not labels:
        raise DefFillerError(f"{real.folder} and {fake.folder} share no class")
    fig, axes = plt.subplots(len(labels), 2 * per_class, figsize=(1.2 * 2 * per_class, 1.3 * len(labels)), squeeze=False)
    for row, label in enumerate(labels):
        cells = list(real.masks[label][:per_class]) + [None] * (per_class - len(real.masks[label][:per_class]))
        cells += list(fake.masks[label][:per_class]) + [None] * (per_class - len(fake.masks[label][:per_class]))
        for col, mask in enumerate(cells):
            ax = axes[row, col]
            ax.set_xticks([]), ax.set_yticks([])
            if mask is None:
                ax.axis("off")
            else:
                ax.imshow(mask, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if row == 0 and col in (0, per_class):
                ax.set_title("real" if col == 0 else "generated (DDPM)", fontsize=8, loc="left")
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout(pad=0.3)
    return fig


def save_figure(fig, path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return Path(path)


def mask_quality(real, fake, out_dir=None, *, fid: bool = True, profile=None, fid_weights=None, fid_cache_dir=None,
                 iou_threshold: float = 0.9, class_map: dict[str, str] | None = None, grid_per_class: int = 6) -> dict:
    """Quality report of the generated masks in `fake` against the real ones in `real` (folders or dataset folders).

    With `out_dir`, writes mask_quality.json, mask_quality.png (histograms) and fig8_masks.png (Fig. 8's grid).
    `fid` adds the per-class FID/KID of Table 6 (deffiller.evaluation.fid; the profile gives its settings, weights
    and feature cache). Returns the report.
    """
    real_set = read_mask_set(real, class_map=class_map)
    fake_set = read_mask_set(fake, size=real_set.size, class_map=class_map)
    report, values = compare_sets(real_set, fake_set, iou_threshold)
    report.update(real=str(real_set.folder), fake=str(fake_set.folder), compared_at=real_set.size)
    if fid:
        from deffiller.evaluation.fid import compute_fid

        result = compute_fid(real_set.folder, fake_set.folder, per_class=True, profile=profile, weights=fid_weights,
                             cache_dir=fid_cache_dir, class_map=class_map)
        report["fid"] = result
        report["warnings"] += result["warnings"]
        for label, scores in result["per_class"].items():
            report["classes"][label]["fid"] = scores["fid"]
            report["classes"][label]["kid_mean"] = scores["kid_mean"]
    if out_dir is not None:
        out_dir = Path(out_dir)
        report["files"] = {"report": str(out_dir / REPORT_FILE), "figure": str(out_dir / FIGURE_FILE),
                           "grid": str(out_dir / GRID_FILE)}
        save_figure(quality_figure(values), out_dir / FIGURE_FILE)
        save_figure(masks_figure(real_set, fake_set, grid_per_class), out_dir / GRID_FILE)
        write_json(out_dir / REPORT_FILE, report)
    for note in report["warnings"]:
        warnings.warn(note, stacklevel=2)
    return report


def quality_table(report: dict):
    """One row per class (plus AVG over classes for FID/KID): the numbers of the report at a glance."""
    import pandas as pd

    rows = []
    for label, r in report["classes"].items():
        memo = r["memorisation"]
        rows.append({"class": label, "FID": r.get("fid"), "KID": r.get("kid_mean"), "real": r["n_real"],
                     "generated": r["n_fake"], "empty/full": r["fake_empty"] + r["fake_full"],
                     "area real": r["area"]["real"].get("mean"), "area gen": r["area"]["fake"].get("mean"),
                     "area KS": r["area"]["ks"], "comps real": r["components"]["real"].get("mean"),
                     "comps gen": r["components"]["fake"].get("mean"), "comps KS": r["components"]["ks"],
                     "NN-IoU gen": memo["nearest_real_iou"].get("q50"), "NN-IoU real": memo["real_to_other_real_iou"].get("q50"),
                     f"share IoU>={memo['iou_threshold']}": memo["share_above"]})
    frame = pd.DataFrame(rows)
    if len(frame) > 1 and frame["FID"].notna().all():
        frame = pd.concat([frame, pd.DataFrame([{"class": "AVG", "FID": frame["FID"].mean(), "KID": frame["KID"].mean()}])],
                          ignore_index=True)
    return frame
