"""The napari widget (offscreen Qt): manifest, model list, pseudo-labelling the selected layer, ADS-style layers."""

import os
import sys
import types
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from ads_synth.errors import InputError  # noqa: E402
from test_model_cards import make_fake_card  # noqa: E402

pytest.importorskip("napari")


@pytest.fixture
def card_env(user_cards):
    make_fake_card(user_cards, pixel_size=(0.05, 0.1))
    return user_cards


@pytest.fixture
def fake_segmentation(monkeypatch):
    """The segmentation part replaced by a function that writes a known label map the ADS way."""
    from ads_synth.data.writers import write_ads_segmentation

    calls = []

    def pseudo_label_images(images, *, overwrite=False, out_dir=None, **kwargs):
        calls.append((list(images), kwargs))
        out = []
        for image in images:
            label = np.zeros((40, 50), np.uint8)
            label[5:15, 5:15] = 1
            label[8:12, 8:12] = 2
            out.append({"image": image, "paths": write_ads_segmentation(label, image, out_dir, overwrite)})
        return out

    module = types.ModuleType("ads_synth.segmentation.pseudo")
    module.pseudo_label_images = pseudo_label_images
    module.CONFIDENCE_SUFFIX = "_seg-confidence.png"  # the widget looks for the confidence map (none written here)
    monkeypatch.setitem(sys.modules, "ads_synth.segmentation.pseudo", module)
    return calls


@pytest.fixture
def image_file(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    path = folder / "sample.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50), dtype=np.uint8)).save(path)
    (folder / "pixel_size_in_micrometer.txt").write_text("0.3")  # far outside 0.05-0.1: a warning
    return path


def test_manifest_is_registered_with_napari():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("ads-synth")
    widget, = manifest.contributions.widgets
    assert widget.display_name == "Pseudo labels"
    command = next(c for c in manifest.contributions.commands if c.id == widget.command)
    assert command.python_name == "ads_synth.integration.napari_widget:PseudoLabelWidget"


def test_pseudo_label_file_plain_function(card_env, fake_segmentation, image_file):
    from ads_synth.integration.pseudo_action import pseudo_label_file, read_masks

    result = pseudo_label_file(image_file, "TEST2FAKE_tutor")
    assert result.axonmyelin == image_file.with_name("sample_seg-axonmyelin.png")
    assert len(result.warnings) == 1 and "pixel size 0.3 um/px" in result.warnings[0]
    masks = read_masks(result)
    assert masks["axon"].sum() == 16 and masks["myelin"].sum() == 100 - 16
    with pytest.raises(InputError, match="exist.*overwrite"):
        pseudo_label_file(image_file, "TEST2FAKE_tutor")
    with pytest.raises(InputError, match="no model card named"):
        pseudo_label_file(image_file, "nope")


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget.apply_button.isEnabled() and not widget.thread.isRunning(), timeout=60000)


def test_widget_pseudo_labels_selected_layer_and_adds_ads_layers(make_napari_viewer, qtbot, card_env,
                                                                 fake_segmentation, image_file):
    from ads_synth.integration.napari_widget import NO_MODEL, PseudoLabelWidget

    viewer = make_napari_viewer()
    widget = PseudoLabelWidget(viewer)
    qtbot.addWidget(widget)
    items = [widget.model_combobox.itemText(i) for i in range(widget.model_combobox.count())]
    assert items == [NO_MODEL, "TEST2FAKE_tutor  (TEST -> FAKE, tutor)"]

    widget._on_apply_click()
    assert widget.last_message == "No model selected"
    widget.model_combobox.setCurrentIndex(1)
    widget._on_apply_click()
    assert widget.last_message == "No single image selected"
    viewer.add_image(np.zeros((10, 10)), name="in-memory")
    widget._on_apply_click()
    assert "has no file" in widget.last_message

    layer = viewer.open(str(image_file))[0]
    viewer.layers.selection.active = layer
    widget._on_apply_click()
    _wait(qtbot, widget)
    assert widget.last_result is not None, widget.last_message
    axon, myelin = viewer.layers["sample_seg-axon"], viewer.layers["sample_seg-myelin"]
    assert axon.data.sum() == 16 and myelin.data.sum() == 84
    assert axon.metadata["associated_image_name"] == "sample"
    assert layer.metadata["associated_axon_mask_name"] == "sample_seg-axon"
    assert layer.metadata["associated_myelin_mask_name"] == "sample_seg-myelin"
    assert layer.metadata["pixel_size"] == pytest.approx(0.3)
    assert (image_file.parent / "sample_seg-axonmyelin.png").is_file()

    # a second run without "overwrite": the error is shown, the files and layers stay
    widget._on_apply_click()
    _wait(qtbot, widget)
    assert "overwrite" in widget.last_message
    widget.overwrite_checkbox.setChecked(True)
    viewer.layers.selection.active = viewer.layers["sample_seg-axon"]  # a mask layer selects its image
    widget._on_apply_click()
    _wait(qtbot, widget)
    assert widget.last_message.startswith("Pseudo labels written")
    assert [lay.name for lay in viewer.layers].count("sample_seg-axon") == 1
    assert len(fake_segmentation) == 3  # the refused run reached the segmentation part, which refused to write


def test_ads_widget_lists_installed_tutor_model(make_napari_viewer, qtbot, tmp_path):
    """The ADS napari widget's model choice shows a model installed with `ads-synth models install`."""
    import shutil
    import uuid

    from ads_synth.integration.ads_models import ads_models_dir, register_in_ads

    card = make_fake_card(tmp_path / "cards", source="N" + uuid.uuid4().hex[:8])
    models = ads_models_dir()
    existed = models.exists()
    folder = register_in_ads(card)
    try:
        from AxonDeepSeg.ads_napari._widget import ADSplugin

        ads_widget = ADSplugin(make_napari_viewer())
        qtbot.addWidget(ads_widget)
        items = [ads_widget.model_selection_combobox.itemText(i)
                 for i in range(ads_widget.model_selection_combobox.count())]
        assert card.full_name in items
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if not existed and models.exists() and not any(models.iterdir()):
            models.rmdir()
    assert Path(folder).exists() is False
