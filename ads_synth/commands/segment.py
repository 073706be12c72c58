"""``ads-synth segment``: pseudo-label images with a card of the model family (the plugin's own name for
``axondeepseg -t SEM --pseudo tutor``; it works whether or not the ``axondeepseg`` script is the plugin's)."""

from ads_synth.integration.ads_cli import add_pseudo_arguments


def run(args):
    from ads_synth.integration.ads_cli import run_from_args

    return run_from_args(args, "ads-synth segment", extension_exit=2)


def register(subparsers):
    parser = subparsers.add_parser(
        "segment",
        help="pseudo-label images with an installed model card (as `axondeepseg -t SEM --pseudo tutor`)",
        description="Pseudo-label images of an unlabeled modality with the model family's card for "
        "(source, target, strategy); writes AxonDeepSeg's <stem>_seg-axon.png, _seg-myelin.png and "
        "_seg-axonmyelin.png beside each image. Example: ads-synth segment -t SEM --strategy tutor -i image.png",
    )
    add_pseudo_arguments(parser, strategy_flags=("--strategy", "--pseudo"))
    parser.set_defaults(func=run)
