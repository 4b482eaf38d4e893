"""Notebooks 08 and 09: detection under data substitution (Tables 4 and 5, Fig. 7) and data expansion (Table 8)."""
from __future__ import annotations

import importlib
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from deffiller.config import Profile
from deffiller.data.layout import MASK_DIRS
from deffiller.data.splits import write_manifest
from deffiller.detection.protocols import expansion, seed_table, substitution, substitution_pairs
from deffiller.detection.registry import Detector
from deffiller.detection.train import DetectConfig
from deffiller.experiments import baselines, generation
from deffiller.experiments.common import ExperimentsConfig
from deffiller.experiments.data import start
from deffiller.experiments.launch import launch, requested_processes
from deffiller.reporting.outputs import Outputs
from deffiller.utils.io import recover_folder, staged_folder

PAPER_NAMES = {"csepnet": "CSEPNet", "tsernet": "TSERNet", "minet": "MINet"}


def settings_table(profile: Profile) -> pd.DataFrame:
    """Table 4 as this run uses it: each network's optimiser settings (weight decay after the profile's override)."""
    cfg = profile.section(DetectConfig)
    rows = {}
    for net in cfg.nets:
        module = importlib.import_module(f"deffiller.detection.nets.{net}")
        cls = next(c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Detector) and c is not Detector)
        d = cls.train_defaults
        rows[PAPER_NAMES.get(net, net)] = {
            "learning rate": d.lr, "optimizer": d.optimizer.upper() if d.optimizer == "sgd" else d.optimizer.capitalize(),
            "weight decay": d.weight_decay if cfg.weight_decay is None else cfg.weight_decay,
            "momentum": d.momentum if d.optimizer == "sgd" else d.betas[0], "batch size": d.batch_size}
    return pd.DataFrame(rows).reset_index(names="setting").astype(str)


def _paper_names(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["network"] = frame["network"].map(lambda n: PAPER_NAMES.get(n, n))
    return frame


def detector_tables(outputs: Outputs, name: str, runs: pd.DataFrame, profile: Profile, caption: str) -> None:
    """`name`: mean and sample std over seeds per (network, method), with notes; `<name>_detail`: every run."""
    table = seed_table(runs, profile.section(DetectConfig).short_training)
    outputs.table(name, _paper_names(table), f"{caption}: mean over seeds, std = sample std over seeds")
    outputs.table(f"{name}_detail", _paper_names(runs), f"{caption}, every run (seed) with mean/weighted F and the "
                  "train/test counts")


def detector_trainer(profile: Profile):
    """How the protocols train a detector here: in the kernel (None), or with `$DEFFILLER_PROCESSES` above 1 as
    `deffiller detect train` on that many processes, its pairs handed over as a manifest of train rows."""
    if requested_processes() == 1:
        return None

    def launched(net: str, pairs: list, out: Path, seed: int) -> Path:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = write_manifest(Path(tmp) / "train.csv", {"train": pairs})
            launch(profile, ["detect", "train", "--net", net, "--train", str(manifest), "--out", str(out), "--seed",
                             str(seed), "--resume"])
        return Path(out) / "model.pt"

    return launched


def substitution_masks(profile: Profile, source) -> Path:
    """The training masks of data substitution, copied into one folder the generators can take."""
    split = substitution_pairs(source.root, profile)
    folder = profile.path("outputs") / "substitution_masks"
    masks = folder / MASK_DIRS[0]
    recover_folder(folder)
    if not masks.is_dir() or {p.name for p in masks.iterdir()} != {p.mask.name for p in split["train"]}:
        with staged_folder(folder) as staging:  # replaces one made for other settings (detect.substitution_per_class)
            (staging / MASK_DIRS[0]).mkdir()
            for pair in split["train"]:
                shutil.copy2(pair.mask, staging / MASK_DIRS[0] / pair.mask.name)
    return folder


def fig7(runs: pd.DataFrame):
    """S per network and method: the mean over seeds, with the seeds' std as error bar where there are several."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    sns.barplot(runs, x="network", y="S", hue="method", errorbar="sd", ax=ax)
    ax.set_ylabel("S-measure")
    ax.set_ylim(0, 1)
    fig.tight_layout()
    return fig


def substitution_sets(profile: Profile, source, root: Path | None = None) -> dict[str, Path]:
    """Table 5's generated sets: the images that AdaBLDM and the main DefFiller model under `root` (default: the
    profile's outputs, trained by notebooks 04 and 06) make for the training masks of data substitution."""
    init = profile.section(ExperimentsConfig).main_init
    masks = substitution_masks(profile, source) / MASK_DIRS[0]
    deffiller = generation.generate(profile, init, masks, f"deffiller_{init}_substitution", root=root)
    adabldm = baselines.adabldm_images(profile, masks, "adabldm_substitution", root)
    return {"AdaBLDM": adabldm, "DefFiller": deffiller}


def substitution_run(profile: Profile) -> Outputs:
    source, outputs = start(profile, "08_substitution")
    runs = substitution(source.root, substitution_sets(profile, source), profile, profile.path("outputs") / "detection",
                        trainer=detector_trainer(profile))
    outputs.table("table4", settings_table(profile), "Training settings of the detection models (this run)")
    detector_tables(outputs, "table5", runs, profile, "Detection before and after data substitution (9:1)")
    outputs.figure("fig7", fig7(_paper_names(runs)))
    outputs.finish()
    return outputs


def expansion_sets(profile: Profile, root: Path | None = None) -> dict[str, Path]:
    """Table 8's generated sets under `root` (default: the profile's outputs, written by notebooks 06 and 07): each
    method's pairs for new masks (DFMGAN: its own pairs)."""
    init = profile.section(ExperimentsConfig).main_init
    return {"DFMGAN": baselines.generated(profile, "dfmgan_new", root),
            "AdaBLDM": baselines.generated(profile, "adabldm_new", root),
            "DefFiller": generation.generated(profile, f"deffiller_{init}_new", root)}


def expansion_run(profile: Profile) -> Outputs:
    source, outputs = start(profile, "09_expansion")
    runs = expansion(source.root, expansion_sets(profile), profile, profile.path("outputs") / "detection",
                     trainer=detector_trainer(profile))
    detector_tables(outputs, "table8", runs, profile, "Detection before and after data expansion (1:5)")
    outputs.finish()
    return outputs
