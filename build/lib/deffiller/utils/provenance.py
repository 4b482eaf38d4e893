"""What a result records about the code that made it: the git commit of the package and the library versions."""
from __future__ import annotations

import importlib.metadata as metadata
import platform
import subprocess
from pathlib import Path

from deffiller import __version__

PACKAGES = ("torch", "diffusers", "transformers", "timm", "accelerate", "torch-fidelity", "pysodmetrics")


def git_commit() -> str:
    """The commit of the checkout holding this package, `+dirty` when tracked files differ; "unknown" outside git."""
    repo = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Python, deffiller and the installed versions of the libraries that shape the numbers."""
    found = {"python": platform.python_version(), "deffiller": __version__}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def provenance() -> dict:
    return {"git_commit": git_commit(), "versions": versions()}
