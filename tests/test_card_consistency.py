"""``ads-synth models verify`` cross-checks the pixel sizes of a card, its ``ads_synth.json`` and its translation
config (three files that each state them)."""

import json
import shutil

from ads_synth.cli import main as cli_main
from ads_synth.cards.create import create_card
from ads_synth.cards.lookup import PACKAGE_DIR, list_cards
from ads_synth.cards.verify import pixel_size_problems
from test_model_cards import make_fake_models


def _card(dest, tmp_path, strategy="tutor", info_px=0.1, domain="U", work=None, card_px=(0.08, 0.12)):
    tr, nn = make_fake_models(tmp_path / f"src-{strategy}-{info_px}")
    (tr / "config.json").write_text(json.dumps({"extra": {"pixel_size": work or {"L": 0.05, "U": 0.1}}}))
    (nn / "ads_synth.json").write_text(json.dumps({"pixel_size": info_px, "domain": domain}))
    return create_card(dest, source="TEST", target="FAKE", strategy=strategy, translation=tr, nnunet=nn,
                       pixel_size=card_px, name=f"TEST2FAKE_{strategy}_{str(info_px).replace('.', '')}",
                       training={"translation": {"working_pixel_size_um": {"TEST": 0.05, "FAKE": 0.1}}})


def test_consistent_cards_pass(user_cards, tmp_path):
    assert pixel_size_problems(_card(user_cards, tmp_path)) == []
    assert pixel_size_problems(_card(user_cards, tmp_path, "adapt", info_px=0.05, domain="L")) == []
    # an L model may work at a pixel size of its own (a shipped one reused by family train): the engine rescales
    # the translation's L grid to it
    assert pixel_size_problems(_card(user_cards, tmp_path, "adapt", info_px=0.02, domain="L")) == []


def test_each_disagreement_is_named(user_cards, tmp_path):
    (problem,) = pixel_size_problems(_card(user_cards, tmp_path, info_px=0.05))
    assert "pixel_size 0.05 um differs from the translation's working pixel size of U (0.1 um)" in problem
    adapt = _card(user_cards, tmp_path, "adapt", info_px=0.1, domain="U")
    (problem,) = pixel_size_problems(adapt)
    assert "domain 'U', but a adapt model segments L" in problem
    outside = _card(user_cards, tmp_path, card_px=(0.2, 0.3), info_px=0.1000001)
    assert any("does not hold the translation's U working pixel size 0.1" in p
               for p in pixel_size_problems(outside))
    stated = _card(user_cards, tmp_path, work={"L": 0.02, "U": 0.1}, info_px=0.10000002)
    assert any("working_pixel_size_um TEST 0.05 differs" in p for p in pixel_size_problems(stated))


def test_models_verify_fails_on_a_disagreement(user_cards, tmp_path, capsys):
    card = _card(user_cards, tmp_path, info_px=0.05)
    assert cli_main(["models", "verify", card.name]) == 2
    out = capsys.readouterr().out
    assert f"{card.name}: FAILED (1 problem(s))" in out and "working pixel size of U" in out


def test_shipped_cards_agree():
    shipped = list_cards([PACKAGE_DIR])
    assert len(shipped) >= 5
    for card in shipped:
        assert pixel_size_problems(card) == [], card.name


def test_archive_url_goes_to_ensemble_for_several_folds(user_cards, tmp_path):
    """In AxonDeepSeg's cards ``single_fold`` means a one-fold model: a two-fold card names its archive under
    ``ensemble``."""
    tr, nn = make_fake_models(tmp_path / "two")
    (nn / "fold_all").rename(nn / "fold_0")
    (nn / "fold_1").mkdir()
    shutil.copy2(nn / "fold_0" / "checkpoint_final.pth", nn / "fold_1" / "checkpoint_final.pth")
    two = create_card(user_cards, source="A", target="B", strategy="tutor", translation=tr, nnunet=nn,
                      pixel_size=0.1, url="https://example.org/A2B_tutor.zip")
    assert two.entry["weights"] == {"ensemble": "https://example.org/A2B_tutor.zip", "single_fold": None}
    assert two.url == "https://example.org/A2B_tutor.zip"
    tr1, nn1 = make_fake_models(tmp_path / "one", seed=b"y")
    one = create_card(user_cards, source="A", target="C", strategy="tutor", translation=tr1, nnunet=nn1,
                      pixel_size=0.1, folds=["all"], url="https://example.org/A2C_tutor.zip")
    assert one.entry["weights"] == {"ensemble": None, "single_fold": "https://example.org/A2C_tutor.zip"}
