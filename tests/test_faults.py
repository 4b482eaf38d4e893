"""Fault suite (issue 11): long jobs killed with SIGKILL from a subprocess and rerun, and hostile inputs to the
checkpoint and model loaders and to `deffiller generate`. Each error must name the file, say what to do, and come
through the CLI as exit status 2 without a traceback."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from killed_jobs import kill_when, start_job
from safetensors.torch import load_file

from deffiller.cli import main
from deffiller.training.loop import checkpoint_dirs
from deffiller.utils.io import DOOMED_NAME, TEMP_NAME, read_image, save_image, sha256_file

REPO_ROOT = Path(__file__).resolve().parent.parent
STEPS = 8
UNET_FILE = Path("model") / "unet" / "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from deffiller.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("faults_data") / "SD-saliency-900", per_class=2, seed=0)


def _profile(folder: Path, **changes) -> Path:
    """The tiny profile as a YAML file: outputs (the VAE cache) under `folder`, a checkpoint every step."""
    from deffiller.config import configs_dir

    raw = yaml.safe_load((configs_dir() / "tiny.yaml").read_text())
    raw["paths"]["outputs"] = str(folder / "outputs")
    raw["vae"]["max_steps"] = 2
    raw["train"].update(max_steps=STEPS, checkpoint_every=1, keep_checkpoints=2)
    raw["sample"]["steps"] = 2
    for key, value in changes.items():
        section, name = key.split(".")
        raw[section][name] = value
    path = folder / f"profile-{len(list(folder.glob('profile-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def profile(workdir):
    return _profile(workdir)


def _train_args(profile, out, data, *extra):
    return ["train", "--profile", str(profile), "--init", "scratch", "--out", str(out), "--data", str(data),
            "--threads", "1", *extra]


@pytest.fixture(scope="module")
def reference(workdir, profile, data):
    """An uninterrupted run (in this process; the one under test runs in a subprocess)."""
    assert main(_train_args(profile, workdir / "reference", data)) == 0
    return workdir / "reference"


def _leftovers(folder: Path) -> list[str]:
    """Half-written things: temporaries of atomic writes and partial folders."""
    return [str(p.relative_to(folder)) for p in folder.rglob("*")
            if TEMP_NAME.fullmatch(p.name) or DOOMED_NAME.fullmatch(p.name) or "partial" in p.name]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_mid_training_then_resume_equals_an_uninterrupted_run(reference, profile, data, workdir):
    out, log = workdir / "killed", workdir / "killed.log"
    proc = start_job(["deffiller", *_train_args(profile, out, data)], log)
    kill_when(proc, lambda: any(int(c.name.split("-")[1]) >= 3 for c in checkpoint_dirs(out)), log)
    done = checkpoint_dirs(out)
    first = load_file(done[0] / "trainable.safetensors")
    assert not (out / "model").exists() and int(done[-1].name.split("-")[1]) < STEPS  # killed mid-run
    for checkpoint in done:  # whatever the moment of the kill, the checkpoints it left are complete
        assert {"trainable.safetensors", "optimizer.bin", "loop_state.json"} <= {p.name for p in checkpoint.iterdir()}
    # what a kill inside a write leaves behind: a torn log line, a half checkpoint, an atomic write's temporary
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 99, "lo')
    (out / "checkpoints" / ".partial").mkdir(exist_ok=True)
    (out / "checkpoints" / ".partial" / "optimizer.bin").write_bytes(b"half")
    (out / ".run_summary.json.k1l2m3.tmp.json").write_text('{"status": "runn')

    assert main(_train_args(profile, out, data, "--resume")) == 0
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["status"] == "done" and summary["resumed_from"] == int(done[-1].name.split("-")[1])
    assert _leftovers(out) == []
    assert _losses(out) == _losses(reference)
    for name in (f"checkpoints/step-{STEPS}/trainable.safetensors", str(UNET_FILE)):
        a, b = load_file(reference / name), load_file(out / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    final = load_file(out / f"checkpoints/step-{STEPS}/trainable.safetensors")
    assert not all(torch.equal(first[k], final[k]) for k in first)  # the kill came before the weights were final


def _masks(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        mask = np.zeros((200, 200), np.uint8)
        y, x = rng.integers(10, 140, 2)
        mask[y : y + 50, x : x + 30] = 255
        save_image(folder / f"{('In', 'Pa', 'Sc')[i % 3]}_{i + 1}.png", mask)
    return folder


def _generate_args(model, masks, out, profile, *extra):
    return ["generate", "--model", str(model), "--masks", str(masks), "--out", str(out), "--profile", str(profile),
            "--steps", "2", "--batch-size", "1", "--threads", "1", *extra]


def _finished(images: Path) -> list[Path]:
    """The images written in full (an atomic write's temporary ends in .bmp too)."""
    return [p for p in images.glob("*.bmp") if not TEMP_NAME.fullmatch(p.name)] if images.is_dir() else []


def test_sigkill_mid_generation_then_rerun_finishes_without_redoing_or_losing_images(reference, profile, workdir,
                                                                                     capsys):
    masks, out, log = _masks(workdir / "gen_masks", 24), workdir / "gen", workdir / "gen.log"
    images = out / "Source Images"
    # one mask per batch: an image is then bit-exact whatever the batches of the interrupted and resumed runs
    proc = start_job(["deffiller", *_generate_args(reference, masks, out, profile)], log)
    kill_when(proc, lambda: len(_finished(images)) >= 3, log)
    before = {p.name: (sha256_file(p), p.stat().st_mtime_ns) for p in _finished(images)}
    assert 3 <= len(before) < 24
    (images / ".Sc_24.bmp.a1b2c3.tmp.bmp").write_bytes(b"BM half")  # a kill inside a write leaves this
    capsys.readouterr()

    assert main(_generate_args(reference, masks, out, profile)) == 0
    assert f"{24 - len(before)} images generated, {len(before)} kept" in capsys.readouterr().out
    names = sorted(p.stem for p in masks.iterdir())
    assert sorted(p.name for p in images.iterdir()) == [f"{n}.bmp" for n in names]
    assert sorted(p.name for p in (out / "Ground truth").iterdir()) == [f"{n}.png" for n in names]
    assert {n: (sha256_file(images / n), (images / n).stat().st_mtime_ns) for n in before} == before
    uninterrupted = workdir / "gen_whole"
    assert main(_generate_args(reference, masks, uninterrupted, profile)) == 0
    for name in names:
        assert np.array_equal(read_image(images / f"{name}.bmp"), read_image(uninterrupted / "Source Images" / f"{name}.bmp"))


# --- checkpoints from another configuration, damaged checkpoints and models ------------------------------------------

def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("deffiller: error: ")  # after progress bars
    return err


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


@pytest.mark.parametrize("change, difference", [({"model.mask_mlp_hidden": 48}, "shapes differ"),
                                                ({"model.convnext_depths": [1, 1, 2, 1]}, "missing")])
def test_resuming_with_another_config_names_the_checkpoint(reference, data, workdir, tmp_path, capsys, change,
                                                           difference):
    run = shutil.copytree(reference, tmp_path / "run")
    assert main(_train_args(_profile(workdir, **change), run, data, "--resume")) == 2
    err = _error(capsys)
    assert f"{run / 'checkpoints' / f'step-{STEPS}'}: this checkpoint was written by another configuration" in err
    assert difference in err and "resume with the profile and settings the run was started with" in err
    assert load_file(run / UNET_FILE).keys() == load_file(reference / UNET_FILE).keys()  # the model is left alone


@pytest.mark.parametrize("damaged", ["trainable.safetensors", "optimizer.bin"])
def test_a_truncated_checkpoint_is_named_and_the_previous_one_is_the_way_back(reference, profile, data, tmp_path,
                                                                             capsys, damaged):
    run = shutil.copytree(reference, tmp_path / "run")
    newest = run / "checkpoints" / f"step-{STEPS}"
    _truncate(newest / damaged)
    assert main(_train_args(profile, run, data, "--resume")) == 2
    err = _error(capsys)
    assert f"{newest / damaged}: checkpoint file is truncated or corrupt" in err
    assert f"delete {newest} to resume from step-{STEPS - 1}" in err
    shutil.rmtree(newest)  # as the message says
    assert main(_train_args(profile, run, data, "--resume")) == 0
    a, b = load_file(reference / UNET_FILE), load_file(run / UNET_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_generate_with_a_truncated_model_names_the_file(reference, profile, tmp_path, capsys):
    model = shutil.copytree(reference / "model", tmp_path / "model")
    _truncate(model / "unet" / "diffusion_pytorch_model.safetensors")
    masks = _masks(tmp_path / "masks", 1)
    assert main(_generate_args(model, masks, tmp_path / "out", profile)) == 2
    err = _error(capsys)
    assert f"{model}: cannot load the model" in err and "unet/diffusion_pytorch_model.safetensors" in err
    assert "deffiller train ... --resume" in err
    assert not (tmp_path / "out" / "Source Images").exists()


# --- hostile masks for `deffiller generate` ----------------------------------------------------------------------------

def _wide_mask(defect_columns: slice) -> np.ndarray:
    mask = np.zeros((100, 200), np.uint8)
    mask[40:60, defect_columns] = 255
    return mask


@pytest.mark.parametrize("name, content, extra, message", [
    ("Pa_2.png", np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8), [], "not a binary mask"),
    ("Pa_2.png", _wide_mask(slice(0, 30)), [], "mask is 200x100; squaring it by a centre crop would cut off"),
    ("Rust_2.png", _wide_mask(slice(90, 110)), [], "unknown class prefix"),
    ("Pa_2.png", _wide_mask(slice(90, 110)), ["--class", "rust"], "--class 'rust' unknown"),
])
def test_generate_refuses_hostile_masks_before_drawing_any_image(reference, profile, tmp_path, capsys, name, content,
                                                                 extra, message):
    masks = _masks(tmp_path / "masks", 1)
    save_image(masks / name, content)
    assert main(_generate_args(reference, masks, tmp_path / "out", profile, *extra)) == 2
    err = _error(capsys)
    assert message in err and (name in err or "--class" in extra)
    assert not (tmp_path / "out" / "Source Images").exists()


def test_a_non_square_mask_whose_defect_survives_the_crop_is_accepted(tmp_path):
    from deffiller.pipelines.generate import read_mask

    save_image(tmp_path / "In_1.png", _wide_mask(slice(90, 110)))
    assert read_mask(tmp_path / "In_1.png").sum() == 20 * 20


# --- NaN loss ----------------------------------------------------------------------------------------------------------

def test_nan_loss_stops_the_cli_with_the_step(profile, data, tmp_path, capsys, monkeypatch):
    from deffiller.training.deffiller import DefFillerTask

    forward, calls = DefFillerTask.forward, []

    def diverging(self, batch, generator):
        calls.append(1)
        loss = forward(self, batch, generator)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(DefFillerTask, "forward", diverging)
    assert main(_train_args(profile, tmp_path / "run", data)) == 2
    err = _error(capsys)
    assert "loss became nan at step 3; stopped" in err and "step-2" in err
    assert json.loads((tmp_path / "run" / "run_summary.json").read_text())["status"] == "diverged"
    assert [c.name for c in checkpoint_dirs(tmp_path / "run")] == ["step-1", "step-2"]
    assert not (tmp_path / "run" / "model").exists() and _leftovers(tmp_path / "run") == []


# --- the other models' checkpoint loaders ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mask_run(workdir, profile, data):
    assert main(["masks", "train", "--profile", str(profile), "--data", str(data), "--out", str(workdir / "masks")]) == 0
    return workdir / "masks"


def test_mask_ddpm_truncated_or_foreign_checkpoint_and_truncated_model(mask_run, profile, data, workdir, tmp_path,
                                                                      capsys):
    run = shutil.copytree(mask_run, tmp_path / "run")
    newest = checkpoint_dirs(run)[-1]
    wider = _profile(workdir, **{"masks.block_out_channels": [16, 16]})
    assert main(["masks", "train", "--profile", str(wider), "--data", str(data), "--out", str(run), "--resume"]) == 2
    assert f"{newest}: this checkpoint was written by another configuration" in _error(capsys)
    _truncate(newest / "trainable.safetensors")
    assert main(["masks", "train", "--profile", str(profile), "--data", str(data), "--out", str(run), "--resume"]) == 2
    assert f"{newest / 'trainable.safetensors'}: checkpoint file is truncated or corrupt" in _error(capsys)
    _truncate(run / "model" / "unet" / "diffusion_pytorch_model.safetensors")
    assert main(["masks", "sample", "--model", str(run), "--out", str(tmp_path / "s"), "--profile", str(profile)]) == 2
    assert "cannot load the mask model" in _error(capsys)


@pytest.mark.parametrize("damage, message", [("truncate", "checkpoint file is truncated or corrupt"),
                                             ("foreign", "this checkpoint was written by another configuration")])
def test_detector_resume_from_a_damaged_or_foreign_checkpoint(data, tmp_path, capsys, monkeypatch, damage, message):
    from safetensors.torch import save_file

    from deffiller.detection.train import DetectorTask

    profile = _profile(tmp_path, **{"detect.checkpoint_every": 1})
    args = ["detect", "train", "--net", "minet", "--train", str(data), "--out", str(tmp_path / "run"),
            "--profile", str(profile)]
    monkeypatch.setattr(DetectorTask, "forward", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt)
                        if checkpoint_dirs(tmp_path / "run") else torch.zeros((), requires_grad=True))
    assert main(args) == 130  # interrupted in step 2, after the checkpoint of step 1
    monkeypatch.undo()
    capsys.readouterr()
    checkpoint = checkpoint_dirs(tmp_path / "run")[-1] / "trainable.safetensors"
    if damage == "truncate":
        _truncate(checkpoint)
    else:
        save_file({"conv.weight": torch.zeros(2, 2)}, checkpoint)
    assert main(args + ["--resume"]) == 2
    err = _error(capsys)
    assert f"{checkpoint if damage == 'truncate' else checkpoint.parent}: {message}" in err


def test_dfmgan_resume_from_another_config_is_named(tmp_path):
    from deffiller.baselines.dfmgan.config import DFMGANConfig
    from deffiller.baselines.dfmgan.model import build_discriminator, build_generator
    from deffiller.baselines.dfmgan.train import fit
    from deffiller.baselines.dfmgan.trainer import DFMGANTask
    from deffiller.config import load_profile
    from deffiller.errors import DefFillerError

    def task(**change):
        cfg = load_profile("tiny", {f"dfmgan.{k}": v for k, v in change.items()}).section(DFMGANConfig).check()
        return DFMGANTask(build_generator(cfg, defect=False), build_discriminator(cfg), cfg)

    side = task().cfg.resolution
    reals = [{"image": torch.zeros(1, side, side)}] * 4
    fit(task(channel_max=16), reals, 1, tmp_path, 0, False, "stage1", progress=False)  # leaves its step-1 checkpoint
    with pytest.raises(DefFillerError, match=r"step-1: this checkpoint was written by another configuration"):
        fit(task(), reals, 2, tmp_path, 0, resume=True, desc="stage1", progress=False)