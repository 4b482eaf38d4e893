"""The paper's claims, checked on the tables of one run: the report's "Claims of the paper, checked on this run".

Every number and verdict comes from the CSVs in `figures/<profile>/` (table1, table2, table3, table5, table7,
table8, their leak-free variants table5_leakfree and table8_leakfree, and fid_seeds.csv, as the notebooks write
them), never from typed text. Each claim is a margin that is
positive when the claim holds (a rival's FID minus DefFiller's, a detector's S with DefFiller's data minus without),
judged against its spread (RULE below).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deffiller.detection.protocols import SHORT_NOTE
from deffiller.reporting.paper import paper_table

HOLDS, FAILS, NOT_SEPARABLE, NOT_RUN = "holds", "does not hold", "not separable", "not run"
NO_SPREAD = "no spread measured"
FID_COLUMNS = ("inclusion", "patches", "scratches", "AVG")
KEEP_S_WITHIN = 0.03  # Table 5: "substitution keeps S within about 0.03 of real data"
RULE = (
    "Each claim is a difference between rows that is positive when the claim holds. It **holds** when that margin is "
    "positive and at least twice the spread, **does not hold** when it is negative (or zero) and at least twice the "
    "spread in size, and is **not separable** when it is smaller than twice the spread: noise could explain it. "
    "Spread of an FID: the absolute difference between the FIDs of the main DefFiller model sampled with two seeds "
    "(`fid_seeds.csv`), per class for a class, AVG for AVG. Spread of a detector comparison: the larger sample std "
    "over training seeds of the two rows; for an average over networks, the mean of the networks' spreads. Where only "
    f"one seed ran, the spread column says \"{NO_SPREAD}\" and the verdict is the margin's sign alone, unless a row "
    f"is marked \"{SHORT_NOTE}\": a detector stopped before converging, on one seed, gives no evidence either way, "
    f"so its comparison is **not separable**. A claim with "
    f"several rivals holds only if it holds against each, and does not hold if it fails against any. \"{NOT_RUN}\": "
    "its table (or a row it needs) was not produced by this run. "
    f"Table 5's \"keeps S\" margin is {KEEP_S_WITHIN} minus the drop of S from real data."
)


def read_table(path) -> pd.DataFrame:
    """A table CSV as the notebooks write it: empty cells are NaN, the method name "None" stays a string."""
    return pd.read_csv(path, keep_default_na=False, na_values=["", "nan", "NaN"])


class _Missing(Exception):
    """A table or a row a claim needs is absent."""


def judge(margin: float, spread: float | None) -> str:
    """The verdict on a margin that is positive when the claim holds, against twice `spread` (None: sign only)."""
    if spread is not None and abs(margin) < 2 * spread:
        return NOT_SEPARABLE
    return HOLDS if margin > 0 else FAILS


def combine(verdicts) -> str:
    """One verdict for a claim made against several rivals."""
    verdicts = set(verdicts)
    return FAILS if FAILS in verdicts else NOT_SEPARABLE if NOT_SEPARABLE in verdicts else HOLDS


def _spread_text(spread: float | None, what: str) -> str:
    return NO_SPREAD if spread is None else f"{spread:.3g} ({what})"


class RunTables:
    """The CSV tables of one run folder."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def table(self, name: str) -> pd.DataFrame:
        path = self.folder / f"{name}.csv"
        if not path.is_file():
            raise _Missing(f"{name}.csv not produced")
        return read_table(path)

    def fid_spread(self, column: str) -> float | None:
        """Seed-to-seed spread of the main DefFiller model's FID in `column` (max - min over seeds)."""
        try:
            seeds = self.table("fid_seeds")
        except _Missing:
            return None
        values = seeds[column].dropna() if column in seeds else pd.Series(dtype=float)
        return float(values.max() - values.min()) if len(values) >= 2 else None


def _matches(value, key) -> bool:
    try:
        return float(value) == float(key)
    except (TypeError, ValueError):
        return str(value) == str(key)


def _value(frame: pd.DataFrame, keys: dict, column: str) -> float:
    """The value in `column` of the row whose key columns equal `keys` (numbers compared as numbers)."""
    label = ", ".join(str(v) for v in keys.values())
    if not set(keys) <= set(frame.columns):
        raise _Missing(f"no column {sorted(set(keys) - set(frame.columns))} for row '{label}'")
    found = frame
    for column_name, key in keys.items():
        found = found[found[column_name].map(lambda v, key=key: _matches(v, key))]
    if found.empty or column not in found or pd.isna(found[column].iloc[0]):
        raise _Missing(f"no {column} for row '{label}'")
    return float(found[column].iloc[0])


def _label(key: str, value) -> str:
    """A row's name in the numbers column: `guidance 3` for a numeric key, the key value itself otherwise."""
    try:
        return f"{key} {float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def _listed(key: str, values: dict) -> str:
    return ", ".join(f"{_label(key, k)} {v:.1f}" for k, v in values.items())


def _lowest(frame: pd.DataFrame, key: str, best, rivals, column: str, spread: float | None) -> tuple[str, str]:
    """(numbers, verdict) of "`best` has the lowest FID in `column`"; rivals without a value are left out."""
    ours = _value(frame, {key: best}, column)
    others = {}
    for rival in rivals:
        try:
            others[rival] = _value(frame, {key: rival}, column)
        except _Missing:
            continue
    if not others:
        raise _Missing(f"no row to compare {best} with")
    numbers = f"{_listed(key, {best: ours})}; against {_listed(key, others)}"
    return numbers, combine(judge(v - ours, spread) for v in others.values())


def _highest(frame: pd.DataFrame, key: str, worst, rivals, column: str, spread: float | None) -> tuple[str, str]:
    """(numbers, verdict) of "`worst` has the highest FID in `column`"."""
    ours = _value(frame, {key: worst}, column)
    others = {r: _value(frame, {key: r}, column) for r in rivals}
    numbers = f"{_listed(key, {worst: ours})}; against {_listed(key, others)}"
    return numbers, combine(judge(ours - v, spread) for v in others.values())


def _fid_claim(run: RunTables, name: str, text: str, column: str, check) -> dict:
    """A claim on FID in `column`: `check(frame, spread)` -> (numbers, verdict)."""
    spread = run.fid_spread(column)
    spread_text = _spread_text(spread, f"seed spread, {column}")
    return _claim(run, name, text, lambda frame: (*check(frame, spread), spread_text))


def _others(frame: pd.DataFrame, key: str, *left_out) -> list:
    """The key values of the rows, without the `real` floor and `left_out` (numbers compared as numbers)."""
    if key not in frame:
        raise _Missing(f"no column {key}")
    return [v for v in frame[key] if not any(_matches(v, x) for x in ("real", *left_out))]


def _table1(run: RunTables) -> list[dict]:
    return [
        _fid_claim(run, "table1", "adapted GLIGEN init (`gligen`) gives the lowest AVG FID of the paper's rows "
                   "(no adaptation, sd, gligen)", "AVG",
                   lambda frame, spread: _lowest(frame, "strategy", "gligen", ["no adaptation", "sd"], "AVG", spread)),
        _fid_claim(run, "table1", "no adaptation gives the highest AVG FID of the paper's rows", "AVG",
                   lambda frame, spread: _highest(frame, "strategy", "no adaptation", ["sd", "gligen"], "AVG",
                                                  spread)),
    ]


def _guidance_7_worst(frame: pd.DataFrame, spread: float | None) -> tuple[str, str]:
    numbers, verdict = _highest(frame, "guidance", 7, _others(frame, "guidance", 7), "AVG", spread)
    fid3, fid7 = (_value(frame, {"guidance": g}, "AVG") for g in (3, 7))
    return f"{numbers}; (FID(7) - FID(3)) / FID(7) = {100 * (fid7 - fid3) / fid7:.1f}% (paper: about 14%)", verdict


def _table2(run: RunTables) -> list[dict]:
    return [
        _fid_claim(run, "table2", "guidance 3 gives the lowest AVG FID", "AVG",
                   lambda frame, spread: _lowest(frame, "guidance", 3, _others(frame, "guidance", 3), "AVG", spread)),
        _fid_claim(run, "table2", "guidance 7 gives the highest AVG FID, about 14% above guidance 3", "AVG",
                   _guidance_7_worst),
    ]


def _deffiller_lowest(run: RunTables, name: str) -> list[dict]:
    return [_fid_claim(run, name, f"DefFiller gives the lowest FID, {column}", column,
                       lambda frame, spread, column=column: _lowest(frame, "method", "DefFiller",
                                                                    _others(frame, "method", "DefFiller"), column,
                                                                    spread))
            for column in FID_COLUMNS]


def _s_and_std(frame: pd.DataFrame, network: str, method: str) -> tuple[float, float | None]:
    """Mean S of a (network, method) row and its std over seeds (None when one seed ran)."""
    s = _value(frame, {"network": network, "method": method}, "S")
    try:
        return s, _value(frame, {"network": network, "method": method}, "S std")
    except _Missing:
        return s, None


def _pair(frame: pd.DataFrame, network: str, method: str) -> tuple[float, float, float | None]:
    """S without generated data, S with `method`'s, and the spread of the pair: the larger of their stds."""
    (base, base_std), (ours, ours_std) = _s_and_std(frame, network, "None"), _s_and_std(frame, network, method)
    return base, ours, None if base_std is None or ours_std is None else max(base_std, ours_std)


def _short(frame: pd.DataFrame, network: str, *methods: str) -> bool:
    """Whether any of the (network, method) rows is marked as stopped before converging."""
    rows = frame[(frame["network"] == network) & frame["method"].isin(methods)]
    return "note" in rows and rows["note"].fillna("").str.contains(SHORT_NOTE, regex=False).any()


def _spread_or_short(spread: float | None, unsupported: bool, what: str) -> str:
    return f"{NO_SPREAD}; {SHORT_NOTE}" if unsupported else _spread_text(spread, what)


def _networks(run: RunTables, name: str) -> list[str]:
    """The paper's networks of this table (one the run left out gets "not run" claims), then any the run adds."""
    published = list(dict.fromkeys(paper_table(name.partition("_")[0])["network"]))
    try:
        frame = run.table(name)
    except _Missing:
        return published
    return list(dict.fromkeys(published + (list(frame["network"]) if "network" in frame else [])))


def _detector_claim(run: RunTables, name: str, network: str, method: str, text: str, margin_of) -> dict:
    """A claim on one network's rows: `margin_of(S without, S with method's data)` is positive when it holds."""
    def check(frame):
        base, ours, spread = _pair(frame, network, method)
        unsupported = spread is None and _short(frame, network, "None", method)  # one seed stopped early: no evidence
        verdict = NOT_SEPARABLE if unsupported else judge(margin_of(base, ours), spread)
        return (f"None {base:.3f}, {method} {ours:.3f} ({ours - base:+.3f})", verdict,
                _spread_or_short(spread, unsupported, "larger std of the two rows"))

    return _claim(run, name, f"{network}: {text}", check)


def _average_claim(run: RunTables, name: str, method: str, text: str, sign: int) -> dict:
    """`sign` x the mean over networks of (S with `method`'s data - S without) is positive."""
    def check(frame):
        networks = list(dict.fromkeys(frame["network"]))
        pairs = [_pair(frame, network, method) for network in networks]
        change = float(np.mean([ours - base for base, ours, _ in pairs]))
        relative = 100 * float(np.mean([(ours - base) / base for base, ours, _ in pairs]))
        spreads = [spread for *_, spread in pairs]
        spread = None if None in spreads else float(np.mean(spreads))
        unsupported = any(s is None and _short(frame, n, "None", method) for n, s in zip(networks, spreads))
        verdict = NOT_SEPARABLE if unsupported else judge(sign * change, spread)
        return (f"mean change of S {change:+.3f} ({relative:+.1f}% relative; networks: {len(pairs)})", verdict,
                _spread_or_short(spread, unsupported, "mean over networks of the larger std"))

    return _claim(run, name, text, check)


def _table5(run: RunTables, name: str = "table5") -> list[dict]:
    """Table 5's claims, on `name`: the paper's table or its leak-free variant."""
    claims = []
    for network in _networks(run, name):
        claims += [_detector_claim(run, name, network, "DefFiller", "substituting DefFiller images keeps S "
                                   f"within {KEEP_S_WITHIN} of real data",
                                   lambda base, ours: KEEP_S_WITHIN - (base - ours)),
                   _detector_claim(run, name, network, "AdaBLDM", "substituting AdaBLDM images lowers S",
                                   lambda base, ours: base - ours)]
    return claims


def _table8(run: RunTables, name: str = "table8") -> list[dict]:
    """Table 8's claims, on `name`: the paper's table or its leak-free variant."""
    return [*(_detector_claim(run, name, network, "DefFiller", "adding DefFiller pairs raises S",
                              lambda base, ours: ours - base) for network in _networks(run, name)),
            _average_claim(run, name, "DefFiller", "adding DefFiller pairs raises S on average over the detectors, "
                           "by about 4%", +1),
            _average_claim(run, name, "DFMGAN", "adding DFMGAN pairs lowers S on average over the detectors", -1)]


def table_label(name: str) -> str:
    """`table8` -> `Table 8`; `table8_leakfree` -> `Table 8 (leak-free)`."""
    table, _, variant = name.partition("_")
    return table.replace("table", "Table ") + (" (leak-free)" if variant == "leakfree" else "")


def _claim(run: RunTables, name: str, text: str, check) -> dict:
    """`check(table)` -> (numbers, verdict, spread); a missing table or row makes the claim "not run"."""
    try:
        numbers, verdict, spread = check(run.table(name))
    except _Missing as missing:
        numbers, verdict, spread = str(missing), NOT_RUN, ""
    return {"table": table_label(name), "claim": text, "this run": numbers, "spread": spread,
            "verdict": verdict}


def check_claims(folder) -> pd.DataFrame:
    """One row per claim of the paper: table, claim, this run's numbers, the spread used, verdict."""
    run = RunTables(folder)
    rows = [*_table1(run), *_table2(run), *_deffiller_lowest(run, "table3"), *_deffiller_lowest(run, "table7"),
            *_table5(run), *_table5(run, "table5_leakfree"), *_table8(run), *_table8(run, "table8_leakfree")]
    return pd.DataFrame(rows, columns=["table", "claim", "this run", "spread", "verdict"])


FLOOR_MEASURES = [  # (table, key column, DefFiller's row, column); AVG: ratio to the floor, mask S: gap below it
    ("table1", "strategy", "gligen", "AVG"), ("table7", "method", "DefFiller", "AVG"),
    ("table1", "strategy", "gligen", "mask S"), ("table3", "method", "DefFiller", "mask S"),
    ("table7", "method", "DefFiller", "mask S"),
]


def floor_measures(folder) -> pd.DataFrame:
    """DefFiller against the `real` floor: AVG FID ratio (DefFiller / real) and mask-S gap (real - DefFiller); then
    each detector's S trained on real data alone."""
    run = RunTables(folder)
    rows = []
    for name, key, ours, column in FLOOR_MEASURES:
        measure = "AVG FID, DefFiller / real" if column == "AVG" else "mask S, real - DefFiller"
        try:
            frame = run.table(name)
            mine, floor = _value(frame, {key: ours}, column), _value(frame, {key: "real"}, column)
            value = f"{mine / floor:.2f}" if column == "AVG" else f"{floor - mine:.3f}"
        except _Missing as missing:
            value = f"{NOT_RUN} ({missing})"
        rows.append({"table": name.replace("table", "Table "), "measure": measure, "this run": value})
    return pd.DataFrame(rows + _detectors_on_real_data(run))


def _detectors_on_real_data(run: RunTables) -> list[dict]:
    """Each network's S trained on real data alone (the `None` rows of Tables 5 and 8): the yardstick of its gains."""
    rows = []
    for name in ("table5", "table8"):
        label = name.replace("table", "Table ")
        try:
            frame = run.table(name)
        except _Missing as missing:
            rows.append({"table": label, "measure": "S, trained on real data alone",
                         "this run": f"{NOT_RUN} ({missing})"})
            continue
        for network in dict.fromkeys(frame["network"]):
            try:
                s, std = _s_and_std(frame, network, "None")
                value = f"{s:.3f}" + ("" if std is None else f" ± {std:.3f}")
            except _Missing as missing:
                value = f"{NOT_RUN} ({missing})"
            rows.append({"table": label, "measure": f"{network} S, trained on real data alone", "this run": value})
    return rows


def claims_markdown(folder) -> str:
    """The body of the report's claims section: the claims table, how verdicts are computed, the floor measures."""
    return "\n\n".join([
        check_claims(folder).to_markdown(index=False), f"_How the verdicts are computed._ {RULE}",
        "**DefFiller against the real-data floor** (`real` rows: two disjoint sets of real images at the same count; "
        "the best possible ratio is about 1 and gap about 0), **and each detector trained on real data alone** "
        "(mean ± std over seeds)", floor_measures(folder).to_markdown(index=False)])
