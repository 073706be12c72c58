"""``ads-synth scale estimate``: the L -> U scale factor from axon sizes, without the unlabeled images' labels."""


def parse_scale(text):
    """``--scale`` values: a positive number, or ``auto`` (estimated by :mod:`ads_synth.translation.scale`)."""
    import argparse

    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number (1 = the paper's pixel-size rule) or "
                                         "'auto'") from None
    return value


def estimate_for_training(source, target, source_pixel_size=None, target_pixel_size=None, out=print):
    """``--scale auto`` of ``translation train``: the estimate for ``--source`` (labeled) and ``--target``.

    Prints the estimate and its uncertainty on one line (``out``) and returns the scale.
    """
    from ads_synth.data.datasets import find_samples
    from ads_synth.errors import InputError
    from ads_synth.translation.scale import estimate_scale

    if not source or not target:
        raise InputError("--scale auto needs --source (labeled) and --target images.")
    labeled = []
    for path in source:
        for s in find_samples(path):
            if not s.has_labels:
                raise InputError(f"{s.image}: --scale auto measures axon sizes from the labels of the --source "
                                 "images and this one has none; add its labels or give a number, e.g. --scale 5.")
            labeled.append(s)
    est = estimate_scale(labeled, list(target), labeled_pixel_size=source_pixel_size,
                         unlabeled_pixel_size=target_pixel_size, check=False,
                         labeled_option="--source-pixel-size", unlabeled_option="--target-pixel-size")
    out(f"ads-synth: --scale auto: {est.scale:.2f} (68% interval {est.low:.2f} to {est.high:.2f}; axon diameter "
        f"L {est.labeled_diameter_um:.3f} um from labels, U {est.unlabeled_diameter_um:.3f} um from the images)")
    return est.scale


def run(args):
    import json
    from pathlib import Path

    from ads_synth.atomic import atomic_write_text
    from ads_synth.data.bundled import labeled_set
    from ads_synth.errors import InputError
    from ads_synth.translation.scale import estimate_scale, format_estimate

    if args.json and Path(args.json).exists() and not args.overwrite:
        raise InputError(f"{args.json}: already exists; choose another --json file or pass --overwrite.")
    labeled = args.labeled or [labeled_set("TEM")]
    est = estimate_scale(labeled, args.unlabeled, labeled_pixel_size=args.labeled_pixel_size,
                         unlabeled_pixel_size=args.unlabeled_pixel_size, check=not args.no_check, seed=args.seed)
    print(format_estimate(est))
    if args.json:
        atomic_write_text(args.json, json.dumps(est.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def register(subparsers):
    parser = subparsers.add_parser("scale", help="the L -> U scale factor from axon sizes (see: scale estimate)")
    sub = parser.add_subparsers(dest="scale_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "estimate",
        help="estimate the scale for 'translation train --scale' from L's labels and U's images (no U labels)",
        description="Estimate S of 'ads-synth translation train --scale S' (L's working pixel size = U's / S): the "
        "ratio of U's to L's axon diameter (area-weighted medians), L's from its labels, U's detected in its images "
        "alone (round enclosed components of one Otsu phase, either polarity). Prints the estimate, a bootstrap "
        "68% interval over images, the per-image spread, a check of the detector on L's labeled images, and one "
        "line per image.")
    p.add_argument("--labeled", action="append", metavar="PATH",
                   help="labeled modality L (image, folder, BIDS or nnU-Net dataset; repeat for several); default: "
                   "the bundled TEM set")
    p.add_argument("--unlabeled", action="append", required=True, metavar="PATH",
                   help="unlabeled modality U (repeat for several); its labels, if any, are never read")
    p.add_argument("--labeled-pixel-size", type=float, default=None, metavar="UM",
                   help="micrometres per pixel for labeled images that have none")
    p.add_argument("--unlabeled-pixel-size", type=float, default=None, metavar="UM",
                   help="micrometres per pixel for unlabeled images that have none")
    p.add_argument("--no-check", action="store_true", help="skip the detector check on the labeled images")
    p.add_argument("--seed", type=int, default=0, help="seed of the crops of large images and of the bootstrap")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the estimate as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=run)
