"""The napari widget's annotation loop (offscreen Qt): confidence layer, saving corrected masks in ADS's format, the
"Refine with my corrections" button running ``ads-synth refine`` in the background with a progress bar."""

import os
import sys
import types

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from test_integration_napari import card_env, image_file  # noqa: E402,F401 (fixtures)

pytest.importorskip("napari")


@pytest.fixture
def fake_segmentation_with_confidence(monkeypatch):
    """The segmentation part replaced: a known label map the ADS way, and a confidence map."""
    from ads_synth.data.writers import write_ads_segmentation

    def pseudo_label_images(images, *, overwrite=False, out_dir=None, **kwargs):
        out = []
        for image in images:
            label = np.zeros((40, 50), np.uint8)
            label[5:15, 5:15] = 1
            label[8:12, 8:12] = 2
            paths = write_ads_segmentation(label, image, out_dir, overwrite)
            Image.fromarray(np.full((40, 50), 204, np.uint8)).save(image.with_name(f"{image.stem}_seg-confidence.png"))
            out.append({"image": image, "paths": paths})
        return out

    module = types.ModuleType("ads_synth.segmentation.pseudo")
    module.pseudo_label_images = pseudo_label_images
    module.CONFIDENCE_SUFFIX = "_seg-confidence.png"
    monkeypatch.setitem(sys.modules, "ads_synth.segmentation.pseudo", module)


def test_refine_command_names_corrected_and_other_images(tmp_path):
    from ads_synth.errors import InputError
    from ads_synth.integration.annotation_actions import REFINE_FOLDER, refine_command, refine_progress

    for name in ("a.png", "b.png", "c.png", "a_seg-axonmyelin.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    argv = refine_command("TEM2SEM", [tmp_path / "a.png"])
    assert argv[1:4] == ["-m", "ads_synth.cli", "refine"]
    assert argv[argv.index("--corrected") + 1] == str(tmp_path / "a.png")
    i = argv.index("--unlabeled")
    assert argv[i + 1:i + 3] == [str(tmp_path / "b.png"), str(tmp_path / "c.png")]
    assert argv[argv.index("-o") + 1] == str(tmp_path / REFINE_FOLDER)
    with pytest.raises(InputError, match="no corrected image yet"):
        refine_command("TEM2SEM", [])
    assert refine_progress("ads-synth refine: [2/4] finetune: done in 3 s") == (2, 4, "finetune done")
    assert refine_progress("ads-synth refine: [3/4] relabel: started (estimated 5 s)") == (2, 4, "relabel started")
    assert refine_progress("pseudo labels: 50%") is None


def test_widget_confidence_layer_save_corrections_and_refine(make_napari_viewer, qtbot, card_env, image_file,
                                                             fake_segmentation_with_confidence, monkeypatch):
    from ads_synth.data.images import read_label
    from ads_synth.integration import annotation_actions
    from ads_synth.integration.napari_widget import PseudoLabelWidget

    viewer = make_napari_viewer()
    widget = PseudoLabelWidget(viewer)
    qtbot.addWidget(widget)
    widget.model_combobox.setCurrentIndex(1)
    widget._on_refine_click()
    assert "no corrected image yet" in widget.last_message
    layer = viewer.open(str(image_file))[0]
    viewer.layers.selection.active = layer
    widget._on_apply_click()
    qtbot.waitUntil(lambda: widget.apply_button.isEnabled() and not widget.thread.isRunning(), timeout=60000)
    confidence = viewer.layers["sample_seg-confidence"]
    assert confidence.data.shape == (40, 50) and confidence.data.max() == pytest.approx(0.8)

    # the user deletes the axon and draws a new one elsewhere; saved in ADS's format, replacing the pseudo labels
    axon = viewer.layers["sample_seg-axon"]
    axon.data = np.zeros_like(axon.data)
    axon.data[20:25, 30:35] = 1
    viewer.layers.selection.active = layer
    widget._on_save_click()
    assert widget.corrected == [image_file], widget.last_message
    saved = read_label(image_file.with_name("sample_seg-axonmyelin.png"))
    assert (saved[20:25, 30:35] == 255).all() and (saved[8:12, 8:12] == 0).all() and (saved[5, 5:15] == 127).all()
    assert read_label(image_file.with_name("sample_seg-axon.png")).astype(bool).sum() == 25

    script = ("import sys\n"
              "for k, name in enumerate(['teacher', 'finetune', 'relabel', 'card'], 1):\n"
              "    print(f'ads-synth refine: [{k}/4] {name}: started', file=sys.stderr)\n"
              "    print(f'ads-synth refine: [{k}/4] {name}: done in 1 s', file=sys.stderr)\n"
              "print('TEST2FAKE_refined: 1 corrected + 0 re-pseudo-labelled image(s)')\n")
    seen = []
    monkeypatch.setattr(annotation_actions, "refine_command",
                        lambda family, corrected: seen.append((family, list(corrected))) or
                        [sys.executable, "-c", script])
    widget.refine_thread.progress.connect(lambda done, total, text: None)
    widget._on_refine_click()
    qtbot.waitUntil(lambda: widget.refine_button.isEnabled() and not widget.refine_thread.isRunning(),
                    timeout=60000)
    assert seen == [("TEST2FAKE", [image_file])]
    assert widget.progress_bar.value() == widget.progress_bar.maximum() == 4
    assert widget.last_message.startswith("TEST2FAKE_refined: 1 corrected")


def test_widget_rank_column_lists_the_folder_and_opens_a_row(make_napari_viewer, qtbot, card_env, image_file,
                                                             monkeypatch):
    """"Rank images to correct": the command runs in the background on the selected image's folder; its CSV (the
    format of ``ads-synth rank``, :func:`ads_synth.annotation.rank.rows_csv`) fills the table, first row on top;
    double-clicking a row opens that image."""
    from ads_synth.annotation.rank import COLUMNS
    from ads_synth.integration import annotation_actions
    from ads_synth.integration.napari_widget import PseudoLabelWidget

    other = image_file.with_name("other.png")
    Image.fromarray(np.full((40, 50), 90, np.uint8)).save(other)
    csv_path = image_file.parent / "rank.csv"
    rows = [{"rank": 1, "image": str(other), "priority": 0.9, "n_fibres": 12},
            {"rank": 2, "image": str(image_file), "priority": 0.25, "n_fibres": 40}]
    header = ",".join(COLUMNS)
    body = "\n".join(",".join(str(r.get(c, "")) for c in COLUMNS) for r in rows)
    script = f"open({str(csv_path)!r}, 'w').write({header!r} + '\\n' + {body!r} + '\\n'); print('ranked')"
    seen = []
    monkeypatch.setattr(annotation_actions, "rank_command",
                        lambda family, folder: seen.append((family, folder)) or
                        [sys.executable, "-c", script, "-o", str(csv_path)])

    viewer = make_napari_viewer()
    widget = PseudoLabelWidget(viewer)
    qtbot.addWidget(widget)
    widget._on_rank_click()
    assert widget.last_message == "No model selected"
    widget.model_combobox.setCurrentIndex(1)
    layer = viewer.open(str(image_file))[0]
    viewer.layers.selection.active = layer
    widget._on_rank_click()
    qtbot.waitUntil(lambda: widget.rank_button.isEnabled() and not widget.rank_thread.isRunning(), timeout=60000)
    assert seen == [("TEST2FAKE", image_file.parent)]
    assert widget.rank_table.rowCount() == 2
    assert [widget.rank_table.item(0, j).text() for j in range(4)] == ["1", "other.png", "0.900", "12"]
    assert widget.rank_table.item(1, 1).text() == image_file.name
    assert "correct other.png first" in widget.last_message
    opened = widget._on_rank_row_open(0)
    assert opened.source.path == str(other) and viewer.layers.selection.active is opened
    assert widget._on_rank_row_open(1) is layer  # already open: selected, not opened twice
    assert len(viewer.layers) == 2
