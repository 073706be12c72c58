"""``ads_synth.json`` records what a model was trained on without absolute paths (dataset names, image counts,
checksums), and resuming compares contents, not paths."""

import json
import shutil
from pathlib import Path

from ads_synth.data.datasets import find_samples
from ads_synth.segmentation.model_building import data_record, same_training

PACKAGE = Path(__file__).resolve().parents[1] / "ads_synth_models"
DEMO = Path(__file__).resolve().parents[1] / "docs" / "demo"


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_shipped_model_info_holds_no_machine_paths():
    infos = sorted(PACKAGE.glob("*/nnunet_*/ads_synth.json"))
    assert len(infos) >= 5
    for path in infos:
        info = json.loads(path.read_text())
        bad = [s for s in _strings(info) if s.startswith("/") or "/work/" in s]
        assert not bad, f"{path}: {bad[:2]}"
        trained_on = info["trained_on"]
        assert trained_on["n_images"] > 0 and len(trained_on["images_sha256"]) == 64 and trained_on["data"]


def test_data_record_is_the_same_wherever_the_images_lie(tmp_path):
    a = tmp_path / "here" / "demo"
    shutil.copytree(DEMO, a, ignore=shutil.ignore_patterns("bf"))
    b = tmp_path / "elsewhere" / "demo"
    shutil.copytree(a, b)
    ra, rb = data_record(find_samples(a)), data_record(find_samples(b))
    assert ra == rb and ra["data"] == ["demo"] and ra["n_images"] == len(find_samples(a))
    image = find_samples(b)[0].image
    image.write_bytes(image.read_bytes() + b"\0")
    assert data_record(find_samples(b))["images_sha256"] != ra["images_sha256"]


def test_resume_comparison_ignores_paths_but_not_contents():
    old = {"pixel_size": 0.1, "domain": "L", "strategy": "labeled", "configuration": "2d_compact",
           "compact_plan": None, "trained_on": {"data": ["/elsewhere/tem-srf"], "n_images": 22}}
    new = {**old, "trained_on": {"data": ["tem-srf"], "n_images": 22, "images_sha256": "a" * 64}}
    assert same_training(old, new) and same_training(new, old)
    assert not same_training(old, {**new, "trained_on": {**new["trained_on"], "n_images": 21}})
    assert not same_training(new, {**new, "trained_on": {**new["trained_on"], "images_sha256": "b" * 64}})
    assert not same_training(new, {**new, "pixel_size": 0.2})
