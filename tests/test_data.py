import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from deffiller.cli import main
from deffiller.data.check import check_dataset
from deffiller.data.dataset import MaskImageDataset
from deffiller.data.download import dataset_digest, download
from deffiller.data.layout import Pair, class_of, load_pairs
from deffiller.data.masks import binarize, class_map, one_hot
from deffiller.data.splits import (expansion_split, is_standard_test, read_manifest, standard_split,
                                   substitution_split, write_manifest)
from deffiller.data.synth import synthesize
from deffiller.errors import DefFillerError


def tree_digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_load_real_dataset_pairs_by_name(sd900):
    pairs = load_pairs(sd900)
    assert len(pairs) == 900
    assert {p.label for p in pairs} == {"inclusion", "patches", "scratches"}
    assert all(p.image.stem == p.mask.stem == p.name for p in pairs)
    assert sum(p.label == "patches" for p in pairs) == 300


def test_underscore_layout_and_pairing_by_name(tmp_path, synth_dataset):
    root = tmp_path / "SD-saliency-900"
    shutil.copytree(synth_dataset / "Source Images", root / "Source_Images")
    shutil.copytree(synth_dataset / "Ground truth", root / "Ground_truth")
    (root / "Ground_truth" / "In_10.png").write_bytes((root / "Ground_truth" / "In_1.png").read_bytes())
    (root / "Source_Images" / "In_10.bmp").write_bytes((root / "Source_Images" / "In_2.bmp").read_bytes())
    pairs = {p.name: p for p in load_pairs(tmp_path)}  # the parent folder works too
    assert pairs["In_10"].image.name == "In_10.bmp" and pairs["In_10"].mask.name == "In_10.png"
    assert pairs["In_2"].mask.name == "In_2.png"


def test_unpaired_file_is_an_error(tmp_path, synth_dataset):
    root = shutil.copytree(synth_dataset, tmp_path / "d")
    (root / "Ground truth" / "Sc_3.png").unlink()
    with pytest.raises(DefFillerError, match="Sc_3.bmp: image without mask"):
        load_pairs(root)


def test_class_of():
    assert class_of("Pa_17") == "patches" and class_of("Sc_3.png") == "scratches"
    with pytest.raises(DefFillerError, match="Xx_1: unknown class prefix"):
        class_of("Xx_1")


def test_binarize_before_class_encoding():
    mask = np.array([[0, 100, 128, 200, 255]], np.uint8)  # anti-aliased edge values
    labels = class_map(binarize(mask), 2)
    assert labels.tolist() == [[0, 0, 2, 2, 2]]  # the official value/255*k truncation would give [0,0,1,1,2]
    encoded = one_hot(labels, 152)
    assert encoded.shape == (152, 1, 5) and encoded.sum(0).eq(1).all()
    assert encoded[2, 0].tolist() == [0, 0, 1, 1, 1] and encoded[0, 0].tolist() == [1, 1, 0, 0, 0]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 3), st.lists(st.integers(0, 255), min_size=4, max_size=64))
def test_one_hot_round_trip(channels_extra, class_id, values):
    channels = class_id + channels_extra
    mask = np.array(values, np.uint8)[None]
    labels = class_map(binarize(mask), class_id)
    encoded = one_hot(labels, channels)
    assert torch.equal(encoded.argmax(0), torch.as_tensor(labels))
    assert encoded.sum(0).eq(1).all()


def test_one_hot_rejects_too_few_channels():
    with pytest.raises(DefFillerError, match="does not fit"):
        one_hot(np.array([[3]]), 3)


def test_standard_split_is_540_360(sd900):
    split = standard_split(load_pairs(sd900))
    assert len(split["train"]) == 540 and len(split["test"]) == 360
    test_indices = sorted({p.index for p in split["test"]})
    assert test_indices == [*range(61, 101), *range(161, 201), *range(261, 301)]


def make_pairs(n_per_class: int) -> list[Pair]:
    return [Pair(f"{pre}_{i}", Path(f"{pre}_{i}.bmp"), Path(f"{pre}_{i}.png"), label, i)
            for pre, label in (("In", "inclusion"), ("Pa", "patches"), ("Sc", "scratches"))
            for i in range(1, n_per_class + 1)]


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 60), st.integers(0, 10_000))
def test_ratio_splits_are_stratified_disjoint_and_deterministic(n, seed):
    pairs = make_pairs(n)
    for split_fn, train_share in ((substitution_split, 0.9), (expansion_split, 1 / 6)):
        split = split_fn(pairs, seed)
        assert split == split_fn(pairs, seed)
        names = [p.name for p in split["train"] + split["test"]]
        assert sorted(names) == sorted(p.name for p in pairs)
        for label in ("inclusion", "patches", "scratches"):
            assert sum(p.label == label for p in split["train"]) == round(n * train_share)


def test_paper_split_sizes():
    pairs = make_pairs(300)
    assert len(substitution_split(pairs)["train"]) == 810
    assert len(expansion_split(pairs)["train"]) == 150
    assert substitution_split(pairs, 0)["train"] != substitution_split(pairs, 1)["train"]
    assert is_standard_test(61) and not is_standard_test(60) and is_standard_test(300) and not is_standard_test(101)


def test_manifest_round_trip(tmp_path, synth_dataset):
    pairs = load_pairs(synth_dataset)
    split = expansion_split(pairs, seed=3)
    path = write_manifest(tmp_path / "m.csv", split)
    assert read_manifest(path, "train") == split["train"]
    assert read_manifest(path, "test") == split["test"]
    with pytest.raises(DefFillerError, match="manifest not found"):
        read_manifest(tmp_path / "missing.csv")


def test_synth_is_byte_identical_and_seed_dependent(tmp_path):
    a = synthesize(tmp_path / "a", per_class=2, seed=0)
    b = synthesize(tmp_path / "b", per_class=2, seed=0)
    c = synthesize(tmp_path / "c", per_class=2, seed=1)
    assert tree_digest(a) == tree_digest(b) != tree_digest(c)
    assert len(load_pairs(a)) == 6


def test_synth_looks_like_the_real_layout(synth_dataset):
    report = check_dataset(synth_dataset)
    assert report.ok and report.n_pairs == 12 and not report.warnings
    image = Image.open(synth_dataset / "Source Images" / "Pa_1.bmp")
    mask = np.asarray(Image.open(synth_dataset / "Ground truth" / "Pa_1.png"))
    assert image.mode == "L" and image.size == (200, 200)
    assert set(np.unique(mask)) == {0, 255}
    # patches are large, inclusions and scratches small, as in the real data
    area = {label: np.mean(v) for label, v in report.foreground.items()}
    assert area["patches"] > 2 * max(area["inclusion"], area["scratches"])


def test_check_real_dataset(sd900, capsys):
    assert main(["data", "check", str(sd900)]) == 0
    out = capsys.readouterr().out
    assert "valid pairs: 900" in out and "inclusion: 300 pairs" in out


def test_check_names_every_problem(tmp_path, synth_dataset, capsys):
    root = shutil.copytree(synth_dataset, tmp_path / "bad")
    bmp = root / "Source Images" / "In_1.bmp"
    bmp.write_bytes(bmp.read_bytes()[:500])
    (root / "Ground truth" / "Pa_2.png").unlink()
    shutil.copy(root / "Source Images" / "Sc_1.bmp", root / "Source Images" / "Xx_1.bmp")
    shutil.copy(root / "Ground truth" / "Sc_1.png", root / "Ground truth" / "Xx_1.png")
    Image.new("L", (200, 200), 0).save(root / "Ground truth" / "Sc_2.png")
    Image.new("L", (100, 100), 255).save(root / "Ground truth" / "Sc_3.png")
    grey = np.asarray(Image.open(root / "Ground truth" / "Sc_4.png")).copy()
    grey[grey == 255] = 200
    Image.fromarray(grey).save(root / "Ground truth" / "Sc_4.png")
    assert main(["data", "check", str(root)]) == 1
    err = capsys.readouterr().err
    assert "In_1.bmp: cannot read image" in err
    assert "Pa_2.bmp: image without mask" in err
    assert "Xx_1.bmp: unknown class prefix" in err
    assert "Sc_2.png: empty mask" in err
    assert "Sc_3.png: size 100x100 differs" in err
    assert "warning:" in err and "Sc_4.png: non-binary mask" in err
    assert "FAILED: 5 problem(s)" in err


def test_dataset_items(synth_dataset):
    pairs = load_pairs(synth_dataset)
    ds = MaskImageDataset(pairs, ("inclusion", "patches", "scratches"), size=64, mask_channels=4)
    item = ds[4]  # Pa_1
    assert item["pixel_values"].shape == (3, 64, 64) and -1 <= item["pixel_values"].min() < item["pixel_values"].max() <= 1
    assert item["sem"].shape == (4, 64, 64) and item["label"] == 1 and item["prompt"] == "patches"
    assert torch.equal(item["sem"][2], item["mask"][0]) and item["sem"][[1, 3]].sum() == 0
    with pytest.raises(DefFillerError, match="unknown class"):
        MaskImageDataset(pairs, ("inclusion", "patches"), size=64, mask_channels=4)


def test_dataset_flip_is_joint(synth_dataset):
    pairs = load_pairs(synth_dataset)
    plain = MaskImageDataset(pairs, ("inclusion", "patches", "scratches"), size=64, mask_channels=4)
    flipped = MaskImageDataset(pairs, ("inclusion", "patches", "scratches"), size=64, mask_channels=4, hflip=True)
    torch.manual_seed(0)
    items = [flipped[8] for _ in range(8)]
    reference = plain[8]
    assert any(torch.equal(i["mask"], reference["mask"].flip(-1)) for i in items)
    for item in items:
        same = torch.equal(item["mask"], reference["mask"])
        assert same == torch.equal(item["pixel_values"], reference["pixel_values"])


def test_dataset_size_mismatch(tmp_path, synth_dataset):
    root = shutil.copytree(synth_dataset, tmp_path / "d")
    Image.new("L", (50, 50), 255).save(root / "Ground truth" / "In_1.png")
    ds = MaskImageDataset(load_pairs(root), ("inclusion", "patches", "scratches"), size=32, mask_channels=4)
    with pytest.raises(DefFillerError, match="In_1.png: mask is 50x50 but its image In_1.bmp is 200x200"):
        ds[0]


def test_download_from_local_folder_and_archive(tmp_path, synth_dataset):
    archive = shutil.make_archive(str(tmp_path / "release"), "zip", synth_dataset.parent)
    with pytest.raises(DefFillerError, match="24 files, expected 1800"):
        download(tmp_path / "out1", archive)
    assert not (tmp_path / "out1" / "SD-saliency-900").exists()
    target = download(tmp_path / "out2", archive, verify=False)
    assert dataset_digest(target) == dataset_digest(synth_dataset)
    with pytest.raises(DefFillerError, match="already exists"):
        download(tmp_path / "out2", str(synth_dataset), verify=False)


def test_download_verifies_the_real_release(tmp_path, sd900):
    target = download(tmp_path, str(sd900))
    assert len(load_pairs(target)) == 900


def test_download_offline_error(tmp_path):
    with pytest.raises(DefFillerError, match="cannot download"):
        download(tmp_path, "http://127.0.0.1:9/none.zip")


def test_cli_split_writes_manifest(tmp_path, synth_dataset, capsys):
    out = tmp_path / "split.csv"
    assert main(["data", "split", str(synth_dataset), "--kind", "expansion", "--out", str(out)]) == 0
    assert "3 train, 9 test" in capsys.readouterr().out  # 1:5 of 4 per class: 1 train each
    assert len(read_manifest(out, "train")) == 3 and len(read_manifest(out, "test")) == 9


def test_scene_dataset_for_prior_stand_ins():
    from deffiller.data.shapes import OBJECTS, SceneDataset

    ds = SceneDataset(6, size=32, mask_channels=4, seed=1)
    items = [ds[i] for i in range(6)]
    assert all(i["pixel_values"].shape == (3, 32, 32) and i["sem"].shape == (4, 32, 32) for i in items)
    assert torch.equal(ds[2]["pixel_values"], items[2]["pixel_values"])  # seeded
    for item in items:
        present = {OBJECTS[k - 1] for k in range(1, 4) if item["sem"][k].any()}
        assert present and all(name in item["prompt"] for name in present)  # captions name what the map marks


def test_running_an_experiment_never_downloads(tmp_path, monkeypatch):
    """Without the real data on disk, an experiment uses the synthetic fallback (saying how to get the real data) or,
    where the profile forbids that, stops with the download command; it never reaches for the network."""
    import dataclasses
    import urllib.request

    from deffiller.config import load_profile
    from deffiller.data.source import resolve_dataset

    def no_network(*args, **kwargs):
        raise AssertionError("resolve_dataset touched the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.delenv("DEFFILLER_DATASET", raising=False)
    profile = load_profile("tiny")
    profile.paths = dataclasses.replace(profile.paths, data_root=str(tmp_path / "data"))
    profile.data = dataclasses.replace(profile.data, per_class=2)
    source = resolve_dataset(profile)
    assert source.synthetic and "deffiller data download" in source.banner
    assert len(load_pairs(source.root)) == 6
    profile.data = dataclasses.replace(profile.data, synthetic_fallback=False)
    shutil.rmtree(tmp_path / "data")
    with pytest.raises(DefFillerError, match="deffiller data download"):
        resolve_dataset(profile)
