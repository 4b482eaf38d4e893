"""The demo page's logic through its handlers: mask in, images out; bad masks refused with a message; pairs added to a
dataset; the detector's IoU; masks from the mask DDPM; the CLI and the notebook. The page in a browser:
test_demo_browser.py."""
from __future__ import annotations

import json
import socket

import gradio
import numpy as np
import pytest
import torch
from tiny_deffiller import tiny_parts, tiny_profile

from deffiller.cli import main
from deffiller.data.layout import load_pairs
from deffiller.demo.app import DemoPage
from deffiller.demo.session import DemoSession, Variation, outline
from deffiller.detection.metrics import mask_iou_array
from deffiller.errors import DefFillerError
from deffiller.training.deffiller import TrainConfig, save_pipeline
from deffiller.utils.io import read_image

CLASSES = ("inclusion", "patches", "scratches")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo_model")
    save_pipeline(tiny_parts(tiny_profile(tmp)), TrainConfig(), CLASSES, tmp / "run" / "model")
    return tmp / "run"


@pytest.fixture(scope="module")
def page(run_dir, tmp_path_factory):
    return DemoPage(DemoSession(run_dir, "tiny"), str(tmp_path_factory.mktemp("demo_dataset")))


def scratch(size=200):
    mask = np.zeros((size, size), np.uint8)
    mask[size // 5 : size * 4 // 5, size // 2 - 6 : size // 2 + 6] = 255
    return mask


class Progress:
    def __init__(self):
        self.calls = []

    def __call__(self, progress, desc=None):
        self.calls.append(progress)


def generate(page, picture, label="scratches", seed=0, count=4, steps=3, show_outline=False):
    progress = Progress()
    editor = {"background": picture, "layers": [], "composite": picture}
    return page.generate(editor, label, 3.0, steps, "pndm", seed, count, show_outline, progress=progress), progress


def test_a_mask_gives_variations_at_the_dataset_size_with_progress(page, run_dir, monkeypatch):
    from deffiller.pipelines.deffiller import DefFillerPipeline

    def reload(*args, **kwargs):
        raise AssertionError("the model is loaded once per page, not per click")

    monkeypatch.setattr(DefFillerPipeline, "from_pretrained", reload)
    (variations, gallery, saliency, chosen, status), progress = generate(page, scratch())
    assert len(variations) == len(gallery) == 4 and saliency == []
    assert [v.seed for v in variations] == [0, 1, 2, 3] and "4 scratches images" in status
    for variation, (image, caption) in zip(variations, gallery):
        assert image.shape == (200, 200) and image.dtype == np.uint8 and image.std() > 1
        assert variation.label == "scratches" and np.array_equal(variation.mask, scratch() > 127)
        assert caption.startswith(f"{variation.seed + 1}: seed {variation.seed}")
    assert not np.array_equal(variations[0].image, variations[1].image)
    assert chosen.value == ["1", "2", "3", "4"]
    timesteps = len(page.session.pipe.scheduler.timesteps)
    assert progress.calls == [(i, timesteps) for i in range(1, timesteps + 1)]

    (again, *_), _ = generate(page, scratch(), seed=1, count=1)
    assert np.array_equal(again[0].image, variations[1].image)  # variation i is seed + i

    outlined = page.gallery(variations, True)[0][0]
    red = (outlined == (255, 40, 40)).all(axis=2)
    assert outlined.shape == (200, 200, 3) and red.any() and not red[~variations[0].mask].any()


def test_outline_is_the_mask_boundary():
    mask = np.zeros((10, 10), bool)
    mask[2:6, 3:8] = True
    red = (outline(np.zeros((10, 10), np.uint8), mask) == (255, 40, 40)).all(axis=2)
    assert red.sum() == 2 * 5 + 2 * 2 and not red[3:5, 4:7].any()


@pytest.mark.parametrize("picture, message", [
    (np.zeros((200, 200), np.uint8), "empty"),
    (np.full((200, 200), 255, np.uint8), "all white"),
    (np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8), "not a binary mask"),
    (scratch()[:, :150], "150x200; masks are square"),
    (scratch(32), "smaller than the model's 64x64"),
    (None, "no mask yet"),
])
def test_bad_masks_get_a_message_not_a_traceback(page, picture, message):
    with pytest.warns(UserWarning, match=message):
        outputs, progress = generate(page, picture)
    assert all(isinstance(o, type(gradio.skip())) for o in outputs[:4]) and progress.calls == []
    assert outputs[4].startswith("**Not done:**") and message in outputs[4]
    with pytest.warns(UserWarning, match=message):
        editor, status = page.upload(picture)
    assert message in status


def test_an_uploaded_mask_goes_onto_the_canvas(page):
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[60:200, 120:136] = 255  # opaque white scratch; the rest transparent, which counts as black
    editor, status = page.upload(rgba)
    assert editor["background"].shape == (200, 200) and set(np.unique(editor["background"])) == {0, 255}
    area = (editor["background"] == 255).mean()
    assert abs(area - 140 * 16 / 256**2) < 0.002 and f"Mask loaded: {area:.1%} of the image is defect" in status


def test_add_to_dataset_writes_valid_pairs_under_fresh_names(page, tmp_path):
    (variations, *_), _ = generate(page, scratch(), count=3)
    inclusion = Variation("inclusion", 9, variations[0].image, variations[0].mask)
    folder = tmp_path / "mine"
    (folder / "Ground truth").mkdir(parents=True)
    (folder / "Ground truth" / "Sc_7.png").write_bytes(b"")  # a name in use: never overwritten
    status = page.add(variations + [inclusion], ["1", "3", "4"], f" {folder} ")
    assert "Added Sc_8, Sc_9, In_1" in status
    status = page.add(variations, ["2"], str(folder))
    assert "Added Sc_10" in status
    assert (folder / "Ground truth" / "Sc_7.png").read_bytes() == b""
    (folder / "Ground truth" / "Sc_7.png").unlink()
    pairs = {p.name: p for p in load_pairs(folder)}
    assert sorted(pairs) == ["In_1", "Sc_10", "Sc_8", "Sc_9"]
    assert pairs["Sc_9"].label == "scratches" and pairs["In_1"].label == "inclusion"
    assert np.array_equal(read_image(pairs["Sc_9"].image), variations[2].image)
    assert np.array_equal(read_image(pairs["Sc_10"].image), variations[1].image)
    assert np.array_equal(read_image(pairs["Sc_8"].mask), scratch())
    assert not [p for p in folder.rglob(".*")]  # no temporaries left
    with pytest.warns(UserWarning, match="nothing chosen"):
        assert "nothing chosen" in page.add(variations, [], str(folder))
    with pytest.warns(UserWarning, match="no dataset folder"):
        assert "no dataset folder" in page.add(variations, ["1"], "  ")
    (tmp_path / "a_file").write_text("")
    with pytest.warns(UserWarning, match="cannot write into"):
        assert "choose another folder" in page.add(variations, ["1"], str(tmp_path / "a_file"))


@pytest.fixture(scope="module")
def detector_weights(tmp_path_factory):
    from dataclasses import asdict

    from deffiller.detection.registry import create_detector
    from deffiller.detection.train import scaled_preprocess

    torch.manual_seed(0)
    model = create_detector("minet")
    path = tmp_path_factory.mktemp("detector") / "model.pt"
    torch.save({"net": "minet", "model": model.state_dict(),
                "preprocess": asdict(scaled_preprocess(model.preprocess, 64))}, path)
    return path


def test_the_detector_scores_each_variation_by_iou_with_the_mask(run_dir, detector_weights, tmp_path):
    page = DemoPage(DemoSession(run_dir, "tiny", detector=detector_weights, net="minet"), str(tmp_path))
    (variations, gallery, saliency, chosen, _), _ = generate(page, scratch(), count=2)
    assert len(saliency) == 2
    for variation, (_, caption), (smap, map_caption) in zip(variations, gallery, saliency):
        assert smap.shape == (200, 200) and smap.dtype == np.uint8 and 0 <= variation.iou <= 1
        assert variation.iou == mask_iou_array(variation.mask, smap)
        assert f"IoU {variation.iou:.2f}" in caption and caption == map_caption and "at 0.6" in caption
    assert chosen.value == [str(i + 1) for i, v in enumerate(variations) if v.iou >= 0.6]
    mask = scratch() > 127
    assert mask_iou_array(mask, scratch()) == 1.0 and mask_iou_array(mask, 255 - scratch()) == 0.0
    with pytest.raises(DefFillerError, match="--detector WEIGHTS and --net NAME together"):
        DemoSession(run_dir, "tiny", detector=detector_weights)


def test_new_masks_come_from_the_mask_ddpm(run_dir, page, tmp_path):
    from deffiller.models.mask_ddpm import build_scheduler, build_unet
    from deffiller.training.mask_ddpm import MaskDDPMConfig
    from deffiller.pipelines.mask_sampling import MaskClasses, MaskDDPMPipeline, save_mask_model

    profile = tiny_profile(tmp_path)
    cfg = profile.section(MaskDDPMConfig)
    torch.manual_seed(0)
    save_mask_model(MaskDDPMPipeline(build_unet(cfg, 3), build_scheduler(cfg)), tmp_path / "masks" / "model",
                    MaskClasses(CLASSES, ("In", "Pa", "Sc")), "tiny")
    session = DemoSession(run_dir, "tiny", masks_model=tmp_path / "masks")
    first, again, other = (session.new_mask("patches", seed) for seed in (3, 3, 4))
    assert first.shape == (200, 200) and set(np.unique(first)) <= {0, 255}
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    with pytest.warns(UserWarning, match="--masks-model"):
        assert "--masks-model" in page.new_mask("patches", 0)[1]


def test_cli_refuses_a_folder_without_a_model_and_a_busy_port(tmp_path, run_dir, capsys):
    assert main(["demo", "--model", str(tmp_path), "--profile", "tiny"]) == 2
    assert "no DefFiller model here" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--model", str(run_dir), "--profile", "tiny", "--port", str(port), "--threads", "1"]) == 2
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err


def test_the_demo_notebook_is_thin_without_outputs_and_outside_the_chain():
    from deffiller.config import REPO_ROOT
    from deffiller.reporting.runner import discover

    path = REPO_ROOT / "notebooks" / "demo.ipynb"
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert "parameters" in cells[0]["metadata"].get("tags", []) and "deffiller.demo" in "".join(cells[-1]["source"])
    assert all(not c["outputs"] and c["execution_count"] is None for c in cells)
    assert path not in discover()
