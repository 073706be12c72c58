"""Every shipped card's reproduce commands rebuild what it ships: the translation command's network and tile
sizes are those of the shipped config.json, the nnU-Net command's schedule and folds those of ads_synth.json."""

import json
import shlex

import pytest

from ads_synth.cli import build_parser
from ads_synth.cards.lookup import PACKAGE_DIR, get_card, list_cards

SHIPPED = list_cards([PACKAGE_DIR])
META = ("extra", "format", "ads_synth_version", "_class_name")


def _argv(command):
    """The command line of a card's ``command`` text (a trailing parenthesised note dropped)."""
    command = command.split(" (")[0]
    argv = shlex.split(command)
    assert argv[0] == "ads-synth"
    return argv[1:]


@pytest.mark.parametrize("card", SHIPPED, ids=[c.name for c in SHIPPED])
def test_translation_command_rebuilds_the_shipped_config(card):
    from ads_synth.commands.translation import options_from_args
    from ads_synth.translation.trainer import config_from_options

    section = card.entry["training"]["translation"]
    if not isinstance(section, dict):
        pytest.skip(f"{card.name} reuses another card's translation: {section[:60]}")
    args = build_parser().parse_args(_argv(section["command"]))
    built = config_from_options(options_from_args(args)).to_dict()
    shipped = json.loads((card.translation / "config.json").read_text())
    from ads_synth.translation.config import SynDiffConfig

    assert built == SynDiffConfig.from_dict({k: v for k, v in shipped.items() if k not in META}).to_dict()


@pytest.mark.parametrize("card", SHIPPED, ids=[c.name for c in SHIPPED])
def test_nnunet_command_matches_the_shipped_model(card):
    args = build_parser().parse_args(_argv(card.entry["training"]["nnunet"]["command"]))
    info = json.loads((card.nnunet / "ads_synth.json").read_text())
    from ads_synth.segmentation.strategies import parse_strategies

    assert card.strategy in parse_strategies(args.strategy)
    assert [int(f) for f in args.folds] == info["folds"]
    assert (args.epochs, args.iterations) == (info["epochs"], info["iterations_per_epoch"])
    assert args.patch == info["compact_plan"]["patch_size"]


def test_create_card_from_a_training_run_ships_its_best_model(user_cards, tmp_path):
    """``models create --translation RUN_DIR`` (the folder ``ads-synth pseudo --translation`` accepts) ships the
    run's ``best/`` model, not its checkpoint.pt, metrics.csv and curves.png."""
    from ads_synth.cli import main as cli_main
    from ads_synth.translation.formats import RUN_FORMAT
    from ads_synth.translation.translate import load_translation_model
    from test_model_cards import make_fake_models
    from tiny_models import build_tiny_translation_model

    run = tmp_path / "run"
    build_tiny_translation_model(run / "best")
    (run / "config.json").write_text(json.dumps({"format": RUN_FORMAT, "options": {}}))
    for name in ("checkpoint.pt", "metrics.csv", "curves.png"):
        (run / name).write_bytes(b"not shipped")
    _, nn = make_fake_models(tmp_path / "seg")
    assert cli_main(["models", "create", "--source", "A", "--target", "B", "--strategy", "tutor", "--translation",
                     str(run), "--nnunet", str(nn), "--pixel-size", "0.2", "--dest", str(user_cards)]) == 0
    card = get_card("A2B_tutor")
    shipped = sorted(rel for rel in card.files if rel.startswith("A2B/translation/"))
    assert shipped == ["A2B/translation/config.json", "A2B/translation/weights.pt"]
    assert (card.translation / "weights.pt").read_bytes() == (run / "best" / "weights.pt").read_bytes()
    assert load_translation_model(card.translation, "cpu").pixel_sizes.U == 0.2
    empty = tmp_path / "empty-run"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"format": RUN_FORMAT}))
    assert cli_main(["models", "create", "--source", "A", "--target", "C", "--strategy", "tutor", "--translation",
                     str(empty), "--nnunet", str(nn), "--pixel-size", "0.2", "--dest", str(user_cards)]) == 2
