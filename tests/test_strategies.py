"""The strategy registry, the intensity transforms of the no-translation baselines, and every consumer reading the
registry (``--strategy`` / ``--pseudo`` choices, cards, evaluation order and titles)."""

import dataclasses

import numpy as np
import pytest

from ads_synth.data import intensity
from ads_synth.errors import InputError
from ads_synth.segmentation import strategies as S


@pytest.fixture
def extra_strategy():
    """A registered shippable L-model strategy (removed afterwards)."""
    s = S.register_strategy(S.Strategy("gamma", "L model on gamma-corrected U", segments="L", model="L",
                                       intensity=lambda img, ref: img, shippable=True, order=65))
    yield s
    S.unregister_strategy("gamma")


def test_builtin_strategies_describe_themselves():
    names = S.strategy_names()
    assert names == ("tutor", "adapt", "combined", "proxy", "refined", "direct", "invert", "histmatch")
    assert S.strategy_names(shippable=True) == ("tutor", "adapt", "proxy", "refined", "direct", "invert", "histmatch")
    assert "combined" not in S.strategy_names(selectable=True)
    tutor, adapt, proxy, direct = (S.get_strategy(n) for n in ("tutor", "adapt", "proxy", "direct"))
    assert tutor.segments_target and proxy.segments_target and not adapt.segments_target
    assert adapt.translate == "U2L" and adapt.segments == "L" and not adapt.on_translation_grid
    assert direct.on_translation_grid and direct.intensity is None and direct.model == "L"
    assert S.get_strategy("invert").intensity is not None and S.get_strategy("histmatch").needs_reference
    assert proxy.teachers == ("tutor", "adapt")
    assert S.titles()["combined"] == "Tutorship + adaptation"
    with pytest.raises(dataclasses.FrozenInstanceError):
        tutor.name = "other"


def test_register_and_get_strategy_checks():
    with pytest.raises(ValueError, match="already registered"):
        S.register_strategy(S.get_strategy("tutor"))
    with pytest.raises(ValueError, match="gives L images"):
        S.Strategy("bad", "bad", segments="U", model="x", translate="U2L")
    with pytest.raises(ValueError, match="register 'nothing' first"):
        S.register_strategy(S.Strategy("late", "late", segments="U", model="late", teachers=("nothing",)))
    with pytest.raises(InputError, match="--strategy 'both': choose one of tutor, adapt, proxy, refined, direct"):
        S.get_strategy("both")
    with pytest.raises(InputError, match="--pseudo 'combined': choose one of tutor, adapt, proxy, refined, direct, "
                                         "invert, histmatch."):
        S.get_strategy("combined", "--pseudo", shippable=True)


def test_parse_strategies_adds_teachers_first_and_reads_in_all():
    assert S.parse_strategies("all") == ["tutor", "adapt", "direct"]
    assert S.parse_strategies(["proxy", "invert"]) == ["invert", "tutor", "adapt", "proxy"]
    assert S.parse_strategies(["histmatch", "all", "direct"]) == ["histmatch", "tutor", "adapt", "direct"]
    with pytest.raises(InputError):
        S.parse_strategies([])


def test_refined_is_made_by_refine_not_by_pseudo():
    refined = S.get_strategy("refined")
    assert refined.segments_target and refined.shippable and not refined.teachers
    assert "refined" not in S.parse_strategies("all")
    with pytest.raises(InputError, match="made by `ads-synth refine`"):
        S.parse_strategies(["refined"])


def test_consumers_read_the_registry(extra_strategy, tmp_path, capsys):
    from ads_synth.cli import build_parser
    from ads_synth.integration.ads_cli import build_parser as ads_parser
    from ads_synth.segmentation.evaluate import Evaluation
    from ads_synth.cards.schema import card_entry, card_from_entry

    # axondeepseg --pseudo offers the shippable strategies, the new one included
    args = ads_parser().parse_args(["-t", "SEM", "--pseudo", "gamma", "-i", "x.png"])
    assert args.strategy == "gamma"
    with pytest.raises(SystemExit):
        ads_parser().parse_args(["-t", "SEM", "--pseudo", "combined", "-i", "x.png"])
    # ads-synth models create --strategy, and a card of that strategy validates
    args = build_parser().parse_args(["models", "create", "--source", "A", "--target", "B", "--strategy", "gamma",
                                      "--translation", "t", "--nnunet", "n", "--pixel-size", "0.1"])
    assert args.strategy == "gamma"
    entry = card_entry(source="A", target="B", strategy="gamma", pixel_size=0.1, translation="t",
                       nnunet="n", files={"t/x": "0" * 64}, name="A2B_gamma")
    card = card_from_entry(tmp_path / "A2B_gamma.yaml", "A2B_gamma", entry)
    assert not card.segments_target  # an L model: AxonDeepSeg cannot run it alone
    with pytest.raises(InputError, match="must be one of tutor, adapt, proxy, refined, direct, invert, gamma, "
                                         "histmatch"):
        card_from_entry(tmp_path / "x.yaml", "x", {**entry, "strategy": "combined"})
    # ads-synth pseudo --strategy help lists it; the evaluation orders and titles it from the registry
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pseudo", "--help"])
    helped = " ".join(capsys.readouterr().out.split())
    assert "gamma: L model on gamma-corrected U" in helped and "proxy: Proxy (self-trained on U) (runs tutor" in helped
    rows = [{"strategy": s} for s in ("zzz", "gamma", "direct", "tutor")]
    assert Evaluation(rows=rows).strategies() == ["tutor", "direct", "gamma", "zzz"]


def test_invert_keeps_dtype_and_range():
    img = np.array([[0, 10], [200, 255]], dtype=np.uint8)
    assert np.array_equal(intensity.invert(img), np.array([[255, 245], [55, 0]], dtype=np.uint8))
    wide = np.array([[0, 65535]], dtype=np.uint16)
    assert np.array_equal(intensity.invert(wide), np.array([[65535, 0]], dtype=np.uint16))
    flt = np.array([[0.25, 1.0]], dtype=np.float32)
    assert np.allclose(intensity.invert(flt), [[1.0, 0.25]])


def test_histogram_match_gives_the_reference_distribution():
    rng = np.random.default_rng(0)
    dark = rng.normal(60, 10, (128, 128)).clip(0, 255).astype(np.uint8)
    bright = rng.normal(180, 25, (128, 128)).clip(0, 255).astype(np.uint8)
    reference = intensity.intensity_quantiles([bright])
    matched = intensity.histogram_match(dark, reference)
    assert matched.dtype == np.uint8 and matched.shape == dark.shape
    assert abs(matched.mean() - bright.mean()) < 2 and abs(matched.std() - bright.std()) < 2
    # monotone: the order of pixel values is kept
    order = np.argsort(dark.ravel(), kind="stable")
    assert np.all(np.diff(matched.ravel()[order].astype(int)) >= 0)
    with pytest.raises(InputError, match="histmatch needs L's reference"):
        intensity.histogram_match(dark, None)


def test_reference_file_round_trip(tmp_path):
    q = intensity.intensity_quantiles([np.arange(256, dtype=np.uint8).reshape(16, 16)])
    assert q[0] == 0 and q[-1] == 255 and q.size == intensity.N_QUANTILES
    intensity.save_reference(tmp_path / intensity.REFERENCE_FILE, q)
    assert np.allclose(intensity.load_reference(tmp_path), q)
    (tmp_path / "bad.json").write_text('{"quantiles": [3, 1]}')
    with pytest.raises(InputError, match="non-decreasing"):
        intensity.load_reference(tmp_path / "bad.json")
