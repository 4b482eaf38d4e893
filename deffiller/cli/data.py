"""`deffiller data`: filled in below by the foundation issue."""


def register(parser):
    parser.set_defaults(func=lambda args: parser.print_help())
