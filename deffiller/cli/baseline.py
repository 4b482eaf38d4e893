"""`deffiller baseline`: filled in by issue 7 and 8."""


def register(parser):
    parser.set_defaults(func=_not_yet)


def _not_yet(args):
    from deffiller.errors import DefFillerError

    raise DefFillerError("'deffiller baseline' is not available in this version yet (issue 7 and 8)")
