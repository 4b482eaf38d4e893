"""Two CPU processes under `accelerate launch` (gloo): the same weights and files as one process (issue 18).

A step's global batch is cut into processes x accumulation micro-batches, each drawing its noise from its own
generator, so 2 processes train exactly what 1 process accumulating 2 micro-batches trains; sharded generation writes
the files one process writes. DFMGAN, whose processes draw the fakes of their own share, is checked for one state
across the processes and an exact resume instead. The launched processes import this checkout (PYTHONPATH) and see
no GPU."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from killed_jobs import kill_when
from safetensors.torch import load_file

from deffiller.cli import main
from deffiller.training.loop import checkpoint_dirs

REPO_ROOT = Path(__file__).resolve().parent.parent
STEPS = 12
FINAL = Path("checkpoints") / f"step-{STEPS}" / "trainable.safetensors"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args, log: Path, program=("-m", "deffiller")) -> subprocess.Popen:
    """`accelerate launch` of `deffiller <args>` (or of `program`) on 2 CPU processes, output to `log`, in a session of
    its own."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--num_cpu_threads_per_process", "1", "--main_process_port", str(_port()), *program, *args]
    with open(log, "wb") as fh:
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _kill_all(proc: subprocess.Popen, ready, log: Path) -> None:
    """SIGKILL the launcher and its workers (torchrun starts each in a session of its own) once `ready()` holds."""
    def killed():
        if not ready():
            return False
        workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == proc.pid]
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        return True

    kill_when(proc, killed, log)


def _parent(proc_dir: Path) -> int | None:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _run2(args, log: Path, program=("-m", "deffiller")) -> str:
    proc = _launch(args, log, program)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    return log.read_text()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("multiprocess")


@pytest.fixture(scope="module")
def data(workdir):
    from deffiller.data.synth import synthesize

    return synthesize(workdir / "SD-saliency-900", per_class=2, seed=0)


@pytest.fixture(scope="module")
def profile(workdir):
    from deffiller.config import configs_dir

    raw = yaml.safe_load((configs_dir() / "tiny.yaml").read_text())
    raw["paths"]["outputs"] = str(workdir / "outputs")
    raw["vae"]["max_steps"] = 2
    raw["train"].update(max_steps=STEPS, batch_size=2, checkpoint_every=1, keep_checkpoints=2)
    raw["sample"]["steps"] = 2
    path = workdir / "profile.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _train_args(profile, out, data, *extra):
    return ["train", "--profile", str(profile), "--init", "scratch", "--out", str(out), "--data", str(data),
            "--threads", "1", *extra]


@pytest.fixture(scope="module")
def single(workdir, profile, data):
    """One process accumulating 2 micro-batches of 1: the global batch of 2 processes x 1 (and their noise draws)."""
    out = workdir / "single"
    assert main(_train_args(profile, out, data, "--set", "train.gradient_accumulation_steps=2")) == 0
    return out


def _assert_same_weights(a: Path, b: Path):
    first, second = load_file(a / FINAL), load_file(b / FINAL)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.allclose(first[key], second[key], atol=1e-5), key


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_train_the_weights_of_one(single, workdir, profile, data):
    out = workdir / "two"
    _run2(_train_args(profile, out, data), workdir / "two.log")
    _assert_same_weights(single, out)
    assert _losses(out) == pytest.approx(_losses(single), abs=1e-5)
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["processes"] == 2 and summary["config"]["batch_size"] == 2
    assert json.loads((out / "checkpoints" / f"step-{STEPS}" / "loop_state.json").read_text())["processes"] == 2
    assert (out / "model" / "model_index.json").is_file()


def test_two_processes_generate_the_files_of_one(single, workdir, profile, data):
    def args(out):  # batches of 2 over 6 masks: the 3 batches are shared 2 + 1
        return ["generate", "--model", str(single), "--masks", str(data / "Ground truth"), "--out", str(out),
                "--profile", str(profile), "--steps", "2", "--batch-size", "2", "--threads", "1"]

    assert main(args(workdir / "gen1")) == 0
    log = _run2(args(workdir / "gen2"), workdir / "gen2.log")
    assert log.count("images generated") == 1  # the main process reports
    files = sorted(p.relative_to(workdir / "gen1") for p in (workdir / "gen1").rglob("*") if p.is_file())
    assert len(files) == 13 and files == sorted(p.relative_to(workdir / "gen2") for p in (workdir / "gen2").rglob("*")
                                                 if p.is_file())
    for name in files:
        assert (workdir / "gen1" / name).read_bytes() == (workdir / "gen2" / name).read_bytes(), name


def test_killed_two_process_training_resumes(single, workdir, profile, data):
    out, log = workdir / "killed", workdir / "killed.log"
    proc = _launch(_train_args(profile, out, data), log)
    _kill_all(proc, lambda: any(int(c.name.split("-")[1]) >= 2 for c in checkpoint_dirs(out)), log)
    done = checkpoint_dirs(out)
    assert not (out / "model").exists() and int(done[-1].name.split("-")[1]) < STEPS
    text = _run2(_train_args(profile, out, data, "--resume"), workdir / "resumed.log")
    assert "note:" not in text  # the same number of processes: nothing to say
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["status"] == "done" and summary["resumed_from"] == int(done[-1].name.split("-")[1])
    _assert_same_weights(single, out)


def test_two_processes_train_a_detector_and_adabldm(workdir, profile, data):
    """The detectors' and AdaBLDM's tasks run on 2 processes too: each run finishes, the global batch is split, and
    one process writes (a second writer would trip the atomic renames or duplicate log lines)."""
    detector = workdir / "minet2"
    _run2(["detect", "train", "--net", "minet", "--train", str(data), "--out", str(detector), "--profile",
           str(profile), "--max-steps", "2", "--set", "detect.batch_size=2"], workdir / "minet2.log")
    summary = json.loads((detector / "run_summary.json").read_text())
    assert summary["status"] == "done" and summary["processes"] == 2 and summary["config"]["batch_size"] == 2
    assert [json.loads(line)["step"] for line in (detector / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (detector / "model.pt").is_file() and not (detector / "checkpoints").exists()

    adabldm = workdir / "adabldm2"
    _run2(["baseline", "adabldm", "train", "--profile", str(profile), "--data", str(data), "--out", str(adabldm),
           "--class", "inclusion"], workdir / "adabldm2.log")
    manifest = json.loads((adabldm / "adabldm.json").read_text())
    assert manifest["classes"] == ["inclusion"]
    assert (adabldm / "inclusion" / "controlnet" / "config.json").is_file()
    assert len(list((adabldm / "inclusion" / "backgrounds").iterdir())) == manifest["runs"]["inclusion"]["backgrounds"]


def test_notebook_generation_on_two_processes_writes_the_files_of_one(single, workdir, profile, data, monkeypatch,
                                                                      capsys):
    """`run_all.sh --processes 2`: the notebooks' generation runs as `accelerate launch -m deffiller generate` with the
    notebook's profile and overrides, and writes what the in-process call writes at the same torch threads (the
    kernel's `run_all.sh --threads 1`, which the launched command inherits)."""
    from deffiller.config import load_profile, parse_settings
    from deffiller.experiments import generation
    from deffiller.experiments.launch import profile_args
    from deffiller.utils.threads import THREADS_ENV, set_torch_threads

    monkeypatch.setenv(THREADS_ENV, "1")
    assert set_torch_threads() == 1

    loaded = load_profile(profile, {"sample.batch_size": 2, "sample.steps": 2})
    assert parse_settings([a.removeprefix("--set=") for a in profile_args(loaded)[2:]]) == loaded.overrides
    root = workdir / "notebook"
    root.mkdir()
    (root / "deffiller_scratch").symlink_to(single)
    masks = data / "Ground truth"
    monkeypatch.setenv("DEFFILLER_PROCESSES", "1")
    one = generation.generate(loaded, "scratch", masks, "one", root=root)
    assert "images generated" not in capsys.readouterr().out  # in the kernel: no command ran
    for key, value in {"DEFFILLER_PROCESSES": "2", "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": "",
                       "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)
    two = generation.generate(loaded, "scratch", masks, "two", root=root)
    assert capsys.readouterr().out.count("images generated") == 1  # `deffiller generate`, launched, reported once
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) == 13 and files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for name in files:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_two_processes_train_dfmgan_alike_and_resume_exactly(workdir, data):
    """DFMGAN's phases call its networks directly: the loop averages each phase's gradients and the task the running
    means it tracks, so both processes end every stage with the same state, and a run crashed in each stage and
    resumed ends where the straight run does. (Not the weights of one process: a process draws the fakes, style mixing
    and the minibatch-std groups of its half of the batch, and the mode-seeking loss pairs samples within it.)"""
    out = workdir / "dfmgan2"
    _run2([str(data), str(out)], workdir / "dfmgan2.log", program=[str(REPO_ROOT / "tests" / "dfmgan_processes.py")])
    states = {p.stem: torch.load(p, weights_only=True) for p in (out / "states").iterdir()}
    assert sorted(states) == [f"{run}-{stage}-rank{r}" for run in ("resumed", "straight")
                              for stage in ("patches", "stage1") for r in (0, 1)]
    for stage in ("stage1", "patches"):
        reference = states[f"straight-{stage}-rank0"]
        assert any(k.startswith("G_ema.") for k in reference) and "path_length.mean" in reference
        for other in (f"straight-{stage}-rank1", f"resumed-{stage}-rank0", f"resumed-{stage}-rank1"):
            assert states[other].keys() == reference.keys()
            for key, value in reference.items():
                assert torch.equal(states[other][key], value), f"{other} {key}"
    for run in ("straight", "resumed"):  # one writer: one line per step, the models, no checkpoints left
        assert json.loads((out / run / "dfmgan.json").read_text())["classes"] == ["patches"]
        for stage in ("stage1", "patches"):
            assert (out / run / stage / "model.pt").is_file() and not (out / run / stage / "checkpoints").exists()
            steps = [json.loads(line)["step"] for line in (out / run / stage / "metrics.jsonl").read_text().splitlines()]
            assert steps == [1, 2, 3, 4]



def _files(root: Path) -> list[Path]:
    """The files under `root`, checkpoints aside (they hold one RNG state file per process)."""
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and "checkpoints" not in p.parts)


def _same_files(one: Path, two: Path) -> None:
    """The same files, with the same bytes, but for logs and summaries (they hold times) and torch.save files (they
    hold the name of the temporary file they were written to): their tensors are equal."""
    files = _files(one)
    assert files and files == _files(two)
    for name in files:
        if name.suffix == ".pt":
            first, second = (torch.load(root / name, weights_only=True) for root in (one, two))
            assert _flat(first).keys() == _flat(second).keys(), name
            assert all(torch.equal(v, _flat(second)[k]) for k, v in _flat(first).items()), name
        elif name.suffix not in (".json", ".jsonl") or name.name in ("model_index.json", "config.json"):
            assert (one / name).read_bytes() == (two / name).read_bytes(), name


def _flat(state, prefix: str = "") -> dict:
    """The tensors of a nested dict, by dotted key."""
    if isinstance(state, dict):
        return {k: v for key, value in state.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix: state} if isinstance(state, torch.Tensor) else {}


def test_notebook_steps_beyond_deffiller_as_commands_on_two_processes(workdir, profile, data, monkeypatch):
    """`run_all.sh --processes N` runs the mask DDPM's, the baselines' and the protocols' detector steps as the
    commands `experiments.launch.launch` builds. Run here in the kernel, those commands write the files of the
    in-process calls; the bulk ones (and the mask DDPM's training), replayed in one launch on 2 processes, write them
    too, the drawn masks and images byte for byte."""
    from deffiller.baselines.adabldm.base import random_base
    from deffiller.config import load_profile
    from deffiller.data.layout import load_pairs
    from deffiller.data.synth import synthesize
    from deffiller.detection.protocols import substitution
    from deffiller.experiments import baselines, detection, masks
    from deffiller.experiments.launch import profile_args

    detector_data = synthesize(workdir / "SD-10", per_class=10, seed=0)  # 9:1 split: a test pair per class
    base = random_base(load_profile(profile), load_pairs(data), workdir / "sd_base", progress=False)
    loaded = load_profile(profile, {"seed": 3, "model.sd_weights": str(base), "masks.max_steps": 2, "masks.per_class": 1,
                                    "masks.sample_batch_size": 2, "adabldm.max_steps": 1, "dfmgan.stage1_kimg": 0.008,
                                    "dfmgan.stage2_kimg": 0.008, "experiments.eval_per_class": 1})
    commands = []

    def in_kernel(launched_profile, args):  # the command line `launch` runs, on this one process
        commands.append([*args, *(profile_args(launched_profile) if launched_profile is not None else [])])
        assert main(commands[-1]) == 0

    for module in (masks, baselines, detection):
        monkeypatch.setattr(module, "launch", in_kernel)

    def steps(processes: int) -> Path:
        monkeypatch.setenv("DEFFILLER_PROCESSES", str(processes))
        root = workdir / f"notebook{processes}"
        assert masks.new_masks(loaded, data, root)["steps"] == 2
        baselines.adabldm(loaded, data, root)
        baselines.adabldm_new(loaded, root)
        baselines.dfmgan(loaded, data, root)
        runs = substitution(detector_data, {}, loaded, root / "detection", nets=["minet"],
                            trainer=detection.detector_trainer(loaded))
        assert list(runs["method"]) == ["None"] and runs["n_test"].item() == 3
        return root

    one, two = steps(1), steps(2)
    assert [c[:2] for c in commands] == [
        ["masks", "train"], ["masks", "sample"], ["baseline", "adabldm"], ["baseline", "adabldm"],
        ["baseline", "dfmgan"], ["baseline", "dfmgan"], ["detect", "train"]]
    _same_files(one, two)

    replay, redirected = workdir / "notebook2-replay", []
    for args in commands[:2] + [c for c in commands if c[2] == "generate"]:
        out = Path(args[args.index("--out") + 1])
        redirected.append(out.relative_to(two))
        redirected_args = list(args)
        redirected_args[args.index("--out") + 1] = str(replay / redirected[-1])
        commands.append(redirected_args)
    (workdir / "replay.json").write_text(json.dumps(commands[7:]))
    _run2([str(workdir / "replay.json")], workdir / "replay.log", program=[str(REPO_ROOT / "tests" / "run_commands.py")])
    assert json.loads((replay / "mask_ddpm" / "run_summary.json").read_text())["processes"] == 2
    assert _files(replay / "mask_ddpm") == _files(two / "mask_ddpm")
    for folder in redirected[1:]:  # the new masks, AdaBLDM's images for them, DFMGAN's pairs
        _same_files(two / folder, replay / folder)
