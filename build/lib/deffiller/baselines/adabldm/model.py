"""A trained AdaBLDM folder: the base it was trained on, one ControlNet and one background set per class.

    <dir>/adabldm.json                   base path, config, sizes, classes done, background method, data
    <dir>/random_base/                   the base, when none was given (adabldm.base null, no --base)
    <dir>/<class>/controlnet/            ControlNetModel.save_pretrained
    <dir>/<class>/backgrounds/*.png      the defect-free backgrounds sampling blends onto
    <dir>/<class>/metrics.jsonl, run_summary.json, checkpoints/   the shared training loop's (checkpoints until done)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from diffusers import ControlNetModel

from deffiller.baselines.adabldm.base import BaseModel
from deffiller.baselines.adabldm.config import AdaBLDMConfig
from deffiller.config import build
from deffiller.errors import DefFillerError
from deffiller.utils.device import resolve_device
from deffiller.utils.io import list_images, read_image, recover_folder, save_image, write_json

MANIFEST = "adabldm.json"


def read_manifest(root) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DefFillerError(f"{root}: not an AdaBLDM model folder ({MANIFEST} missing); train one with "
                             "`deffiller baseline adabldm train`")
    return json.loads(path.read_text(encoding="utf-8"))


def save_backgrounds(folder, backgrounds: list[np.ndarray]) -> None:
    for i, image in enumerate(backgrounds):
        save_image(Path(folder) / f"bg_{i:05d}.png", image)


class AdaBLDM:
    def __init__(self, root, base: BaseModel, config: AdaBLDMConfig, meta: dict):
        self.root, self.base, self.config, self.meta = Path(root), base, config, meta
        self._controlnets, self._backgrounds = {}, {}

    @classmethod
    def load(cls, root, base=None) -> AdaBLDM:
        meta = read_manifest(root)
        config = build(AdaBLDMConfig, meta["config"], f"{root}/{MANIFEST}")
        return cls(root, BaseModel.load(base or meta["base"], resolve_device(config.device)), config, meta)

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def source_size(self) -> int:
        return int(self.meta["source_size"])

    def prompt(self, label: str) -> str:
        return self.config.prompt.format(label=label)

    def controlnet(self, label: str) -> ControlNetModel:
        if label not in self._controlnets:
            path = recover_folder(self.root / label / "controlnet")
            try:
                net = ControlNetModel.from_pretrained(path, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise DefFillerError(f"{path}: cannot load the {label} ControlNet ({exc}); retrain with --class {label}") from exc
            self._controlnets[label] = net.requires_grad_(False).eval().to(self.base.device)
        return self._controlnets[label]

    def backgrounds(self, label: str) -> list[np.ndarray]:
        if label not in self._backgrounds:
            folder = self.root / label / "backgrounds"
            files = list_images(folder) if folder.is_dir() else []
            if not files:
                raise DefFillerError(f"{folder}: no backgrounds; retrain with --class {label}")
            self._backgrounds[label] = [read_image(p, "L") for p in files]
        return self._backgrounds[label]


def write_manifest(root, meta: dict) -> None:
    write_json(Path(root) / MANIFEST, meta)
