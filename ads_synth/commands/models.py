"""``ads-synth models list|show|install|verify|create|pack|unregister``: the pseudo-label model family.

Cards are found by :mod:`ads_synth.cards.lookup` (package folder and ``$ADS_SYNTH_MODELS``), checked by
:mod:`ads_synth.cards.verify`, made by :mod:`ads_synth.cards.create` and installed by :mod:`ads_synth.cards.install`;
a tutorship or proxy card's nnU-Net folder is installed among AxonDeepSeg's models by :mod:`ads_synth.integration.ads_models`.
"""

from ads_synth.segmentation.strategies import strategy_names


def _ads_status(card):
    """The card's folder name among AxonDeepSeg's models, or why it has none."""
    if not card.segments_target:
        return f"- ({card.strategy}: use axondeepseg -t {card.target} --pseudo {card.strategy})"
    try:
        from ads_synth.integration.ads_models import is_registered
    except ImportError:  # pragma: no cover - AxonDeepSeg is a dependency
        return "?"
    return card.full_name if is_registered(card) else "not installed"


def run_list(args):
    from ads_synth.cards.lookup import list_cards, model_dirs

    cards = list_cards()
    if not cards:
        where = ", ".join(str(d) for d in model_dirs())
        print(f"no model cards found (searched {where}); install one with `ads-synth models install --archive "
              f"FILE.zip`.")
        return 0
    rows = [("NAME", "MODALITIES", "STRATEGY", "PIXEL SIZE (um)", "FILES", "ADS MODEL", "CARD")]
    for c in cards:
        rows.append((
            c.name,
            f"{c.source} -> {c.target}",
            c.strategy,
            f"{c.pixel_size[0]:g}-{c.pixel_size[1]:g}",
            "present" if c.is_installed() else f"missing {len(c.missing_files())}",
            _ads_status(c),
            str(c.path),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)) + "  " + r[-1])
    return 0


def run_show(args):
    from ads_synth.cards.lookup import get_card

    card = get_card(args.name)
    print(card.path.read_text(encoding="utf-8").rstrip())
    print(f"# card file:     {card.path}")
    missing = card.missing_files()
    print(f"# files:         {'all present' if not missing else f'{len(missing)} missing, e.g. {missing[0]}'}")
    print(f"# ADS model:     {_ads_status(card)}")
    if card.auto is not None:
        chosen = card.auto.get("chosen")
        print(f"# --pseudo auto: {chosen}, chosen without labels among {', '.join(card.auto.get('among', []))}")
        for name, scores in sorted((card.auto.get("scores") or {}).items()):
            mark = "*" if name == chosen else " "
            print(f"#  {mark} {name:<10} " + "  ".join(f"{k} {v:.3f}" for k, v in sorted(scores.items())))
    if card.myelin_boundary:
        print("# post-processing: myelin boundary at half-way intensity (as --myelin-boundary)")
    return 0


def _register(card, no_ads, overwrite):
    if no_ads:
        return
    if not card.segments_target:
        print(f"  {card.name}: adaptation model, not an AxonDeepSeg model on its own; run it with "
              f"`axondeepseg -t {card.target} -s {card.source} --pseudo adapt -i IMAGE`")
        return
    from ads_synth.integration.ads_models import register_in_ads

    folder = register_in_ads(card, overwrite=overwrite)
    print(f"  {card.name}: AxonDeepSeg model {card.full_name} ({folder}); `axondeepseg -m {folder} -i IMAGE`")


def run_install(args):
    from ads_synth.errors import InputError
    from ads_synth.cards.install import install_archive, install_card
    from ads_synth.cards.lookup import get_card

    if not args.archive and not args.names:
        raise InputError("give a card name (see `ads-synth models list`) or --archive FILE.zip to install.")
    cards = []
    if args.archive:
        cards.extend(install_archive(args.archive, args.dest, overwrite=args.overwrite))
    for name in args.names:
        cards.append(install_card(get_card(name), args.dest, overwrite=args.overwrite))
    for card in cards:
        print(f"installed {card.name} ({card.description}) in {card.root}: {len(card.files)} files verified")
        _register(card, args.no_ads, args.overwrite)
    return 0


def _ads_copy_problems(card):
    """Files of the card's AxonDeepSeg copy that differ from the card (empty when not installed there)."""
    from ads_synth.integration.ads_models import ads_model_path, is_registered
    from ads_synth.checksums import sha256_file

    if not card.segments_target or not is_registered(card):
        return []
    folder = ads_model_path(card)
    prefix = card.nnunet.relative_to(card.root).as_posix() + "/"
    problems = []
    for rel, digest in card.files.items():
        if rel.startswith(prefix):
            path = folder / rel[len(prefix):]
            if not path.is_file():
                problems.append(f"AxonDeepSeg copy {path}: missing")
            elif sha256_file(path) != digest:
                problems.append(f"AxonDeepSeg copy {path}: checksum mismatch")
    return problems


def run_verify(args):
    from ads_synth.errors import InputError
    from ads_synth.cards.lookup import get_card, list_cards
    from ads_synth.cards.verify import pixel_size_problems, verify_card

    cards = [get_card(n) for n in args.names] if args.names else list_cards()
    if not cards:
        print("no model cards found.")
        return 0
    failed = []
    for card in cards:
        problems = verify_card(card) + pixel_size_problems(card) + _ads_copy_problems(card)
        if problems:
            failed.append(card.name)
            print(f"{card.name}: FAILED ({len(problems)} problem(s))")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"{card.name}: OK ({len(card.files)} files)")
    if failed:
        raise InputError(
            f"{len(failed)} model card(s) failed verification ({', '.join(failed)}); reinstall them with "
            f"`ads-synth models install NAME` (or `--archive FILE.zip`)."
        )
    return 0


def _json_file(path, what):
    import json

    from ads_synth.errors import InputError

    if path is None:
        return None
    try:
        return json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read the {what} JSON ({err}); give a JSON file.") from None


def run_create(args):
    from ads_synth.cards.create import create_card
    from ads_synth.cards.lookup import default_install_dir

    card = create_card(
        args.dest or default_install_dir(),
        source=args.source,
        target=args.target,
        strategy=args.strategy,
        translation=args.translation,
        nnunet=args.nnunet,
        pixel_size=tuple(args.pixel_size) if len(args.pixel_size) == 2 else (args.pixel_size[0],) * 2,
        folds=args.folds,
        name=args.name,
        model_info=args.info,
        training_data=args.training_data,
        training=_json_file(args.training, "training"),
        scores=_json_file(args.scores, "scores"),
        url=args.url,
        overwrite=args.overwrite,
    )
    print(f"created {card.path} ({card.description}, {len(card.files)} files)")
    return 0


def run_pack(args):
    from ads_synth.cards.create import pack_card
    from ads_synth.cards.lookup import get_card

    card = get_card(args.name)
    archive = pack_card(card, args.output or f"{card.name}.zip", overwrite=args.overwrite)
    print(f"packed {card.name} into {archive}")
    return 0


def run_unregister(args):
    from ads_synth.integration.ads_models import unregister_from_ads
    from ads_synth.cards.lookup import get_card

    for name in args.names:
        card = get_card(name)
        removed = unregister_from_ads(card)
        print(f"{card.name}: {'removed from' if removed else 'not installed by ads-synth in'} AxonDeepSeg's models")
    return 0


def run_auto(args):
    import tempfile

    from ads_synth.family.auto import choose_auto_card

    with tempfile.TemporaryDirectory(prefix="ads-synth-auto-") as tmp:
        card, scores = choose_auto_card(args.pair, args.unlabeled, args.work or tmp, pixel_size=args.pixel_size,
                                        gpu_id=args.gpu_id, overwrite=args.overwrite, progress=not args.no_progress)
    for name, s in sorted(scores.items(), key=lambda kv: -kv[1]["score"]):
        mark = "*" if name == card.auto["chosen"] else " "
        print(f"{mark} {name:<8} score {s['score']:.3f}  fibre-like {s['valid'] > 0!s:<5}  "
              f"intensity coherence {s.get('intensity_coherence', float('nan')):.3f}  "
              f"agreement {s['agreement']:.3f}  confidence {s['confidence']:.3f}")
    print(f"wrote {card.path}: --pseudo auto = {card.auto['chosen']}")
    return 0


def register(subparsers):
    parser = subparsers.add_parser(
        "models",
        help="list, show, install and verify the pseudo-label model cards",
        description="The pseudo-label model family: one card per modality pair and strategy, found in the "
        "package and in $ADS_SYNTH_MODELS.",
    )
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 0)

    p = sub.add_parser("list", help="list the model cards found")
    p.set_defaults(func=run_list)

    p = sub.add_parser("show", help="show a model card")
    p.add_argument("name", help="card name (see `ads-synth models list`)")
    p.set_defaults(func=run_show)

    p = sub.add_parser(
        "auto", help="choose a pair's --pseudo auto path without labels (writes <PAIR>_auto.yaml)",
        description="Pseudo-label centre crops of unlabeled images with every card of the pair, score the pseudo "
        "labels without labels (fibre-like rings first, then how much of the image's intensity variance the labels "
        "explain) and write <PAIR>_auto.yaml beside the "
        "cards: the best path, with the scores that chose it. ads-synth family train does this by itself.")
    p.add_argument("pair", metavar="PAIR", help="modality pair, e.g. TEM2SEM")
    p.add_argument("--unlabeled", nargs="+", required=True, metavar="PATH",
                   help="unlabeled images of the target modality (labels never read)")
    p.add_argument("--pixel-size", dest="pixel_size", type=float, default=None, metavar="UM",
                   help="micrometres per pixel of images that carry none")
    p.add_argument("--work", default=None, metavar="DIR", help="keep the crops and pseudo labels here")
    p.add_argument("--gpu-id", dest="gpu_id", type=int, default=-1, help="GPU to use (default -1: the CPU)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing <PAIR>_auto card")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_auto)

    p = sub.add_parser(
        "install",
        help="install a card's files from --archive FILE.zip (offline) and its AxonDeepSeg model",
        description="Install model cards: unpack and verify a downloaded archive (--archive; nothing is "
        "downloaded), or check a card whose files are present; then copy tutorship and proxy models into AxonDeepSeg's "
        "models as model_seg_pseudo_<pair>_<strategy> so that `axondeepseg -m` and the ADS napari widget list them.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="card name(s) to install")
    p.add_argument("--archive", metavar="FILE.zip", help="a downloaded model archive to install offline")
    p.add_argument("--dest", metavar="DIR", default=None,
                   help="where to install (default: first folder of $ADS_SYNTH_MODELS, else the package)")
    p.add_argument("--overwrite", action="store_true", help="replace installed files of other content")
    p.add_argument("--no-ads", dest="no_ads", action="store_true",
                   help="do not install the model among AxonDeepSeg's models")
    p.set_defaults(func=run_install)

    p = sub.add_parser("verify", help="check the sha256 of every file of the cards (default: all cards)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.set_defaults(func=run_verify)

    p = sub.add_parser("create", help="write a card for a trained translation model and nnU-Net model")
    p.add_argument("--source", required=True, help="labeled modality (e.g. TEM)")
    p.add_argument("--target", required=True, help="unlabeled modality (e.g. SEM)")
    p.add_argument("--strategy", required=True, choices=strategy_names(shippable=True))
    p.add_argument("--translation", required=True, metavar="DIR", help="SynDiff model folder")
    p.add_argument("--nnunet", required=True, metavar="DIR", help="nnU-Net trained model folder")
    p.add_argument("--pixel-size", dest="pixel_size", required=True, type=float, nargs="+", metavar="UM",
                   help="pixel size range (min max, or one value) of the target images it was trained on")
    p.add_argument("--folds", nargs="+", default=None, help="nnU-Net folds to use (default: every fold_*)")
    p.add_argument("--name", default=None, help="card name (default: <source>2<target>_<strategy>)")
    p.add_argument("--info", default=None, help="model-info text")
    p.add_argument("--training-data", dest="training_data", default=None, help="training-data text")
    p.add_argument("--training", default=None, metavar="JSON", help="JSON file: how it was trained")
    p.add_argument("--scores", default=None, metavar="JSON", help="JSON file: its scores")
    p.add_argument("--url", default=None, help="where its archive will be downloadable")
    p.add_argument("--dest", default=None, metavar="DIR",
                   help="card folder (default: first folder of $ADS_SYNTH_MODELS, else the package)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run_create)

    p = sub.add_parser("pack", help="write a card and its files into a zip archive (for `install --archive`)")
    p.add_argument("name")
    p.add_argument("-o", "--output", default=None, metavar="FILE.zip", help="default: <name>.zip")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run_pack)

    p = sub.add_parser("unregister", help="remove cards' models from AxonDeepSeg's models (ads-synth's only)")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(func=run_unregister)
