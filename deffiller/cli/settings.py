"""`--profile` and `--set SECTION.KEY=VALUE`: how every command that reads a profile chooses and changes it."""
from __future__ import annotations

import argparse
import importlib

from deffiller.config import DEFAULT_PROFILE, Profile, load_profile, parse_settings
from deffiller.errors import DefFillerError


def add_profile_options(parser: argparse.ArgumentParser, purpose: str = "", default: str | None = DEFAULT_PROFILE,
                        help: str | None = None) -> None:
    """`--profile` (`purpose` completes its help, e.g. ", for its `fid` section") and the repeatable `--set`."""
    parser.add_argument("--profile", default=default,
                        help=help or f"tiny | smoke | paper or a YAML path{purpose} (default {default})")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change one setting of the profile (repeatable; VALUE is YAML: 5, 0.5, true, null, "
                             "[1, 2]); {profile} in its paths then becomes <profile>-set-<digest>, so the changed "
                             "run never overwrites the profile's outputs and figures")


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """`--threads N`, handed to `deffiller.utils.threads.set_torch_threads` when the command runs."""
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: the cores no other process keeps "
                        "busy when the command starts; two threads on two busy cores can be many times slower than one)")


# The dataclass of every profile section (module:class), imported only for the sections a `--set` changes, so that
# an unknown key is refused before anything runs.
SECTIONS = {
    "adabldm": "deffiller.baselines.adabldm.config:AdaBLDMConfig",
    "detect": "deffiller.detection.train:DetectConfig",
    "dfmgan": "deffiller.baselines.dfmgan.config:DFMGANConfig",
    "experiments": "deffiller.experiments.common:ExperimentsConfig",
    "fid": "deffiller.evaluation.fid:FidConfig",
    "leak_free": "deffiller.experiments.leakfree:LeakFreeConfig",
    "masks": "deffiller.training.mask_ddpm:MaskDDPMConfig",
    "model": "deffiller.models.config:ModelConfig",
    "priors": "deffiller.experiments.priors:PriorsConfig",
    "report": "deffiller.reporting.report:ReportConfig",
    "sample": "deffiller.pipelines.deffiller:SampleConfig",
    "train": "deffiller.training.deffiller:TrainConfig",
    "vae": "deffiller.models.config:VAEConfig",
}


def section_class(section: str) -> type:
    module, name = SECTIONS[section].split(":")
    return getattr(importlib.import_module(module), name)


def load_settings(args: argparse.Namespace, name: str | None = None, extra: dict | None = None) -> Profile:
    """The profile of `--profile` (or `name`) with the `--set` settings, then `extra` (a command's own options such
    as --seed, which win over --set) applied."""
    settings = parse_settings(args.settings)
    overrides = {**settings, **{k: v for k, v in (extra or {}).items() if v is not None}}
    changed = {key.split(".")[0] for key in settings} & set(SECTIONS)
    return load_profile(name or args.profile, overrides, [section_class(section) for section in sorted(changed)])
