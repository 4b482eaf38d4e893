"""Hostile inputs to the data layer and to atomic writes: each gets a clear error naming the file, nothing half-written."""
import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deffiller.cli import main
from deffiller.data.check import check_dataset
from deffiller.data.layout import load_pairs
from deffiller.errors import DefFillerError
from deffiller.utils.io import atomic_path, read_image, save_image, write_json


def test_read_16bit_rgba_palette(tmp_path):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "a16.png")
    out = read_image(tmp_path / "a16.png")
    assert out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 200, 255
    rgba[0, 0, 3] = 0  # a transparent pixel reads as black background
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    assert out[1, 1] == 200 and out[0, 0] == 0
    Image.fromarray(np.full((8, 8), 255, np.uint8)).convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").min() == 255


@pytest.mark.parametrize("content", [b"", b"BM\x00\x01garbage", None])
def test_corrupt_images_are_named(tmp_path, content):
    path = tmp_path / "broken file.bmp"
    if content is None:
        Image.fromarray(np.zeros((50, 50), np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:-400])
    else:
        path.write_bytes(content)
    with pytest.raises(DefFillerError, match=r"broken file\.bmp: cannot read image"):
        read_image(path)


def test_duplicate_names_are_an_error(tmp_path, synth_dataset):
    root = shutil.copytree(synth_dataset, tmp_path / "d")
    shutil.copy(root / "Source Images" / "In_1.bmp", root / "Source Images" / "In_1.png")
    with pytest.raises(DefFillerError, match="In_1.png: duplicate name"):
        load_pairs(root)


def test_all_foreground_mask_is_valid_and_all_zero_is_not(tmp_path, synth_dataset):
    root = shutil.copytree(synth_dataset, tmp_path / "d")
    Image.new("L", (200, 200), 255).save(root / "Ground truth" / "Pa_1.png")
    Image.new("L", (200, 200), 0).save(root / "Ground truth" / "Pa_2.png")
    report = check_dataset(root)
    assert [(p.name, r.split(" (")[0]) for p, r in report.errors] == [("Pa_2.png", "empty mask")]
    assert max(report.foreground["patches"]) == 1.0


def test_paths_with_spaces_and_non_ascii(tmp_path, synth_dataset, capsys):
    root = shutil.copytree(synth_dataset, tmp_path / "my data ✓" / "SD-saliency-900")
    assert main(["data", "check", str(root)]) == 0
    assert "valid pairs: 12" in capsys.readouterr().out


@pytest.mark.skipif(os.name != "posix", reason="bytes file names are a POSIX notion")
def test_non_utf8_file_name_is_reported(tmp_path, synth_dataset):
    root = shutil.copytree(synth_dataset, tmp_path / "d")
    raw = os.fsencode(root / "Source Images") + b"/In_\xff.bmp"
    with open(raw, "wb") as fh:
        fh.write((root / "Source Images" / "In_1.bmp").read_bytes())
    report = check_dataset(root)
    assert not report.ok and any("In_" in str(p) and "without mask" in r for p, r in report.errors)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text().strip().endswith("}") and '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_full_disk_during_write(tmp_path, monkeypatch):
    target = tmp_path / "image.png"

    def disk_full(self, fp, format=None, **kwargs):
        Path(fp).write_bytes(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_image(target, np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_cli_reports_full_disk_without_traceback(tmp_path, monkeypatch, capsys):
    import deffiller.data.synth as synth

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.bmp"))

    monkeypatch.setattr(synth, "save_image", full)
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--per-class", "1"]) == 2
    err = capsys.readouterr().err
    assert "x.bmp: No space left on device; free disk space" in err
