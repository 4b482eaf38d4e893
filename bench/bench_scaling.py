"""Sharded generation: `deffiller generate` images/s on 1 process and on N processes (`accelerate launch`).

    .venv/bin/python bench/bench_scaling.py [--profile tiny] [--processes 2] [--images 48] [--steps 4]
        [--batch-size 4] [--device cpu|cuda] [--quick] [--json outputs/bench/scaling.json]

Each row is the wall time of the whole command (process start, model load, generation), as a user sees it, on a
random-weight model of the profile's size; the N-process run must write the same files as the 1-process one (checked).
On a CPU machine the N processes are gloo processes sharing its cores (each on --threads threads); with --device cuda
each takes one GPU. Measure on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_deffiller import masks, random_parts  # noqa: E402
from common import machine, print_table, save_json  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


def launcher(processes: int) -> list[str]:
    """The command prefix that runs `-m deffiller` on `processes` processes."""
    if processes == 1:
        return [sys.executable]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def timed_generate(processes: int, model: Path, mask_dir: Path, out: Path, args, env: dict) -> float:
    command = [*launcher(processes), "-m", "deffiller", "generate", "--model", str(model), "--masks", str(mask_dir),
               "--out", str(out), "--profile", args.profile, "--steps", str(args.steps), "--batch-size",
               str(args.batch_size), "--threads", str(args.threads)]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="6 images, 1 step: checks that it runs, times nothing")
    parser.add_argument("--json", default="outputs/bench/scaling.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.steps, args.batch_size = 6, 1, 2

    from deffiller.config import load_profile
    from deffiller.training.deffiller import TrainConfig, save_pipeline
    from deffiller.utils.io import save_image

    profile = load_profile(args.profile)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": str(args.threads)}
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_pipeline(random_parts(profile), profile.section(TrainConfig), tuple(profile.data.classes), tmp / "model")
        prefixes = ("In", "Pa", "Sc")
        for i, mask in enumerate(masks(args.images, profile.data.source_size)):
            save_image(tmp / "masks" / f"{prefixes[i % 3]}_{i + 1}.png", mask)
        for processes in (1, args.processes):
            seconds = timed_generate(processes, tmp / "model", tmp / "masks", tmp / f"out-{processes}", args, env)
            rows.append({"processes": processes, "images": args.images, "seconds": round(seconds, 2),
                         "images/s": round(args.images / seconds, 3)})
        one, many = tmp / "out-1", tmp / f"out-{args.processes}"
        files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file() and p.suffix in (".bmp", ".png"))
        same = all((one / f).read_bytes() == (many / f).read_bytes() for f in files)
    rows[-1]["speed-up"] = round(rows[0]["seconds"] / rows[-1]["seconds"], 2)
    rows[-1]["same files"] = same
    print_table(rows, f"deffiller generate, 1 vs {args.processes} processes ({args.device})")
    save_json(args.json, {"machine": machine(args.device), "settings": vars(args), "rows": rows})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
