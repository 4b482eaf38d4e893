"""`train_dfmgan`: stage 1 (a defect-free StyleGAN2 backbone on steel, shared by all classes), then stage 2
once per class (defect blocks, mask head and defect mapping on that class's pairs, backbone frozen).

Every stage trains on the project's loop (`deffiller.training.loop`) in its own folder: `metrics.jsonl`, atomic
`checkpoints/` every `checkpoint_every` steps (removed when the stage finishes), `run_summary.json` (`train_seconds`
summed over resumes) and `model.pt`; finished stages are skipped on a rerun and an unfinished one continues with
`resume`. Under `accelerate launch` every stage trains on all processes (see `trainer`) and the main process writes.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch

from deffiller.baselines.common import training_set
from deffiller.baselines.dfmgan.config import DFMGANConfig
from deffiller.baselines.dfmgan.data import PairSampler, stage1_sampler
from deffiller.baselines.dfmgan.model import (MANIFEST, STAGE1, build_discriminator, build_generator,
                                              build_match_discriminator, load_state, read_manifest, save_state,
                                              write_manifest)
from deffiller.baselines.dfmgan.trainer import DFMGANTask
from deffiller.config import Profile
from deffiller.errors import DefFillerError
from deffiller.training.loop import CHECKPOINTS, LoopConfig, train
from deffiller.utils.device import resolve_device
from deffiller.utils.processes import is_main_process, process_count, wait_for_everyone
from deffiller.utils.seeds import derive_seed

DEFECT_PREFIXES = ("defect_mapping.", "synthesis.defect_blocks.")


def fit(task: DFMGANTask, reals, steps: int, run_dir: Path, seed: int, resume: bool, desc: str,
        progress: bool = True) -> dict:
    """Train one stage to `steps` steps of `cfg.batch` reals in `run_dir`; returns its last logged losses."""
    cfg = task.cfg
    loop = LoopConfig(max_steps=steps, batch_size=cfg.batch, lr=cfg.lr, adam_betas=cfg.betas,
                      checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every,
                      device="cpu" if resolve_device(cfg.device).type == "cpu" else "auto")
    return train(task, reals, loop, run_dir, seed=seed, resume=resume, progress=progress, desc=desc)["last"]


def _finish(run_dir: Path, state: dict) -> None:
    """The stage's model, then its checkpoints go (the model supersedes them); the main process writes."""
    if is_main_process():
        save_state(run_dir / "model.pt", state)
        shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
    wait_for_everyone()


def _write_manifest(out_dir: Path, meta: dict) -> None:
    if is_main_process():
        write_manifest(out_dir, meta)


def _stage1(cfg: DFMGANConfig, pairs, run_dir: Path, device, seed: int, resume: bool,
            progress: bool) -> tuple[str, dict]:
    reals, described = stage1_sampler(pairs, cfg.stage1_source, cfg.resolution, cfg.clean_crop_size,
                                      cfg.clean_crop_margin)
    torch.manual_seed(seed)
    G, D = build_generator(cfg, defect=False).to(device), build_discriminator(cfg).to(device)
    task = DFMGANTask(G, D, cfg, ema_rampup=cfg.ema_rampup)
    logs = fit(task, reals, cfg.steps(cfg.stage1_kimg), run_dir, seed, resume, "dfmgan stage 1", progress)
    _finish(run_dir, {"G_ema": task.G_ema.state_dict(), "D": D.state_dict()})
    return described, logs


def stage2_task(cfg: DFMGANConfig, stage1: dict, device) -> DFMGANTask:
    """A stage-2 task whose backbone and D start from stage 1 (backbone = its EMA generator)."""
    G = build_generator(cfg, defect=True)
    missing, unexpected = G.load_state_dict(stage1["G_ema"], strict=False)
    if unexpected or not all(k.startswith(DEFECT_PREFIXES) for k in missing):
        raise DefFillerError(f"the stage-1 model does not fit the dfmgan config (unexpected {unexpected[:3]}); retrain stage 1")
    D = build_discriminator(cfg)
    D.load_state_dict(stage1["D"])
    return DFMGANTask(G.to(device), D.to(device), cfg, d_match=build_match_discriminator(cfg).to(device))


def train_dfmgan(profile: Profile, data=None, train_manifest=None, out_dir=None, classes=None, resume: bool = False,
                 progress: bool = True) -> dict:
    """Train stage 1 and one stage-2 model per class into `out_dir` (default <outputs>/dfmgan); returns the summary.

    Stage 1 uses every pair given (all classes); stage 2 the pairs of each class in `classes` (default: all).
    """
    cfg = profile.section(DFMGANConfig).check(process_count())
    device = resolve_device(cfg.device)
    pairs, described, classes = training_set(profile, data, train_manifest, classes)
    out_dir = Path(out_dir or profile.path("outputs") / "dfmgan")
    config = json.loads(json.dumps(dataclasses.asdict(cfg)))
    meta = read_manifest(out_dir) if (out_dir / MANIFEST).is_file() else {"classes": [], "runs": {}}
    if meta.get("config", config) != config:
        raise DefFillerError(f"{out_dir} holds DFMGAN models trained with other dfmgan settings; choose another --out")
    meta.update(config=config, data=described, profile=profile.name, seed=profile.seed,
                source_size=profile.data.source_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    wait_for_everyone()  # every process has read the manifest before the main one rewrites it
    _write_manifest(out_dir, meta)

    stage1_dir = out_dir / STAGE1
    lines = [f"DFMGAN on {described} ({len(pairs)} pairs) at {cfg.resolution} px on {device}"]
    if (stage1_dir / "model.pt").is_file():
        lines.append(f"stage 1: already trained in {stage1_dir} ({meta.get('stage1', {}).get('source')}), skipped")
    else:
        source, logs = _stage1(cfg, pairs, stage1_dir, device, profile.seed, resume, progress)
        meta["stage1"] = {"source": source, "steps": cfg.steps(cfg.stage1_kimg), "last": logs}
        _write_manifest(out_dir, meta)
        lines.append(f"stage 1 on {source}: {cfg.steps(cfg.stage1_kimg)} steps of {cfg.batch} -> {stage1_dir / 'model.pt'}")
    stage1 = load_state(stage1_dir / "model.pt")

    for label in classes:
        class_dir = out_dir / label
        if label in meta["classes"]:
            lines.append(f"{label}: already trained in {class_dir}, skipped")
            continue
        class_pairs = [p for p in pairs if p.label == label]
        class_seed = derive_seed(profile.seed, label) % 2**32  # per class, whichever classes are trained
        torch.manual_seed(class_seed)
        task = stage2_task(cfg, stage1, device)
        steps = cfg.steps(cfg.stage2_kimg)
        logs = fit(task, PairSampler(class_pairs, cfg.resolution), steps, class_dir, class_seed, resume,
                   f"dfmgan stage 2 {label}", progress)
        _finish(class_dir, {"G_ema": task.G_ema.state_dict()})
        meta["classes"].append(label)
        meta["runs"][label] = {"pairs": len(class_pairs), "steps": steps, "last": logs}
        _write_manifest(out_dir, meta)
        lines.append(f"{label}: {len(class_pairs)} pairs, {steps} steps, last losses "
                     + ", ".join(f"{k} {v:.3f}" for k, v in logs.items()) + f" -> {class_dir / 'model.pt'}")
    return {"out_dir": out_dir, "lines": lines, **meta}
