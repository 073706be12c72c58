"""``--scale auto``: the L -> U scale from axon sizes (L's labels, U's images), ``ads-synth scale estimate``."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ads_synth.cli import main
from ads_synth.errors import EXIT_BAD_INPUT, InputError
from ads_synth.translation.scale import (area_weighted_median, axon_phase, detected_axon_diameters,
                                         estimate_scale, label_axon_diameters)


def _fibres(shape, pixel_size, axon_radius_um, seed, g_ratio=0.65):
    """Myelinated fibres on a jittered grid, axon radii (um) ~ N(axon_radius_um, 20 %, clipped); the label map."""
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.uint8)
    r_max = 1.4 * axon_radius_um / pixel_size / g_ratio
    step = 2 * r_max + 3
    for cy in np.arange(r_max, shape[0], step):
        for cx in np.arange(r_max, shape[1], step):
            r_axon = np.clip(rng.normal(1, 0.2), 0.6, 1.4) * axon_radius_um / pixel_size
            slack = r_max - r_axon / g_ratio
            y, x = cy + rng.uniform(-slack, slack), cx + rng.uniform(-slack, slack)
            label[disk((y, x), r_axon / g_ratio, shape=shape)] = 1
            label[disk((y, x), r_axon, shape=shape)] = 2
    return label


def _render(label, levels, noise, seed):
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    img = np.choose(label, levels).astype(np.float32)
    img = ndi.gaussian_filter(img, 1.0) + rng.normal(0, noise, label.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_set(folder, pixel_size, axon_radius_um, levels, seeds, labels=True):
    folder.mkdir()
    (folder / "pixel_size_in_micrometer.txt").write_text(f"{pixel_size}\n")
    for seed in seeds:
        label = _fibres((384, 384), pixel_size, axon_radius_um, seed)
        Image.fromarray(_render(label, levels, 10, seed)).save(folder / f"img{seed}.png")
        if labels:
            Image.fromarray(((label == 2) * 255).astype(np.uint8)).save(folder / f"img{seed}_seg-axon-manual.png")
            Image.fromarray(((label == 1) * 255).astype(np.uint8)).save(folder / f"img{seed}_seg-myelin-manual.png")
    return folder


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """L: TEM-like (dark myelin), 0.01 um/px, axons 0.25 um in radius, labelled. U: SEM-like (bright myelin, dark
    axons), 0.1 um/px, axons 6x larger (1.5 um), no labels. The true scale is 6."""
    root = tmp_path_factory.mktemp("rings")
    lab = _write_set(root / "L", 0.01, 0.25, [170, 40, 200], [1, 2, 3])
    unl = _write_set(root / "U", 0.1, 1.5, [60, 225, 75], [11, 12, 13], labels=False)
    return lab, unl


def test_area_weighted_median():
    assert area_weighted_median([1, 1, 1, 10]) == 10
    assert area_weighted_median([2, 2, 2]) == 2
    assert np.isnan(area_weighted_median([]))


def test_detector_finds_axons_of_either_polarity():
    label = _fibres((384, 384), 0.1, 1.5, seed=5)
    truth = area_weighted_median(label_axon_diameters(label))
    for levels in ([60, 225, 75], [170, 40, 200]):  # bright myelin / dark myelin
        found, smoothing = detected_axon_diameters(_render(label, levels, 10, 5))
        assert len(found) >= 5
        assert abs(area_weighted_median(found) / truth - 1) < 0.15


def test_axon_phase_tells_dark_from_bright_axons():
    label = _fibres((384, 384), 0.1, 1.5, seed=5)
    assert axon_phase(_render(label, [60, 225, 75], 10, 5)) == "dark"  # SEM-like: bright myelin
    assert axon_phase(_render(label, [170, 40, 200], 10, 5)) == "bright"  # TEM-like: dark myelin
    assert axon_phase(np.full((128, 128), 90, np.uint8)) is None


def test_look_check_tells_a_learned_contrast_from_a_copy(synthetic):
    """L -> U translations with L's labels against U's own contrast: an inversion learned SEM's dark axons, a copy
    kept TEM's; against a U of L's own contrast the check declines to judge."""
    from ads_synth.data.datasets import find_samples
    from ads_synth.family.look import look_check, unlabeled_phase

    lab, unl = synthetic
    labeled = find_samples(lab, require_labels=True)
    for s in labeled:
        s.pixel_size = 0.01
    u_images = [np.asarray(Image.open(p)) for p in sorted(Path(unl).glob("*.png"))]
    u_phase = unlabeled_phase(u_images)
    inverted = look_check(lambda im, px: 255 - im, labeled, u_phase)
    assert inverted["U_axons"] == "dark" and inverted["L_axons"] == "bright"
    assert inverted["learned"] is True and inverted["contrast_translated"] > 1 > -1 > inverted["contrast_L"]
    copied = look_check(lambda im, px: im, labeled, u_phase)
    assert copied["learned"] is False and "kept" in copied["verdict"]
    same = look_check(lambda im, px: im, labeled, unlabeled_phase([255 - im for im in u_images]))
    assert same["learned"] is None and "cannot tell" in same["verdict"]
    rng = np.random.default_rng(0)  # an untrained generator: noise, no contrast of either sign
    noise = look_check(lambda im, px: rng.integers(0, 256, im.shape, dtype=np.uint8), labeled, u_phase)
    assert noise["learned"] is False and "no clear contrast" in noise["verdict"]


def test_estimate_recovers_known_scale_from_synthetic_rings(synthetic):
    lab, unl = synthetic
    est = estimate_scale(lab, unl)
    assert abs(est.scale / 6.0 - 1) < 0.15, est.scale
    assert est.low <= est.scale <= est.high
    assert abs(est.detector_check - 1) < 0.15  # the detector measures L's labelled axons too
    assert [s.domain for s in est.images] == ["L"] * 3 + ["U"] * 3
    # the detector's axon phase per image, recorded (family train's contrast check reads U's from it)
    assert [s.axon_phase for s in est.images] == ["bright"] * 3 + ["dark"] * 3
    assert [im["axon_phase"] for im in est.to_dict()["images"]] == ["bright"] * 3 + ["dark"] * 3
    # the other way round the factor inverts
    back = estimate_scale(_relabel(unl, lab), lab, check=False)
    assert abs(back.scale * 6.0 - 1) < 0.15, back.scale


def _relabel(unl, lab):
    """U's images with labels drawn from the same generator (for the inverse direction)."""
    folder = unl.parent / "U_labeled"
    if not folder.exists():
        _write_set(folder, 0.1, 1.5, [60, 225, 75], [11, 12, 13], labels=True)
    return folder


def test_cli_scale_estimate_prints_estimate_and_writes_json(synthetic, tmp_path, capsys):
    lab, unl = synthetic
    out = tmp_path / "scale.json"
    assert main(["scale", "estimate", "--labeled", str(lab), "--unlabeled", str(unl), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("scale ") and "68% interval" in text and "img11" in text
    data = json.loads(out.read_text())
    assert abs(data["scale"] / 6.0 - 1) < 0.15 and len(data["images"]) == 6
    # an existing --json is not overwritten
    assert main(["scale", "estimate", "--labeled", str(lab), "--unlabeled", str(unl), "--json", str(out)]) == \
        EXIT_BAD_INPUT


def test_blank_unlabeled_images_are_an_input_error(synthetic, tmp_path):
    lab, _ = synthetic
    blank = tmp_path / "blank"
    blank.mkdir()
    Image.fromarray(np.full((128, 128), 90, np.uint8)).save(blank / "b.png")
    with pytest.raises(InputError, match="--unlabeled"):
        estimate_scale(lab, blank, unlabeled_pixel_size=0.1, check=False)


def test_translation_train_scale_auto_needs_labeled_source(synthetic, tmp_path, capsys):
    lab, unl = synthetic
    code = main(["translation", "train", "--source", str(unl), "--target", str(unl), "--out", str(tmp_path / "r"),
                 "--scale", "auto", "--preset", "tiny"])
    assert code == EXIT_BAD_INPUT
    assert "--scale auto" in capsys.readouterr().err
    code = main(["translation", "train", "--source", str(lab), "--target", str(unl), "--out", str(tmp_path / "r"),
                 "--scale", "big"])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--scale" in err[0] and "'big'" in err[0]


def test_translation_train_scale_auto_uses_the_estimate(synthetic, tmp_path, monkeypatch, capsys):
    from ads_synth.translation import trainer

    seen = {}

    def fake_train(opts, resume=False):
        seen["scale"] = opts.scale
        return None

    monkeypatch.setattr(trainer, "train", fake_train)
    lab, unl = synthetic
    assert main(["translation", "train", "--source", str(lab), "--target", str(unl), "--out", str(tmp_path / "r"),
                 "--scale", "auto"]) == 0
    assert abs(seen["scale"] / 6.0 - 1) < 0.15
    assert "--scale auto:" in capsys.readouterr().out
    assert main(["translation", "train", "--source", str(lab), "--target", str(unl), "--out", str(tmp_path / "r"),
                 "--scale", "2.5"]) == 0
    assert seen["scale"] == 2.5


def test_real_tem_to_sem_estimate_is_in_a_sensible_range():
    """Bundled data: the labeled TEM set against the SEM subject shipped with the tests and the SEM demo image."""
    from ads_synth.data.bundled import labeled_set
    from ads_synth.data.datasets import find_samples
    from tiny_models import TEST_SEM

    demo = Path(__file__).resolve().parents[1] / "docs" / "demo" / "sub-rat8_sample-V915_SEM.png"
    sem = find_samples(TEST_SEM) + find_samples(demo)
    est = estimate_scale(labeled_set("TEM"), sem, check=False)
    # mouse CNS against rat spinal cord: axons several times larger (hand-chosen 5; Dice plateau 5 to 8)
    assert 3.0 < est.scale < 12.0, est.scale
    assert 0.4 < est.labeled_diameter_um < 0.9
