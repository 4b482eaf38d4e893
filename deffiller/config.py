"""Profiles (`deffiller/configs/{tiny,smoke,cpu,paper}.yaml`, shipped inside the package) loaded into typed config objects.

A profile is one YAML file. Its `paths`, `data` and `seed` are typed here; every other top-level
section belongs to the module that uses it, which declares a dataclass with `SECTION = "<name>"`
and reads it with `profile.section(MyConfig)`. Unknown keys are errors, so a typo in a profile
fails loudly instead of being ignored.

A profile loaded with overrides (`load_profile(name, {"sample.guidance": 5})`, `deffiller ... --set
sample.guidance=5`) is another configuration: `{profile}` in its paths becomes `<name>-set-<digest of the overrides>`,
so its outputs and figures never overwrite the profile's own, and it records the overrides it was given.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from deffiller.errors import DefFillerError

PROFILES = ("tiny", "smoke", "cpu", "paper")
DEFAULT_PROFILE = "cpu"  # of every command and of run_all.sh
TYPED = ("seed", "paths", "data")  # the top-level keys this module types; other sections belong to their modules
PACKAGE_DIR = Path(__file__).resolve().parent


def _project_root() -> Path:
    """Where a profile's relative paths (data/, outputs/, weights/ ...) live: $DEFFILLER_ROOT, else the checkout this
    package sits in, else (an installed package) the working directory."""
    if os.environ.get("DEFFILLER_ROOT"):
        return Path(os.environ["DEFFILLER_ROOT"]).resolve()
    checkout = PACKAGE_DIR.parent
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


REPO_ROOT = _project_root()
EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def configs_dir() -> Path:
    """The profiles: $DEFFILLER_CONFIGS, else the ones shipped in the package."""
    return Path(os.environ.get("DEFFILLER_CONFIGS", PACKAGE_DIR / "configs"))


@dataclass
class PathsConfig:
    data_root: str = "data"  # folder holding SD-saliency-900/ (or where it is downloaded / synthesised)
    outputs: str = "outputs/{profile}"  # runs, checkpoints, generated images, manifests
    figures: str = "figures/{profile}"  # tables and figures of the paper
    weights: str = "weights"  # local pretrained weights (SD-1.4, GLIGEN-sem, Inception, ImageNet backbones)


@dataclass
class DataConfig:
    dataset: str = "SD-saliency-900"
    classes: tuple[str, ...] = ("inclusion", "patches", "scratches")
    prefixes: tuple[str, ...] = ("In", "Pa", "Sc")
    image_size: int = 256  # generator resolution (the paper upsamples 200 -> 256)
    source_size: int = 200  # SD-Saliency-900 native size, detectors are scored here
    mask_channels: int = 152  # one-hot channels (GLIGEN-sem's ADE20K layout); 0 = background
    per_class: int | None = None  # use only the first N pairs of each class (None = all)
    synthetic_fallback: bool = True  # synthesise a dataset when the real one is absent


@dataclass
class Profile:
    name: str
    seed: int = 0
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    raw: dict = field(default_factory=dict, repr=False)
    overrides: dict = field(default_factory=dict)  # dotted key -> value, as given to load_profile
    source: str = ""  # the YAML file it was read from

    @property
    def folder_name(self) -> str:
        """What `{profile}` in a path becomes: the name, plus a digest of the overrides when there are any."""
        if not self.overrides:
            return self.name
        digest = hashlib.sha256(json.dumps(self.overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{self.name}-set-{digest}"

    def path(self, key: str) -> Path:
        """A path from `paths`, with `{profile}` filled in, relative to the repo root unless absolute."""
        value = Path(getattr(self.paths, key).format(profile=self.folder_name))
        return value if value.is_absolute() else REPO_ROOT / value

    def section(self, cls: type[T]) -> T:
        """The typed config of a module: `cls.SECTION` names the YAML section."""
        return build(cls, self.raw.get(cls.SECTION, {}), f"{self.name}.{cls.SECTION}")


T = typing.TypeVar("T")


def build(cls: type[T], values: dict | None, where: str) -> T:
    """Build dataclass `cls` from a mapping, converting nested dataclasses and tuples, rejecting unknown keys."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise DefFillerError(f"config {where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            value = build(hint, value, f"{where}.{name}")
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise DefFillerError(f"override {dotted}: {key} is not a section")
    node[leaf] = value


def parse_settings(items: list[str]) -> dict:
    """{"section.key": value} from `--set` items; values are parsed as YAML (and 1e-4, a string to YAML 1.1, as
    the number it reads as)."""
    settings = {}
    for item in items:
        key, equals, text = item.partition("=")
        if not equals or not key.strip():
            raise DefFillerError(f"--set {item!r}: write SECTION.KEY=VALUE, e.g. --set sample.guidance=5")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DefFillerError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
        settings[key.strip()] = float(value) if isinstance(value, str) and EXPONENT.fullmatch(value) else value
    return settings


def load_profile(name_or_path: str | os.PathLike = "tiny", overrides: dict | None = None,
                 sections: typing.Iterable[type] = ()) -> Profile:
    """Load a profile by name (`tiny`, `smoke`, `paper`) or from a YAML path.

    `overrides` maps dotted keys to values, e.g. {"train.max_steps": 3, "seed": 1}; a section the profile does not
    have is an error, and so is a key that `paths`, `data` or the dataclass of `sections` with that SECTION lacks
    (the keys of other sections are checked when a module reads them).
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = configs_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise DefFillerError(f"profile {name_or_path!r}: {path} not found; choose one of {PROFILES} or give a YAML path")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DefFillerError(f"{path}: invalid YAML ({exc})") from exc
    known = sorted(set(TYPED) | set(raw) - {"profile"})
    for key, value in (overrides or {}).items():
        if "." not in key and key not in ("seed",):
            raise DefFillerError(f"override {key}: name a setting as section.key (e.g. sample.guidance), or seed")
        if key.split(".")[0] not in known:
            raise DefFillerError(f"override {key}: {path} has no section {key.split('.')[0]!r}; valid: {known}")
        _set_dotted(raw, key, value)
    name = raw.pop("profile", path.stem)
    profile = Profile(
        name=name,
        seed=int(raw.pop("seed", 0)),
        paths=build(PathsConfig, raw.pop("paths", {}), f"{name}.paths"),
        data=build(DataConfig, raw.pop("data", {}), f"{name}.data"),
        raw=raw,
        overrides=dict(overrides or {}),
        source=str(path.resolve()),
    )
    overridden = {key.split(".")[0] for key in profile.overrides}
    for cls in sections:
        if cls.SECTION in overridden:
            profile.section(cls)  # an unknown key raises here, naming the known ones
    return profile
