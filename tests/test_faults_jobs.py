"""Fault suite (issue 11), the other long jobs: detector training and the notebook runner killed with SIGKILL and
rerun, leftovers of killed writes in mask sampling, and AdaBLDM resumed under another config."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml
from killed_jobs import kill_when, start_job

from deffiller.cli import main
from deffiller.training.loop import checkpoint_dirs
from deffiller.utils.io import TEMP_NAME

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from deffiller.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("faults_jobs_data") / "SD-saliency-900", per_class=2, seed=0)


def _profile(folder: Path, **sections) -> Path:
    """The tiny profile as a YAML file, outputs under `folder`, with `sections` = {section: {key: value}} changed."""
    from deffiller.config import configs_dir

    raw = yaml.safe_load((configs_dir() / "tiny.yaml").read_text())
    raw["paths"].update(outputs=str(folder / "outputs"), figures=str(folder / "figures"))
    for section, changes in sections.items():
        raw[section].update(changes)
    path = folder / f"profile-{len(list(folder.glob('profile-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _temps(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if TEMP_NAME.fullmatch(p.name)]


# --- detector training ------------------------------------------------------------------------------------------------

DETECT_STEPS = 9  # 6 pairs in batches of 2: 3 epochs of 3 steps, so the kill and the resume cross epochs


def _detect_args(profile, data, out, *extra):
    return ["detect", "train", "--net", "minet", "--train", str(data), "--out", str(out), "--profile", str(profile),
            *extra]


def test_sigkill_mid_detector_training_then_resume_equals_an_uninterrupted_run(data, tmp_path):
    profile = _profile(tmp_path, detect={"epochs": 3, "max_steps": DETECT_STEPS, "checkpoint_every": 1})
    reference = tmp_path / "reference"
    assert main(_detect_args(profile, data, reference)) == 0

    out, log = tmp_path / "killed", tmp_path / "killed.log"
    proc = start_job(["deffiller", *_detect_args(profile, data, out)], log)
    metrics = out / "metrics.jsonl"
    kill_when(proc, lambda: metrics.is_file() and metrics.read_text().count("\n") >= 4, log)
    assert checkpoint_dirs(out) and not (out / "model.pt").exists()  # killed mid-run
    killed_at = json.loads((checkpoint_dirs(out)[-1] / "loop_state.json").read_text())["step"]
    assert 3 <= killed_at < DETECT_STEPS
    with open(metrics, "a") as fh:  # what a kill inside a write leaves: a torn log line, an atomic write's temporary
        fh.write('{"step": 99, "lo')
    (out / ".checkpoint.pt.k1l2m3.tmp.pt").write_bytes(b"half")

    assert main(_detect_args(profile, data, out, "--resume")) == 0
    assert _temps(out) == [] and not (out / "checkpoints").exists()
    losses = [[json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
              for run in (reference, out)]
    assert len(losses[0]) == DETECT_STEPS and losses[1] == losses[0]
    a, b = (torch.load(run / "model.pt", weights_only=False)["model"] for run in (reference, out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- the notebook runner (run_all.sh) ---------------------------------------------------------------------------------

def _notebook(path: Path, body: str) -> None:
    import nbformat

    cells = [nbformat.v4.new_code_cell('PROFILE: str = "tiny"  # profile'), nbformat.v4.new_code_cell(body)]
    cells[0].metadata["tags"] = ["parameters"]
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=kernel), path)


def test_sigkill_mid_notebook_then_rerun_redoes_only_the_killed_one(tmp_path, monkeypatch):
    from deffiller.config import configs_dir
    from deffiller.reporting import runner

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny.yaml").write_text(_profile(tmp_path).read_text())
    monkeypatch.setenv("DEFFILLER_CONFIGS", str(configs))
    monkeypatch.setenv("DEFFILLER_DATASET", str(tmp_path / "no-dataset"))
    assert configs_dir() == configs
    notebooks, flag, kernel_pid = tmp_path / "nbs", tmp_path / "stop-in-02", tmp_path / "kernel.pid"
    notebooks.mkdir()
    write_table = ("import pandas as pd\nfrom deffiller.config import load_profile\n"
                   "from deffiller.reporting.outputs import Outputs\n"
                   "Outputs(load_profile(PROFILE), '{n}').table('t{n}', pd.DataFrame({{'x': ['{n}']}}))\n")
    _notebook(notebooks / "01_a.ipynb", write_table.format(n="01"))
    _notebook(notebooks / "02_b.ipynb", write_table.format(n="02") + (
        "import os, pathlib, time\n"
        f"pathlib.Path({str(kernel_pid)!r}).write_text(str(os.getpid()))\n"
        f"if os.path.exists({str(flag)!r}):  # the first run stops here until it is killed\n"
        f"    os.remove({str(flag)!r})\n"
        "    time.sleep(300)\n"))
    figures, stamps = tmp_path / "figures", tmp_path / "outputs" / "stamps"
    assert [r.status for r in runner.run_all("tiny", notebooks_dir=notebooks)] == ["ran", "ran"]
    first_table = (figures / "t01.csv").stat().st_mtime_ns

    flag.touch()  # a forced rerun of 02, killed mid-notebook: its stamp of the finished first run must not survive
    log = tmp_path / "runner.log"
    proc = start_job(["deffiller.reporting.runner", "--profile", "tiny", "--notebooks", str(notebooks), "--only", "02",
                   "--force"], log,
                  {"DEFFILLER_CONFIGS": str(configs), "DEFFILLER_DATASET": str(tmp_path / "no-dataset")})
    try:
        kill_when(proc, lambda: not flag.exists(), log, timeout=120)
    finally:  # papermill starts the kernel in a session of its own: the kill of the runner's group misses it
        if kernel_pid.is_file():
            try:
                os.kill(int(kernel_pid.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert (stamps / "01_a.json").is_file() and not (stamps / "02_b.json").exists()
    (figures / ".t02.csv.k1l2m3.tmp.csv").write_text("x\n0")  # what a kill inside Outputs.table leaves

    results = runner.run_all("tiny", notebooks_dir=notebooks)
    assert [(r.notebook, r.status) for r in results] == [("01_a.ipynb", "skipped"), ("02_b.ipynb", "ran")]
    assert (stamps / "02_b.json").is_file() and (figures / "t01.csv").stat().st_mtime_ns == first_table
    assert sorted(p.name for p in figures.iterdir()) == ["t01.csv", "t01.md", "t02.csv", "t02.md"]


# --- mask sampling ----------------------------------------------------------------------------------------------------

def test_masks_sample_rerun_removes_temporaries_of_killed_writes_and_keeps_finished_masks(data, tmp_path, capsys):
    profile = _profile(tmp_path, masks={"max_steps": 2, "sampling_steps": 2})
    model, out = tmp_path / "mask-model", tmp_path / "masks"
    assert main(["masks", "train", "--profile", str(profile), "--data", str(data), "--out", str(model)]) == 0
    sample = ["masks", "sample", "--profile", str(profile), "--model", str(model), "--out", str(out)]
    assert main([*sample, "--per-class", "1"]) == 0
    folders = [out / "Ground truth", out / "masks_64"]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for folder in folders for p in folder.iterdir()}
    assert sorted(p.name for p in before) == sorted(["In_1.png", "Pa_1.png", "Sc_1.png"] * 2)
    for folder in (out, *folders):  # what a kill inside a write leaves
        (folder / ".In_2.png.k1l2m3.tmp.png").write_bytes(b"\x89PNG half")
    capsys.readouterr()

    assert main([*sample, "--per-class", "2"]) == 0
    assert "3 masks drawn, 3 kept" in capsys.readouterr().out
    assert _temps(out) == []
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before
    assert all(sorted(p.name for p in folder.iterdir()) == [f"{c}_{i}.png" for c in ("In", "Pa", "Sc") for i in (1, 2)]
               for folder in folders)


# --- AdaBLDM ----------------------------------------------------------------------------------------------------------

def test_adabldm_resume_under_another_config_names_the_checkpoint(data, tmp_path, monkeypatch, capsys):
    from deffiller.baselines.adabldm import train as adabldm_train
    def crash(controlnet, folder):  # the run dies after its last checkpoint, before the ControlNet is saved
        raise RuntimeError("killed")

    started = _profile(tmp_path, vae={"max_steps": 2}, adabldm={"max_steps": 2, "checkpoint_every": 1})
    # the random base's VAE downsamples 4x: the hint encoder uses the last three channel counts
    wider = _profile(tmp_path, vae={"max_steps": 2}, adabldm={"max_steps": 2, "checkpoint_every": 1,
                                                             "cond_embedding_channels": [16, 32, 96, 128]})
    model = tmp_path / "model"
    train = ["baseline", "adabldm", "train", "--data", str(data), "--class", "scratches", "--out", str(model)]
    with monkeypatch.context() as patched:
        patched.setattr(adabldm_train, "save_controlnet", crash)
        with pytest.raises(RuntimeError, match="killed"):
            main([*train, "--profile", str(started)])
    newest = checkpoint_dirs(model / "scratches")[-1]
    capsys.readouterr()

    assert main([*train, "--profile", str(wider), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("deffiller: error: ")
    assert f"{newest}: this checkpoint was written by another configuration" in err and "shapes differ" in err
    assert main([*train, "--profile", str(started), "--resume"]) == 0  # the original settings still resume it
    assert (model / "scratches" / "controlnet").is_dir()
