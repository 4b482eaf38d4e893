"""Notebook 01: the dataset (Fig. 3), its statistics, the synthetic fallback beside real samples, and the splits."""
from __future__ import annotations

import numpy as np
import pandas as pd

from deffiller.config import Profile
from deffiller.data.check import check_dataset
from deffiller.data.layout import load_pairs
from deffiller.data.source import DatasetSource, resolve_dataset
from deffiller.data.splits import make_split, write_manifest
from deffiller.data.synth import synth_pair
from deffiller.detection.train import DetectConfig, backbone_file
from deffiller.errors import DefFillerError
from deffiller.models.backbones import timm_file
from deffiller.models.build import weights_path
from deffiller.models.config import ModelConfig
from deffiller.reporting.figures import image_grid, pairs_rows
from deffiller.reporting.outputs import Outputs
from deffiller.utils.io import read_image
from deffiller.utils.threads import set_torch_threads


def start(profile: Profile, notebook: str) -> tuple[DatasetSource, Outputs]:
    """The dataset of the profile and an Outputs recording it and the backbone weights (every notebook starts here);
    torch's threads are set as the CLI sets them, so every notebook kernel uses the same count."""
    set_torch_threads()
    source = resolve_dataset(profile)
    outputs = Outputs(profile, notebook, data={"root": str(source.root), "synthetic": source.synthetic}, banner=source.banner)
    outputs.weights.update(backbone_weights(profile))
    return source, outputs


def backbone_weights(profile: Profile) -> dict[str, str]:
    """Which ImageNet weights the profile's networks start from: origin, file and sha256 (nothing is fetched here)."""
    def describe(resolve) -> str:
        try:
            return resolve().describe()
        except DefFillerError as error:
            return f"not available yet: {error}"

    found = {f"{net} backbone": describe(lambda: backbone_file(net, value))
             for net, value in profile.section(DetectConfig).backbone_weights.items() if value is not None}
    model = profile.section(ModelConfig)
    if model.convnext_weights is not None:
        file = model.convnext_weights_file and str(weights_path(profile, model.convnext_weights_file))
        found["mask encoder ConvNeXt (init sd)"] = describe(lambda: timm_file(model.convnext_weights, file))
    return found


def manifests_dir(profile: Profile):
    return profile.path("outputs") / "manifests"


def dataset_statistics(source: DatasetSource) -> pd.DataFrame:
    report = check_dataset(source.root)
    rows = [{"class": label, "pairs": report.pairs_per_class[label],
             "defect area mean %": 100 * float(np.mean(fg)), "defect area min %": 100 * float(np.min(fg)),
             "defect area max %": 100 * float(np.max(fg))}
            for label, fg in sorted(report.foreground.items())]
    return pd.DataFrame(rows)


def write_splits(profile: Profile, source: DatasetSource) -> pd.DataFrame:
    """Write standard / substitution / expansion manifests; returns their sizes."""
    pairs = load_pairs(source.root, per_class=profile.data.per_class)
    rows = []
    for kind in ("standard", "substitution", "expansion"):
        split = make_split(pairs, kind, profile.seed)
        write_manifest(manifests_dir(profile) / f"{kind}.csv", split)
        rows.append({"split": kind, "train": len(split["train"]), "test": len(split["test"])})
    return pd.DataFrame(rows)


def run(profile: Profile, per_class_shown: int = 3) -> Outputs:
    source, outputs = start(profile, "01_data")
    pairs = load_pairs(source.root)
    by_label = {label: [p for p in pairs if p.label == label] for label in profile.data.classes}
    outputs.table("dataset_stats", dataset_statistics(source), "SD-Saliency-900: pairs and defect area per class")
    outputs.table("splits", write_splits(profile, source), "Train/test manifests (outputs/<profile>/manifests/)")
    outputs.figure("fig3", image_grid(pairs_rows(by_label, per_class_shown)))
    synthetic_rows = {}
    for label in profile.data.classes:
        real = by_label[label][0]
        fake_image, fake_mask = synth_pair(label, 1, profile.seed)
        synthetic_rows[label] = [read_image(real.image), read_image(real.mask), fake_image, fake_mask]
    outputs.figure("synthetic_vs_real", image_grid(synthetic_rows, ["real", "real mask", "synthetic", "synthetic mask"]))
    outputs.finish()
    return outputs
