"""Saliency metrics: the published CSEPNet maps as a fixed point, properties on synthetic maps, bad inputs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from deffiller.cli import main
from deffiller.detection.metrics import SaliencyMetrics, evaluate_folders, mask_iou_array
from deffiller.errors import DefFillerError
from deffiller.utils.io import read_image, save_image
from deffiller.config import REPO_ROOT

CSEPNET_MAPS = REPO_ROOT.parent / "shared" / "reference" / "csepnet-predictions"


def test_published_csepnet_maps_give_the_reference_scores(sd900):
    if not CSEPNET_MAPS.is_dir():
        pytest.skip(f"published CSEPNet maps not found at {CSEPNET_MAPS}")
    scores = evaluate_folders(CSEPNET_MAPS, sd900 / "Ground truth")
    assert scores["n"] == 360
    rounded = {k: round(scores[k], 4) for k in ("S", "MAE", "maxE", "maxF", "meanF", "wF")}
    assert rounded == {"S": 0.8836, "MAE": 0.0229, "maxE": 0.9655, "maxF": 0.8821, "meanF": 0.8587, "wF": 0.8574}


def test_mask_iou_array_binarises_both_at_half():
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 255  # 8 pixels
    found = np.zeros((4, 4), np.uint8)
    found[1:3] = 200  # 8 pixels, 4 shared
    found[3] = 127  # at the threshold: background
    assert mask_iou_array(mask, found) == 4 / 12 == mask_iou_array(mask > 127, found)
    assert mask_iou_array(np.zeros((4, 4), bool), np.zeros((4, 4), np.uint8)) == 1.0
    with pytest.raises(DefFillerError, match="In_1.png: mask is 4x4 but the map is 5x4"):
        mask_iou_array(mask, np.zeros((4, 5), np.uint8), "In_1.png")


@pytest.fixture
def masks(synth_dataset):
    return sorted((synth_dataset / "Ground truth").glob("*.png"))


def _score(pairs):
    metrics = SaliencyMetrics()
    for pred, mask in pairs:
        metrics.update(pred, mask)
    return metrics.compute()


def test_perfect_and_inverted_predictions(masks):
    gts = [read_image(m) for m in masks]
    perfect = _score([(g, g) for g in gts])
    assert perfect["S"] == pytest.approx(1.0) and perfect["MAE"] == pytest.approx(0.0)
    assert perfect["maxF"] == pytest.approx(1.0, abs=1e-3) and perfect["maxE"] == pytest.approx(1.0, abs=1e-3)
    inverted = _score([(255 - g, g) for g in gts])
    assert inverted["S"] < 0.3 and inverted["MAE"] > 0.5 and inverted["maxF"] < perfect["maxF"]


def test_float_maps_and_other_sizes_are_converted(masks):
    """A float map in [0,1] scores like its 8-bit PNG; a 2x map is resized back to the mask's size."""
    rng = np.random.default_rng(0)
    gts = [read_image(m) for m in masks]
    soft = [np.clip(g / 255.0 * 0.7 + rng.uniform(0, 0.3, g.shape), 0, 1) for g in gts]
    as_uint8 = _score([((s * 255).astype(np.uint8), g) for s, g in zip(soft, gts)])
    assert _score(list(zip(soft, gts))) == as_uint8
    big = [np.kron(g, np.ones((2, 2), np.uint8)) for g in gts]
    assert _score(list(zip(big, gts)))["S"] == pytest.approx(_score(list(zip(gts, gts)))["S"], abs=0.02)


def test_cli_eval_json(synth_dataset, tmp_path, capsys):
    preds = tmp_path / "pred"
    shutil.copytree(synth_dataset / "Ground truth", preds)
    assert main(["detect", "eval", "--pred", str(preds), "--gt", str(synth_dataset / "Ground truth"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n"] == 12 and scores["S"] == pytest.approx(1.0)


def test_prediction_without_mask_is_named(synth_dataset, tmp_path, capsys):
    preds = tmp_path / "pred"
    shutil.copytree(synth_dataset / "Ground truth", preds)
    save_image(preds / "Sc_999.png", np.zeros((200, 200), np.uint8))
    assert main(["detect", "eval", "--pred", str(preds), "--gt", str(synth_dataset / "Ground truth")]) == 2
    assert "Sc_999.png" in capsys.readouterr().err


@pytest.mark.parametrize("empty", ["pred", "gt"])
def test_empty_folders(synth_dataset, tmp_path, empty):
    (tmp_path / "empty").mkdir()
    pred = tmp_path / "empty" if empty == "pred" else synth_dataset / "Ground truth"
    gt = tmp_path / "empty" if empty == "gt" else synth_dataset / "Ground truth"
    with pytest.raises(DefFillerError, match="no .* images"):
        evaluate_folders(pred, gt)


def test_shape_mismatch_and_missing_folder(synth_dataset, tmp_path):
    preds = tmp_path / "pred"
    preds.mkdir()
    save_image(preds / "In_1.png", np.zeros((100, 200), np.uint8))
    with pytest.raises(DefFillerError, match="In_1.png.*200x100 but its mask is 200x200"):
        evaluate_folders(preds, synth_dataset / "Ground truth")
    with pytest.raises(DefFillerError, match="not found"):
        evaluate_folders(tmp_path / "absent", synth_dataset / "Ground truth")


def test_no_images_scored():
    with pytest.raises(DefFillerError, match="no predictions"):
        SaliencyMetrics().compute()

