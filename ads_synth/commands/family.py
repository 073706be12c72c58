"""``ads-synth family train``: a whole model family for a new modality from its unlabeled images, in one command."""

from ads_synth.family.budget import DEFAULT_BUDGET_MINUTES
from ads_synth.family.options import PROXY_STARTS


def run_train(args):
    from ads_synth.family.options import FamilyOptions
    from ads_synth.family.train import train_family

    opts = FamilyOptions(
        unlabeled=args.unlabeled, target=args.target, out=args.out, labeled=args.labeled, source=args.source,
        device=args.device, time_budget=args.time_budget, resume=args.resume, overwrite=args.overwrite,
        verbose=args.verbose, pixel_size=args.pixel_size, scale=args.scale, preset=args.preset, folds=args.folds,
        steps=args.steps, epochs=args.epochs, proxy_epochs=args.proxy_epochs, iterations=args.iterations,
        patch=args.patch, register=not args.no_install, train_l_model=args.train_l_model,
        rounds=args.rounds, proxy_start=args.proxy_start)
    family = train_family(opts)
    if args.verbose == 0:
        print(f"{opts.pair}: auto = {family['auto']}; cards {', '.join(family['cards'])}")
    return 0


def register(subparsers):
    parser = subparsers.add_parser(
        "family", help="train a whole pseudo-label model family for a new modality (one command)")
    sub = parser.add_subparsers(dest="family_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "train", help="from unlabeled images of a new modality to an installed model family",
        description="Every phase in one command, every choice from the data (no label of the new modality is "
        "read): the scale between the modalities from fibre sizes, SynDiff translation, the tutorship and L models, "
        "candidate pseudo labels (tutor, adapt, and the no-translation baselines direct, invert, histmatch), "
        "label-free scores and the choice, a self-trained proxy, then model cards in OUT/family/ installed so "
        "that `axondeepseg -t TARGET --pseudo auto -i IMAGE` works at once, and OUT/report.md. Killed, the same "
        "command continues where it stopped. Example: ads-synth family train --unlabeled my_cars_images "
        "--target CARS -o runs/cars")
    p.add_argument("--unlabeled", nargs="+", required=True, metavar="PATH",
                   help="images of the new modality: files, folders, a BIDS or nnU-Net dataset (labels never read)")
    p.add_argument("--target", "-t", required=True, metavar="NAME", help="name of the new modality (e.g. CARS)")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="run folder (new, or one this command made)")
    p.add_argument("--labeled", nargs="+", default=None, metavar="PATH",
                   help="labeled images of another modality (default: the bundled labeled TEM set)")
    p.add_argument("--source", "-s", default=None, metavar="NAME",
                   help="name of the labeled modality (default TEM, the bundled set; required with --labeled)")
    p.add_argument("--time-budget", dest="time_budget", type=float, default=DEFAULT_BUDGET_MINUTES,
                   metavar="MINUTES", help=f"wall time for the whole run; steps and epochs are scaled to fit "
                   f"(default {DEFAULT_BUDGET_MINUTES:g})")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--pixel-size", dest="pixel_size", type=float, default=None, metavar="UM",
                   help="micrometres per pixel of unlabeled images that carry none")
    p.add_argument("--scale", default="auto", metavar="S",
                   help="L -> U scale factor: auto (estimated from fibre sizes, the default) or a number "
                   "(1: the paper's rule, the same physical pixel size)")
    p.add_argument("--resume", action="store_true",
                   help="continue a run in OUT made with other options (the same command continues by itself)")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in OUT, and replace an installed family of the same name")
    p.add_argument("--no-install", dest="no_install", action="store_true",
                   help="write the cards into OUT/family/ only")
    p.add_argument("-v", "--verbose", type=int, choices=(0, 1), default=1,
                   help="1 (default): one line per phase and progress bars; 0: quiet")
    expert = p.add_argument_group("expert options (default: planned from --time-budget)")
    expert.add_argument("--preset", default=None,
                        help="SynDiff preset (default compact-cl; compact: the shipped translators' recipe; "
                        "tiny for tests)")
    expert.add_argument("--steps", type=int, default=None, help="translation steps")
    expert.add_argument("--epochs", type=int, default=None, help="nnU-Net epochs of the teachers (and proxy)")
    expert.add_argument("--proxy-epochs", dest="proxy_epochs", type=int, default=None, help="nnU-Net epochs of the proxy")
    expert.add_argument("--iterations", type=int, default=None, help="nnU-Net iterations per epoch (default 50)")
    expert.add_argument("--patch", type=int, default=128, help="nnU-Net patch side (default 128)")
    expert.add_argument("--rounds", default="auto", metavar="N",
                        help="self-training rounds of the proxy: auto (the default: up to 3, while the label-free "
                        "score improves and the budget allows) or a most number of rounds")
    expert.add_argument("--proxy-start", dest="proxy_start", choices=PROXY_STARTS, default="teacher",
                        help="what the proxy's training starts from: teacher (the default: the network of the "
                        "teacher it learns from, e.g. the L model for invert) or scratch (random weights)")
    expert.add_argument("--train-l-model", dest="train_l_model", action="store_true",
                        help="train the L model even when a shipped one was trained on exactly these labeled images "
                        "(default: reuse it)")
    expert.add_argument("--folds", nargs="+", default=["0", "1"], metavar="K", help="nnU-Net folds (default 0 1)")
    p.set_defaults(func=run_train)
