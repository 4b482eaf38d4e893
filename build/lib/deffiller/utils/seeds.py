"""Seeds derived from a run's seed and what a draw is for (a step, a class, a file name), so that every draw is
repeatable on its own: the same parts always give the same stream, whatever else ran before or in parallel."""
from __future__ import annotations

import zlib

import numpy as np
import torch


def _words(parts) -> list[int]:
    """Entropy words for numpy's SeedSequence: integers as they are, strings by their CRC-32."""
    words = []
    for part in parts:
        if isinstance(part, str):
            words.append(zlib.crc32(part.encode("utf-8")))
        elif isinstance(part, (int, np.integer)) and not isinstance(part, bool) and part >= 0:
            words.append(int(part))
        else:
            raise ValueError(f"seed parts are non-negative integers or strings, got {part!r}")
    return words


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed (what `torch.Generator.manual_seed` takes) from `parts`, e.g. (seed, step, process)."""
    return int(np.random.SeedSequence(_words(parts)).generate_state(1, np.uint64)[0]) & (2**63 - 1)


def seeded_rng(*parts: int | str) -> np.random.Generator:
    """A numpy generator for `parts`."""
    return np.random.default_rng(_words(parts))


def seeded_generator(*parts: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator on `device` for `parts`."""
    return torch.Generator(device=device).manual_seed(derive_seed(*parts))
