"""`deffiller baseline METHOD ACTION`: a thin dispatcher; each method's package registers its own subcommands."""
from __future__ import annotations

import importlib

METHODS = ("adabldm", "dfmgan")


def register(parser):
    sub = parser.add_subparsers(dest="baseline", metavar="METHOD", required=True)
    for method in METHODS:
        importlib.import_module(f"deffiller.baselines.{method}.cli").register(sub)
