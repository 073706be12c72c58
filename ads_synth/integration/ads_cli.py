"""The ``axondeepseg`` command with pseudo labels: ``axondeepseg -t SEM --pseudo tutor -i image.png``.

The plugin installs this module's :func:`main` as the ``axondeepseg`` console script. A command line that names
``-t``/``--target`` or ``--pseudo`` pseudo-labels the images with the model family's card for (``-s`` source,
``-t`` target, strategy) and writes exactly the files AxonDeepSeg writes (``<stem>_seg-axon.png``,
``<stem>_seg-myelin.png``, ``<stem>_seg-axonmyelin.png``). Every other command line is handed, untouched, to
AxonDeepSeg's own ``AxonDeepSeg.segment.main``: its options, help, outputs and exit codes are AxonDeepSeg's.

Exit codes in pseudo mode follow AxonDeepSeg's: 0 success, 1 an input file with an invalid extension, 2 bad input
(one line on stderr, nothing written). ``axondeepseg --pseudo --help`` shows the pseudo-label options.

Only ``argparse``, ``sys`` and the strategy registry (standard library) are imported at module level; AxonDeepSeg,
torch and nnU-Net load when used.
"""

from __future__ import annotations

import argparse
import sys

from ads_synth.cli_parser import MYELIN_BOUNDARY_HELP, OneLineParser, print_error
from ads_synth.segmentation.strategies import list_strategies

PROG = "axondeepseg"
#: Options that switch ``axondeepseg`` into pseudo-label mode.
PSEUDO_TRIGGERS = ("-t", "--target", "--pseudo")
_HELP = ("-h", "--help")
#: The one line added under AxonDeepSeg's own ``axondeepseg -h`` (its help is otherwise unchanged).
HELP_EPILOG = ("ads-synth plugin: -t/--target MODALITY with --pseudo {tutor,adapt,proxy} makes pseudo labels for an "
               "unlabeled modality; see `axondeepseg --pseudo --help`.")


def wants_pseudo(argv) -> bool:
    """True when the command line names ``-t``/``--target`` or ``--pseudo`` (``-tSEM``, ``--pseudo=tutor`` too)."""
    for arg in argv:
        if arg == "--":
            break
        if arg in PSEUDO_TRIGGERS or arg.startswith(("--target=", "--pseudo=")):
            return True
        if arg.startswith("-t") and not arg.startswith("--"):
            return True
    return False


def add_pseudo_arguments(parser, strategy_flags=("--pseudo",), modality_flags=("-t", "--target")):
    """Add the pseudo-label options to ``parser`` (shared by ``axondeepseg`` and ``ads-synth segment``)."""
    shippable = list_strategies(shippable=True)
    required = parser.add_argument_group("required arguments")
    required.add_argument(
        "-i", "--imgpath", required=True, nargs="+", metavar="PATH",
        help="image(s) to pseudo-label, or folder(s) of images (AxonDeepSeg's -i)",
    )
    required.add_argument(
        *modality_flags, dest="target", required=True, metavar="MODALITY",
        help="modality of the images, the unlabeled one (e.g. SEM)",
    )
    required.add_argument(
        *strategy_flags, dest="strategy", required=True, choices=[s.name for s in shippable] + ["auto"],
        help="; ".join(f"{s.name}: {s.title}" for s in shippable)
        + "; auto: the path the family's label-free selection chose (ads-synth models show <PAIR>_auto)",
    )
    parser.add_argument(
        "-s", "--source", default="TEM", metavar="MODALITY",
        help="the labeled modality the model family was trained from (default: TEM)",
    )
    parser.add_argument(
        "-v", "--verbose", type=int, choices=(0, 1), default=0,
        help="0 (default): quiet; 1: progress and details",
    )
    parser.add_argument(
        "--gpu-id", dest="gpu_id", type=int, default=-1,
        help="GPU ID to use (default: -1, the CPU), as AxonDeepSeg's --gpu-id",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument(
        "--pixel-size", dest="pixel_size", type=float, default=None, metavar="UM",
        help="micrometres per pixel of images that carry none (pixel_size_in_micrometer.txt, a BIDS sidecar or "
        "TIFF tags)",
    )
    parser.add_argument(
        "-o", "--out-dir", dest="out_dir", default=None, metavar="DIR",
        help="write the outputs here instead of beside each image",
    )
    parser.add_argument("--myelin-boundary", dest="myelin_boundary", action="store_true", help=MYELIN_BOUNDARY_HELP)
    parser.add_argument(
        "--allow-large-images", dest="allow_large", action="store_true",
        help="read images over PIL's decompression-bomb limit (AxonDeepSeg's option of the same name)",
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``axondeepseg`` in pseudo-label mode."""
    parser = OneLineParser(
        prog=PROG,
        allow_abbrev=False,
        description="Pseudo labels for an unlabeled modality (ads-synth). Without -t/--pseudo, axondeepseg is "
        "AxonDeepSeg's own command (see `axondeepseg --help`).",
        epilog="Models: `ads-synth models list`. Example: axondeepseg -t SEM --pseudo tutor -i image.png",
    )
    add_pseudo_arguments(parser)
    parser.add_argument("-m", "--model", default=None, help=argparse.SUPPRESS)
    return parser


def run_from_args(args, prog, extension_exit=1) -> int:
    """Run a parsed pseudo-label command line; return the exit code (errors as one line on stderr).

    Bad input exits with 2; an input file with an invalid extension with ``extension_exit`` (AxonDeepSeg: 1).
    """
    from ads_synth.errors import EXIT_BAD_INPUT, InputError
    from ads_synth.integration.pseudo_action import ExtensionError, run_pseudo_labels

    try:
        run_pseudo_labels(
            args.imgpath,
            target=args.target,
            strategy=args.strategy,
            source=args.source,
            gpu_id=args.gpu_id,
            overwrite=args.overwrite,
            out_dir=args.out_dir,
            pixel_size=args.pixel_size,
            progress=args.verbose >= 1 or sys.stderr.isatty(),
            allow_large=getattr(args, "allow_large", False),
            myelin_boundary=getattr(args, "myelin_boundary", False),
        )
    except ExtensionError as err:
        print_error(prog, err)
        return extension_exit
    except InputError as err:
        print_error(prog, err)
        return EXIT_BAD_INPUT
    except OSError as err:  # a full disk, a quota, a read-only folder: one line, not a traceback
        from ads_synth.errors import os_error_line

        line = os_error_line(err)
        if line is None:
            raise
        print_error(prog, line)
        return EXIT_BAD_INPUT
    return 0


def pseudo_main(argv) -> int:
    """``axondeepseg`` in pseudo-label mode; return the exit code."""
    parser = build_parser()
    if any(a in _HELP for a in argv):
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
        if args.model is not None:
            parser.error(
                "-m/--model chooses an AxonDeepSeg model; with --pseudo the model comes from the model card "
                "(see `ads-synth models list`): drop -m or -t/--pseudo"
            )
    except SystemExit as stop:  # one line from OneLineParser
        return stop.code or 0
    return run_from_args(args, PROG)


def delegate(argv=None):
    """Hand the command line to AxonDeepSeg's own ``axondeepseg`` (``AxonDeepSeg.segment.main``), untouched.

    Its help (``-h``/``--help``) gets one more line, :data:`HELP_EPILOG`, that names the plugin's options.
    """
    from AxonDeepSeg.segment import main as ads_main

    args = sys.argv[1:] if argv is None else list(argv)
    options = args[: args.index("--")] if "--" in args else args
    if not any(a in _HELP for a in options):
        return ads_main(argv)
    try:
        result = ads_main(argv)
    except SystemExit as stop:
        if stop.code in (0, None):
            sys.stdout.flush()
            print(HELP_EPILOG)
        raise
    return result


def main(argv=None):
    """Entry point of the ``axondeepseg`` console script installed by ads-synth."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not wants_pseudo(args):
        return delegate(argv)
    code = pseudo_main(args)
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
