"""The labeled TEM set installed with the package (ads_synth_models/datasets/TEM)."""

import configparser
import fnmatch
from pathlib import Path

import numpy as np
import pytest

from ads_synth.data.bundled import labeled_set
from ads_synth.data.datasets import AXON, MYELIN, find_samples, load_label_map
from ads_synth.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_bundled_tem_set_has_22_labeled_samples_with_pixel_sizes():
    folder = labeled_set("TEM")
    samples = find_samples(folder, require_labels=True, require_pixel_size=True)
    assert len(samples) == 22
    sizes = sorted({s.pixel_size for s in samples})
    assert sizes == pytest.approx([0.00236, 0.00493])
    assert sum(s.pixel_size == pytest.approx(0.00493) for s in samples) == 21
    # unmyelinated-axon labels are not shipped (they count as background)
    assert not list(folder.rglob("*uaxon*"))
    for s in (samples[0], samples[-1]):
        label = load_label_map(s)
        assert 0.02 < np.mean(label == AXON) < 0.6 and 0.05 < np.mean(label == MYELIN) < 0.6
    for name in ("README.md", "LICENSE"):
        assert (folder / name).is_file()
    assert "MIT" in (folder / "LICENSE").read_text()
    size_mb = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
    assert size_mb < 12


def test_bundled_set_unknown_name_is_an_input_error():
    with pytest.raises(InputError, match="unknown"):
        labeled_set("CARS")


def test_setup_cfg_package_data_ships_every_bundled_file():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["ads_synth_models"].split(",")]
    package = ROOT / "ads_synth_models"
    files = [p.relative_to(package).as_posix() for p in (package / "datasets").rglob("*") if p.is_file()]
    # glob semantics of setuptools: '*' does not cross '/', so match component counts too
    missed = [f for f in files
              if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns)]
    assert files and not missed
