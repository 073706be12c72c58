"""The `ads-synth` console script itself: version, info, sub-command discovery, bad input -> one line, exit 2."""

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


def test_every_command_module_is_a_subcommand():
    names = command_modules()
    assert {"info", "translation", "translate", "pseudo", "evaluate", "segmentation", "models", "segment"} <= set(names)
    r = run("--help")
    assert r.returncode == 0
    for name in names:
        assert name in r.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    r = run("translate", "--model", str(tmp_path / "nope"), "--direction", "L2U", "-i", str(tmp_path / "missing.png"),
            "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("ads-synth: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
