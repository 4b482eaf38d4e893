"""Beyond the paper: Tables 8 and 5 under a leak-free protocol (notebooks 09 and 08).

The paper trains every generator on all 900 pairs, the detectors' test images among them. Here each generator a
protocol uses (the main DefFiller model and AdaBLDM; for expansion also the mask DDPM and DFMGAN; with
`leak_free.stand_in_priors` also the miniature SD-like/GLIGEN-like priors, whose VAE learned the dataset's images)
trains only on the protocol's training split, the very pairs its detectors train on, written as the manifest
`<outputs>/leakfree/<protocol>/split.csv`. Runs and generated sets live beside it, so nothing of the paper's
protocol is overwritten and an interrupted run resumes; the detectors then train and test exactly as in Table 8
(Table 5), whose real-data-only runs are the same and are reused. The tables: `table8_leakfree`, `table5_leakfree`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import yaml

from deffiller.config import Profile, load_profile
from deffiller.data.layout import MASK_DIRS
from deffiller.data.splits import read_manifest, split_pairs, write_manifest
from deffiller.detection.protocols import BASELINE, expansion, expansion_pairs, substitution, substitution_pairs
from deffiller.errors import DefFillerError
from deffiller.experiments import baselines, detection, generation, masks, priors
from deffiller.experiments.common import ExperimentsConfig
from deffiller.experiments.data import start
from deffiller.reporting.outputs import Outputs
from deffiller.utils.io import write_text


@dataclass
class LeakFreeConfig:
    SECTION: ClassVar[str] = "leak_free"
    expansion: bool = True  # Table 8 with every generator trained only on the 1:5 training split (notebook 09)
    substitution: bool = False  # Table 5 likewise, on the 9:1 training split (notebook 08)
    stand_in_priors: bool = False  # rebuild the miniature stand-in priors on that split (their VAE learned the data)


PROTOCOLS = {  # protocol -> (notebook, table, caption)
    "expansion": ("09_expansion_leakfree", "table8_leakfree", "Detection before and after data expansion (1:5), "
                  "leak-free (beyond the paper): every generator trained only on the detectors' training split"),
    "substitution": ("08_substitution_leakfree", "table5_leakfree", "Detection before and after data substitution "
                     "(9:1), leak-free (beyond the paper): every generator trained only on the detectors' training "
                     "split"),
}


def root(profile: Profile, protocol: str) -> Path:
    return profile.path("outputs") / "leakfree" / protocol


def write_split(profile: Profile, source, protocol: str) -> Path:
    """The protocol's detector split (train and test rows) as the manifest the generators train on; an error where
    the folder's generators were trained on another split (its runs are reused, so they could have seen test pairs)."""
    split = (expansion_pairs if protocol == "expansion" else substitution_pairs)(source.root, profile)
    path = root(profile, protocol) / "split.csv"
    if path.is_file() and {p.name for p in read_manifest(path, "train")} != {p.name for p in split["train"]}:
        raise DefFillerError(f"{path.parent}: its generators were trained on the train rows of {path}, not on this "
                             "run's split (the seed, the data or detect.substitution_per_class changed); delete the "
                             "folder to train them on this split")
    return write_manifest(path, split)


def with_priors(profile: Profile, folder: Path, train_split: Path) -> Profile:
    """The profile the leak-free generators use: with `leak_free.stand_in_priors`, its miniature priors rebuilt in
    `folder/priors` on the train rows of `train_split`; else the profile itself (real priors never saw the data).
    The new profile is a file, `folder/profile.yaml` (the profile's own with the priors' paths), loaded with the same
    overrides: a command launched on several processes (`experiments.launch`) loads exactly it, outputs folder
    included."""
    if not profile.section(LeakFreeConfig).stand_in_priors:
        return profile
    raw = yaml.safe_load(Path(profile.source).read_text(encoding="utf-8"))
    raw["profile"] = profile.name  # the outputs folder is named after it, not after the file
    raw["model"] = {**raw.get("model", {}), "sd_weights": str(folder / "priors" / "sd-like"),
                    "gligen_weights": str(folder / "priors" / "gligen-like" / "diffusion_pytorch_model.bin")}
    source = write_text(folder / "profile.yaml", yaml.safe_dump(raw, sort_keys=False))
    own = load_profile(source, profile.overrides)
    priors.build_stand_ins(own, split_pairs(train_split))
    return own


def generated_sets(profile: Profile, source, protocol: str, train_split: Path) -> dict[str, Path]:
    """Train (or reuse) the protocol's generators on the train rows of `train_split` under its leak-free folder and
    make the sets its table uses there, as notebooks 02-07 make them for the paper's protocol."""
    folder = root(profile, protocol)
    profile = with_priors(profile, folder, train_split)
    init = profile.section(ExperimentsConfig).main_init
    generation.train(profile, source, init, root=folder, train_split=train_split)
    baselines.adabldm(profile, source.root, folder, train_split)
    if protocol == "substitution":
        return detection.substitution_sets(profile, source, folder)
    masks.new_masks(profile, source.root, folder, train_split)
    generation.generate(profile, init, masks.generated_masks_dir(profile, folder) / MASK_DIRS[0],
                        f"deffiller_{init}_new", root=folder)
    baselines.adabldm_new(profile, folder)
    baselines.dfmgan(profile, source.root, folder, train_split)
    return detection.expansion_sets(profile, folder)


def reuse_real_only_runs(paper: Path, leak_free: Path) -> None:
    """Copy the cached scores of the paper protocol's real-data-only runs: same split, seeds and settings, so the
    same runs."""
    for scores in Path(paper).glob(f"*/{BASELINE}/*/scores.json"):
        target = Path(leak_free) / scores.relative_to(paper)
        if not target.exists():
            write_text(target, scores.read_text())


def run(profile: Profile, protocol: str = "expansion") -> Outputs | None:
    """The leak-free Table 8 (`protocol="expansion"`) or Table 5 (`"substitution"`); None when the profile's
    `leak_free.<protocol>` is off."""
    if protocol not in PROTOCOLS:
        raise DefFillerError(f"unknown leak-free protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    if not getattr(profile.section(LeakFreeConfig), protocol):
        print(f"leak_free.{protocol} is off in profile {profile.name}: the leak-free table is not made")
        return None
    notebook, table, caption = PROTOCOLS[protocol]
    source, outputs = start(profile, notebook)
    train_split = write_split(profile, source, protocol)
    sets = generated_sets(profile, source, protocol, train_split)
    out = root(profile, protocol) / "detection"
    reuse_real_only_runs(profile.path("outputs") / "detection" / protocol, out / protocol)
    runs = (expansion if protocol == "expansion" else substitution)(source.root, sets, profile, out,
                                                                     trainer=detection.detector_trainer(profile))
    detection.detector_tables(outputs, table, runs, profile, caption)
    outputs.extra["leak_free"] = {"train_split": str(train_split), "generated": {m: str(p) for m, p in sets.items()},
                                  "stand_in_priors": profile.section(LeakFreeConfig).stand_in_priors}
    outputs.finish()
    return outputs
