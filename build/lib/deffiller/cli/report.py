"""`deffiller report`: collect a profile's tables and figures into report.md/html."""
from __future__ import annotations

from deffiller.cli.settings import add_profile_options, load_settings


def register(parser):
    add_profile_options(parser)
    parser.set_defaults(func=_report)


def _report(args):
    from deffiller.reporting.report import build_report

    md, html = build_report(load_settings(args))
    print(f"wrote {md} and {html}")
