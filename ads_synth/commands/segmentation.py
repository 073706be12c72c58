"""``ads-synth segmentation``: train an nnU-Net v2 model on labeled images, or segment images with one.

* ``segmentation train --data PATH [PATH ...] --out MODEL_DIR``: e.g. a TEM model on tem-srf + tem-nyu, every image
  resampled to one pixel size (``--pixel-size``, default the median), five-fold cross-validation (``--folds``).
* ``segmentation predict -i IMAGE ... -m MODEL_DIR``: segment images at their pixel size with a model folder
  (ads-synth's or AxonDeepSeg's), writing AxonDeepSeg's files and the confidence map.
"""

from ads_synth.cli_parser import MYELIN_BOUNDARY_HELP
from ads_synth.errors import InputError


def add_training_arguments(p, default_patch=256):
    """The training options shared with ``ads-synth pseudo``."""
    p.add_argument("--folds", nargs="+", default=None, metavar="K",
                   help="folds to train: 0 1 2 3 4 (default, five-fold cross-validation) or 'all' (one model)")
    p.add_argument("--trainer", default="compact", choices=("compact", "default"),
                   help="compact: the CPU-sized configuration and schedule (default); default: nnU-Net's own 2d "
                   "configuration and 1000-epoch schedule (GPU)")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="epochs per fold (default: the trainer's; compact 14)")
    p.add_argument("--iterations", type=int, default=None, metavar="N",
                   help="training iterations per epoch (default: the trainer's; compact 25)")
    p.add_argument("--patch", type=int, default=default_patch, metavar="PX",
                   help=f"patch side of the compact configuration, a multiple of 16 (default {default_patch})")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=4, metavar="N",
                   help="batch size of the compact configuration (default 4)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--processes", type=int, default=2, metavar="N",
                   help="nnU-Net's worker processes for planning and preprocessing (default 2)")
    p.add_argument("--verbose", action="store_true", help="show nnU-Net's own output")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bars")


def settings_from_args(args):
    """``TrainSettings`` from the options of :func:`add_training_arguments`."""
    from ads_synth.segmentation.model_building import TrainSettings

    return TrainSettings(folds=args.folds, trainer=args.trainer, patch_size=args.patch, batch_size=args.batch_size,
                         epochs=args.epochs, iterations=args.iterations, device=args.device,
                         num_processes=args.processes, progress=not args.no_progress, verbose=args.verbose).check()


def add_output_arguments(p):
    """Output options shared with ``ads-synth pseudo``."""
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--mirroring", action="store_true",
                   help="nnU-Net's test-time mirroring (3x slower on a CPU; off by default)")
    p.add_argument("--confidence-tiff", dest="confidence_tiff", action="store_true",
                   help="also write the confidence as a float32 TIFF (<stem>_seg-confidence.tif)")
    p.add_argument("--no-postprocess", dest="no_postprocess", action="store_true",
                   help="keep the raw prediction (no speck removal, no axon filling, no fibre clean-up)")
    p.add_argument("--myelin-boundary", dest="myelin_boundary", action="store_true", help=MYELIN_BOUNDARY_HELP)
    p.add_argument("--per-fold", dest="per_fold", action="store_true",
                   help="also write each fold's own segmentation into fold_<k>/ (for ads-synth evaluate)")


def run_train(args):
    from ads_synth.segmentation.model_building import train_labeled_model

    settings = settings_from_args(args)
    model_dir = train_labeled_model(args.data, args.out, args.work, pixel_size=args.pixel_size, settings=settings,
                                    overwrite=args.overwrite)
    from ads_synth.segmentation.predict import finished_folds, read_model_info

    info = read_model_info(model_dir)
    print(f"model: {model_dir} (pixel size {info['pixel_size']:g} um, folds "
          f"{', '.join(map(str, finished_folds(model_dir)))})")
    return 0


def run_predict(args):
    from ads_synth.commands._model_names import resolve_translation
    from ads_synth.segmentation.pseudo import pseudo_label_images

    if args.out is None and args.per_fold:
        raise InputError("--per-fold needs an output folder (-o).")
    records = pseudo_label_images(
        args.input, translation=resolve_translation(args.translation), segmentation=args.model, strategy="direct",
        out_dir=args.out,
        overwrite=args.overwrite, folds=args.folds, device=args.device, progress=not args.no_progress,
        pixel_size=args.pixel_size, per_fold=args.per_fold, use_mirroring=args.mirroring,
        postprocess=not args.no_postprocess, confidence_tiff=args.confidence_tiff, myelin_boundary=args.myelin_boundary,
        segmentation_pixel_size=args.segmentation_pixel_size)
    for r in records:
        print(f"{r['image']}: axon {r['axon_fraction']:.1%}, myelin {r['myelin_fraction']:.1%}, mean confidence "
              f"{r['mean_confidence']:.2f} -> {r['files'][0].parent}")
    return 0


def register(subparsers):
    parser = subparsers.add_parser("segmentation", help="train or apply nnU-Net v2 segmentation models",
                                   description="Train an nnU-Net v2 model on labeled images (train), or segment "
                                   "images with a model folder (predict).")
    sub = parser.add_subparsers(dest="segmentation_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 0)

    p = sub.add_parser("train", help="train an nnU-Net model on a labeled dataset (e.g. the L modality)",
                       description="Train an nnU-Net v2 2-D model (compact by default) on labeled images, resumably "
                       "(folds with checkpoint_final.pth are skipped, interrupted ones continue). The model folder has "
                       "AxonDeepSeg's layout plus ads_synth.json with its pixel size.")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="labeled dataset(s): BIDS, a folder of images with *_seg-*-manual.png, or an nnU-Net raw "
                   "dataset")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder")
    p.add_argument("--work", default=None, metavar="DIR",
                   help="nnU-Net's work folder (raw, preprocessed; default MODEL_DIR_work)")
    p.add_argument("--pixel-size", dest="pixel_size", type=float, default=None, metavar="UM",
                   help="pixel size the model works at (default: the median of the images')")
    p.add_argument("--overwrite", action="store_true", help="retrain a model folder trained on other data")
    add_training_arguments(p)
    p.set_defaults(func=run_train)

    p = sub.add_parser("predict", help="segment images with a model folder (ads-synth's or AxonDeepSeg's)",
                       description="Segment images with an nnU-Net model folder, fold ensemble, at the model's pixel "
                       "size; writes <stem>_seg-axon.png, _seg-myelin.png, _seg-axonmyelin.png and "
                       "_seg-confidence.png (255 = all folds agree with certainty).")
    p.add_argument("-i", "--input", nargs="+", required=True, metavar="IMAGE_OR_FOLDER")
    p.add_argument("-m", "--model", required=True, metavar="MODEL_DIR")
    p.add_argument("-o", "--out", default=None, metavar="DIR", help="output folder (default: beside each image)")
    p.add_argument("--folds", nargs="+", default=None, metavar="K", help="folds to ensemble (default: all)")
    p.add_argument("--pixel-size", dest="pixel_size", type=float, default=None, metavar="UM",
                   help="pixel size of images that carry none")
    p.add_argument("--segmentation-pixel-size", dest="segmentation_pixel_size", type=float, default=None,
                   metavar="UM", help="pixel size of a model folder without ads_synth.json (AxonDeepSeg's)")
    p.add_argument("--translation", default=None, metavar="MODEL",
                   help="read images on this translation model's grid (the 'direct' floor of ads-synth pseudo)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bars")
    add_output_arguments(p)
    p.set_defaults(func=run_predict)
