"""Where notebooks put results: tables (CSV + Markdown) and figures (PNG + PDF) in `figures/<profile>/`,
each table and figure with a provenance JSON (profile, data, weights and hashes, seeds, git commit, wall time)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from deffiller.config import Profile
from deffiller.utils.io import atomic_path, sha256_file, write_json, write_text
from deffiller.utils.provenance import git_commit, provenance


def markdown_table(frame: pd.DataFrame, floatfmt: str = "g") -> str:
    """Empty cells (no value: one seed's std, an empty note, a '-' of the paper) stay empty, not 'nan'."""
    return frame.astype(object).where(frame.notna(), "").to_markdown(index=False, floatfmt=floatfmt)


@dataclass
class Outputs:
    """Collects what one notebook writes; `finish()` writes its provenance JSON."""

    profile: Profile
    notebook: str
    data: dict = field(default_factory=dict)  # e.g. {"root": ..., "synthetic": False}
    banner: str = ""  # printed on every table when the data is a stand-in
    started: float = field(default_factory=time.time)
    written: list[str] = field(default_factory=list)
    weights: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        folder = self.profile.path("figures")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def add_weights(self, name: str, path) -> None:
        path = Path(path)
        self.weights[name] = f"{path} sha256:{sha256_file(path)}" if path.is_file() else str(path)

    def table(self, name: str, frame: pd.DataFrame, caption: str = "", floatfmt: str = ".4g") -> pd.DataFrame:
        """Write `<name>.csv` and `<name>.md` (caption, banner and provenance line on top of the Markdown)."""
        with atomic_path(self.folder / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
        lines = [f"**{caption}**" if caption else "", f"> {self.banner}" if self.banner else "",
                 markdown_table(frame, floatfmt),
                 f"\n_profile `{self.profile.name}`, notebook `{self.notebook}`, commit `{git_commit()[:12]}`_"]
        write_text(self.folder / f"{name}.md", "\n\n".join(x for x in lines if x) + "\n")
        self.written += [f"{name}.csv", f"{name}.md"]
        return frame

    def figure(self, name: str, fig) -> None:
        """Write `<name>.png` and `<name>.pdf`."""
        if self.banner:
            fig.suptitle(self.banner, y=1.02, fontsize=8, color="firebrick")
        for suffix in ("png", "pdf"):
            with atomic_path(self.folder / f"{name}.{suffix}") as tmp:
                fig.savefig(tmp, format=suffix, dpi=150, bbox_inches="tight")
            self.written.append(f"{name}.{suffix}")

    def finish(self) -> Path:
        record = {
            "notebook": self.notebook,
            "profile": self.profile.name,
            "overrides": self.profile.overrides,
            "seed": self.profile.seed,
            "data": self.data,
            "banner": self.banner,
            "weights": self.weights,
            "outputs": sorted(set(self.written)),
            **provenance(),
            "wall_time_s": round(time.time() - self.started, 1),
            "torch_threads": torch.get_num_threads(),
            **self.extra,
        }
        return write_json(self.folder / f"provenance_{self.notebook}.json", record)
