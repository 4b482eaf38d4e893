"""Building the networks from the config, and the model folder:

    dfmgan.json            config, data, stage-1 source, finished classes
    stage1/model.pt        G_ema and D of the defect-free backbone
    <class>/model.pt       G_ema with the class's defect mapping and defect blocks
    */checkpoints/         the training loop's checkpoints of an unfinished stage (removed when it finishes)
    */metrics.jsonl        one line per `log_every` steps
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from deffiller.baselines.dfmgan.config import DFMGANConfig
from deffiller.baselines.dfmgan.networks import Discriminator, Generator
from deffiller.config import build
from deffiller.errors import DefFillerError
from deffiller.utils.io import atomic_path, write_json

MANIFEST = "dfmgan.json"
STAGE1 = "stage1"
IMG_CHANNELS = 1


def build_generator(cfg: DFMGANConfig, defect: bool) -> Generator:
    return Generator(cfg.z_dim, cfg.w_dim, cfg.resolution, IMG_CHANNELS, cfg.channel_base, cfg.channel_max,
                     cfg.mapping_layers, cfg.res_start if defect else None)


def build_discriminator(cfg: DFMGANConfig) -> Discriminator:
    return Discriminator(cfg.resolution, IMG_CHANNELS, cfg.channel_base, cfg.channel_max, cfg.mbstd_group)


def build_match_discriminator(cfg: DFMGANConfig) -> Discriminator:
    return Discriminator(cfg.resolution, IMG_CHANNELS + 1, cfg.match_channel_base, cfg.match_channel_max, cfg.mbstd_group)


def save_state(path, state: dict) -> Path:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_state(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DefFillerError(f"{path}: not found; train it with `deffiller baseline dfmgan train`")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise DefFillerError(f"{path}: unreadable ({exc}); delete it and train again (with --resume for a checkpoint)") from exc


def read_manifest(model_dir) -> dict:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise DefFillerError(f"{model_dir}: no {MANIFEST}; not a DFMGAN model folder (train one with `deffiller baseline dfmgan train`)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DefFillerError(f"{path}: corrupt JSON ({exc}); train into a new folder") from exc


def write_manifest(model_dir, meta: dict) -> Path:
    return write_json(Path(model_dir) / MANIFEST, meta)


def config_of(meta: dict, where: str) -> DFMGANConfig:
    return build(DFMGANConfig, meta["config"], where)


def load_generator(model_dir, label: str, device) -> tuple[Generator, DFMGANConfig]:
    """The EMA generator of one class, in eval mode on `device`."""
    model_dir = Path(model_dir)
    meta = read_manifest(model_dir)
    if label not in meta.get("classes", []):
        raise DefFillerError(f"{model_dir}: no DFMGAN model for class {label!r} (has {meta.get('classes', [])}); "
                             f"train it with `deffiller baseline dfmgan train --class {label}`")
    cfg = config_of(meta, f"{model_dir / MANIFEST}")
    G = build_generator(cfg, defect=True)
    G.load_state_dict(load_state(model_dir / label / "model.pt")["G_ema"])
    return G.eval().requires_grad_(False).to(device), cfg
