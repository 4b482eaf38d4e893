"""The performance numbers of the project in one command: DefFiller training steps/s and generation images/s,
each next to the same UNet/conditioning computation run the way the official GLIGEN code runs it, mask DDPM
masks/s, detector training/inference images/s and FID featurisation images/s; medians over repeats, one table,
a JSON file with the machine and versions.

    .venv/bin/python bench/run.py [--config tiny|paper] [--device cpu|cuda] [--repeats N] [--json PATH]
        [--quick] [--deffiller-only] [--compile] [--dpm-steps 20] [--steps N] [--sample-batch N] [--threads N]

Official-style path (`official()`): explicit softmax(QK^T)V attention everywhere (fusers included), two UNet calls
per step for classifier-free guidance, grounding tokens and text recomputed, fp32 without TF32, gradient
checkpointing on. The default path is the profile's `train`/`sample` settings. On CUDA the run also measures
bf16/fp16 autocast, no checkpointing, channels_last and (with --compile) torch.compile.

The "fastest sampler setting with FID within 5% of PLMS-50" is DPM-Solver++ (2M) at --dpm-steps: random weights
cannot measure FID, so that equivalence is the literature's (Lu et al. 2022, DPM-Solver++: guided latent diffusion
converges in 15-20 steps; diffusers recommends 20-25), not a measurement of this run.

Random weights throughout (speed does not depend on them). The paper profile on a CPU is measured with few
sampling steps and one image per call (--steps, --sample-batch); images/s at the profile's steps is extrapolated
linearly in the step count.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_deffiller import random_parts, sample_speed, train_speed  # noqa: E402
from bench_detectors import detector_rows  # noqa: E402
from bench_fid import fid_rows  # noqa: E402
from bench_masks import mask_rows  # noqa: E402
from common import add_common_args, machine, print_table, save_json  # noqa: E402

TARGETS = {"generate": 2.0, "train": 1.5}
PLMS_STEPS = 50  # the official sampler's steps, the reference of the fast-sampler row  # issue 10: speed-up over the official-style path on a GPU
FID_CLAIM = ("not measured (random weights): DPM-Solver++ 2M at ~20 steps matches 50-step PLMS/DDIM FID for guided "
             "latent diffusion per Lu et al. 2022 and the diffusers scheduler docs")


def official(cfg):
    """The `train` or `sample` settings of the official GLIGEN/DefFiller code."""
    common = {"attention": "explicit", "mixed_precision": "no", "tf32": False, "channels_last": False, "compile": False}
    if hasattr(cfg, "gradient_checkpointing"):
        return dataclasses.replace(cfg, **common, gradient_checkpointing=True, cache_text=False, cache_latents=False)
    return dataclasses.replace(cfg, **common, scheduler="pndm", batched_cfg=False, cache_conditioning=False)


def settings(cfg, keys) -> str:
    return ", ".join(f"{k}={getattr(cfg, k)}" for k in keys)


TRAIN_KEYS = ("attention", "gradient_checkpointing", "mixed_precision", "tf32", "channels_last", "cache_latents")
SAMPLE_KEYS = ("scheduler", "attention", "batched_cfg", "cache_conditioning", "mixed_precision", "tf32", "channels_last",
               "compile")


def deffiller_rows(profile, args) -> tuple[list[dict], dict]:
    from deffiller.pipelines.deffiller import SampleConfig
    from deffiller.training.deffiller import TrainConfig

    cuda = args.device.startswith("cuda")
    train_cfg, sample_cfg = profile.section(TrainConfig), profile.section(SampleConfig)
    paper_on_cpu = profile.name == "paper" and not cuda
    steps = args.steps or (2 if paper_on_cpu else sample_cfg.steps)
    batch = args.sample_batch or (1 if paper_on_cpu else 2 if args.quick else sample_cfg.batch_size)
    warmup = 0 if paper_on_cpu else 1
    parts = random_parts(profile)
    rows, ratios = [], {}
    replace = dataclasses.replace

    train_official = official(train_cfg)
    train_variants = [("official-style", train_official), ("default", train_cfg)]
    if not args.quick:  # each option alone on the official-style path
        train_variants += [("official-style + sdpa", replace(train_official, attention="sdpa")),
                           ("official-style + cached text and latents",
                            replace(train_official, cache_text=True, cache_latents=True)),
                           ("official-style, no checkpointing", replace(train_official, gradient_checkpointing=False))]
        if cuda:
            train_variants.append(("official-style + tf32", replace(train_official, tf32=True)))
    if cuda:
        fast = replace(train_cfg, mixed_precision="bf16")
        train_variants += [("default + bf16", fast),
                           ("default + bf16, no checkpointing", replace(fast, gradient_checkpointing=False)),
                           ("default + bf16, no checkpointing, channels_last",
                            replace(fast, gradient_checkpointing=False, channels_last=True))]
    train_results = {}
    for name, cfg in train_variants:
        result = train_speed(profile, parts, cfg, args.device, args.repeats, max(warmup, int(cfg.cache_latents)))
        train_results[name] = result["steps/s"]
        rows.append({"measure": f"train {name}", "setting": settings(cfg, TRAIN_KEYS) + f", batch={result['batch']}",
                     "value": result["steps/s"], "unit": "steps/s", "peak MB": result["peak MB"]})
        print(f"  {rows[-1]['measure']}: {result['steps/s']:.4g} steps/s", flush=True)

    sample_official = official(sample_cfg)
    sample_variants = [("official-style", sample_official), ("default", sample_cfg)]
    if not args.quick:
        sample_variants += [("official-style + sdpa", replace(sample_official, attention="sdpa")),
                            ("official-style + batched CFG", replace(sample_official, batched_cfg=True)),
                            ("official-style + cached conditioning", replace(sample_official, cache_conditioning=True))]
        if cuda:
            sample_variants.append(("official-style + tf32", replace(sample_official, tf32=True)))
    if cuda:
        sample_variants += [(f"default + {p}", replace(sample_cfg, mixed_precision=p)) for p in ("bf16", "fp16")]
        sample_variants.append(("default + fp16, channels_last",
                                replace(sample_cfg, mixed_precision="fp16", channels_last=True)))
    sample_results = {}
    for name, cfg in sample_variants:
        result = sample_speed(profile, parts, cfg, args.device, args.repeats, warmup, steps, batch)
        sample_results[name] = result["images/s"]
        rows.append(sample_row(f"generate {name}", cfg, result, sample_cfg.steps))
    full = {name: value for name, value in sample_results.items() if name.startswith("default")}  # not the ablations
    best_name = max(full, key=full.get)
    best_cfg = dict(sample_variants)[best_name]
    dpm_steps = args.dpm_steps
    dpm = replace(best_cfg, scheduler="dpm")
    result = sample_speed(profile, parts, dpm, args.device, args.repeats, warmup,
                          min(dpm_steps, steps) if paper_on_cpu or args.quick else dpm_steps, batch)
    rows.append(sample_row(f"generate {best_name}, DPM-Solver++", dpm, result, dpm_steps,
                           note=f"vs official-style PLMS {PLMS_STEPS}; FID {FID_CLAIM}"))
    dpm_images = result["images/s"] * result["steps"] / dpm_steps
    if args.compile:
        compiled = replace(best_cfg, compile=True)
        result = sample_speed(profile, parts, compiled, args.device, args.repeats, warmup + 2, steps, batch)
        sample_results[f"{best_name} + compile"] = full[f"{best_name} + compile"] = result["images/s"]
        rows.append(sample_row(f"generate {best_name} + compile", compiled, result, sample_cfg.steps))

    base_train, base_sample = train_results["official-style"], sample_results["official-style"]
    official_plms = base_sample * steps / PLMS_STEPS  # official-style images/s at PLMS-50 (extrapolated if needed)
    for row in rows:
        if row["measure"].startswith("train"):
            row["vs official"] = row["value"] / base_train
        else:
            row["vs official"] = row["value"] / (official_plms if "DPM" in row["measure"]
                                                 else base_sample * steps / sample_cfg.steps)
    train_full = {name: value for name, value in train_results.items() if name.startswith("default")}
    ratios = {"train_speedup_vs_official": train_results["default"] / base_train,
              "generate_speedup_vs_official": sample_results["default"] / base_sample,
              "best_train_speedup_vs_official": max(train_full.values()) / base_train,
              "best_train_setting": max(train_full, key=train_full.get),
              "best_generate_speedup_vs_official": max(full.values()) / base_sample,
              "best_generate_setting": max(full, key=full.get),
              f"dpm_speedup_vs_official_plms{PLMS_STEPS}": dpm_images / official_plms,
              "dpm_steps": dpm_steps, "profile_steps": sample_cfg.steps, "measured_steps": steps,
              "targets": TARGETS}
    return rows, ratios


def sample_row(measure: str, cfg, result: dict, at_steps: int, note: str = "") -> dict:
    """images/s at `at_steps` sampler steps (extrapolated linearly when fewer were measured)."""
    images = result["images/s"] * result["steps"] / at_steps
    print(f"  {measure}: {images:.4g} images/s at {at_steps} steps", flush=True)
    extrapolated = f" (measured at {result['steps']})" if result["steps"] != at_steps else ""
    return {"measure": measure, "setting": f"{settings(cfg, SAMPLE_KEYS)}, steps={at_steps}{extrapolated}, "
            f"batch={result['batch']}", "value": images, "unit": "images/s", "peak MB": result["peak MB"],
            **({"note": note} if note else {})}


def other_rows(profile, args) -> list[dict]:
    from deffiller.detection.train import DetectConfig
    from deffiller.errors import DefFillerError

    paper = profile.name == "paper"
    warmup = 0 if args.quick else 1
    rows = []
    for r in mask_rows([profile.name], batch=100 if paper else 12, steps=2 if args.quick else 5, repeats=args.repeats,
                       device=args.device, warmup=warmup):
        rows.append({"measure": "mask DDPM sample", "setting": f"{r['res']} px, {r['profile steps']} steps "
                     f"(extrapolated), batch {100 if paper else 12}", "value": r["masks/s @profile steps"], "unit": "masks/s", "peak MB": r["sample peak MB"]})
        rows.append({"measure": "mask DDPM train", "setting": f"{r['res']} px, batch {r['train batch']}",
                     "value": r["train steps/s"], "unit": "steps/s"})
    detect = profile.section(DetectConfig)
    batch = 4 if paper else 2
    size = 32 if args.quick else detect.input_size
    for r in detector_rows(list(detect.nets), batch, size, args.repeats, args.device, warmup=warmup):
        rows.append({"measure": f"detector {r['net']} train", "setting": r["train input"], "value": r["train images/s"],
                     "unit": "images/s", "peak MB": r["train peak MB"]})
        rows.append({"measure": f"detector {r['net']} infer", "setting": r["infer input"] + ", BN folded, channels_last",
                     "value": r["infer images/s"], "unit": "images/s", "peak MB": r["infer peak MB"]})
    try:
        images = 2 if args.quick else (256 if paper else 16)
        batch = min(images, 64 if paper else 8)
        for r in fid_rows((200,), (batch,), images, args.repeats, args.device, not args.quick, warmup):
            rows.append({"measure": "FID featurisation", "setting": f"{r['input']}, batch {r['batch']}",
                         "value": r["images/s"], "unit": "images/s"})
    except DefFillerError as exc:  # no Inception weights on this machine
        rows.append({"measure": "FID featurisation", "setting": "skipped", "note": str(exc)[:200]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny", help="profile: tiny | smoke | paper")
    parser.add_argument("--json", default=str(Path(__file__).resolve().parent.parent / "outputs" / "bench" / "run.json"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer and smaller inputs, no warm-up outside DefFiller, DPM-Solver++ extrapolated from the "
                        "profile's steps")
    parser.add_argument("--deffiller-only", action="store_true", help="skip the mask DDPM, detector and FID rows")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the fastest sampling path")
    parser.add_argument("--dpm-steps", type=int, default=20, help="DPM-Solver++ steps for the fast-sampler row")
    parser.add_argument("--steps", type=int, help="sampler steps timed (default: the profile's; 2 for paper on a CPU)")
    parser.add_argument("--sample-batch", type=int, help="images per call (default: sample.batch_size; 1 for paper "
                        "on a CPU)")
    add_common_args(parser, threads=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from deffiller.config import load_profile

    profile = load_profile(args.config)
    print(f"DefFiller ({args.config}, {args.device}):", flush=True)
    rows, ratios = deffiller_rows(profile, args)
    if not args.deffiller_only:
        rows += other_rows(profile, args)
    info = machine(args.device)
    print_table([{k: row.get(k, "") for k in ("measure", "value", "unit", "vs official", "peak MB", "setting")}
                 for row in rows], f"{args.config} profile on {info.get('gpu', info['cpu'])}, median of {args.repeats}")
    print(f"\nratio vs official-style (default path): train {ratios['train_speedup_vs_official']:.3g}x, "
          f"generate {ratios['generate_speedup_vs_official']:.3g}x at {ratios['profile_steps']} steps")
    print(f"ratio vs official-style (best measured): train {ratios['best_train_speedup_vs_official']:.3g}x "
          f"({ratios['best_train_setting']}), generate {ratios['best_generate_speedup_vs_official']:.3g}x "
          f"({ratios['best_generate_setting']}); DPM-Solver++ {ratios['dpm_steps']} steps vs official-style PLMS "
          f"{PLMS_STEPS}: {ratios[f'dpm_speedup_vs_official_plms{PLMS_STEPS}']:.3g}x")
    print(f"targets on a GPU: generate {TARGETS['generate']}x, train {TARGETS['train']}x; FID of the fast sampler: "
          f"{FID_CLAIM}")
    print(info)
    save_json(args.json, {"machine": info, "config": args.config, "repeats": args.repeats, "ratios": ratios,
                          "fid_equivalence_of_fast_sampler": FID_CLAIM, "rows": rows})
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
