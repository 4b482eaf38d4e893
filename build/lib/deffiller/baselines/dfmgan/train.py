"""`train_dfmgan`: stage 1 (a defect-free StyleGAN2 backbone on steel, shared by all classes), then stage 2
once per class (defect blocks, mask head and defect mapping on that class's pairs, backbone frozen).

Every stage writes `metrics.jsonl`, atomic checkpoints every `checkpoint_every` steps, and `model.pt` and
`run_summary.json` (steps, `train_seconds` summed over resumes) when it finishes; finished stages are skipped on a
rerun and an unfinished one continues with `resume`.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from deffiller.baselines.common import training_set
from deffiller.baselines.dfmgan.config import DFMGANConfig
from deffiller.baselines.dfmgan.data import PairSampler, stage1_sampler
from deffiller.baselines.dfmgan.model import (MANIFEST, STAGE1, build_discriminator, build_generator,
                                              build_match_discriminator, load_state, read_manifest, save_state,
                                              write_manifest)
from deffiller.baselines.dfmgan.trainer import Trainer
from deffiller.config import Profile
from deffiller.data.layout import Pair
from deffiller.errors import DefFillerError
from deffiller.training.loop import SUMMARY
from deffiller.utils.clock import SUMMARY_KEY, TrainingClock
from deffiller.utils.device import resolve_device
from deffiller.utils.io import write_json, write_text
from deffiller.utils.seeds import derive_seed

DEFECT_PREFIXES = ("defect_mapping.", "synthesis.defect_blocks.")


def _logged_step(line: str) -> int | None:
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None  # a line cut off by a crash


def _truncate_log(path: Path, step: int) -> None:
    """Keep the lines logged up to the checkpoint being resumed from (later steps will be logged again)."""
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        write_text(path, "".join(line for line in lines if (logged := _logged_step(line)) is not None and logged <= step))


def fit(trainer: Trainer, steps: int, run_dir: Path, resume: bool, desc: str, progress: bool = True) -> dict:
    """Run `trainer` to `steps` steps in `run_dir`, then write its `run_summary.json`; returns the last losses."""
    cfg, checkpoint, log_path = trainer.cfg, run_dir / "checkpoint.pt", run_dir / "metrics.jsonl"
    seconds_before = 0.0
    if checkpoint.is_file():
        if not resume:
            raise DefFillerError(f"{checkpoint}: an unfinished run is there; pass --resume to continue it or choose another --out")
        try:
            state = load_state(checkpoint)
            trainer.load_state_dict(state)
            seconds_before = state.get(SUMMARY_KEY)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise DefFillerError(f"{checkpoint}: written by another configuration ({str(exc).splitlines()[0]}); resume "
                                 f"with the settings the run was started with, or choose another --out") from exc
    run_dir.mkdir(parents=True, exist_ok=True)
    _truncate_log(log_path, trainer.step)
    logs: dict = {}
    clock = TrainingClock(seconds_before)
    with tqdm(total=steps, initial=trainer.step, desc=desc, disable=not progress) as bar, \
            open(log_path, "a", encoding="utf-8") as log:
        while trainer.step < steps:
            started = time.perf_counter()
            logs = trainer.train_step()
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if k.startswith("loss")})
            if trainer.step % cfg.log_every == 0 or trainer.step == steps:
                record = {"step": trainer.step, "kimg": trainer.step * cfg.batch / 1000, **logs,
                          "seconds": round(time.perf_counter() - started, 4)}
                log.write(json.dumps(record) + "\n")
                log.flush()
            if trainer.step % cfg.checkpoint_every == 0 and trainer.step < steps:
                save_state(checkpoint, {**trainer.state_dict(), SUMMARY_KEY: clock.seconds()})
    write_json(run_dir / SUMMARY, {"steps": trainer.step, "batch": cfg.batch, "last": logs,
                                   SUMMARY_KEY: clock.seconds()})
    return logs


def _stage1(cfg: DFMGANConfig, pairs: list[Pair], run_dir: Path, device, seed: int, resume: bool,
            progress: bool) -> tuple[str, dict]:
    reals, described = stage1_sampler(pairs, cfg.stage1_source, cfg.resolution, cfg.clean_crop_size,
                                      cfg.clean_crop_margin)
    torch.manual_seed(seed)
    G, D = build_generator(cfg, defect=False).to(device), build_discriminator(cfg).to(device)
    trainer = Trainer(G, D, cfg, reals, ema_rampup=cfg.ema_rampup)
    logs = fit(trainer, cfg.steps(cfg.stage1_kimg), run_dir, resume, "dfmgan stage 1", progress)
    save_state(run_dir / "model.pt", {"G_ema": trainer.G_ema.state_dict(), "D": D.state_dict()})
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    return described, logs


def stage2_trainer(cfg: DFMGANConfig, stage1: dict, reals, device) -> Trainer:
    """A stage-2 trainer whose backbone and D start from stage 1 (backbone = its EMA generator)."""
    G = build_generator(cfg, defect=True)
    missing, unexpected = G.load_state_dict(stage1["G_ema"], strict=False)
    if unexpected or not all(k.startswith(DEFECT_PREFIXES) for k in missing):
        raise DefFillerError(f"the stage-1 model does not fit the dfmgan config (unexpected {unexpected[:3]}); retrain stage 1")
    D = build_discriminator(cfg)
    D.load_state_dict(stage1["D"])
    return Trainer(G.to(device), D.to(device), cfg, reals, d_match=build_match_discriminator(cfg).to(device))


def train_dfmgan(profile: Profile, data=None, train_manifest=None, out_dir=None, classes=None, resume: bool = False,
                 progress: bool = True) -> dict:
    """Train stage 1 and one stage-2 model per class into `out_dir` (default <outputs>/dfmgan); returns the summary.

    Stage 1 uses every pair given (all classes); stage 2 the pairs of each class in `classes` (default: all).
    """
    cfg = profile.section(DFMGANConfig).check()
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
    write_manifest(out_dir, meta)

    stage1_dir = out_dir / STAGE1
    lines = [f"DFMGAN on {described} ({len(pairs)} pairs) at {cfg.resolution} px on {device}"]
    if (stage1_dir / "model.pt").is_file():
        lines.append(f"stage 1: already trained in {stage1_dir} ({meta.get('stage1', {}).get('source')}), skipped")
    else:
        source, logs = _stage1(cfg, pairs, stage1_dir, device, profile.seed, resume, progress)
        meta["stage1"] = {"source": source, "steps": cfg.steps(cfg.stage1_kimg), "last": logs}
        write_manifest(out_dir, meta)
        lines.append(f"stage 1 on {source}: {cfg.steps(cfg.stage1_kimg)} steps of {cfg.batch} -> {stage1_dir / 'model.pt'}")
    stage1 = load_state(stage1_dir / "model.pt")

    for label in classes:
        class_dir = out_dir / label
        if label in meta["classes"]:
            lines.append(f"{label}: already trained in {class_dir}, skipped")
            continue
        class_pairs = [p for p in pairs if p.label == label]
        torch.manual_seed(derive_seed(profile.seed, label))  # per class, whichever classes are trained
        trainer = stage2_trainer(cfg, stage1, PairSampler(class_pairs, cfg.resolution), device)
        steps = cfg.steps(cfg.stage2_kimg)
        logs = fit(trainer, steps, class_dir, resume, f"dfmgan stage 2 {label}", progress)
        save_state(class_dir / "model.pt", {"G_ema": trainer.G_ema.state_dict()})
        (class_dir / "checkpoint.pt").unlink(missing_ok=True)
        meta["classes"].append(label)
        meta["runs"][label] = {"pairs": len(class_pairs), "steps": steps, "last": logs}
        write_manifest(out_dir, meta)
        lines.append(f"{label}: {len(class_pairs)} pairs, {steps} steps, last losses "
                     + ", ".join(f"{k} {v:.3f}" for k, v in logs.items()) + f" -> {class_dir / 'model.pt'}")
    return {"out_dir": out_dir, "lines": lines, **meta}
