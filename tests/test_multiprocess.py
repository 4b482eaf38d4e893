"""Two CPU processes under `accelerate launch` (gloo): the same weights and files as one process (issue 18).

A step's global batch is cut into processes x accumulation micro-batches, each drawing its noise from its own
generator, so 2 processes train exactly what 1 process accumulating 2 micro-batches trains; sharded generation writes
the files one process writes. The launched processes import this checkout (PYTHONPATH) and see no GPU."""
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
    notebook's profile and overrides, and writes what the in-process call writes."""
    from deffiller.config import load_profile, parse_settings
    from deffiller.experiments import generation
    from deffiller.experiments.launch import profile_args

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
