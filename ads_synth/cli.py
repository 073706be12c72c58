"""The ``ads-synth`` command line.

Each sub-command lives in its own module under :mod:`ads_synth.commands` and registers itself there with a
``register(subparsers)`` function that adds its parser and sets ``func`` (a callable taking the parsed
arguments and returning an exit code). Bad input raises :class:`ads_synth.errors.InputError`, printed here as one
line on stderr with exit code 2.
"""

import importlib
import sys

from ads_synth import __version__
from ads_synth.cli_parser import OneLineParser, print_error
from ads_synth.commands import command_modules
from ads_synth.errors import EXIT_BAD_INPUT, InputError, os_error_line


def build_parser():
    """Return the top-level argument parser with every sub-command registered."""
    parser = OneLineParser(
        prog="ads-synth",
        description="Pseudo labels for unlabeled microscopy modalities by unpaired image translation "
        "(an AxonDeepSeg plugin).",
    )
    parser.add_argument("--version", action="version", version=f"ads-synth {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        importlib.import_module(f"ads_synth.commands.{name}").register(subparsers)
    return parser


def main(argv=None):
    """Run the command line; return (and exit with) its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a bad option (one line from OneLineParser)
        if argv is None:
            raise
        return stop.code or 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        code = args.func(args) or 0
    except InputError as err:
        print_error("ads-synth", err)
        code = EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into `head` or a pager that quit: stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except OSError as err:  # a full disk, a quota, a read-only folder: one line, not a traceback
        line = os_error_line(err)
        if line is None:
            raise
        print_error("ads-synth", line)
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("ads-synth: interrupted", file=sys.stderr)
        code = 130
    if __name__ == "__main__" or argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
