"""``ads-synth translate``: translate whole images with a trained SynDiff model."""


def run(args):
    from ads_synth.commands._model_names import resolve_translation
    from ads_synth.translation.translate import translate_files

    written = translate_files(
        resolve_translation(args.model),
        args.input,
        args.output,
        args.direction,
        overwrite=args.overwrite,
        device=args.device,
        pixel_size=args.pixel_size,
        output_grid=args.output_grid,
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(f"ads-synth: wrote {len(written)} translated image(s) into {args.output}")
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "translate",
        help="translate images between the two modalities of a SynDiff model",
        description="Translate whole images (any size; overlapping tiles with cosine blending) and write "
        "<stem>_<direction>.png (8-bit) with its physical pixel size (a <stem>_<direction>.json sidecar, and "
        "pixel_size_in_micrometer.txt when all outputs share one), as morphometrics need it.",
    )
    p.add_argument("--model", required=True,
                   help="training run folder, its best/ or last/ folder, or a model card name (ads-synth models list)")
    p.add_argument("--direction", required=True, choices=("L2U", "U2L"),
                   help="L2U: labeled to unlabeled modality; U2L: unlabeled to labeled")
    p.add_argument("-i", "--input", action="append", required=True, metavar="IMAGE_OR_FOLDER",
                   help="image, folder, BIDS or nnU-Net dataset (repeat for several)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the diffusion sampling (default 0)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="tiles per forward pass (default: 16 tiles of 128 px, fewer of larger ones; the output does "
                        "not depend on it)")
    p.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                   help="micrometres per pixel of inputs that carry none (a BIDS sidecar, pixel_size_in_micrometer.txt "
                   "or TIFF tags win), as AxonDeepSeg's -s")
    p.add_argument("--output-grid", default="input", choices=("input", "model"),
                   help="input: same shape as the input; model: the target's working pixel size (default input)")
    p.add_argument("--tile", type=int, default=None, help="tile side in pixels (default: the training tile size)")
    p.add_argument("--overlap", type=int, default=None, help="tile overlap in pixels (default: an eighth of the tile)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
