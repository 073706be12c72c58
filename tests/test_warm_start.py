"""Warm starts of self-trained models (ads_synth.segmentation.warm_start), on a shipped network and a real image."""

import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
L_MODEL = ROOT / "ads_synth_models" / "TEM2SEM" / "nnunet_adapt"
U_MODEL = ROOT / "ads_synth_models" / "TEM2SEM" / "nnunet_tutor"
DEMO = ROOT / "docs" / "demo" / "sub-rat8_sample-V915_SEM.png"
COMPACT = {"n_stages": 5, "base_features": 16, "max_features": 256}


def _crop():
    from ads_synth.data.images import read_image

    image = read_image(DEMO)
    y, x = image.shape[0] // 2, image.shape[1] // 2
    return image[y - 96:y + 96, x - 96:x + 96]


def _one_fold_copy(src, dst, checkpoint):
    dst.mkdir()
    for name in ("ads_synth.json", "dataset.json", "plans.json"):
        shutil.copy2(src / name, dst / name)
    (dst / "fold_0").mkdir()
    shutil.copy2(checkpoint, dst / "fold_0" / "checkpoint_final.pth")
    return dst


def test_negated_first_convolution_reads_an_image_as_the_original_reads_it_inverted(tmp_path):
    """The invert teacher's network, started for the proxy: on the real SEM image it gives the labels that the
    shipped L model gives on the inverted image (the per-image z-score makes inversion a sign change)."""
    import torch

    from ads_synth.data.intensity import invert
    from ads_synth.segmentation.confidence import label_and_confidence
    from ads_synth.segmentation.predict import load_segmentation_model
    from ads_synth.segmentation.warm_start import FIRST_CONV_KEYS, negate_first_conv, warm_start

    starts, how = warm_start("invert", l_model=L_MODEL, u_model=U_MODEL, folds=[0, 1], network=COMPACT,
                             work=tmp_path / "init")
    assert set(starts) == {0, 1} and "negated" in how
    assert starts[0] != starts[1]  # each fold starts from its own fold
    original = torch.load(str(L_MODEL / "fold_0" / "checkpoint_final.pth"), map_location="cpu")
    negated = torch.load(str(starts[0]), map_location="cpu")
    assert set(negated) == set(original)
    for key, value in original["network_weights"].items():
        expected = -value if key in FIRST_CONV_KEYS else value
        assert torch.equal(negated["network_weights"][key], expected), key

    image = _crop()
    plain = load_segmentation_model(_one_fold_copy(L_MODEL, tmp_path / "plain", L_MODEL / "fold_0" /
                                                   "checkpoint_final.pth"), folds=[0], device="cpu")
    flipped = load_segmentation_model(_one_fold_copy(L_MODEL, tmp_path / "flipped", starts[0]), folds=[0],
                                      device="cpu")
    on_inverted, _ = label_and_confidence(plain.predict(invert(image))[0])
    on_image, _ = label_and_confidence(flipped.predict(image)[0])
    as_is, _ = label_and_confidence(plain.predict(image)[0])
    assert (on_image == on_inverted).mean() > 0.999
    assert (as_is == on_inverted).mean() < 0.95  # the inversion matters on SEM: the test can fail
    assert {1, 2} <= set(np.unique(on_image).tolist())

    with pytest.raises(ValueError, match="PlainConvUNet"):
        torch.save({"network_weights": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
        negate_first_conv(tmp_path / "other.pth", tmp_path / "never.pth")
    assert not (tmp_path / "never.pth").exists()


@pytest.mark.parametrize("teacher, source", [("direct", L_MODEL), ("histmatch", L_MODEL), ("tutor", U_MODEL),
                                             ("adapt", U_MODEL), ("proxy", U_MODEL)])
def test_each_teacher_starts_from_the_network_that_reads_u_as_it_does(tmp_path, teacher, source):
    from ads_synth.segmentation.warm_start import warm_start

    starts, how = warm_start(teacher, l_model=L_MODEL, u_model=U_MODEL, folds=[0, 1, 3], network=COMPACT,
                             work=tmp_path)
    assert starts == {0: source / "fold_0" / "checkpoint_final.pth", 1: source / "fold_1" / "checkpoint_final.pth",
                      3: source / "fold_0" / "checkpoint_final.pth"}  # a fold it lacks: its first fold
    assert how and not any(tmp_path.iterdir())  # nothing written for an unchanged network


def test_another_network_or_no_model_starts_nothing(tmp_path):
    from ads_synth.segmentation.warm_start import warm_start

    assert warm_start("invert", l_model=L_MODEL, u_model=U_MODEL, folds=[0], work=tmp_path,
                      network=dict(COMPACT, n_stages=4)) == ({}, None)
    assert warm_start("tutor", l_model=L_MODEL, u_model=tmp_path / "missing", folds=[0], work=tmp_path,
                      network=COMPACT) == ({}, None)
    assert not any(tmp_path.iterdir())
