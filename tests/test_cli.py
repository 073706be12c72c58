"""The `ads-synth` console script itself: version, info, sub-command discovery, bad input -> one line, exit 2."""

import argparse
import subprocess
import sys
from pathlib import Path

from ads_synth import __version__
from ads_synth.commands import command_modules

BIN = Path(sys.executable).parent


def run(*args, cwd=None):
    return subprocess.run([str(BIN / "ads-synth"), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"ads-synth {__version__}"


def test_info_reports_versions_device_and_shipped_cards():
    r = run("info")
    assert r.returncode == 0, r.stderr
    rows = dict(line.split(None, 1) for line in r.stdout.splitlines() if " " in line.strip())
    assert rows["ads-synth"].strip() == __version__
    assert rows["axondeepseg"].startswith("5.5") and rows["nnunetv2"].strip() == "2.2.1"
    assert rows["device"].startswith(("cpu", "cuda"))
    assert "TEM2SEM_tutor" in r.stdout


#: Each sub-command, a command line that shows what it does, and text that only its own help prints.
SUBCOMMANDS = {
    "info": (["info", "--help"], "usage: ads-synth info [-h] options"),
    "translation": (["translation", "train", "--help"], "--scale S"),
    "translate": (["translate", "--help"], "--direction {L2U,U2L}"),
    "pseudo": (["pseudo", "--help"], "--min-confidence C"),
    "evaluate": (["evaluate", "--help"], "--truth DATASET"),
    "segmentation": (["segmentation", "predict", "--help"], "--segmentation-pixel-size UM"),
    "models": (["models", "create", "--help"], "--strategy {tutor,adapt,proxy,refined,direct,invert,histmatch}"),
    "segment": (["segment", "--help"], "--strategy {tutor,adapt,proxy,refined,direct,invert,histmatch,auto}"),
    "family": (["family", "train", "--help"], "--time-budget MINUTES"),
    "scale": (["scale", "estimate", "--help"], "--labeled-pixel-size UM"),
    "refine": (["refine", "--help"], "--drop-bare-axons"),
    "rank": (["rank", "--help"], "--work DIR"),
}


def test_every_command_module_is_a_subcommand(capsys):
    """Each module under ads_synth/commands is a registered sub-command with its own options (in-process)."""
    import pytest

    from ads_synth.cli import build_parser

    assert set(command_modules()) == set(SUBCOMMANDS)
    registered = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(registered.choices) == set(SUBCOMMANDS)
    for name, (argv, marker) in SUBCOMMANDS.items():
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(argv)
        assert exit_.value.code == 0, name
        out = " ".join(capsys.readouterr().out.split())
        assert out.startswith(f"usage: ads-synth {' '.join(argv[:-1])}"), (name, out[:80])
        assert marker in out, (name, marker)
    # a command line without a sub-command prints the list of them and exits 0
    from ads_synth.cli import main

    assert main([]) == 0
    listed = capsys.readouterr().out
    assert "show versions, the device in use and the model cards found" in " ".join(listed.split())
    for name in SUBCOMMANDS:
        assert f"    {name} " in listed or f"    {name}\n" in listed, name


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    r = run("translate", "--model", str(tmp_path / "nope"), "--direction", "L2U", "-i", str(tmp_path / "missing.png"),
            "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("ads-synth: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
