"""``ads-synth rank``: order images by how much correcting them should help (label-free)."""


def run_rank(args):
    import tempfile
    from pathlib import Path

    from ads_synth.annotation.rank import rank_images, rows_table, write_rows
    from ads_synth.errors import InputError

    out = Path(args.out)
    if (out.exists() or out.is_symlink()) and not args.overwrite:
        raise InputError(f"{out}: already exists; pass --overwrite to replace it, or choose another -o file.")
    if out.parent and not out.parent.is_dir():
        raise InputError(f"{out.parent}: no such folder for -o; create it first.")
    with tempfile.TemporaryDirectory(prefix="ads-synth-rank-") as tmp:
        rows = rank_images(args.images, args.family, work=Path(args.work) if args.work else Path(tmp),
                           pixel_size=args.pixel_size, device=args.device, progress=args.verbose > 0,
                           reuse=bool(args.work))
    write_rows(rows, out, overwrite=args.overwrite)
    print(rows_table(rows))
    print(f"ranking written to {out}")
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "rank", help="order images by how much correcting them should help (which to correct first)",
        description="Pseudo-labels the images with the family's paths and ranks them without labels: low mean "
        "confidence, disagreement between the paths, unusual fibre morphometrics (mean normalised rank). Writes a "
        "CSV (refused if it exists, unless --overwrite) and prints the table. Example: ads-synth rank my_sem/ "
        "--family TEM2SEM -o ranking.csv")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="images, folders or a BIDS dataset")
    p.add_argument("--family", required=True, metavar="PAIR", help="model family, as in card names (e.g. TEM2SEM)")
    p.add_argument("-o", "--out", default="ranking.csv", metavar="CSV", help="CSV file (default ranking.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    p.add_argument("--work", default=None, metavar="DIR",
                   help="keep the paths' pseudo labels in DIR/<strategy>/ and reuse those already there (refine "
                   "--pseudo-labels DIR/proxy reuses them too)")
    p.add_argument("--pixel-size", dest="pixel_size", type=float, default=None, metavar="UM",
                   help="micrometres per pixel of images that carry none")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("-v", "--verbose", type=int, choices=(0, 1), default=1, help="1: progress bars; 0: quiet")
    p.set_defaults(func=run_rank)
