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
