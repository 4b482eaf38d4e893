"""`run_all.sh`: run the numbered notebooks in order with papermill, skipping those already done.

A notebook is skipped when its stamp matches the last successful run: a hash of its code cells, its
parameters, the profile file, the package's source, the real dataset's file listing and the stamps of the notebooks
before it (so a rerun upstream reruns everything downstream). Each run logs to
`outputs/<profile>/logs/NN.log`, writes the executed notebook to `outputs/<profile>/notebooks/`, and the
run ends with a summary table. A notebook's stamp is removed before it starts and written only when it succeeds, so a
run killed at any moment reruns the interrupted notebook and keeps the ones it finished; tables and figures are
written atomically, and the temporaries of writes a kill interrupted are removed when the runner starts again.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from deffiller.config import DEFAULT_PROFILE, PROFILES, REPO_ROOT, configs_dir, load_profile, parse_settings
from deffiller.data.layout import DATASET_DIR
from deffiller.utils.io import remove_stale_temps, write_json
from deffiller.utils.processes import PROCESSES_ENV
from deffiller.utils.threads import THREADS_ENV

NOTEBOOKS = REPO_ROOT / "notebooks"


@dataclass
class Result:
    notebook: str
    status: str  # ran | skipped | failed | not run
    seconds: float = 0.0
    detail: str = ""


def notebook_number(path: Path) -> str:
    return path.name[:2]


def discover(folder: Path = NOTEBOOKS) -> list[Path]:
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def code_digest(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return hashlib.sha256("\n\0".join("".join(c["source"]) for c in cells if c["cell_type"] == "code").encode()).hexdigest()


def tree_digest(folder: Path, suffixes=(".py", ".yaml")) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.suffix in suffixes and "__pycache__" not in p.parts):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def listing_digest(folder: Path) -> str:
    """Names, sizes and mtimes of the data: cheap, and changes whenever the data does."""
    if not folder.is_dir():
        return "absent"
    entries = sorted(f"{p.relative_to(folder)}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in folder.rglob("*")
                     if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def failing_cell(executed: Path) -> str:
    """'cell N: first line' of the cell papermill marked as failed, if any."""
    try:
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError):
        return "the notebook did not start (see the log)"
    code = [c for c in cells if c["cell_type"] == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]  # number cells as in the source
    for number, cell in enumerate(code, 1):
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "failed" or any(
                o.get("output_type") == "error" for o in cell.get("outputs", [])):
            error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), {})
            first = next((line for line in "".join(cell["source"]).splitlines() if line.strip()), "")
            return f"cell {number} `{first.strip()[:80]}`: {error.get('ename', '')}: {error.get('evalue', '')[:300]}"
    return "unknown cell (see the log)"


def run_notebook(path: Path, profile: str, out_dir: Path, log: Path, timeout: int | None,
                 overrides: dict | None = None) -> tuple[bool, str]:
    executed = out_dir / path.name
    command = [sys.executable, "-m", "papermill", str(path), str(executed), "-p", "PROFILE", profile,
               "-k", "python3", "--cwd", str(path.parent), "--log-output", "--no-progress-bar"]
    if overrides:
        command += ["-y", yaml.safe_dump({"OVERRIDES": overrides})]
    if timeout:
        command += ["--execution-timeout", str(timeout)]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0", "TQDM_DISABLE": "1",
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as fh:
        ok = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT).returncode == 0
    return ok, "" if ok else failing_cell(executed)


def select(notebooks: list[Path], only: list[str] | None, start: str | None) -> list[Path]:
    if only:
        notebooks = [p for p in notebooks if notebook_number(p) in only]
    if start:
        notebooks = [p for p in notebooks if notebook_number(p) >= start]
    return notebooks


def run_all(profile: str = DEFAULT_PROFILE, only: list[str] | None = None, start: str | None = None, force: bool = False,
            keep_going: bool = False, timeout: int | None = None, notebooks_dir: Path = NOTEBOOKS,
            overrides: dict | None = None) -> list[Result]:
    """Run the numbered notebooks of `profile` (changed by `overrides`, {"section.key": value}: its own output folders)
    in order, skipping those unchanged since their last successful run."""
    loaded = load_profile(profile, overrides)
    outputs = loaded.path("outputs")
    out_dir, logs, stamps = outputs / "notebooks", outputs / "logs", outputs / "stamps"
    out_dir.mkdir(parents=True, exist_ok=True)
    for folder in (out_dir, loaded.path("figures")):  # no notebook runs yet: whatever is a temporary is stale
        remove_stale_temps(folder)
    package = tree_digest(REPO_ROOT / "deffiller")
    config = hashlib.sha256((configs_dir() / f"{profile}.yaml").read_bytes()
                            + json.dumps(overrides or {}, sort_keys=True).encode()).hexdigest()
    data = listing_digest(Path(os.environ.get("DEFFILLER_DATASET") or loaded.path("data_root") / DATASET_DIR))
    all_notebooks = discover(notebooks_dir)
    chosen = set(select(all_notebooks, only, start))
    results, chain, failed = [], "", False
    for path in all_notebooks:
        stamp_file = stamps / f"{path.stem}.json"
        stamp = hashlib.sha256(f"{code_digest(path)}|{profile}|{config}|{package}|{data}|{chain}".encode()).hexdigest()
        previous = json.loads(stamp_file.read_text()) if stamp_file.is_file() else {}
        chain = stamp
        if path not in chosen:
            continue
        if failed and not keep_going:
            results.append(Result(path.name, "not run"))
            continue
        if not force and previous.get("stamp") == stamp and (out_dir / path.name).is_file():
            results.append(Result(path.name, "skipped", 0.0, "unchanged since the last successful run"))
            print(f"[{path.name}] skipped: unchanged since the last successful run", flush=True)
            continue
        print(f"[{path.name}] running (profile {profile}, log {logs / (path.stem + '.log')})", flush=True)
        stamp_file.unlink(missing_ok=True)  # a run killed from here on must not look finished
        started = time.time()
        ok, detail = run_notebook(path, profile, out_dir, logs / f"{path.stem}.log", timeout, overrides)
        seconds = time.time() - started
        if ok:
            write_json(stamp_file, {"stamp": stamp, "seconds": round(seconds, 1), "finished": time.ctime()})
            results.append(Result(path.name, "ran", seconds))
        else:
            results.append(Result(path.name, "failed", seconds, detail))
            print(f"[{path.name}] FAILED at {detail}", flush=True)
            failed = True
    return results


def summary(results: list[Result]) -> str:
    from tabulate import tabulate

    rows = [(r.notebook, r.status, f"{r.seconds:.0f}", r.detail) for r in results]
    total = sum(r.seconds for r in results)
    return tabulate(rows, headers=("notebook", "status", "seconds", "detail"), tablefmt="github") + f"\ntotal {total:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_all.sh", description="Regenerate the paper's tables and figures.")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES)
    parser.add_argument("--only", help="comma-separated notebook numbers, e.g. 01,04")
    parser.add_argument("--from", dest="start", help="start at this notebook number, e.g. 05")
    parser.add_argument("--force", action="store_true", help="rerun notebooks even when unchanged")
    parser.add_argument("--keep-going", action="store_true", help="run the remaining notebooks after a failure")
    parser.add_argument("--timeout", type=int, help="papermill's per-cell execution timeout in seconds")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change one setting for every notebook (repeatable, VALUE is YAML); the run writes to "
                             "outputs/ and figures/ folders of its own, <profile>-set-<digest>")
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="run the notebooks' DefFiller training and generation on N processes (accelerate launch: "
                             "one per GPU); results are those of one process")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch's CPU threads in every notebook (default: the cores no other process keeps busy "
                             "when the notebook starts; two threads on two busy cores can be many times slower than one)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, metavar="DIR",
                        help="folder of the numbered notebooks (default: the repository's notebooks/)")
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes: 1 or more")
    os.environ[PROCESSES_ENV] = str(args.processes)  # read by the kernels (deffiller.experiments.launch)
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads: 1 or more")
        os.environ[THREADS_ENV] = str(args.threads)  # read by the kernels (deffiller.utils.threads)
    only = [n.strip().zfill(2) for n in args.only.split(",")] if args.only else None
    start = args.start.zfill(2) if args.start else None
    results = run_all(args.profile, only, start, args.force, args.keep_going, args.timeout, args.notebooks,
                      parse_settings(args.settings))
    print("\n" + summary(results))
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
