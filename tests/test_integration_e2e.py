"""End to end with the tiny test family on a real SEM image: `axondeepseg -t SEM --pseudo ...` (the installed
script once, then in-process), then AxonDeepSeg's own `axondeepseg_morphometrics`; and ADS's own loader on an
installed tutor model.

The family: the tiny models of ``tests/tiny_models.tiny_pipeline`` (a random-weight translation model, compact
nnU-Nets trained for a few iterations on 5 tem-srf images; the same session-cached build as test_pseudo_e2e),
turned into cards TEM2SEM_tutor / TEM2SEM_adapt with ``create_card`` in a folder named by ``$ADS_SYNTH_MODELS``.
"""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ads_synth.cards.create import create_card
from ads_synth.cards.lookup import ENV_VAR, get_card
from ads_synth.integration import ads_cli
from test_integration_ads_cli import WRAPPER, run_main_in
from tiny_models import tiny_pipeline

BIN = Path(sys.executable).parent
SEM_IMAGE = Path(__file__).resolve().parents[1] / "docs" / "demo" / "sub-rat8_sample-V915_SEM.png"  # sem-dev's
SEM_PIXEL_SIZE = 0.07  # sub-rat8's BIDS sidecar (and the demo's pixel size file)
CROP = 768  # px: for time (tiny models, 2 shared cores)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.getbasetemp() / "tiny_pipeline")


@pytest.fixture(scope="module")
def family(pipeline, tmp_path_factory):
    """Cards TEM2SEM_tutor and TEM2SEM_adapt of the tiny models, in a user cards folder."""
    folder = tmp_path_factory.mktemp("family")
    models = pipeline.result["models"]
    common = dict(source="TEM", target="SEM", translation=pipeline.translation, pixel_size=(0.07, 0.18))
    create_card(folder, strategy="tutor", nnunet=models["tutor"], **common)
    create_card(folder, strategy="adapt", nnunet=models["L"], **common)
    return folder


@pytest.fixture
def sem_image(tmp_path):
    """The central 768 x 768 px of the bundled demo image (sem-dev's sub-rat8, 0.07 um/px) alone in a folder, with
    AxonDeepSeg's pixel size file."""
    src = SEM_IMAGE
    folder = tmp_path / "sem"
    folder.mkdir()
    full = _read(src)
    y, x = (full.shape[0] - CROP) // 2, (full.shape[1] - CROP) // 2
    Image.fromarray(full[y:y + CROP, x:x + CROP]).save(folder / src.name)
    (folder / "pixel_size_in_micrometer.txt").write_text(f"{SEM_PIXEL_SIZE}\n")
    return folder / src.name


def _env(family):
    return dict(os.environ, **{ENV_VAR: str(family)})


def _read(path):
    return np.array(Image.open(path))


def _check_ads_outputs(image):
    axon = _read(image.with_name(f"{image.stem}_seg-axon.png"))
    myelin = _read(image.with_name(f"{image.stem}_seg-myelin.png"))
    both = _read(image.with_name(f"{image.stem}_seg-axonmyelin.png"))
    shape = _read(image).shape[:2]
    for arr in (axon, myelin, both):
        assert arr.shape == shape and arr.dtype == np.uint8
    assert set(np.unique(both)) <= {0, 127, 255}
    assert np.array_equal(both == 255, axon == 255) and np.array_equal(both == 127, myelin == 255)
    return axon, myelin


def test_pseudo_tutor_then_ads_morphometrics(family, sem_image):
    """`axondeepseg -t SEM --pseudo tutor -i image.png`, then `axondeepseg_morphometrics -i image.png -s 0.07`.

    The tiny models learn nothing (random translation, a few nnU-Net iterations): their pseudo labels are noise,
    and AxonDeepSeg's morphometrics on noise counts thousands of specks and gives g-ratios above 1 where a speck's
    "fiber" is smaller than its "axon". So this test checks the chain, not the biology: the pipeline ran, the table
    has AxonDeepSeg's structure, AxonDeepSeg read our masks as we wrote them (its axon count is the number of
    axon objects in our _seg-axon.png, its axon areas add up to our axon pixels at the pixel size given), and
    every fiber with a myelin sheath AxonDeepSeg could measure has a g-ratio in [0, 1].
    """
    r = subprocess.run([str(WRAPPER), "-t", "SEM", "--pseudo", "tutor", "-i", str(sem_image)],
                       capture_output=True, text=True, env=_env(family), cwd=sem_image.parent, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr  # 0.07 um/px is inside the card's range
    axon, myelin = _check_ads_outputs(sem_image)
    assert axon.any() and myelin.any()
    assert sem_image.with_name(f"{sem_image.stem}_seg-confidence.png").is_file()

    r = subprocess.run([str(BIN / "axondeepseg_morphometrics"), "-i", str(sem_image), "-s", str(SEM_PIXEL_SIZE)],
                       capture_output=True, text=True, cwd=sem_image.parent, timeout=600)
    assert r.returncode == 0, r.stderr
    table = sem_image.with_name(f"{sem_image.stem}_axon_morphometrics.xlsx")
    assert table.is_file()
    import pandas as pd
    from skimage.measure import label

    df = pd.read_excel(table)
    for column in ("x0 (px)", "y0 (px)", "gratio", "axon_area (um^2)", "axon_diam (um)", "myelin_thickness (um)",
                   "myelin_area (um^2)"):
        assert column in df.columns
    n_objects = int(label(axon > 0, connectivity=2).max())
    assert len(df) == n_objects > 0
    assert df["axon_area (um^2)"].sum() == pytest.approx((axon > 0).sum() * SEM_PIXEL_SIZE ** 2, rel=1e-6)
    sheathed = df[df["myelin_thickness (um)"] > 0]
    assert len(sheathed) > 0 and sheathed["gratio"].between(0, 1).all()


def test_pseudo_adapt_folder_and_overwrite(family, sem_image, monkeypatch, capsys):
    """`--pseudo adapt` on a folder (in-process: the script itself ran above); a second run refuses (exit 2, files
    unchanged) until --overwrite."""
    monkeypatch.setenv(ENV_VAR, str(family))
    folder = sem_image.parent
    args = ["-t", "SEM", "-s", "TEM", "--pseudo", "adapt", "-i", str(folder)]
    assert ads_cli.main(args) == 0, capsys.readouterr().err
    _check_ads_outputs(sem_image)
    out = sem_image.with_name(f"{sem_image.stem}_seg-axonmyelin.png")
    stamp = out.stat().st_mtime_ns
    capsys.readouterr()
    assert ads_cli.main(args) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and err.count("\n") == 1
    assert out.stat().st_mtime_ns == stamp
    assert ads_cli.main([*args, "--overwrite"]) == 0, capsys.readouterr().err
    assert out.stat().st_mtime_ns != stamp


def test_far_pixel_size_warns_once_and_still_writes(family, sem_image, monkeypatch, capsys):
    from ads_synth.cli import main

    monkeypatch.setenv(ENV_VAR, str(family))
    (sem_image.parent / "pixel_size_in_micrometer.txt").write_text("0.02")  # < 0.07 / 2 (and quick to run)
    assert main(["segment", "-t", "SEM", "--strategy", "tutor", "-i", str(sem_image)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "more than 2x outside the 0.07-0.18 um/px" in warnings[0]
    _check_ads_outputs(sem_image)


def test_myelin_boundary_is_opt_in_and_reaches_the_post_processing(family, sem_image, monkeypatch, capsys):
    """`--myelin-boundary` (off by default) hands the image and a band of two model-grid pixels to the
    post-processing."""
    from ads_synth.segmentation import pseudo
    from ads_synth.segmentation.postprocess import boundary_steps_for

    monkeypatch.setenv(ENV_VAR, str(family))
    small = _read(sem_image)[:256, :256]
    Image.fromarray(small).save(sem_image)
    seen, real = [], pseudo.postprocess_label_map
    monkeypatch.setattr(pseudo, "postprocess_label_map", lambda lm, **kw: seen.append(kw) or real(lm, **kw))
    for flag in ([], ["--myelin-boundary"]):
        out = sem_image.parent / ("placed" if flag else "default")
        assert ads_cli.main(["-t", "SEM", "--pseudo", "tutor", "-i", str(sem_image), "-o", str(out), *flag]) == 0
    default, placed = seen
    assert default["image"] is None
    assert placed["image"].shape == small.shape and np.array_equal(placed["image"], small)
    grid = get_card("TEM2SEM_tutor", [family])
    from ads_synth.segmentation.predict import read_model_info

    upsampling = read_model_info(grid.nnunet)["pixel_size"] / SEM_PIXEL_SIZE
    assert placed["boundary_steps"] == boundary_steps_for(upsampling)
    capsys.readouterr()


@pytest.fixture
def ads_registered(family, tmp_path):
    """The tutor model installed among AxonDeepSeg's real models under a unique name; removed afterwards."""
    from ads_synth.integration.ads_models import ads_models_dir, register_in_ads

    tutor = get_card("TEM2SEM_tutor", [family])
    cards = tmp_path / "cards"
    name = f"TEM2SEM_tutor_test{uuid.uuid4().hex[:8]}"
    card = create_card(cards, source="TEM", target="SEM", strategy="tutor", translation=tutor.translation,
                       nnunet=tutor.nnunet, pixel_size=tutor.pixel_size, name=name)
    models = ads_models_dir()
    existed = models.exists()
    folder = register_in_ads(card)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
    if not existed and models.exists() and not any(models.iterdir()):
        models.rmdir()


@pytest.mark.parametrize("case", ["segment", "missing-image"])
def test_ads_segmentation_with_installed_model_is_identical_through_the_wrapper(ads_registered, tmp_path,
                                                                                 sem_image, case, ads_segment_main,
                                                                                 capfd, monkeypatch):
    """ADS's own loader runs the installed tutor model (`axondeepseg -m ...`); the wrapper changes nothing
    (in-process, the plugin's ``main`` against AxonDeepSeg's, as test_integration_ads_cli)."""
    small = _read(sem_image)[:128, :192]  # ADS runs the model at the image's own resolution (with mirroring)
    folders = {}
    for which in ("wrapper", "ads"):
        folders[which] = tmp_path / which
        folders[which].mkdir()
        Image.fromarray(small).save(folders[which] / "image.png")
    args = ["-m", str(ads_registered), "-i", "image.png" if case == "segment" else "missing.png"]
    wrapper = run_main_in(ads_cli.main, args, folders["wrapper"], capfd, monkeypatch)
    own = run_main_in(ads_segment_main, args, folders["ads"], capfd, monkeypatch)
    assert wrapper[0] == own[0] == (0 if case == "segment" else 2)
    assert wrapper[1] == own[1]  # stdout
    assert sorted(p.name for p in folders["wrapper"].iterdir()) == sorted(p.name for p in folders["ads"].iterdir())
    if case == "segment":
        for suffix in ("_seg-axon.png", "_seg-myelin.png", "_seg-axonmyelin.png"):
            a, b = folders["wrapper"] / f"image{suffix}", folders["ads"] / f"image{suffix}"
            assert a.read_bytes() == b.read_bytes(), suffix
    else:
        assert "missing.png does not exist" in wrapper[2] and wrapper[2] == own[2]
