"""``ads-synth refine``: fine-tune a family's model on corrected images and re-pseudo-label the rest."""


def run_refine(args):
    from ads_synth.annotation.refine import RefineOptions, refine

    opts = RefineOptions(family=args.family, corrected=args.corrected, unlabeled=args.unlabeled, out=args.out,
                         epochs=args.epochs, iterations=args.iterations, weight=args.weight,
                         min_confidence=args.min_confidence, pixel_size=args.pixel_size, device=args.device,
                         resume=args.resume, overwrite=args.overwrite, register=not args.no_install,
                         drop_bare_axons=args.drop_bare_axons, pseudo_labels=args.pseudo_labels,
                         verbose=args.verbose)
    result = refine(opts)
    where = f"installed in {result['installed']}" if result["installed"] else "not installed (--no-install)"
    print(f"{result['card']}: {result['n_corrected']} corrected + {result['n_unlabeled']} re-pseudo-labelled "
          f"image(s) in {result['seconds']:.0f} s; card {where}"
          + (f"; pseudo labels in {result['pseudo_labels']}" if result["pseudo_labels"] else ""))
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "refine", help="fine-tune a family on your corrected segmentations; re-pseudo-label the other images",
        description="Corrected images are AxonDeepSeg files you edited (<stem>_seg-axonmyelin.png, or "
        "_seg-axon.png + _seg-myelin.png, beside <stem>.png; or BIDS derivatives/labels/*_seg-*-manual.png); they "
        "are only read. The family's proxy (else tutor) is fine-tuned on them (weighted up) plus the other images' "
        "confident pseudo labels, the other images are pseudo-labelled again into OUT/pseudo_labels/, and the card "
        "<PAIR>_refined is installed, so that `axondeepseg -t TARGET --pseudo refined -i IMAGE` uses it. Killed, "
        "the same command continues. Example: ads-synth refine --family TEM2SEM --corrected my_sem/ -o runs/refine")
    p.add_argument("--family", required=True, metavar="PAIR", help="model family, as in card names (e.g. TEM2SEM)")
    p.add_argument("--corrected", nargs="+", required=True, metavar="PATH",
                   help="corrected images: image files, their mask files, folders, or a BIDS dataset")
    p.add_argument("--unlabeled", nargs="+", default=None, metavar="PATH",
                   help="the images to improve (default: the uncorrected images in the --corrected folders)")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="run folder (new, or one this command made)")
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default 12; 36 from scratch)")
    p.add_argument("--iterations", type=int, default=None, help="iterations per epoch (default 25)")
    p.add_argument("--weight", type=int, default=None,
                   help="copies of each corrected image among the training cases (default: enough for half)")
    p.add_argument("--min-confidence", dest="min_confidence", type=float, default=0.5,
                   help="pseudo-label pixels below this confidence (0-1) are ignored (default 0.5)")
    p.add_argument("--pixel-size", dest="pixel_size", type=float, default=None, metavar="UM",
                   help="micrometres per pixel of images that carry none")
    p.add_argument("--drop-bare-axons", dest="drop_bare_axons", action="store_true",
                   help="read axons that no myelin touches as background instead of refusing the correction")
    p.add_argument("--pseudo-labels", dest="pseudo_labels", default=None, metavar="DIR",
                   help="reuse the uncorrected images' pseudo labels and confidence maps in DIR (as axondeepseg "
                   "--pseudo writes them) instead of computing them")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--resume", action="store_true", help="continue a run in OUT made with other inputs")
    p.add_argument("--overwrite", action="store_true", help="start again in OUT")
    p.add_argument("--no-install", dest="no_install", action="store_true", help="write the card into OUT/card/ only")
    p.add_argument("-v", "--verbose", type=int, choices=(0, 1), default=1, help="1: phases and progress; 0: quiet")
    p.set_defaults(func=run_refine)
