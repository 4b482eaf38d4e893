"""Which dataset a profile runs on: the real SD-Saliency-900 if it is on disk, else the synthetic fallback.

Nothing here touches the network: getting the real data is the explicit `deffiller data download` (which verifies
the published checksum and fails loudly), never a side effect of running an experiment."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deffiller.config import Profile
from deffiller.data.layout import DATASET_DIR, find_dataset
from deffiller.data.synth import synthesize
from deffiller.errors import DefFillerError
from deffiller.utils.io import recover_folder, staged_folder

SYNTHETIC_DIR = "synthetic-SD-saliency-900"
SYNTHETIC_BANNER = ("SYNTHETIC DATA: SD-Saliency-900 was not on disk (get it with `deffiller data download --out data`); "
                    "numbers are not comparable with the paper")


@dataclass(frozen=True)
class DatasetSource:
    root: Path
    synthetic: bool

    @property
    def banner(self) -> str:
        return SYNTHETIC_BANNER if self.synthetic else ""


def resolve_dataset(profile: Profile) -> DatasetSource:
    """`$DEFFILLER_DATASET`, else `<data_root>/SD-saliency-900`, else (if the profile allows) synthetic data."""
    if os.environ.get("DEFFILLER_DATASET"):
        root = Path(os.environ["DEFFILLER_DATASET"])
        find_dataset(root)
        return DatasetSource(root, synthetic=False)
    data_root = profile.path("data_root")
    real = data_root / DATASET_DIR
    if real.is_dir():
        return DatasetSource(real, synthetic=False)
    if not profile.data.synthetic_fallback:
        raise DefFillerError(
            f"{real}: SD-Saliency-900 not found and the '{profile.name}' profile does not allow synthetic data; "
            "run `deffiller data download --out data/` (or `--source <zip or folder>`)"
        )
    fake = data_root / SYNTHETIC_DIR
    if not recover_folder(fake).is_dir():
        with staged_folder(fake) as staging:
            synthesize(staging, per_class=profile.data.per_class or 300, seed=profile.seed)
    return DatasetSource(fake, synthetic=True)
