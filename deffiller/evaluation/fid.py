"""FID, KID and precision/recall between two image folders, with torch-fidelity and the real Inception weights.

Images are fed at their native size (grayscale repeated to 3 channels) so that torch-fidelity's TF1-compatible
bilinear resize to 299 applies, exactly as in TF's FID. Features come from torch-fidelity's `inception-v3-compat`
and the metrics from its own functions; the 2048-d features of each image set are cached under the content
hash of the set (file names and bytes) and the weights, so a real set is featurised once.
Per-class results use the class of each file name's prefix (`In_3.png` -> inclusion) when the folders hold
several classes; `results_table` turns them into the paper's table layout (one row per class plus AVG).
The results are cached too, beside the features, under the content hashes of both sets, the weights and the
settings, so a table's rerun computes nothing.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from deffiller.config import REPO_ROOT
from deffiller.data.layout import CLASS_PREFIXES
from deffiller.errors import DefFillerError
from deffiller.evaluation.inception_weights import InceptionWeights, resolve_weights, torch_fidelity_extractor
from deffiller.utils.device import resolve_device
from deffiller.utils.io import atomic_path, list_images, read_image, sha256_file, write_json
from deffiller.utils.processes import gather, is_main_process, my_share

FID_UNBIASED_FROM = 2048  # below this many samples the covariance is rank-deficient and FID is biased upward
KID_MAX_SUBSET = 1000
IC_LPIPS_UNAVAILABLE = (
    "LPIPS needs ImageNet-pretrained VGG16/AlexNet backbone weights, which torchvision, "
    "torch-fidelity ('lpips-vgg16') and the `lpips` wheel all download at run time (the `lpips` wheel and torch-fidelity "
    "ship or fetch only the linear heads); no installed package ships the backbone, so it cannot be had offline here"
)


@dataclass
class FidConfig:
    SECTION: ClassVar[str] = "fid"
    weights: str | None = None  # torch-fidelity-format Inception file; None = $DEFFILLER_INCEPTION_WEIGHTS, weights dir, converted
    cache_dir: str | None = None  # feature cache; None = <outputs>/fid_cache
    batch_size: int = 16
    kid_subsets: int = 100
    prc_neighborhood: int = 3  # k of the k-NN balls of precision/recall (torch-fidelity's default)
    device: str = "auto"  # auto = cuda when available


@dataclass
class ImageSet:
    """The images of one folder, the class of each (None where the name has no known prefix) and their content hash."""

    folder: Path
    files: list[Path]
    labels: list[str | None]
    digest: str

    @classmethod
    def from_folder(cls, folder, class_map: dict[str, str] | None = None) -> ImageSet:
        folder, class_map = Path(folder), class_map or CLASS_PREFIXES
        if not folder.is_dir():
            raise DefFillerError(f"{folder}: not a folder of images; give a folder holding .png/.bmp/.jpg files")
        files = list_images(folder)
        if len(files) < 2:
            raise DefFillerError(f"{folder}: {len(files)} image(s) found, FID/KID need at least 2 "
                                 "(and about 2048 for an unbiased FID)")
        digest = hashlib.sha256()
        for path in files:
            digest.update(f"{path.name}\0{sha256_file(path)}\n".encode())
        labels = [class_map.get(path.stem.split("_", 1)[0]) for path in files]
        return cls(folder, files, labels, digest.hexdigest())


class Featurizer:
    """2048-d Inception pool features of image sets, cached on disk by (set content, weights)."""

    def __init__(self, weights: InceptionWeights, cache_dir=None, batch_size: int = 16, device: str = "auto"):
        self.weights, self.batch_size, self.device = weights, batch_size, resolve_device(device)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._extractor = None

    @property
    def extractor(self):
        if self._extractor is None:  # loaded only on a cache miss
            self._extractor = torch_fidelity_extractor(self.weights.path).to(self.device)
        return self._extractor

    def cache_path(self, images: ImageSet) -> Path | None:
        return self.cache_dir / f"{images.digest[:24]}-{self.weights.sha256[:12]}.npz" if self.cache_dir else None

    def __call__(self, images: ImageSet) -> tuple[np.ndarray, bool]:
        """(features N x 2048 float32 in file order, whether they came from the cache)."""
        cached = self.cache_path(images)
        if cached is not None and cached.is_file():
            with np.load(cached) as stored:
                if list(stored["names"]) == [p.name for p in images.files]:
                    return stored["features"], True
        features = self.featurise(images.files, desc=images.folder.name)
        if cached is not None and is_main_process():
            with atomic_path(cached) as tmp:
                np.savez(tmp, features=features, names=np.array([p.name for p in images.files]))
        return features, False

    @torch.inference_mode()
    def featurise(self, files: list[Path], desc: str = "") -> np.ndarray:
        """Features of image files at their native size; images of equal size are batched together. Under
        `accelerate launch` the batches are shared out between the processes and every process gets all features."""
        features = np.zeros((len(files), 2048), np.float32)
        batches = my_share(size_batches([_shape(path) for path in files], self.batch_size))
        with tqdm(total=sum(map(len, batches)), desc=f"Inception features {desc}", unit="img", leave=False,
                  disable=not is_main_process()) as progress:
            for index in batches:  # read batch by batch: a big set never sits in memory whole
                x = torch.from_numpy(np.stack([read_image(files[i], mode="RGB") for i in index])).permute(0, 3, 1, 2)
                (out,) = self.extractor(x.to(self.device))
                features[index] = out.cpu().numpy()
                progress.update(len(index))
        for index, rows in gather([(index, features[index]) for index in batches]):
            features[index] = rows
        return features


def _shape(path: Path) -> tuple[int, int]:
    """An image's size from its header (read_image names the file when it is unreadable)."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError):
        read_image(path, mode="RGB")
        raise


def size_batches(shapes: list, batch_size: int) -> list[list[int]]:
    """Indices of `shapes` in batches of one shape each: a batch closes when it is full, in file order; the partial
    batches of each shape come last, in the order their shape first appeared."""
    batches, open_batches = [], {}
    for i, shape in enumerate(shapes):
        batch = open_batches.setdefault(shape, [])
        batch.append(i)
        if len(batch) == batch_size:
            batches.append(open_batches.pop(shape))
    return batches + list(open_batches.values())


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """FID of two feature sets: torch-fidelity's (TTUR's) |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2).

    With fewer images than feature dimensions (2048; the paper compares 300 per class), S1 S2 has rank < n and
    tr sqrt(S1 S2) equals the sum of the singular values of A1 A2^T / sqrt((n1 - 1)(n2 - 1)) (A: centred features),
    an n1 x n2 matrix: exact, and free of the noise that the ~2000 zero eigenvalues of the 2048 x 2048 product add
    under torch-fidelity's `eigvals` (seconds per call on one core). Larger sets use torch-fidelity's own function."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    if min(len(real), len(fake)) > real.shape[1]:
        stats = [fid_features_to_statistics(torch.from_numpy(f)) for f in (real, fake)]
        return fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    a, b = real.astype(np.float64), fake.astype(np.float64)
    diff = a.mean(0) - b.mean(0)
    a, b = a - a.mean(0), b - b.mean(0)
    scale_a, scale_b = len(a) - 1, len(b) - 1
    tr_covmean = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(scale_a * scale_b)
    return float(diff @ diff + (a * a).sum() / scale_a + (b * b).sum() / scale_b - 2 * tr_covmean)


def metrics(real: np.ndarray, fake: np.ndarray, kid_subsets: int = 100, prc_neighborhood: int = 3) -> dict:
    """FID, KID (subset size min(1000, N_real, N_fake)) and precision/recall of `fake` against `real` features."""
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    fid = {"frechet_inception_distance": frechet_distance(real, fake)}
    subset = min(KID_MAX_SUBSET, len(real), len(fake))
    kid = kid_features_to_metric(real_t, fake_t, kid_subsets=kid_subsets, kid_subset_size=subset, verbose=False)
    out = {"fid": fid["frechet_inception_distance"], "kid_mean": kid["kernel_inception_distance_mean"],
           "kid_std": kid["kernel_inception_distance_std"], "kid_subset_size": subset, "kid_subsets": kid_subsets,
           "n_real": len(real), "n_fake": len(fake), "precision": None, "recall": None, "f_score": None}
    if min(len(real), len(fake)) > prc_neighborhood:  # the k-NN radius needs k other samples
        # torch-fidelity's convention: features_1 is the generated set, features_2 the real one
        out.update(prc_features_to_metric(fake_t, real_t, prc_neighborhood=prc_neighborhood, save_cpu_ram=True,
                                          verbose=False))
    return out


def profile_cache_dir(profile) -> Path:
    """A profile's FID cache: `fid.cache_dir` (relative to the repo root), default `<outputs>/fid_cache`."""
    config = profile.section(FidConfig)
    return (REPO_ROOT / config.cache_dir.format(profile=profile.name) if config.cache_dir
            else profile.path("outputs") / "fid_cache")


def compute_fid(real_dir, fake_dir, per_class: bool | None = None, *, profile=None, config: FidConfig | None = None,
                weights=None, weights_dir=None, cache_dir=None, class_map: dict[str, str] | None = None) -> dict:
    """FID/KID/precision/recall of the images in `fake_dir` against those in `real_dir`.

    per_class: None = per class when every file of both folders has a known class prefix and each folder
    holds several classes; True = required (error otherwise); False = pooled only. `class_map` maps file-name
    prefixes to classes (default In/Pa/Sc). `profile` (a Profile) supplies the `fid` section, the weights
    dir and the feature cache dir (default `<outputs>/fid_cache`); without profile or cache_dir nothing is
    cached. Nothing is downloaded.
    """
    config = config or (profile.section(FidConfig) if profile is not None else FidConfig())
    if profile is not None:  # a profile's relative paths are relative to the repo
        weights = weights or (REPO_ROOT / config.weights if config.weights else None)
        weights_dir = weights_dir or profile.path("weights")
        cache_dir = cache_dir or profile_cache_dir(profile)
    weights, cache_dir = weights or config.weights, cache_dir or config.cache_dir
    real, fake = ImageSet.from_folder(real_dir, class_map), ImageSet.from_folder(fake_dir, class_map)
    warnings = []
    if min(len(real.files), len(fake.files)) < FID_UNBIASED_FROM:
        warnings.append(f"FID is biased upward below {FID_UNBIASED_FROM} samples (here {len(real.files)} real, "
                        f"{len(fake.files)} fake): compare FIDs only at equal sample counts; KID is unbiased")
    rows = {}  # class -> (real rows, fake rows), checked before the slow part
    for name in _classes(real, fake, per_class, warnings):
        rows[name] = [[i for i, label in enumerate(s.labels) if label == name] for s in (real, fake)]
        if min(map(len, rows[name])) < 2:
            raise DefFillerError(f"class {name!r}: {len(rows[name][0])} real ({real.folder}) and {len(rows[name][1])} "
                                 f"fake ({fake.folder}) images; each class needs at least 2 on both sides, or pool them")
    inception = resolve_weights(weights, weights_dir)
    scores = dict(kid_subsets=config.kid_subsets, prc_neighborhood=config.prc_neighborhood)
    cached = _result_path(cache_dir, real, fake, inception, sorted(rows), scores)
    if cached is not None and cached.is_file():
        result = json.loads(cached.read_text())
        result["real"].update(folder=str(real.folder), features_cached=True)
        result["fake"].update(folder=str(fake.folder), features_cached=True)
        return {**result, "result_cached": True}
    featurizer = Featurizer(inception, cache_dir, config.batch_size, config.device)
    real_features, real_cached = featurizer(real)
    fake_features, fake_cached = featurizer(fake)

    result = metrics(real_features, fake_features, **scores)
    result["per_class"] = {name: metrics(real_features[r], fake_features[f], **scores) for name, (r, f) in rows.items()}
    result.update(
        weights={"path": str(inception.path), "sha256": inception.sha256, "source": inception.source},
        real={"folder": str(real.folder), "content_sha256": real.digest, "features_cached": real_cached},
        fake={"folder": str(fake.folder), "content_sha256": fake.digest, "features_cached": fake_cached},
        feature_extractor="torch-fidelity inception-v3-compat, 2048-d pool features, TF1 bilinear resize to 299",
        ic_lpips={"available": False, "reason": IC_LPIPS_UNAVAILABLE},
        warnings=warnings,
    )
    if cached is not None and is_main_process():
        write_json(cached, result)
    return {**result, "result_cached": False}


def _result_path(cache_dir, real: ImageSet, fake: ImageSet, inception: InceptionWeights, classes: list[str],
                 scores: dict) -> Path | None:
    """Where the result of this comparison is cached: keyed by both sets' contents, the weights, the classes and the
    metric settings (None without a cache dir)."""
    if not cache_dir:
        return None
    key = json.dumps([real.digest, fake.digest, real.labels, fake.labels, inception.sha256, classes, scores, "low-rank fid"])
    return Path(cache_dir) / "results" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _classes(real: ImageSet, fake: ImageSet, per_class: bool | None, warnings: list) -> list[str]:
    if per_class is False:
        return []
    unlabeled = [p for s in (real, fake) for p, label in zip(s.files, s.labels) if label is None]
    if unlabeled:
        if per_class:
            raise DefFillerError(f"{unlabeled[0]}: no class for this file name ({len(unlabeled)} such files); name files "
                                 "<prefix>_<n> with a prefix of the class map (In_/Pa_/Sc_) or turn per-class off")
        return []
    real_classes, fake_classes = set(real.labels), set(fake.labels)
    if per_class is None and min(len(real_classes), len(fake_classes)) < 2:
        return []
    for name, where in [(c, "real") for c in real_classes - fake_classes] + [(c, "fake") for c in fake_classes - real_classes]:
        warnings.append(f"class {name!r} only in the {where} folder: no per-class result for it")
    if per_class and not real_classes & fake_classes:
        raise DefFillerError(f"{real.folder} and {fake.folder} share no class ({sorted(real_classes)} vs "
                             f"{sorted(fake_classes)}); per-class FID needs the same classes on both sides")
    return sorted(real_classes & fake_classes)


def results_table(result: dict):
    """One row per class plus AVG (the mean over classes, as the paper's AVG column); one 'all' row when pooled."""
    import pandas as pd

    columns = ["fid", "kid_mean", "kid_std", "kid_subset_size", "n_real", "n_fake", "precision", "recall"]
    if not result["per_class"]:
        return pd.DataFrame([{"class": "all", **{c: result[c] for c in columns}}])
    frame = pd.DataFrame([{"class": name, **{c: r[c] for c in columns}} for name, r in result["per_class"].items()])
    average = {"class": "AVG", **frame[columns].mean(numeric_only=True).to_dict()}
    return pd.concat([frame, pd.DataFrame([average])], ignore_index=True)


def fid_table(real_dir, fake_dir, **kwargs):
    """`compute_fid(..., per_class=True)` as a DataFrame: one row per class plus AVG."""
    return results_table(compute_fid(real_dir, fake_dir, **{"per_class": True, **kwargs}))
