"""The package installed from a wheel, not the checkout: profiles ship inside it, and the CLI works from any folder."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deffiller.config import REPO_ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """deffiller installed (no dependencies: they are this environment's) from a wheel built from the checkout."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy: building writes build/ and *.egg-info/ beside the sources
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", "data", "outputs", "figures", "weights", ".hypothesis"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(root / "dist"), str(source)], check=True)
    wheel = next((root / "dist").glob("deffiller-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"deffiller/configs/tiny.yaml", "deffiller/configs/smoke.yaml", "deffiller/configs/paper.yaml",
            "deffiller/reporting/paper_tables.yaml"} <= set(names)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(root / "site"),
                    str(wheel)], check=True)
    return root


def _deffiller(installed, cwd, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFFILLER_")}
    env["PYTHONPATH"] = str(installed / "site")  # ahead of the checkout's editable install
    return subprocess.run([sys.executable, "-m", "deffiller", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_wheel_install_trains_and_generates_from_any_folder(installed, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([sys.executable, "-c", "import deffiller.config as c; print(c.__file__, c.REPO_ROOT)"],
                           cwd=work, env={**os.environ, "PYTHONPATH": str(installed / "site")}, capture_output=True,
                           text=True, check=True).stdout.split()
    assert Path(where[0]).is_relative_to(installed / "site") and Path(where[1]) == work
    data = work / "SD-saliency-900"
    assert _deffiller(installed, work, "data", "synth", "--out", str(data), "--per-class", "2").returncode == 0
    check = _deffiller(installed, work, "data", "check", str(data))
    assert check.returncode == 0, check.stdout + check.stderr
    train = _deffiller(installed, work, "train", "--profile", "tiny", "--init", "scratch", "--data", str(data),
                       "--out", "run", "--set", "vae.max_steps=2", "--set", "train.max_steps=2")
    assert train.returncode == 0, train.stdout + train.stderr
    assert json.loads((work / "run" / "run_summary.json").read_text())["step"] == 2
    generate = _deffiller(installed, work, "generate", "--model", "run", "--masks", str(data / "Ground truth"),
                          "--out", "generated", "--profile", "tiny", "--steps", "2")
    assert generate.returncode == 0, generate.stdout + generate.stderr
    assert len(list((work / "generated" / "Source Images").glob("*.bmp"))) == 6
