"""The wall time of a training run, summed over the sessions (resumes) that produced its weights.

Every trainer stores `TrainingClock.seconds()` in each checkpoint and in its summary (`train_seconds`); a resumed
session starts from what its checkpoint stored. Time a killed session spent after its last checkpoint is not
counted: nothing it computed was kept. A checkpoint written before this was recorded gives `None` (unknown), never
a sum that silently misses sessions.
"""
from __future__ import annotations

import math
import time

SUMMARY_KEY = "train_seconds"


class TrainingClock:
    def __init__(self, before: float | None = 0.0):
        """`before`: the seconds stored by the checkpoint a session resumes from (0 for a fresh run, None unknown)."""
        self.before, self.started = before, time.perf_counter()

    def seconds(self) -> float | None:
        return None if self.before is None else round(self.before + time.perf_counter() - self.started, 3)


def summary_seconds(summary: dict) -> float:
    """The `train_seconds` of a run summary; NaN where the run did not record it."""
    value = summary.get(SUMMARY_KEY)
    return math.nan if value is None else float(value)
