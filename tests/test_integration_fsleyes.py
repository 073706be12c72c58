"""The FSLeyes control: its logic without wx, and (where FSLeyes and wx are installed) its entry point."""

import importlib.metadata
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from ads_synth.errors import InputError
from ads_synth.integration import fsleyes_control as F
from test_model_cards import make_fake_card


@pytest.fixture
def card_env(user_cards):
    make_fake_card(user_cards, pixel_size=(0.05, 0.1))
    broken = make_fake_card(user_cards, target="BROKEN", seed=b"b")
    (broken.nnunet / "plans.json").unlink()
    return user_cards


@pytest.fixture
def fake_segmentation(monkeypatch):
    from ads_synth.data.writers import write_ads_segmentation

    def pseudo_label_images(images, *, overwrite=False, out_dir=None, **kwargs):
        label = np.zeros((30, 30), np.uint8)
        label[2:10, 2:10] = 1
        label[4:8, 4:8] = 2
        return [{"paths": write_ads_segmentation(label, i, out_dir, overwrite)} for i in images]

    module = types.ModuleType("ads_synth.segmentation.pseudo")
    module.pseudo_label_images = pseudo_label_images
    monkeypatch.setitem(sys.modules, "ads_synth.segmentation.pseudo", module)


class FakeOverlay:
    """What the control reads of an FSLeyes overlay: ``name`` and ``dataSource``."""

    def __init__(self, path, name="img"):
        self.dataSource = str(path) if path else None
        self.name = name


class FakeOverlayList(list):
    """FSLeyes' ``OverlayList.append(overlay, **initProps)``."""

    def append(self, item, **props):
        super().append((item, props))


def test_module_imports_without_wx_and_fsleyes():
    code = ("import sys, ads_synth.integration.fsleyes_control as f; "
            "assert not {'wx', 'fsleyes'} & set(sys.modules), sorted(sys.modules); print(f.TITLE)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == F.TITLE == "ads-synth pseudo labels"
    ep, = [e for e in importlib.metadata.entry_points(group="fsleyes_controls") if e.name == F.TITLE]
    assert ep.value == "ads_synth.integration.fsleyes_control:PseudoLabelControl"


def test_choices_list_only_installed_cards(card_env):
    assert F.card_choices() == [("TEST2FAKE_tutor (TEST -> FAKE, tutor)", "TEST2FAKE_tutor")]


def test_pseudo_label_overlay_and_result_overlays(card_env, fake_segmentation, tmp_path):
    image = tmp_path / "tile.png"
    Image.fromarray(np.full((30, 30), 100, np.uint8)).save(image)
    result = F.pseudo_label_overlay(FakeOverlay(image), "TEST2FAKE_tutor")
    assert result.axon == tmp_path / "tile_seg-axon.png" and result.warnings == []
    overlays = F.result_overlays(result)
    assert [(p.name, n, props["overlayType"], props["colour"]) for p, n, props in overlays] == [
        ("tile_seg-axon.png", "tile_seg-axon", "mask", (0.0, 0.0, 1.0)),
        ("tile_seg-myelin.png", "tile_seg-myelin", "mask", (1.0, 0.0, 0.0)),
    ]
    loaded = []
    overlay_list = FakeOverlayList()
    added = F.add_result_overlays(overlay_list, result, load=lambda p: loaded.append(p) or f"image:{p.name}")
    assert added == ["image:tile_seg-axon.png", "image:tile_seg-myelin.png"]
    assert overlay_list[0][1] == {"overlayType": "mask", "colour": (0.0, 0.0, 1.0), "name": "tile_seg-axon"}
    # errors the control shows as one line
    with pytest.raises(InputError, match="exist"):
        F.pseudo_label_overlay(FakeOverlay(image), "TEST2FAKE_tutor")
    with pytest.raises(InputError, match="no overlay selected"):
        F.pseudo_label_overlay(None, "TEST2FAKE_tutor")
    with pytest.raises(InputError, match="has no file"):
        F.pseudo_label_overlay(FakeOverlay(None), "TEST2FAKE_tutor")
    with pytest.raises(InputError, match="no model selected"):
        F.pseudo_label_overlay(FakeOverlay(image), None)
    with pytest.raises(InputError, match="missing file"):
        F.pseudo_label_overlay(FakeOverlay(image), "TEST2BROKEN_tutor")


def test_fsleyes_finds_the_control_where_installed(card_env):
    """Runs only where FSLeyes and wxPython are installed (not in the default environment)."""
    plugins = pytest.importorskip("fsleyes.plugins")
    pytest.importorskip("wx")
    controls = plugins._listEntryPoints("fsleyes_controls", showAll=True)
    cls = controls[F.TITLE]
    import fsleyes.controls.controlpanel as ctrlpanel

    assert issubclass(cls, ctrlpanel.ControlPanel) and cls.title() == F.TITLE


FSLEYES_SCRIPT = '''
import os, sys, traceback, types
import numpy as np
out = open(os.environ["RESULT_FILE"], "w")
try:
    from ads_synth.data.writers import write_ads_segmentation

    def pseudo_label_images(images, *, overwrite=False, out_dir=None, **kwargs):
        label = np.zeros((40, 50), np.uint8)
        label[2:10, 2:10] = 1
        label[4:8, 4:8] = 2
        return [{"paths": write_ads_segmentation(label, i, out_dir, overwrite)} for i in images]

    fake = types.ModuleType("ads_synth.segmentation.pseudo")
    fake.pseudo_label_images = pseudo_label_images
    sys.modules["ads_synth.segmentation.pseudo"] = fake
    from fsleyes.views.orthopanel import OrthoPanel
    from ads_synth.integration.fsleyes_control import PseudoLabelControl

    ortho = frame.viewPanels[0] if frame.viewPanels else frame.addViewPanel(OrthoPanel)
    ortho.togglePanel(PseudoLabelControl)
    control = ortho.getPanel(PseudoLabelControl)
    displayCtx.selectOverlay(overlayList[0])
    control._PseudoLabelControl__on_run(None)
    for o in overlayList:
        opts = displayCtx.getOpts(o)
        colour = tuple(round(c, 2) for c in opts.colour[:3]) if hasattr(opts, "colour") else None
        out.write(f"{o.name}|{displayCtx.getDisplay(o).overlayType}|{colour}\\n")
except Exception:
    out.write(traceback.format_exc())
out.close()
os._exit(0)
'''


def test_control_runs_in_fsleyes(card_env, tmp_path):
    """In a real FSLeyes under Xvfb: only where FSLeyes is installed beside this Python and xvfb-run exists."""
    import os
    import shutil
    from pathlib import Path

    fsleyes = Path(sys.executable).parent / "fsleyes"
    if not fsleyes.exists() or shutil.which("xvfb-run") is None:
        pytest.skip("needs FSLeyes installed beside this Python and xvfb-run")
    image = tmp_path / "tile.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)).save(image)
    script = tmp_path / "script.py"
    script.write_text(FSLEYES_SCRIPT)
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, RESULT_FILE=str(tmp_path / "result.txt"),
               PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
    subprocess.run(["xvfb-run", "-a", str(fsleyes), "--showAllPlugins", "-r", str(script), str(image)],
                   env=env, cwd=tmp_path, capture_output=True, timeout=180)
    lines = (tmp_path / "result.txt").read_text().splitlines()
    assert lines == [
        "tile.png|volume|None",
        "tile_seg-axon.png|mask|(0.0, 0.0, 1.0)",
        "tile_seg-myelin.png|mask|(1.0, 0.0, 0.0)",
    ], "\n".join(lines)
    assert (tmp_path / "tile_seg-axonmyelin.png").is_file()
