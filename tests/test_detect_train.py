"""Detector training, prediction and the protocols on a tiny synthetic dataset (MINet, the smallest network;
CSEPNet and TSERNet go through the same code). The `tiny` profile trains 2 steps at 64 px."""
from __future__ import annotations

import json

import pytest
import torch

from deffiller.cli import main
from deffiller.config import load_profile
from deffiller.data.layout import load_pairs
from deffiller.data.splits import standard_split, substitution_split, write_manifest
from deffiller.data.synth import synthesize
from deffiller.detection.nets.minet import MINet
from deffiller.detection.predict import load_detector
from deffiller.detection.protocols import expansion, substitution, substitution_pairs
from deffiller.detection.registry import Preprocess, TrainDefaults, create_detector, list_detectors
from deffiller.detection.train import (DetectConfig, DetectorTask, lr_at, make_optimizer, scaled_preprocess,
                                      train_detector)
from deffiller.errors import DefFillerError
from deffiller.utils.io import read_image


def test_all_three_networks_are_registered():
    assert {"csepnet", "tsernet", "minet"} <= set(list_detectors())
    with pytest.raises(DefFillerError, match="unknown detector 'nope'"):
        create_detector("nope")


def test_train_predict_eval_round_trip(synth_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["detect", "train", "--net", "minet", "--train", str(synth_dataset), "--out", str(run),
                 "--profile", "tiny"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["train_pairs"] == 12 and "from scratch" in summary["backbone"]
    assert summary["weight_decay"] == 5e-4  # the paper's value, not the official code's 0
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert not (run / "checkpoints").exists()

    maps = tmp_path / "maps"
    images = synth_dataset / "Source Images"
    assert main(["detect", "predict", "--net", "minet", "--weights", str(run / "model.pt"), "--images", str(images),
                 "--out", str(maps)]) == 0
    written = sorted(p.name for p in maps.iterdir())
    assert written == sorted(p.stem + ".png" for p in images.iterdir())
    assert read_image(maps / "In_1.png").shape == (200, 200)
    assert load_detector("minet", run / "model.pt").preprocess.test_size == 64  # tested at the size it was trained at
    plain = tmp_path / "plain.pt"
    torch.save(torch.load(run / "model.pt", weights_only=False)["model"], plain)
    assert load_detector("minet", plain).preprocess == MINet.preprocess  # a bare state dict: the official pipeline

    capsys.readouterr()
    assert main(["detect", "eval", "--pred", str(maps), "--gt", str(synth_dataset / "Ground truth"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n"] == 12 and all(0 <= scores[k] <= 1 for k in ("S", "MAE", "maxE", "maxF"))


def test_resume_continues_and_refuses_to_overwrite(synth_dataset, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    args = ["detect", "train", "--net", "minet", "--train", str(synth_dataset), "--out", str(run), "--profile", "tiny"]
    cfg = load_profile("tiny", {"detect.max_steps": 3, "detect.checkpoint_every": 1}).section(DetectConfig)
    pairs = load_pairs(synth_dataset)
    # a run interrupted after its step-1 checkpoint (it had logged one more step)
    forward, calls = DetectorTask.forward, []

    def interrupted(self, batch, generator):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return forward(self, batch, generator)

    monkeypatch.setattr(DetectorTask, "forward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_detector("minet", pairs, run, cfg)
    monkeypatch.setattr(DetectorTask, "forward", forward)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 2, "loss": 9}\n{"step": 3, "lo')
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    train_detector("minet", pairs, run, cfg, resume=True)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert json.loads((run / "summary.json").read_text())["steps"] == 3


def test_manifest_train_rows_and_extra_folders(synth_dataset, tmp_path):
    manifest = write_manifest(tmp_path / "split.csv", standard_split(load_pairs(synth_dataset)))
    extra = synthesize(tmp_path / "generated", per_class=1, seed=5)
    run = tmp_path / "run"
    assert main(["detect", "train", "--net", "minet", "--train", str(manifest), "--extra", str(extra),
                 "--out", str(run), "--profile", "tiny", "--max-steps", "1", "--weight-decay", "0"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_pairs"] == 12 + 3  # the 4 pairs per class are all in the standard train split
    assert summary["weight_decay"] == 0 and summary["steps"] == 1


def test_bad_training_inputs(synth_dataset, tmp_path, capsys):
    base = ["detect", "train", "--train", str(synth_dataset), "--out", str(tmp_path / "r"), "--profile", "tiny"]
    assert main(base + ["--net", "nope"]) == 2
    assert "unknown detector" in capsys.readouterr().err
    assert main(base + ["--net", "csepnet", "--backbone-weights", str(tmp_path / "vgg.pth")]) == 2
    assert "vgg.pth: backbone weights file not found" in capsys.readouterr().err
    assert main(["detect", "train", "--net", "minet", "--train", str(tmp_path / "absent.csv"), "--out",
                 str(tmp_path / "r"), "--profile", "tiny"]) == 2
    assert "manifest not found" in capsys.readouterr().err


def test_optimizer_exempts_bias_and_norm_and_poly_schedule():
    model = MINet()
    sgd = TrainDefaults(optimizer="sgd", lr=1e-3, weight_decay=5e-4, batch_size=4, epochs=100, schedule="poly",
                        decay_bias_and_norm=False)
    decayed, exempt = make_optimizer(model, sgd, 5e-4).param_groups
    assert decayed["weight_decay"] == 5e-4 and exempt["weight_decay"] == 0
    assert all(p.ndim == 4 for p in decayed["params"]) and all(p.ndim == 1 for p in exempt["params"])
    assert lr_at(sgd, 0, 100) == 1e-3 and lr_at(sgd, 50, 100) == pytest.approx(1e-3 * 0.5**0.9)
    assert lr_at(MINet.train_defaults, 50, 100) == 4e-3


def test_scaled_sizes_keep_proportions_in_multiples_of_32():
    pre = Preprocess(train_size=256, crop_size=224, test_size=256)
    assert scaled_preprocess(pre, None) is pre
    small = scaled_preprocess(pre, 96)
    assert (small.train_size, small.crop_size, small.test_size) == (96, 96, 96)  # 109.7 -> 96
    assert scaled_preprocess(pre, 448).train_size == 512


def test_protocols_on_a_tiny_dataset(tmp_path):
    real = synthesize(tmp_path / "real", per_class=5, seed=0)
    generated = synthesize(tmp_path / "gen", per_class=5, seed=7)  # same names: "generated for the real masks"
    profile = load_profile("tiny", {"detect.max_steps": 1, "data.per_class": None})
    table5 = substitution(real, {"synthetic": generated}, profile, tmp_path / "out", nets=["minet"])
    assert list(table5["method"]) == ["None", "synthetic"]
    assert list(table5["n_train"]) == [12, 12] and list(table5["n_test"]) == [3, 3]  # 9:1 of 5 per class
    assert {"S", "MAE", "maxE", "maxF"} <= set(table5.columns)
    assert not list((tmp_path / "out").rglob("model.pt"))  # weights are dropped unless keep_weights

    table8 = expansion(real, {"synthetic": generated}, profile, tmp_path / "out", nets=["minet"],
                       filter_generated=True)
    base, extended = table8.iloc[0], table8.iloc[1]
    assert base["n_train"] == 3 and base["n_test"] == 12  # 1:5 of 5 per class
    assert extended["n_generated"] == 15 and 0 <= extended["n_kept"] <= 15
    assert extended["n_train"] == 3 + extended["n_kept"]

    again = substitution(real, {"synthetic": generated}, profile, tmp_path / "out", nets=["minet"])
    assert again.equals(table5)  # cached scores: no retraining


def test_substitution_can_cut_its_training_side_per_class(tmp_path):
    real = synthesize(tmp_path / "real", per_class=5, seed=0)
    generated = synthesize(tmp_path / "gen", per_class=5, seed=7)
    profile = load_profile("tiny", {"detect.max_steps": 1, "data.per_class": None, "detect.substitution_per_class": 2})
    split, full = substitution_pairs(real, profile), substitution_split(load_pairs(real))
    assert [p.name.split("_")[0] for p in split["train"]] == ["In", "In", "Pa", "Pa", "Sc", "Sc"]
    assert set(split["train"]) < set(full["train"]) and split["test"] == full["test"]
    table5 = substitution(real, {"synthetic": generated}, profile, tmp_path / "out", nets=["minet"])
    assert list(table5["n_train"]) == [6, 6] and list(table5["n_test"]) == [3, 3]


def test_substitution_needs_an_image_per_training_mask(tmp_path):
    real = synthesize(tmp_path / "real", per_class=5, seed=0)
    partial = synthesize(tmp_path / "gen", per_class=2, seed=7)
    profile = load_profile("tiny", {"detect.max_steps": 1, "data.per_class": None})
    with pytest.raises(DefFillerError, match="no generated image for"):
        substitution(real, {"partial": partial}, profile, tmp_path / "out", nets=["minet"])
