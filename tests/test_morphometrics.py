"""Fibre-level post-processing on synthetic fibres of known size and g-ratio, and AxonDeepSeg's morphometrics of
predictions against manual labels (on the demo image's manual labels, sub-rat8 of sem-dev)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.draw import disk

PX = 0.1  # um per pixel of the synthetic images
#: (row, col, axon radius, outer radius) in pixels: axon diameters 2.0 / 3.0 / 2.4 um, g-ratios 0.667 / 0.6 / 0.75
FIBRES = ((40, 40, 10, 15), (40, 110, 15, 25), (110, 60, 12, 16))


def _fibres(shape=(160, 160)):
    lm = np.zeros(shape, np.uint8)
    for r, c, ra, rm in FIBRES:
        lm[disk((r, c), rm, shape=shape)] = 1
        lm[disk((r, c), ra, shape=shape)] = 2
    return lm


def _with_defects(lm):
    bad = lm.copy()
    bad[disk((130, 130), 8, shape=lm.shape)] = 2  # a false axon between fibres, no myelin around it
    bad[disk((140, 20), 5, shape=lm.shape)] = 1  # a myelin fragment enclosing no axon
    r, c, ra, rm = FIBRES[1]
    bad[disk((r, c + ra + 4), 1.5, shape=lm.shape)] = 2  # a 3 px axon speck inside the thick sheath of fibre 1
    return bad


def test_clean_fibres_removes_fragments_and_keeps_true_fibres_exactly():
    from ads_synth.segmentation.postprocess import axon_enclosure, clean_fibres, postprocess_label_map

    truth = _fibres()
    bad = _with_defects(truth)
    labels, fraction = axon_enclosure(bad)
    assert labels.max() == 5 and np.sum(fraction[1:] >= 0.5) == 4  # the three axons + the speck are enclosed
    out = clean_fibres(bad, pixel_size=PX)
    np.testing.assert_array_equal(out, truth)
    np.testing.assert_array_equal(postprocess_label_map(bad, pixel_size=PX), truth)
    # true fibres alone are left as they are; without a pixel size no axon is too small
    np.testing.assert_array_equal(clean_fibres(truth, pixel_size=PX), truth)
    assert (clean_fibres(bad, pixel_size=None) == 2).sum() > (truth == 2).sum()  # the speck stays an axon
    # the old behaviour stays available
    np.testing.assert_array_equal(postprocess_label_map(bad, pixel_size=PX, fibres=False), bad)


def test_morphometrics_of_synthetic_fibres_match_their_drawn_size_and_gratio():
    from ads_synth.segmentation.morphometrics import FibreCriteria, label_map_morphometrics, measure_fibres
    from ads_synth.segmentation.postprocess import postprocess_label_map

    truth = _fibres()
    summary, gratios = measure_fibres(truth, PX)
    assert summary["fibres"] == 3 and summary["objects"] == 3
    np.testing.assert_allclose(np.sort(gratios), [0.6, 0.667, 0.75], atol=0.02)
    assert summary["gratio_median"] == pytest.approx(0.667, abs=0.02)
    assert summary["axon_diam_median"] == pytest.approx(2.4, rel=0.05)
    assert summary["myelin_thickness_median"] == pytest.approx(0.5, abs=0.05)  # 0.5, 0.4, 1.0 um
    # the defects add objects and steal myelin from fibre 1 (the speck's watershed share): the fibre count and
    # g-ratios are off before the post-processing, exact after
    bad = _with_defects(truth)
    before = label_map_morphometrics(bad, truth, PX)
    assert before["pred_objects"] == 5 and before["pred_gratio_q1"] > before["truth_gratio_q1"] + 0.005
    after = label_map_morphometrics(postprocess_label_map(bad, pixel_size=PX), truth, PX)
    assert after["fibres_absdiff"] == 0 and after["gratio_median_absdiff"] == 0 and after["pred_objects"] == 3
    # the criteria are parameters: with a 2.5 um minimum only fibre 1 (3.0 um) is left
    assert measure_fibres(truth, PX, FibreCriteria(min_axon_diameter=2.5))[0]["fibres"] == 1


def _image_of(lm, seed=0):
    """An SEM-like image of label map ``lm``: bright myelin, dark axons, grey background, blurred, with noise."""
    from scipy import ndimage as ndi

    levels = np.array([90.0, 200.0, 40.0])  # background, myelin, axon
    image = ndi.gaussian_filter(levels[lm], 1.5) + np.random.default_rng(seed).normal(0, 8, lm.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _thin_sheaths(lm, inner=1, outer=2):
    """What the networks do at a coarse grid: each sheath thinner, by ``inner`` pixels inside (the axon spreads
    into it) and ``outer`` outside (the background eats it)."""
    from scipy import ndimage as ndi

    out = lm.copy()
    axon = ndi.binary_dilation(lm == 2, iterations=inner)
    out[(lm == 1) & axon] = 2
    outer = ~ndi.binary_erosion(lm > 0, iterations=outer, border_value=1)
    out[(lm == 1) & outer] = 0
    return out


def test_myelin_boundary_at_half_way_intensity_restores_thin_sheaths():
    """Sheaths labelled 3 px too thin (g-ratios too high, as on SEM): with the image, the
    post-processing moves the boundaries back to the half-way intensity; true boundaries stay put."""
    from ads_synth.segmentation.morphometrics import measure_fibres
    from ads_synth.segmentation.postprocess import (boundary_steps_for, place_myelin_boundary,
                                                    postprocess_label_map)

    truth = _fibres()
    image = _image_of(truth)
    thin = _thin_sheaths(truth)
    g_truth = measure_fibres(truth, PX)[0]["gratio_median"]
    g_thin = measure_fibres(postprocess_label_map(thin, pixel_size=PX), PX)[0]["gratio_median"]
    assert g_thin > g_truth + 0.05
    placed = postprocess_label_map(thin, pixel_size=PX, image=image, boundary_steps=boundary_steps_for(1.5))
    summary = measure_fibres(placed, PX)[0]
    assert summary["fibres"] == 3 and abs(summary["gratio_median"] - g_truth) < 0.02
    assert np.mean(placed == truth) > 0.99 and np.mean(thin == truth) < 0.97

    kept = postprocess_label_map(truth, pixel_size=PX, image=image, boundary_steps=3)
    assert np.mean(kept == truth) > 0.99
    assert place_myelin_boundary(truth, np.zeros_like(image), 3) is truth  # a flat image: nothing to place
    # the band is bounded: a bright patch along a sheath is taken 3 px deep, not whole
    bright = image.copy()
    bright[40:80, 135:160] = 200
    grown = place_myelin_boundary(truth, bright, 3)
    assert np.array_equal(grown[40:80, 140:160], truth[40:80, 140:160])
    assert boundary_steps_for(0.2) == 1 and boundary_steps_for(1.4) == 3


def _rat8(shared_data):
    from ads_synth.data.datasets import find_samples, load_label_map

    (sample,) = [s for s in find_samples(shared_data / "sem-dev", require_labels=True) if "rat8" in s.name]
    return sample, load_label_map(sample)


def _bundled_sem():
    """The labeled sem-dev subject shipped with the tests (sub-rat4) and its manual label map."""
    from ads_synth.data.datasets import find_samples, load_label_map
    from tiny_models import TEST_SEM

    (sample,) = find_samples(TEST_SEM, require_labels=True)
    return sample, load_label_map(sample)


def test_fast_fibre_table_equals_axondeepseg_get_axon_morphometrics():
    from ads_synth.segmentation.morphometrics import ads_fibre_table, fibre_table

    sample, truth = _bundled_sem()
    crop = truth[:400, :500]
    ours, ads = fibre_table(crop, sample.pixel_size), ads_fibre_table(crop, sample.pixel_size)
    assert len(ours) == len(ads) > 20
    for column in ours.columns:
        np.testing.assert_allclose(ours[column].to_numpy(float), ads[column].to_numpy(float), equal_nan=True,
                                   rtol=1e-9, err_msg=column)


def test_demo_image_manual_labels_give_the_documented_morphometrics(shared_data):
    """docs/results.md: 230 fibres, median g-ratio 0.653, median axon diameter 2.47 um (axondeepseg_morphometrics)."""
    from ads_synth.segmentation.morphometrics import measure_fibres

    sample, truth = _rat8(shared_data)
    summary, _ = measure_fibres(truth, sample.pixel_size)
    assert summary["objects"] == 243 and summary["fibres"] == 230
    assert summary["gratio_median"] == pytest.approx(0.653, abs=0.0005)
    assert summary["axon_diam_median"] == pytest.approx(2.47, abs=0.005)


def test_evaluate_command_prints_and_writes_the_morphometric_comparison(tmp_path):
    """`ads-synth evaluate` on a crop of a bundled sem-dev image: a prediction equal to the manual labels differs by 0; one
    with false fragments between fibres counts more fibres; table, CSV, Markdown and the g-ratio figure are written."""
    from ads_synth.data.writers import write_ads_segmentation

    sample, truth = _bundled_sem()
    crop = (slice(0, 500), slice(0, 600))
    data = tmp_path / "truth"
    data.mkdir()
    image = data / "crop_SEM.png"
    Image.fromarray(np.asarray(Image.open(sample.image).convert("L"))[crop]).save(image)
    (data / "pixel_size_in_micrometer.txt").write_text(str(sample.pixel_size))
    t = truth[crop]
    Image.fromarray(np.where(t == 2, 255, 0).astype(np.uint8)).save(data / "crop_SEM_seg-axon-manual.png")
    Image.fromarray(np.where(t == 1, 255, 0).astype(np.uint8)).save(data / "crop_SEM_seg-myelin-manual.png")
    noisy = t.copy()  # 30 false small fibres (1.3 um axons) drawn on the background between the true ones
    rng = np.random.default_rng(0)
    background = np.argwhere(t == 0)
    for y, x in background[rng.choice(len(background), 30, replace=False)]:
        ring, core = disk((y, x), 13, shape=t.shape), disk((y, x), 9, shape=t.shape)
        noisy[ring] = np.where(t[ring] == 0, 1, noisy[ring])
        noisy[core] = np.where(t[core] == 0, 2, noisy[core])
    pred = tmp_path / "pred"
    write_ads_segmentation(t, image, out_dir=pred / "same")
    write_ads_segmentation(noisy, image, out_dir=pred / "noisy")
    bin_dir = Path(sys.executable).parent
    run = subprocess.run([str(bin_dir / "ads-synth"), "evaluate", "--pred", str(pred), "--truth", str(data), "-o",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Morphometrics" in run.stdout and "g-ratio" in run.stdout
    import csv

    rows = {r["strategy"]: r for r in csv.DictReader(open(tmp_path / "out" / "morphometrics_images.csv"))}
    assert float(rows["same"]["fibres_absdiff"]) == 0 and float(rows["same"]["gratio_median_absdiff"]) == 0
    assert float(rows["noisy"]["pred_fibres"]) > float(rows["noisy"]["truth_fibres"])
    for name in ("morphometrics_table.csv", "morphometrics_table.md", "morphometrics_gratio.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    import re

    table = [line for line in (tmp_path / "out" / "morphometrics_table.md").read_text().splitlines()
             if line.startswith("|")]
    cells = {len(re.findall(r"(?<!\\)\|", line)) for line in table}  # the |Δ| headers are escaped
    assert len(table) == 2 + 2 * 2 and cells == {12}, table
    bad = subprocess.run([str(bin_dir / "ads-synth"), "evaluate", "--pred", str(pred), "--truth", str(data),
                          "-o", str(tmp_path / "out2"), "--gratio-range", "0.9", "0.1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--gratio-range" in bad.stderr
    skip = subprocess.run([str(bin_dir / "ads-synth"), "evaluate", "--pred", str(pred), "--truth", str(data),
                           "-o", str(tmp_path / "out3"), "--no-morphometrics"], capture_output=True, text=True)
    assert skip.returncode == 0 and "Morphometrics" not in skip.stdout
    assert (tmp_path / "out3" / "evaluation_table.csv").is_file()
    assert not (tmp_path / "out3" / "morphometrics_images.csv").exists()


def test_fill_axons_fills_round_holes_but_not_the_gap_between_touching_sheaths():
    """Four touching rings with empty (background) axons enclose a concave gap between them (solidity 0.70):
    AxonDeepSeg's fill makes it a fifth, false axon; the solidity rule fills only the four round holes."""
    from ads_synth.segmentation.postprocess import MIN_FILL_SOLIDITY, fill_axons, postprocess_label_map

    lm = np.zeros((120, 120), np.uint8)
    centres = ((40, 40), (40, 80), (80, 40), (80, 80))
    for c in centres:
        lm[disk(c, 21, shape=lm.shape)] = 1
    for c in centres:
        lm[disk(c, 10, shape=lm.shape)] = 0
    assert fill_axons(lm)[60, 60] == 2
    out = fill_axons(lm, min_solidity=MIN_FILL_SOLIDITY)
    assert out[60, 60] == 0 and all(out[c] == 2 for c in centres)
    assert postprocess_label_map(lm, pixel_size=PX)[60, 60] == 0
    assert postprocess_label_map(lm, pixel_size=PX, fibres=False)[60, 60] == 2
