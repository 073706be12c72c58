"""The plugin's ``axondeepseg`` script: AxonDeepSeg's own behaviour for its command lines, pseudo labels with -t."""

import importlib.metadata
import os
import re
import subprocess
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ads_synth.integration import ads_cli
from ads_synth.cards.lookup import ENV_VAR, get_card
from test_model_cards import make_fake_card

BIN = Path(sys.executable).parent
WRAPPER = BIN / "axondeepseg"


def ads_own_script(folder):
    """AxonDeepSeg's ``axondeepseg`` console script as pip writes it from AxonDeepSeg's entry point."""
    ep = next(e for e in importlib.metadata.distribution("axondeepseg").entry_points
              if e.group == "console_scripts" and e.name == "axondeepseg")
    module, func = ep.value.split(":")
    script = Path(folder) / "axondeepseg"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom {module} import {func}\nif __name__ == '__main__':\n"
        f"    sys.argv[0] = sys.argv[0].removesuffix('.exe')\n    sys.exit({func}())\n"
    )
    script.chmod(0o755)
    return script


_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+")


def _normalise(text):
    """Drop loguru time stamps (the only thing that differs between two runs)."""
    return _STAMP.sub("<time>", text)


def run_in(script, args, cwd, env=None):
    r = subprocess.run([str(script), *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                       env=dict(os.environ, **(env or {})))
    log = Path(cwd) / "axondeepseg.log"

    def norm(text):
        return _normalise(text).replace(str(cwd), "<cwd>")

    return r.returncode, norm(r.stdout), norm(r.stderr), norm(log.read_text()) if log.exists() else None


def write_png(path, shape=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(path)
    return path


def test_wrapper_is_the_installed_axondeepseg_script():
    assert WRAPPER.is_file(), "pip install -e . installs the plugin's axondeepseg script"
    assert "ads_synth.integration.ads_cli" in WRAPPER.read_text()


#: AxonDeepSeg's documented command-line cases: the arguments and the exit code AxonDeepSeg gives them.
ADS_CASES = {
    "help": (["--help"], 0),
    "no-args": ([], 2),  # -i is required: argparse error
    "bad-extension": (["-i", "image.txt"], 1),
    "bad-verbosity": (["-v", "7", "-i", "image.png"], 2),
    "unknown-option": (["-i", "image.png", "--unknown-option"], 2),
    "bad-gpu-id": (["-i", "image.png", "--gpu-id", "not-a-number"], 2),
}


def _case_folders(tmp_path):
    folders = {}
    for which in ("wrapper", "ads"):
        cwd = tmp_path / which
        cwd.mkdir()
        (cwd / "image.txt").write_text("not an image")
        write_png(cwd / "image.png")
        folders[which] = cwd
    return folders


def _check_same_as_ads(args, code, wrapper, own):
    if args == ["--help"]:  # AxonDeepSeg's help, unchanged, plus one line naming the plugin's options
        assert wrapper[1] == own[1] + ads_cli.HELP_EPILOG + "\n"
        assert own[1].startswith("usage: axondeepseg [-h] -i IMGPATH")
        wrapper = (wrapper[0], own[1], *wrapper[2:])
    assert wrapper == own
    assert wrapper[0] == code


def test_ads_command_line_through_the_installed_scripts(tmp_path):
    """The real console scripts side by side (one case: the others run in-process below): exit code, stdout,
    stderr and axondeepseg.log of ``axondeepseg -i image.txt`` (an invalid extension: exit 1) are AxonDeepSeg's."""
    args, code = ADS_CASES["bad-extension"]
    ads = ads_own_script(tmp_path / "ads_bin")
    folders = _case_folders(tmp_path)
    with ThreadPoolExecutor(2) as pool:  # the two processes side by side: each spends seconds importing torch
        wrapper, own = pool.map(lambda item: run_in(item[0], args, item[1]),
                                [(WRAPPER, folders["wrapper"]), (ads, folders["ads"])])
    _check_same_as_ads(args, code, wrapper, own)
    assert "Invalid extension for file image.txt" in own[2] and "Invalid extension for file image.txt" in own[3]


def run_main_in(main, args, cwd, capfd, monkeypatch):
    """``main(args)`` in this process as its console script would run it in ``cwd``: (exit code, stdout, stderr,
    axondeepseg.log), like :func:`run_in`. The loguru handlers added for the call (AxonDeepSeg adds a log file
    handler on each call) are removed after it, which also flushes the queued log file."""
    from loguru import logger

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [str(WRAPPER)] + list(args))  # argparse's prog: ``axondeepseg``
    capfd.readouterr()
    handlers = set(logger._core.handlers)
    logger.add(sys.stderr)  # loguru's default terminal handler, as a fresh process has it
    try:
        code = main(list(args))
    except SystemExit as stop:
        code = stop.code
    finally:
        for handler in set(logger._core.handlers) - handlers:
            logger.remove(handler)
    sys.stdout.flush()
    sys.stderr.flush()
    out, err = capfd.readouterr()
    log = Path(cwd) / "axondeepseg.log"

    def norm(text):
        return _normalise(text).replace(str(cwd), "<cwd>")

    return (0 if code is None else code), norm(out), norm(err), norm(log.read_text()) if log.exists() else None


@pytest.mark.parametrize("case", sorted(ADS_CASES))
def test_ads_command_lines_behave_exactly_as_ads(tmp_path, case, ads_segment_main, capfd, monkeypatch):
    """Exit code, stdout, stderr and axondeepseg.log are AxonDeepSeg's own (its documented CLI cases, in-process:
    the plugin's ``main`` against AxonDeepSeg's); the help has one more line at the end, naming -t/--pseudo."""
    args, code = ADS_CASES[case]
    folders = _case_folders(tmp_path)
    wrapper = run_main_in(ads_cli.main, args, folders["wrapper"], capfd, monkeypatch)
    own = run_main_in(ads_segment_main, args, folders["ads"], capfd, monkeypatch)
    _check_same_as_ads(args, code, wrapper, own)
    if case == "bad-extension":  # AxonDeepSeg logged the error to its log file and the terminal
        assert "Invalid extension for file image.txt" in own[3] and "Invalid extension" in own[2]


def test_wants_pseudo_detects_only_the_plugin_options():
    assert ads_cli.wants_pseudo(["-t", "SEM", "-i", "x.png"])
    assert ads_cli.wants_pseudo(["-tSEM", "-i", "x.png"])
    assert ads_cli.wants_pseudo(["--pseudo=tutor", "-i", "x.png"])
    assert ads_cli.wants_pseudo(["--target", "SEM"])
    assert not ads_cli.wants_pseudo(["-i", "x.png", "-m", "model", "-v", "1", "--gpu-id", "0"])
    assert not ads_cli.wants_pseudo(["--help"])
    assert not ads_cli.wants_pseudo(["-i", "--", "-t"])


# ----------------------------------------------------------------------------------------------------------------
# pseudo mode: errors (one line, exit 2 or AxonDeepSeg's 1 for an extension, nothing written)
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture
def cards_dir(tmp_path, monkeypatch):
    d = tmp_path / "models"
    make_fake_card(d)  # TEST -> FAKE, tutor (placeholder files: validation passes, running it would not)
    broken = make_fake_card(d, target="BROKEN", seed=b"b")
    (broken.translation / "weights.pt").unlink()
    monkeypatch.setenv(ENV_VAR, str(d))
    return d


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    write_png(folder / "a.png")
    write_png(folder / "b.png", seed=1)
    (folder / "notes.txt").write_text("x")
    return folder


def _files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["-t", "XYZ", "--pseudo", "tutor"], 2, r"no pseudo-label model for TEM -> XYZ \(tutor\); available: "
         r".*TEST2FAKE_tutor \(TEST -> FAKE, tutor\)"),
        (["-t", "FAKE", "-s", "TEST", "--pseudo", "adapt"], 2, r"no pseudo-label model for TEST -> FAKE \(adapt\)"),
        (["-t", "BROKEN", "-s", "TEST", "--pseudo", "tutor"], 2,
         r"model card TEST2BROKEN_tutor points at 1 missing file\(s\) .*ads-synth models install TEST2BROKEN_tutor"),
        (["-t", "FAKE", "-s", "TEST", "--pseudo", "tutor", "--gpu-id", "0", "--pixel-size", "-1"], 2,
         r"--pixel-size"),
    ],
    ids=["unknown-target", "no-model-for-strategy", "card-files-missing", "bad-pixel-size"],
)
def test_pseudo_errors_are_one_line_exit_2_and_write_nothing(cards_dir, images, capsys, args, code, message):
    before = _files(images)
    assert ads_cli.main([*args, "-i", str(images / "a.png")]) == code
    err = capsys.readouterr().err
    assert err.startswith("axondeepseg: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert _files(images) == before


def test_pseudo_input_file_errors(cards_dir, images, capsys):
    base = ["-t", "FAKE", "-s", "TEST", "--pseudo", "tutor", "-i"]
    assert ads_cli.main([*base, str(images / "notes.txt")]) == 1  # AxonDeepSeg's exit code for an extension
    assert "notes.txt: invalid extension" in capsys.readouterr().err
    assert ads_cli.main([*base, str(images / "missing.png")]) == 2
    assert "missing.png: no such file" in capsys.readouterr().err
    empty = images.parent / "empty"
    empty.mkdir()
    assert ads_cli.main([*base, str(empty)]) == 2
    assert "no images found" in capsys.readouterr().err
    assert ads_cli.main([*base, str(images / "a.png"), str(images / "a.png")]) == 2
    assert "given twice" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pseudo", "tutor", "-i", "a.png"], "the following arguments are required: -t/--target"),
        (["-t", "SEM", "-i", "a.png"], "the following arguments are required: --pseudo"),
        (["-t", "SEM", "--pseudo", "guess", "-i", "a.png"], "invalid choice: 'guess'"),
        (["-t", "SEM", "--pseudo", "tutor", "-m", "x", "-i", "a.png"], "-m/--model chooses an AxonDeepSeg model"),
    ],
)
def test_pseudo_usage_errors_exit_2(capsys, args, message):
    assert ads_cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "usage:" not in err


def test_pseudo_help(capsys):
    assert ads_cli.main(["--pseudo", "--help"]) == 0
    out = capsys.readouterr().out
    from ads_synth.segmentation.strategies import strategy_names

    choices = "{" + ",".join((*strategy_names(shippable=True), "auto")) + "}"
    assert choices == "{tutor,adapt,proxy,refined,direct,invert,histmatch,auto}"
    assert choices in out and "-s MODALITY, --source MODALITY" in out


# ----------------------------------------------------------------------------------------------------------------
# pseudo mode: what is handed to the segmentation part (its function replaced by a recorder)
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture
def recorder(monkeypatch):
    calls = []

    def pseudo_label_images(images, **kwargs):
        calls.append((list(images), kwargs))
        return [{"image": Path(i)} for i in images]

    module = types.ModuleType("ads_synth.segmentation.pseudo")
    module.pseudo_label_images = pseudo_label_images
    monkeypatch.setitem(sys.modules, "ads_synth.segmentation.pseudo", module)
    return calls


def test_pseudo_mode_passes_card_folders_folders_expanded_and_cpu_device(cards_dir, images, recorder, capsys):
    (images / "a_seg-axon.png").write_bytes((images / "a.png").read_bytes())  # an ADS output: not an input
    code = ads_cli.main(["-t", "fake", "-s", "test", "--pseudo", "tutor", "-i", str(images), "--overwrite",
                         "--gpu-id", "-1"])
    assert code == 0, capsys.readouterr().err
    (got, kwargs), = recorder
    assert got == [images / "a.png", images / "b.png"]
    card = get_card("TEST2FAKE_tutor")
    assert kwargs == dict(translation=card.translation, segmentation=card.nnunet, strategy="tutor", out_dir=None,
                          overwrite=True, folds=["all"], device="cpu", progress=kwargs["progress"],
                          pixel_size=None, allow_large=False, myelin_boundary=False)


def test_myelin_boundary_from_the_flag_or_from_a_card_that_records_it(cards_dir, images, recorder, capsys):
    """`--myelin-boundary` turns the step on; a card whose ``postprocess`` records it (a refined card, chosen from
    the user's corrections) turns it on without the flag; `ads-synth models show` says so."""
    from test_model_cards import make_fake_card

    args = ["-s", "TEST", "--pseudo", "tutor", "-i", str(images / "a.png"), "--overwrite"]
    assert ads_cli.main(["-t", "FAKE", *args]) == 0
    assert ads_cli.main(["-t", "FAKE", *args, "--myelin-boundary"]) == 0
    make_fake_card(cards_dir, target="OWN", seed=b"o", postprocess={"myelin_boundary": True, "dice_with": 0.8})
    assert ads_cli.main(["-t", "OWN", *args]) == 0
    assert [kwargs["myelin_boundary"] for _, kwargs in recorder] == [False, True, True]
    from ads_synth.cli import main

    capsys.readouterr()
    assert main(["models", "show", "TEST2OWN_tutor"]) == 0
    shown = capsys.readouterr().out
    assert "myelin_boundary: true" in shown and "# post-processing: myelin boundary at half-way" in shown
    assert main(["models", "show", "TEST2FAKE_tutor"]) == 0
    assert "post-processing" not in capsys.readouterr().out


def test_pixel_size_far_outside_range_warns_and_still_runs(cards_dir, images, recorder, capsys):
    # the card was trained on 0.05-0.1 um/px: 0.25 is more than 2x outside, 0.2 is not
    (images / "pixel_size_in_micrometer.txt").write_text("0.25")
    assert ads_cli.main(["-t", "FAKE", "-s", "TEST", "--pseudo", "tutor", "-i", str(images / "a.png")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ")
    assert "pixel size 0.25 um/px is more than 2x outside the 0.05-0.1 um/px that model TEST2FAKE_tutor" in err[0]
    assert len(recorder) == 1
    (images / "pixel_size_in_micrometer.txt").write_text("0.2")
    assert ads_cli.main(["-t", "FAKE", "-s", "TEST", "--pseudo", "tutor", "-i", str(images / "a.png")]) == 0
    assert capsys.readouterr().err == "" and len(recorder) == 2


def test_gpu_id_without_gpu_warns_and_uses_cpu(cards_dir, images, recorder, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert ads_cli.main(["-t", "FAKE", "-s", "TEST", "--pseudo", "tutor", "-i", str(images / "a.png"),
                         "--gpu-id", "0"]) == 0
    assert "no GPU available, using the CPU" in capsys.readouterr().err
    assert recorder[0][1]["device"] == "cpu"


def test_ads_synth_segment_is_the_same_feature(cards_dir, images, recorder, tmp_path):
    exe = BIN / "ads-synth"
    env = dict(os.environ, **{ENV_VAR: str(cards_dir)})
    r = subprocess.run([str(exe), "segment", "-t", "XYZ", "--strategy", "tutor", "-i", str(images / "a.png")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "no pseudo-label model for TEM -> XYZ (tutor)" in r.stderr
    r = subprocess.run([str(exe), "segment", "-t", "FAKE", "--strategy", "tutor", "-i", str(images / "notes.txt")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "invalid extension" in r.stderr  # the plugin's own command: bad input is 2
    from ads_synth.cli import main

    assert main(["segment", "-t", "FAKE", "-s", "TEST", "--strategy", "adapt", "-i", str(images)]) == 2
    assert main(["segment", "-t", "FAKE", "-s", "TEST", "--strategy", "tutor", "-i", str(images)]) == 0
    assert recorder[-1][0] == [images / "a.png", images / "b.png"]


def test_gpu_id_maps_to_cuda_device_or_is_refused(cards_dir, images, recorder, capsys, monkeypatch):
    """With GPUs visible (device count faked: this machine has none), --gpu-id N selects cuda:N as ADS does."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    base = ["-t", "FAKE", "-s", "TEST", "--pseudo", "tutor", "-i", str(images / "a.png")]
    assert ads_cli.main([*base, "--gpu-id", "1"]) == 0
    assert recorder[-1][1]["device"] == "cuda:1"
    assert ads_cli.main([*base, "--gpu-id", "2"]) == 2
    assert "--gpu-id 2: GPU not available; the available GPU IDs are [0, 1]" in capsys.readouterr().err
    assert len(recorder) == 1
