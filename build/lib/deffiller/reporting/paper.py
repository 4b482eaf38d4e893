"""The paper's published tables, stored as data, to print beside every regenerated table."""
from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd
import yaml

TABLES_FILE = Path(__file__).with_name("paper_tables.yaml")


@cache
def _tables() -> dict:
    return yaml.safe_load(TABLES_FILE.read_text(encoding="utf-8"))


def paper_table(name: str) -> pd.DataFrame:
    """A published table as a DataFrame (`table1` ... `table8`); None where the paper shows '-' or no number."""
    spec = _tables()[name]
    return pd.DataFrame(spec["rows"], columns=spec["columns"])


def paper_caption(name: str) -> str:
    return _tables()[name]["caption"]


def beside_paper(ours: pd.DataFrame, name: str, keys: list[str]) -> pd.DataFrame:
    """Join a regenerated table with the published one on `keys`; value columns get `_ours` / `_paper` suffixes."""
    published = paper_table(name)
    merged = ours.merge(published, on=keys, how="left", suffixes=("_ours", "_paper"))
    value_columns = [c for c in ours.columns if c not in keys]
    order = keys + [f"{c}_{side}" for c in value_columns for side in ("ours", "paper") if f"{c}_{side}" in merged]
    return merged[order]
