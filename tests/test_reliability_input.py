"""Bad input is one clear line with exit 2 and touches nothing (issue 15, items 9-19).

Each test names the item it covers. Commands run in-process (``ads_synth.cli.main`` and
``ads_synth.integration.ads_cli.main``) with the tiny random translation model of ``tiny_models`` or the shipped
TEM2SEM_tutor card on a crop of the bundled demo image, so that no shared data is needed.
"""

import errno
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ads_synth.cli import main as cli_main
from ads_synth.integration import ads_cli
from ads_synth.cards.lookup import ENV_VAR, PACKAGE_DIR, list_cards
from test_model_cards import make_fake_card
from test_translation_training import make_domain
from tiny_models import build_tiny_translation_model

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "docs" / "demo" / "sub-rat8_sample-V915_SEM.png"


def _one_line(err, prog="ads-synth"):
    """The error output is exactly one line ``<prog>: error: ...``; return it."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and re.match(rf"{re.escape(prog)}( [a-z]+)?: error: ", lines[0]), err
    return lines[0]


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


@pytest.fixture(scope="module")
def tiny_translation(tmp_path_factory):
    return build_tiny_translation_model(tmp_path_factory.mktemp("tiny") / "translation")


@pytest.fixture
def sem_crop(tmp_path):
    """A 192 x 192 crop of the SEM demo image (0.07 um/px) alone in a folder."""
    folder = tmp_path / "images"
    folder.mkdir()
    image = np.asarray(Image.open(DEMO).convert("L"))[300:492, 500:692]
    Image.fromarray(image).save(folder / "crop.png")
    (folder / "pixel_size_in_micrometer.txt").write_text("0.07\n")
    return folder / "crop.png"


@pytest.fixture
def package_cards(monkeypatch):
    """Only the shipped cards (no user folder)."""
    monkeypatch.delenv(ENV_VAR, raising=False)


def _translate(model, image, out, *extra):
    return cli_main(["translate", "--model", str(model), "--direction", "U2L", "-i", str(image), "-o", str(out),
                     "--device", "cpu", "--no-progress", *extra])


# ---------------------------------------------------------------------------------------------------------------
# 9. a pixel budget
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["70", "1e300", "1e-300"])
def test_9_implausible_pixel_size_is_refused_before_any_work(tiny_translation, sem_crop, tmp_path, capsys, value):
    txt = sem_crop.parent / "pixel_size_in_micrometer.txt"
    txt.write_text(value + "\n")
    before = _tree(sem_crop.parent)
    assert _translate(tiny_translation, sem_crop, tmp_path / "out") == 2
    line = _one_line(capsys.readouterr().err)
    assert str(sem_crop) in line and str(txt) in line and "um/px" in line
    assert ("pixel budget" in line) == (value != "1e-300")
    assert not (tmp_path / "out").exists() and _tree(sem_crop.parent) == before


def test_9_pixel_budget_names_the_option_and_the_size(tiny_translation, sem_crop, tmp_path, capsys, monkeypatch):
    (sem_crop.parent / "pixel_size_in_micrometer.txt").unlink()
    monkeypatch.setenv("ADS_SYNTH_MAX_MEGAPIXELS", "0.01")  # 10,000 px
    assert _translate(tiny_translation, sem_crop, tmp_path / "out", "--pixel-size", "0.2") == 2
    line = _one_line(capsys.readouterr().err)
    # 192 px at 0.2 um/px on the U grid of 0.2 um/px: 192 x 192 = 0.037 Mpx > 0.01 Mpx
    assert "read from --pixel-size" in line and "192 x 192 px" in line and "0.01 Mpx" in line


def test_9_pseudo_labels_refuse_a_pixel_size_in_nanometres(package_cards, sem_crop, capsys):
    (sem_crop.parent / "pixel_size_in_micrometer.txt").write_text("70\n")
    before = _tree(sem_crop.parent)
    assert ads_cli.main(["-t", "SEM", "--pseudo", "tutor", "-i", str(sem_crop)]) == 2
    line = _one_line(capsys.readouterr().err, "axondeepseg")
    assert "pixel budget" in line and "pixel_size_in_micrometer.txt" in line
    assert _tree(sem_crop.parent) == before


@pytest.mark.parametrize("scale", ["1e6", "1e300", "1e-300"])
def test_9_translation_train_absurd_scale_is_one_line(tmp_path, capsys, scale):
    tem, sem = make_domain(tmp_path / "L", "tem", n=1), make_domain(tmp_path / "U", "sem", n=1)
    out = tmp_path / "run"
    assert cli_main(["translation", "train", "--source", str(tem), "--target", str(sem), "--out", str(out),
                     "--preset", "tiny", "--steps", "1", "--device", "cpu", "--no-progress", "--scale", scale]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "tem0.png" in line and "--scale" in line
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# 10. every image and option checked before anything is written
# ---------------------------------------------------------------------------------------------------------------
def test_10_folder_with_a_truncated_image_writes_nothing(package_cards, sem_crop, capsys):
    folder = sem_crop.parent
    data = sem_crop.read_bytes()
    (folder / "zz_truncated.png").write_bytes(data[: len(data) // 2])
    before = _tree(folder)
    assert ads_cli.main(["-t", "SEM", "--pseudo", "tutor", "-i", str(folder)]) == 2
    line = _one_line(capsys.readouterr().err, "axondeepseg")
    assert "zz_truncated.png" in line
    assert _tree(folder) == before  # the good image's outputs were not written either


def test_10_translate_folder_with_a_truncated_image_writes_nothing(tiny_translation, sem_crop, tmp_path, capsys):
    data = sem_crop.read_bytes()
    (sem_crop.parent / "zz_truncated.png").write_bytes(data[: len(data) // 2])
    assert _translate(tiny_translation, sem_crop.parent, tmp_path / "out") == 2
    assert "zz_truncated.png" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", [["--min-confidence", "2"], ["--min-confidence", "-0.1"],
                                    ["--min-confidence", "nan"], ["--processes", "0"]])
def test_10_options_are_checked_first(tmp_path, capsys, option):
    out = tmp_path / "out"
    assert cli_main(["pseudo", "--strategy", "proxy", "--labeled", str(tmp_path / "L"), "--unlabeled",
                     str(tmp_path / "U"), "--translation", str(tmp_path / "T"), "-o", str(out), *option,
                     "--no-progress"]) == 2
    assert option[0] in _one_line(capsys.readouterr().err)  # not the missing data, found later
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# 11. no tracebacks
# ---------------------------------------------------------------------------------------------------------------
def test_11_translate_batch_size_zero(tiny_translation, sem_crop, tmp_path, capsys):
    assert _translate(tiny_translation, sem_crop, tmp_path / "out", "--batch-size", "0") == 2
    assert "--batch-size" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_11_translation_train_batch_size_zero(tmp_path, capsys):
    tem, sem = make_domain(tmp_path / "L", "tem", n=1), make_domain(tmp_path / "U", "sem", n=1)
    assert cli_main(["translation", "train", "--source", str(tem), "--target", str(sem), "--out",
                     str(tmp_path / "run"), "--preset", "tiny", "--steps", "1", "--device", "cpu", "--batch-size",
                     "0", "--no-progress"]) == 2
    assert "--batch-size" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out/x_seg-axon.png")


def test_11_full_disk_is_one_line_in_both_commands(monkeypatch, capsys, sem_crop):
    from ads_synth.commands import info
    from ads_synth.integration import pseudo_action

    monkeypatch.setattr(info, "collect_info", _disk_full)
    assert cli_main(["info"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "no space left" in line and "/data/out/x_seg-axon.png" in line
    monkeypatch.setattr(pseudo_action, "run_pseudo_labels", _disk_full)
    assert ads_cli.main(["-t", "SEM", "--pseudo", "tutor", "-i", str(sem_crop)]) == 2
    assert "no space left" in _one_line(capsys.readouterr().err, "axondeepseg")


def test_11_nan_pixel_in_a_float_tiff_is_one_line_without_runtime_warning(tiny_translation, tmp_path, capsys):
    import tifffile

    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    image[5, 7] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast" would fail here
        assert _translate(tiny_translation, tmp_path / "nan.tif", tmp_path / "out", "--pixel-size", "0.2") == 2
    line = _one_line(capsys.readouterr().err)
    assert "nan.tif" in line and "NaN" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, words", [
    (["-t", "SEM", "--pseudo", "foo", "-i", "a.png"], ["--pseudo", "invalid choice: 'foo'", "'tutor'", "'proxy'"]),
    (["-t", "SEM", "--pseudo", "tutor"], ["-i/--imgpath"]),
    (["-t", "SEM", "--pseudo", "tutor", "-i", "a.png", "--bogus"], ["--bogus"]),
])
def test_11_axondeepseg_pseudo_usage_errors_are_one_line(capsys, argv, words):
    assert ads_cli.main(argv) == 2
    captured = capsys.readouterr()
    line = _one_line(captured.err, "axondeepseg")
    assert all(w in line for w in words) and "usage:" not in captured.err + captured.out


@pytest.mark.parametrize("argv, words", [
    (["translate", "--model", "m", "--direction", "sideways", "-i", "a", "-o", "b"],
     ["--direction", "'L2U'", "'U2L'"]),
    (["translate", "--direction", "L2U", "-i", "a", "-o", "b"], ["--model"]),
    (["info", "--bogus"], ["--bogus"]),
    (["nonsense"], ["invalid choice: 'nonsense'"]),
])
def test_11_ads_synth_usage_errors_are_one_line(capsys, argv, words):
    assert cli_main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert all(w in line for w in words)


# ---------------------------------------------------------------------------------------------------------------
# 12. blank images, 13. --allow-large-images, 17. progress by tiles
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, 255])
def test_12_blank_image_gets_a_warning_and_zero_confidence(package_cards, tmp_path, capsys, value):
    folder = tmp_path / "blank"
    folder.mkdir()
    Image.fromarray(np.full((128, 160), value, np.uint8)).save(folder / "blank.png")
    (folder / "pixel_size_in_micrometer.txt").write_text("0.07\n")
    assert ads_cli.main(["-t", "SEM", "--pseudo", "tutor", "-i", str(folder / "blank.png")]) == 0
    err = capsys.readouterr().err
    assert re.search(r"warning: .*blank\.png: the image has no structure", err), err
    confidence = np.asarray(Image.open(folder / "blank_seg-confidence.png"))
    assert confidence.shape == (128, 160) and confidence.max() == 0
    assert (folder / "blank_seg-axonmyelin.png").is_file()


def test_13_17_allow_large_images_and_progress_counts_tiles(package_cards, sem_crop, capsys, monkeypatch):
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10_000)  # the 192 x 192 crop is "large" now
    args = ["-t", "SEM", "--pseudo", "tutor", "-i", str(sem_crop)]
    assert ads_cli.main(args) == 2
    assert "--allow-large-images" in _one_line(capsys.readouterr().err, "axondeepseg")
    assert ads_cli.main([*args, "--allow-large-images", "-v", "1"]) == 0
    err = capsys.readouterr().err
    assert (sem_crop.parent / "crop_seg-axonmyelin.png").is_file()
    # the bar counts nnU-Net's sliding-window tiles (2 folds x the tiles of one image), with a time estimate
    final = re.findall(r"pseudo labels: 100%.*?\| (\d+)/(\d+) \[[0-9:]+<[0-9:]+", err)
    assert final and final[-1][0] == final[-1][1] and int(final[-1][1]) >= 2, err
    assert "tile" in err and "fold/s" not in err and "s/fold" not in err


# ---------------------------------------------------------------------------------------------------------------
# 14. identical domains, broken cards
# ---------------------------------------------------------------------------------------------------------------
def test_14_translation_train_refuses_the_same_images_as_source_and_target(tmp_path, capsys):
    sem = make_domain(tmp_path / "U", "sem", n=1)
    assert cli_main(["translation", "train", "--source", str(sem), "--target", str(sem), "--out",
                     str(tmp_path / "run"), "--preset", "tiny", "--steps", "1", "--device", "cpu",
                     "--no-progress"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "sem0.png" in line and "--source" in line and "--target" in line
    assert not (tmp_path / "run").exists()


def test_14_one_broken_card_does_not_block_the_others(user_cards, capsys):
    make_fake_card(user_cards)
    broken = user_cards / "TEST2OOPS_tutor.yaml"
    broken.write_text("TEST2OOPS_tutor: [unclosed\n")
    assert [c.name for c in list_cards()] == ["TEST2FAKE_tutor"]
    assert cli_main(["models", "list"]) == 0
    captured = capsys.readouterr()
    assert "TEST2FAKE_tutor" in captured.out
    warning = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warning) == 1 and str(broken) in warning[0]
    assert cli_main(["models", "show", "TEST2OOPS_tutor"]) == 2
    assert "not valid YAML" in _one_line(capsys.readouterr().err)


# ---------------------------------------------------------------------------------------------------------------
# 15. absolute run paths, --eval-every 0, --no-progress
# ---------------------------------------------------------------------------------------------------------------
def test_15_resume_from_another_folder_and_eval_every_zero(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    make_domain(work / "L", "tem", n=2, pixel_size=0.025)
    make_domain(work / "U", "sem", n=2)
    monkeypatch.chdir(work)
    args = ["--preset", "tiny", "--checkpoint-every", "1", "--eval-every", "0", "--batch-size", "1", "--device",
            "cpu", "--no-progress"]
    assert cli_main(["translation", "train", "--source", "L", "--target", "U", "--out", "run", "--steps", "1",
                     *args]) == 0
    out = capsys.readouterr().out
    assert "run/last" in out and "best" not in out  # no scoring: no best/ model
    stored = json.loads((work / "run" / "config.json").read_text())
    assert stored["options"]["source"] == [str(work / "L")]
    assert stored["data"]["U"]["train"][0]["image"].startswith(str(work / "U"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli_main(["translation", "train", "--out", str(work / "run"), "--resume", "--steps", "2", *args]) == 0, \
        capsys.readouterr().err


def test_15_no_progress_silences_nnunet_bars(capfd):
    """nnU-Net 2.2.1 shows its fingerprint / preprocessing bars when *not* verbose; --no-progress hides them."""
    from tqdm import tqdm

    from ads_synth.segmentation import plans

    calls = []

    def fake_fingerprint(*args, **kwargs):  # what nnU-Net's DatasetFingerprintExtractor does
        for _ in tqdm(range(3), desc=None, disable=kwargs.get("verbose", False)):
            pass
        calls.append("fingerprint")
        raise RuntimeError("stop here")

    import nnunetv2.experiment_planning.plan_and_preprocess_api as api

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(api, "extract_fingerprint_dataset", fake_fingerprint)
        import nnunetv2.utilities.dataset_name_id_conversion as conv

        mp.setattr(conv, "convert_id_to_dataset_name", lambda i: "Dataset900_x")
        mp.setattr(plans, "plans_file", lambda f, n: Path("/nonexistent/plans.json"))
        for progress in (True, False):
            with pytest.raises(RuntimeError, match="stop here"):
                plans.plan_and_preprocess(None, 900, progress=progress)
            err = capfd.readouterr().err
            assert ("3/3" in err) == progress, err
    assert calls == ["fingerprint", "fingerprint"]


# ---------------------------------------------------------------------------------------------------------------
# 16. the pixel size written beside a translation, 18. axondeepseg -h
# ---------------------------------------------------------------------------------------------------------------
def test_16_translate_writes_the_physical_pixel_size(tiny_translation, sem_crop, tmp_path):
    out = tmp_path / "out"
    assert _translate(tiny_translation, sem_crop, out) == 0
    assert np.asarray(Image.open(out / "crop_U2L.png")).shape == (192, 192)  # the input's grid
    assert float((out / "pixel_size_in_micrometer.txt").read_text()) == pytest.approx(0.07)
    assert json.loads((out / "crop_U2L.json").read_text())["PixelSize"] == pytest.approx([0.07, 0.07])


def test_18_axondeepseg_help_is_ads_help_plus_one_line(capsys):
    from AxonDeepSeg.segment import main as ads_main

    with pytest.raises(SystemExit) as own:
        ads_main(["-h"])
    ads_help = capsys.readouterr().out
    with pytest.raises(SystemExit) as ours:
        ads_cli.main(["-h"])
    help_text = capsys.readouterr().out
    assert own.value.code == ours.value.code == 0
    assert help_text == ads_help + ads_cli.HELP_EPILOG + "\n"
    assert "-t/--target" in ads_cli.HELP_EPILOG and "axondeepseg --pseudo --help" in ads_cli.HELP_EPILOG


# ---------------------------------------------------------------------------------------------------------------
# 19. README and packaging
# ---------------------------------------------------------------------------------------------------------------
def test_19_readme_answers_a_new_users_questions():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    tests = readme[readme.index("### Tests and the real data"):]
    assert "../shared/data" in tests and "skipped" in tests  # where the real data come from, what runs without
    assert "`not installed` is normal" in readme and "ads-synth models install" in readme
    demo_line = next(line for line in readme.splitlines() if line.startswith("make demo"))
    assert "morphometrics for the SEM image only" in demo_line
    assert "runs no morphometrics on it" in readme
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "morphometrics are in demo_output/ (SEM) and demo_output/bf/" not in makefile
    # the paper's figure is not in the same sentence as ours, as if it were one result
    for sentence in re.split(r"(?<=\.)\s", readme):
        assert not ("0.796" in sentence and "0.736" in sentence), sentence


def test_19_build_has_no_ignored_package_warnings_and_ships_every_model_file(tmp_path):
    """``setup.py build`` (what pip runs to make the wheel) of a copy of the package: the model folders are declared
    packages (no "Package would be ignored" warning) and every file of every shipped card is in the build."""
    import shutil
    import subprocess
    import sys

    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("ads_synth", "ads_synth_models"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    (src / "ads_synth_models" / "__pycache__").mkdir()
    (src / "ads_synth_models" / "__pycache__" / "cards.cpython-311.pyc").write_bytes(b"x")
    r = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build"], cwd=src,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "would be ignored" not in r.stdout + r.stderr
    lib = src / "build" / "lib"
    for card in list_cards(dirs=[PACKAGE_DIR]):
        for rel in list(card.files) + [card.path.name]:
            assert (lib / "ads_synth_models" / rel).is_file(), rel
    assert (lib / "ads_synth" / "napari.yaml").is_file()
    assert not list(lib.rglob("*.pyc"))
