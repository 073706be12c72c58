"""The argument parser of both command lines (``ads-synth`` and ``axondeepseg --pseudo``): errors on one line.

argparse prints a usage block of 4-12 lines before its message; :class:`OneLineParser` prints only
``<prog>: error: <message> (see <prog> --help)`` on stderr and exits with 2. argparse's messages already name the
option and, for a bad choice, the valid choices (``argument --pseudo: invalid choice: 'foo' (choose from 'tutor',
'adapt', 'proxy')``). Sub-parsers created with ``add_subparsers`` inherit the class.
"""

import argparse
import sys

from ads_synth.errors import EXIT_BAD_INPUT


class OneLineParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line on stderr and exit code 2."""

    def error(self, message):
        text = " ".join(str(message).split())
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {text} (see `{self.prog} --help`)\n")


def print_error(prog, message, stream=None):
    """Print ``<prog>: error: <message>`` as one line (newlines folded) on ``stream`` (default stderr)."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=stream or sys.stderr)


#: ``--myelin-boundary`` of every command that writes pseudo labels (ads-synth pseudo, segmentation predict,
#: axondeepseg --pseudo).
MYELIN_BOUNDARY_HELP = ("post-processing: also move each myelin boundary to half-way intensity between myelin and its "
                        "neighbours, within two pixels of the model's grid (thicker sheaths, lower g-ratios; it helped "
                        "on SEM and harmed on TEM, docs/results.md)")
