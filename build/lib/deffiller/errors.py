class DefFillerError(Exception):
    """A user-facing error: bad input, missing files or weights.

    The CLI prints the message (no traceback) and exits with status 2. Messages name the file
    and say what to do about it.
    """
