"""Shared fixtures: torch on one thread, the real dataset from ../shared when present, and synthetic datasets."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
SD900 = SHARED / "data" / "SD-saliency-900"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Torch on one thread for the whole session, module fixtures included (two threads on two busy shared cores
    run many times slower); the count the session found is restored at its end."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def reset_torch_threads(one_torch_thread):
    """Back to one thread after each test, whatever the test or a command it ran set."""
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sd900() -> Path:
    """The real SD-Saliency-900 from ../shared; skipped, with the reason shown, where it is absent."""
    if not (SD900 / "Source Images").is_dir():
        pytest.skip(f"real SD-Saliency-900 not found at {SD900} (CI places ../shared beside the clone)")
    return SD900


@pytest.fixture(scope="session")
def dataset_or_synthetic(tmp_path_factory) -> tuple[Path, bool]:
    """(dataset folder, synthetic?): the real SD-Saliency-900 where ../shared has it, else a synthetic one of 8 pairs
    per class (the tiny profile's count), so that end-to-end tests run on a bare clone too."""
    if (SD900 / "Source Images").is_dir():
        return SD900, False
    from deffiller.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("synth900") / "SD-saliency-900", per_class=8, seed=0), True


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory) -> Path:
    """A synthetic dataset: 4 pairs per class at 200x200, seed 0."""
    from deffiller.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("synth") / "SD-saliency-900", per_class=4, seed=0)
