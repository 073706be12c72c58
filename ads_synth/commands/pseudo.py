"""``ads-synth pseudo``: one command for a whole path, from labeled L images to pseudo labels of U images.

Trains what is missing (the nnU-Net models under ``OUT/models/``), reuses what exists, resumes interrupted
training, and writes ``OUT/pseudo_labels/<strategy>/`` (plus ``combined/`` when tutorship and adaptation both
run). The unlabeled images' labels are never read.
"""

from ads_synth.commands.segmentation import add_output_arguments, add_training_arguments, settings_from_args


def run(args):
    from ads_synth.commands._model_names import resolve_translation
    from ads_synth.segmentation.pseudo import OutputOptions
    from ads_synth.segmentation.pseudo_training import run_pseudo

    settings = settings_from_args(args)
    options = OutputOptions(per_fold=args.per_fold, postprocess=not args.no_postprocess,
                            confidence_tiff=args.confidence_tiff, overwrite=args.overwrite, skip_existing=True,
                            myelin_boundary=args.myelin_boundary)
    translation = resolve_translation(args.translation)
    result = run_pseudo(args.strategy, args.labeled, args.unlabeled, translation, args.out, settings=settings,
                        pixel_size=args.pixel_size, l_model=args.l_model,
                        l_model_pixel_size=args.segmentation_pixel_size, options=options,
                        use_mirroring=args.mirroring, progress=not args.no_progress,
                        min_confidence=args.min_confidence)
    for name, folder in result["models"].items():
        print(f"model {name}: {folder}")
    for r in result["records"]:
        print(f"{r['strategy']:<8} {r['name']}: axon {r['axon_fraction']:.1%}, myelin {r['myelin_fraction']:.1%}, "
              f"mean confidence {r['mean_confidence']:.2f}")
    if not result["records"]:
        print(f"pseudo labels already complete in {result['out'] / 'pseudo_labels'} (--overwrite to redo them)")
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "pseudo", help="pseudo-label unlabeled images: tutorship (L->U), adaptation (U->L) or both",
        description="Run a whole pseudo-labelling path: train what is missing (nnU-Net models under OUT/models/), "
        "reuse what exists, resume interrupted training, and write OUT/pseudo_labels/<strategy>/ (combined/ too when "
        "tutor and adapt both run). The unlabeled images' labels are never read. Example: ads-synth pseudo "
        "--strategy tutor --labeled tem-srf --unlabeled sem-images --translation runs/tem2sem -o out")
    from ads_synth.segmentation.strategies import list_strategies

    choices = "; ".join(f"{s.name}: {s.title}" + (f" (runs {' and '.join(s.teachers)} first)" if s.teachers else "")
                        for s in list_strategies(selectable=True))
    in_all = ", ".join(s.name for s in list_strategies() if s.in_all)
    p.add_argument("--strategy", nargs="+", required=True, metavar="NAME",
                   help=f"{choices}; all: {in_all}")
    p.add_argument("--labeled", nargs="+", required=True, metavar="PATH", help="labeled L dataset(s)")
    p.add_argument("--unlabeled", required=True, metavar="PATH", help="U images: an image, a folder or a dataset")
    p.add_argument("--translation", required=True, metavar="MODEL", help="SynDiff translation model folder")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder (models/, pseudo_labels/)")
    p.add_argument("--pixel-size", dest="pixel_size", type=float, default=None, metavar="UM",
                   help="pixel size of U images that carry none")
    p.add_argument("--l-model", dest="l_model", default=None, metavar="MODEL_DIR",
                   help="an existing model trained on L (e.g. an AxonDeepSeg model folder) for adapt / direct, "
                   "instead of training OUT/models/L")
    p.add_argument("--segmentation-pixel-size", dest="segmentation_pixel_size", type=float, default=None,
                   metavar="UM", help="pixel size of --l-model when it has no ads_synth.json (else: no rescale)")
    p.add_argument("--min-confidence", dest="min_confidence", type=float, default=None, metavar="C",
                   help="proxy: pseudo-label pixels below this confidence (0 to 1) are left out of its training "
                   "(default 0.5)")
    add_training_arguments(p)
    add_output_arguments(p)
    p.set_defaults(func=run)
