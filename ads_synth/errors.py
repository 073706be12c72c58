"""The one exception type for bad user input.

Every problem the user can fix (a missing file, a corrupt image, a missing pixel size, a wrong model) raises
:class:`InputError` with a one-line message that names the file and says what to do. The command line turns it
into that line on stderr and exit code 2, as AxonDeepSeg does for bad input.
"""

EXIT_BAD_INPUT = 2


class InputError(ValueError):
    """Bad input that the user can fix; the message is one line."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))


class NonFiniteError(InputError):
    """A loss, a weight or a network output that is NaN or infinite (diverged training, damaged weights).

    Raised instead of writing NaN weights or images made of NaN; the CLI exits with code 2 and the message (one
    line) says what to change.
    """


#: errno values of an OSError that the user fixes on the machine (full disk, quota, read-only or forbidden folder).
_USER_OS_ERRORS = {"ENOSPC": "no space left on the device", "EDQUOT": "disk quota exceeded",
                   "EROFS": "read-only file system", "EACCES": "permission denied", "EPERM": "operation not permitted"}


def os_error_line(err):
    """One line for an ``OSError`` the user can fix (full disk, quota, read-only, permission), or None.

    The command lines print it and exit with 2 instead of a traceback.
    """
    import errno

    for name, text in _USER_OS_ERRORS.items():
        if getattr(errno, name, None) is not None and err.errno == getattr(errno, name):
            where = f" ({err.filename})" if getattr(err, "filename", None) else ""
            fix = ("free some disk space (or write elsewhere) and run the command again"
                   if name in ("ENOSPC", "EDQUOT") else "write into a folder you may write to")
            return f"{text}{where}; {fix}; files already complete are kept, partial ones are not."
    return None
