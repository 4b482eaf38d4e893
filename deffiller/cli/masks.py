"""`deffiller masks`: filled in by issue 4."""


def register(parser):
    parser.set_defaults(func=_not_yet)


def _not_yet(args):
    from deffiller.errors import DefFillerError

    raise DefFillerError("'deffiller masks' is not available in this version yet (issue 4)")
