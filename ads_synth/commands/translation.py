"""``ads-synth translation train``: train a SynDiff translation model between a labeled and an unlabeled modality."""

from ads_synth.commands.scale import parse_scale
from ads_synth.errors import InputError
from ads_synth.translation.config import DEFAULT_PRESET, list_presets

_SCALE_HELP = (
    "magnify the labeled images by S on top of the unlabeled domain's pixel size (L working pixel size = "
    "median U pixel size / S). 1 puts both on one physical grid; use S > 1 when the structures differ in size: "
    "mouse CNS axons (0.3-1.5 um) are about 5x smaller than rat spinal-cord axons (1-10 um), so S ~ 5 matches "
    "their size in pixels; 'auto' estimates S from axon sizes (L's labels, U's images; see 'ads-synth scale "
    "estimate') (default 1)"
)


def options_from_args(args):
    """The TrainOptions of a parsed ``ads-synth translation train`` command line."""
    from ads_synth.translation.trainer import TrainOptions

    scale = args.scale
    if scale == "auto":
        from ads_synth.commands.scale import estimate_for_training

        # a resumed run keeps the scale it started with (config.json)
        scale = 1.0 if args.resume else estimate_for_training(args.source, args.target, args.source_pixel_size,
                                                              args.target_pixel_size)
    return TrainOptions(
        source=args.source or [],
        target=args.target or [],
        out=args.out,
        preset=args.preset,
        scale=scale,
        steps=args.steps,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        seed=args.seed,
        batch_size=args.batch_size,
        tile=args.tile,
        source_pixel_size=args.source_pixel_size,
        target_pixel_size=args.target_pixel_size,
        source_name=args.source_name,
        target_name=args.target_name,
        eval_tiles=args.eval_tiles,
        device=args.device,
        progress=not args.no_progress,
        channels=args.channels,
    )


def run(args):
    from ads_synth.translation.trainer import train

    trainer = train(options_from_args(args), resume=args.resume)
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) and trainer is not None:
        from pathlib import Path

        saved = [f"{args.out}/{name}" for name in ("best", "last") if (Path(args.out) / name).is_dir()]
        where = (f"models in {' and '.join(saved)}" if saved
                 else "no model saved yet (best/ needs scoring, --eval-every)")
        print(f"ads-synth: trained {trainer.step} steps; {where}")
    return 0


def run_export(args):
    from ads_synth.translation.nondiffusive import export_nondiffusive

    if not args.non_diffusive:
        raise InputError("translation export: give --non-diffusive (the only export there is: SynDiff's CycleGAN "
                         "generators as a model of their own).")
    out = export_nondiffusive(args.run, args.out, overwrite=args.overwrite)
    print(f"ads-synth: wrote the non-diffusive translator of {args.run} into {out}")
    return 0


def register(subparsers):
    parser = subparsers.add_parser("translation",
                                   help="train SynDiff translation models, export their non-diffusive half")
    sub = parser.add_subparsers(dest="translation_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "train",
        help="train a SynDiff model between a labeled (source) and an unlabeled (target) modality",
        description="Train SynDiff (adversarial diffusion + cycle consistency) on random tiles of the two domains. "
        "Labels are never read. Files in --out: config.json, checkpoint.pt (resumable), metrics.csv, scores.csv, "
        "curves.png, samples/, best/ (model with the best mean cycle SSIM) and last/. Multi-GPU: run the same "
        "command under 'torchrun --nproc_per_node=N -m ads_synth.cli translation train ...'.",
    )
    p.add_argument("--source", action="append", metavar="PATH",
                   help="labeled modality L: an image, folder, BIDS or nnU-Net dataset (repeat for several)")
    p.add_argument("--target", action="append", metavar="PATH",
                   help="unlabeled modality U: an image, folder, BIDS or nnU-Net dataset (repeat for several)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (must not hold a run unless --resume)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list_presets(),
                   help="network sizes and optimiser: compact-cl (CPU, constant learning rate), compact (CPU, the "
                        f"shipped translators' recipe), paper (GPU), tiny (tests); default {DEFAULT_PRESET}")
    p.add_argument("--scale", type=parse_scale, default=1.0, metavar="S", help=_SCALE_HELP)
    p.add_argument("--steps", type=int, default=None, metavar="N", help="total training steps (default 10000)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="steps between checkpoints (default 500)")
    p.add_argument("--eval-every", type=int, default=None, metavar="K",
                   help="steps between scorings on held-back tiles, 0 for none (default 500)")
    p.add_argument("--eval-tiles", type=int, default=8, metavar="N", help="held-back tiles per domain (default 8)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=int, default=None, help="tiles per domain and step (default: the preset's)")
    p.add_argument("--tile", type=int, default=None, metavar="PX",
                   help="training tile side (default: the preset's); smaller when the images are smaller than it on "
                   "their working grid (e.g. 128 for mouse TEM crops at --scale 5)")
    p.add_argument("--channels", type=int, default=None, metavar="N",
                   help="base channels of the diffusive generator (default: the preset's; e.g. 32 with compact)")
    p.add_argument("--source-pixel-size", type=float, default=None, metavar="UM",
                   help="micrometres per pixel for source images that have none")
    p.add_argument("--target-pixel-size", type=float, default=None, metavar="UM",
                   help="micrometres per pixel for target images that have none")
    p.add_argument("--source-name", default=None, help="name of the source modality stored with the model (e.g. TEM)")
    p.add_argument("--target-name", default=None, help="name of the target modality stored with the model (e.g. SEM)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)

    p = sub.add_parser(
        "export", help="export SynDiff's non-diffusive (CycleGAN ResNet) generators of a run as a translator",
        description="Write the EMA non-diffusive generators of a training run (from its checkpoint.pt) as a "
        "translation model folder of type ResnetTranslator: one forward pass a tile, deterministic; usable with "
        "ads-synth translate --model OUT, ads-synth pseudo --translation OUT and in model cards.")
    p.add_argument("--non-diffusive", dest="non_diffusive", action="store_true", required=True,
                   help="export the non-diffusive generators (required: the one export there is)")
    p.add_argument("run", metavar="RUN_DIR", help="the --out folder of ads-synth translation train")
    p.add_argument("out", metavar="OUT", help="model folder to write (config.json + weights.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in OUT")
    p.set_defaults(func=run_export)
