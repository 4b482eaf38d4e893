"""`deffiller generate`: filled in by issue 3."""


def register(parser):
    parser.set_defaults(func=_not_yet)


def _not_yet(args):
    from deffiller.errors import DefFillerError

    raise DefFillerError("'deffiller generate' is not available in this version yet (issue 3)")
