"""`deffiller report`: collect a profile's tables and figures into report.md/html."""


def register(parser):
    parser.add_argument("--profile", default="smoke", help="tiny | smoke | paper or a YAML path (default smoke)")
    parser.set_defaults(func=_report)


def _report(args):
    from deffiller.config import load_profile
    from deffiller.reporting.report import build_report

    md, html = build_report(load_profile(args.profile))
    print(f"wrote {md} and {html}")
