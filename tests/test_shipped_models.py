"""The model families shipped in ads_synth_models: intact, small, and useful on the bundled demo images.

Every shipped card on its demo image: the SEM demo image (sub-rat8, held out of all training) for TEM->SEM, a
bright-field tile of the nerve (outside the crops the BF models saw) for TEM->BF. The TEM->SEM tutorship runs the
real console scripts, as a user would after `make demo` (`axondeepseg -t SEM --pseudo tutor -i ...`, then
AxonDeepSeg's own `axondeepseg_morphometrics`); the other cards run the same entry points in-process (the plugin's
`axondeepseg` main, AxonDeepSeg's morphometrics main), and morphometrics only for SEM, the one demo image with
manual labels to compare them with. The demo images ship in the repo (docs/demo), so these tests need no shared
data.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ads_synth.cards.lookup import ENV_VAR, PACKAGE_DIR, find_card, list_cards
from ads_synth.cards.verify import verify_card

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO = REPO / "docs" / "demo"
DEMO_IMAGE = "sub-rat8_sample-V915_SEM.png"
#: modality -> (folder, image) of its demo image
DEMOS = {"SEM": (DEMO, DEMO_IMAGE), "BF": (DEMO / "bf", "bf_nerve_demo.png")}
MiB = 1024 * 1024


def _package_cards():
    return list_cards(dirs=[PACKAGE_DIR])


def test_every_shipped_card_verifies_and_each_file_is_small():
    cards = _package_cards()
    assert cards, "no model card ships in ads_synth_models"
    sizes = {}  # cards that apply the same model (adapt, invert, auto) share its files: each file counts once
    for card in cards:
        assert verify_card(card) == [], card.name
        for rel in card.files:
            size = card.file_path(rel).stat().st_size
            assert size < 16 * MiB, f"{rel}: {size / MiB:.1f} MiB"
            sizes[card.file_path(rel).resolve()] = size
        assert card.entry.get("training") and card.entry.get("scores"), f"{card.name}: record training and scores"
    assert sum(sizes.values()) < 100 * MiB


def test_every_modality_pair_ships_both_paths():
    shipped = {(c.source, c.target, c.strategy) for c in _package_cards()}
    for target in DEMOS:
        assert {("TEM", target, "tutor"), ("TEM", target, "adapt")} <= shipped


def _demo_params():
    return sorted((c.target, c.strategy) for c in _package_cards() if c.auto is None)


def test_every_pair_ships_an_auto_card_that_is_one_of_its_paths():
    """``--pseudo auto``: each pair's ``<PAIR>_auto`` card names a path chosen without labels (the scores that
    chose it recorded) and uses exactly that path's files."""
    cards = _package_cards()
    for target in DEMOS:
        auto = find_card("TEM", target, "auto", dirs=[PACKAGE_DIR])
        assert auto.name == f"TEM2{target}_auto" and auto.auto["chosen"] == auto.strategy
        assert auto.strategy in auto.auto["among"] and set(auto.auto["scores"]) == set(auto.auto["among"])
        best = max(auto.auto["scores"], key=lambda k: auto.auto["scores"][k]["score"])
        assert best == auto.strategy
        path = next(c for c in cards if c.auto is None and (c.target, c.strategy) == (target, auto.strategy))
        assert auto.files == path.files and auto.nnunet == path.nnunet


#: The card run through the real console scripts (subprocesses); the others run in-process.
SCRIPTED = ("SEM", "tutor")


def _morphometrics_in_process(folder, image):
    """AxonDeepSeg's ``axondeepseg_morphometrics -i image`` in this process, in ``folder``; its loguru handlers
    (a log file and the terminal) are removed afterwards. Returns the exit code."""
    from loguru import logger

    from AxonDeepSeg.morphometrics.launch_morphometrics_computation import main as morphometrics_main

    handlers, cwd = set(logger._core.handlers), os.getcwd()
    os.chdir(folder)
    try:
        morphometrics_main(["-i", image])
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    finally:
        os.chdir(cwd)
        for handler in set(logger._core.handlers) - handlers:
            logger.remove(handler)
    return code


@pytest.fixture(scope="module", params=_demo_params(), ids=lambda p: f"{p[0]}-{p[1]}")
def demo_run(request, tmp_path_factory):
    """A shipped card (target, strategy) on its demo image, then (SEM) AxonDeepSeg's morphometrics."""
    target, strategy = request.param
    source, image = DEMOS[target]
    folder = tmp_path_factory.mktemp(f"demo-{target}-{strategy}")
    shutil.copy(source / image, folder)
    shutil.copy(source / "pixel_size_in_micrometer.txt", folder)
    if (target, strategy) == SCRIPTED:
        env = {k: v for k, v in os.environ.items() if k != ENV_VAR}  # the package's own cards
        env["OMP_NUM_THREADS"] = "1"
        command = [str(BIN / "axondeepseg"), "-t", target, "--pseudo", strategy, "-i", str(folder / image)]
        seg = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
        assert seg.returncode == 0, seg.stderr[-2000:]
        morpho = subprocess.run([str(BIN / "axondeepseg_morphometrics"), "-i", image], cwd=folder, env=env,
                                capture_output=True, text=True, timeout=600)
        assert morpho.returncode == 0, morpho.stderr[-2000:]
        return target, folder / image
    from ads_synth.integration.ads_cli import main
    from tiny_models import one_torch_thread

    saved = os.environ.pop(ENV_VAR, None)  # the package's own cards
    try:
        with one_torch_thread():
            assert main(["-t", target, "--pseudo", strategy, "-i", str(folder / image)]) == 0
    finally:
        if saved is not None:
            os.environ[ENV_VAR] = saved
    if target == "SEM":  # the only demo image whose morphometrics are compared (with its manual labels)
        assert _morphometrics_in_process(folder, image) == 0
    return target, folder / image


def test_demo_writes_ads_files(demo_run):
    _, path = demo_run
    stem = path.stem
    image = np.asarray(Image.open(path))
    axon = np.asarray(Image.open(path.parent / f"{stem}_seg-axon.png"))
    myelin = np.asarray(Image.open(path.parent / f"{stem}_seg-myelin.png"))
    axonmyelin = np.asarray(Image.open(path.parent / f"{stem}_seg-axonmyelin.png"))
    confidence = np.asarray(Image.open(path.parent / f"{stem}_seg-confidence.png"))
    for out in (axon, myelin, axonmyelin, confidence):
        assert out.shape == image.shape[:2]
    assert set(np.unique(axon)) == {0, 255} and set(np.unique(myelin)) == {0, 255}
    assert set(np.unique(axonmyelin)) == {0, 127, 255}
    np.testing.assert_array_equal(axonmyelin == 255, axon == 255)
    np.testing.assert_array_equal(axonmyelin == 127, myelin == 255)
    # densely packed fibres in both demo images: axons and myelin each cover a good part of the image
    assert 0.15 < (axon > 0).mean() < 0.6 and 0.15 < (myelin > 0).mean() < 0.6
    assert confidence.min() < confidence.mean() < 255


def test_demo_morphometrics_are_plausible_for_rat_spinal_cord(demo_run):
    """Manual labels of this image give 230 fibres (axon >= 1 um, 0 < g < 1), median g-ratio 0.65 and median axon
    diameter 2.5 um (docs/results.md); the pseudo labels must land in a plausible range around them."""
    import pandas as pd

    target, path = demo_run
    if target != "SEM":
        pytest.skip("no manual labels to compare with for this demo image")
    table = pd.read_excel(path.parent / f"{path.stem}_axon_morphometrics.xlsx")
    g, diameter = table["gratio"], table["axon_diam (um)"]
    fibres = (g > 0) & (g < 1) & (diameter >= 1.0)
    assert 150 <= fibres.sum() <= 500
    assert 0.5 <= g[fibres].median() <= 0.85
    assert 1.5 <= diameter[fibres].median() <= 4.0


def test_demo_pseudo_labels_score_well_against_the_manual_labels(demo_run, shared_data):
    """The SEM demo image is sub-rat8 of sem-dev, which no shipped model trained on: its manual labels score the
    shipped families end to end (measured two-fold ensembles: axon Dice 0.83 to 0.85, myelin 0.72 to 0.74, in
    docs/results.md; the TEM model without translation scores 0.17 / 0.01)."""
    from ads_synth.data.datasets import find_samples, load_label_map
    from ads_synth.segmentation.metrics import label_map_metrics

    target, path = demo_run
    if target != "SEM":
        pytest.skip("no manual labels for this demo image")
    (sample,) = [s for s in find_samples(shared_data / "sem-dev", require_labels=True) if s.name == path.stem]
    axon = np.asarray(Image.open(path.parent / f"{path.stem}_seg-axon.png")) > 0
    myelin = np.asarray(Image.open(path.parent / f"{path.stem}_seg-myelin.png")) > 0
    prediction = np.where(axon, 2, np.where(myelin, 1, 0))
    scores = label_map_metrics(prediction, load_label_map(sample))
    assert scores["axon"]["dice"] > 0.8 and scores["myelin"]["dice"] > 0.7, scores
