"""`deffiller data check`: validate a dataset folder file by file and summarise it."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deffiller.data.layout import CLASS_PREFIXES, scan
from deffiller.data.masks import is_binary
from deffiller.errors import DefFillerError
from deffiller.utils.io import read_image


@dataclass
class CheckReport:
    root: Path
    pairs_per_class: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)
    foreground: dict[str, list[float]] = field(default_factory=dict)
    errors: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def n_pairs(self) -> int:
        return sum(self.pairs_per_class.values())

    def summary(self) -> str:
        lines = [f"dataset: {self.root}", f"valid pairs: {self.n_pairs}"]
        for label, count in sorted(self.pairs_per_class.items()):
            fg = self.foreground.get(label, [])
            stats = f", defect area mean {np.mean(fg):.1%} (min {np.min(fg):.2%}, max {np.max(fg):.1%})" if fg else ""
            lines.append(f"  {label}: {count} pairs{stats}")
        lines.append("image sizes: " + ", ".join(f"{w}x{h} ({n})" for (w, h), n in sorted(self.sizes.items())))
        for path, reason in self.warnings:
            lines.append(f"warning: {path}: {reason}")
        for path, reason in self.errors:
            lines.append(f"error: {path}: {reason}")
        lines.append("OK" if self.ok else f"FAILED: {len(self.errors)} problem(s)")
        return "\n".join(lines)


def check_dataset(root, prefixes: dict[str, str] = CLASS_PREFIXES) -> CheckReport:
    """Every problem of a dataset folder, each named by file; never stops at the first."""
    pairs, problems = scan(root, prefixes)
    report = CheckReport(Path(root), errors=list(problems))
    for pair in pairs:
        try:
            image = read_image(pair.image, "L")
            mask = read_image(pair.mask, "L")
        except DefFillerError as exc:
            path, _, reason = str(exc).partition(": ")
            report.errors.append((Path(path), reason))
            continue
        if image.shape != mask.shape:
            report.errors.append((pair.mask, f"size {mask.shape[1]}x{mask.shape[0]} differs from its image's "
                                             f"{image.shape[1]}x{image.shape[0]}"))
            continue
        foreground = mask > 127
        if not foreground.any():
            report.errors.append((pair.mask, "empty mask (no defect pixel): remove the pair or fix the mask"))
            continue
        if not is_binary(mask):
            values = np.unique(mask)
            report.warnings.append((pair.mask, f"non-binary mask ({len(values)} values in [{values.min()}, {values.max()}]); "
                                               "binarised at >127"))
        report.pairs_per_class[pair.label] += 1
        report.sizes[(image.shape[1], image.shape[0])] += 1
        report.foreground.setdefault(pair.label, []).append(float(foreground.mean()))
    return report
