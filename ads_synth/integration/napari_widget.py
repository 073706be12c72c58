"""The napari widget "Pseudo labels" (contributed by ``ads_synth/napari.yaml``) beside AxonDeepSeg's own widget.

It lists the installed model cards, runs :func:`ads_synth.integration.pseudo_action.pseudo_label_file` on the
selected image layer's file in a worker thread (as AxonDeepSeg's ``ApplyModelThread`` does) and adds the axon and
myelin masks as labels layers with AxonDeepSeg's names, colours and metadata (``<image>_seg-axon`` in blue,
``<image>_seg-myelin`` in red, ``associated_image_name``; the image layer gets ``associated_axon_mask_name``,
``associated_myelin_mask_name`` and ``pixel_size``), so AxonDeepSeg's widget (fill axons, remove axons, compute
morphometrics, save segmentation) works on the pseudo labels unchanged. Messages go to napari's notifications.

The annotation loop (issue 14): the confidence map of the pseudo labels is added as an image layer
(``<image>_seg-confidence``); "Save corrected masks" writes the edited axon and myelin layers in AxonDeepSeg's
format beside the image; "Rank images to correct" runs ``ads-synth rank`` on the selected image's folder in the
background and lists the images in a table, the one to correct first on top (double-click a row to open it);
"Refine with my corrections" runs ``ads-synth refine`` in the background (a subprocess,
:mod:`ads_synth.integration.annotation_actions`) with a progress bar over its phases, for the family of the selected
card, the images corrected in this session and the other images of their folder.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QThread, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

#: First entry of the model list, as in AxonDeepSeg's widget.
NO_MODEL = "Select the model"
#: The ranking table's columns: (CSV column of ``ads-synth rank``, title).
RANK_COLUMNS = (("rank", "#"), ("image", "image"), ("priority", "priority"), ("n_fibres", "fibres"))


class PseudoLabelThread(QThread):
    """Runs the pseudo-labelling of one image off the GUI thread; emits ``done(result, error)``."""

    done = Signal(object, object)

    def __init__(self):
        super().__init__()
        self.image = None
        self.card_name = None
        self.gpu_id = -1
        self.overwrite = False

    def run(self):
        """Pseudo-label ``self.image`` with ``self.card_name``; emit the result, or the error message."""
        from ads_synth.errors import InputError
        from ads_synth.integration.pseudo_action import pseudo_label_file

        try:
            result = pseudo_label_file(
                self.image, self.card_name, gpu_id=self.gpu_id, overwrite=self.overwrite
            )
        except InputError as err:
            self.done.emit(None, str(err))
            return
        except Exception as err:  # noqa: BLE001 - shown to the user rather than lost in the thread
            self.done.emit(None, f"pseudo-labelling failed: {type(err).__name__}: {err}")
            return
        self.done.emit(result, None)


class CommandThread(QThread):
    """Runs an ``ads-synth`` command (``self.argv``) as a subprocess; emits ``progress(done, total, text)`` for each
    line that ``self.parse`` (a function of one line, or None) reads as progress, and ``finished_run(code, last
    line)`` at the end."""

    progress = Signal(int, int, str)
    finished_run = Signal(int, str)

    def __init__(self, parse=None):
        super().__init__()
        self.argv = None
        self.parse = parse

    def run(self):
        import subprocess

        last = ""
        try:
            proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    bufsize=1)
        except OSError as err:
            self.finished_run.emit(2, f"could not start {' '.join(self.argv[3:5])}: {err}")
            return
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            got = self.parse(line) if self.parse else None
            if got is not None:
                self.progress.emit(*got)
            if "%|" not in line:  # tqdm bars are not messages
                last = line
        self.finished_run.emit(proc.wait(), last)


class PseudoLabelWidget(QWidget):
    """napari dock widget: pseudo-label the selected image with a card of the model family."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.last_message = None
        self.last_result = None
        self._layer = None

        self.model_combobox = QComboBox()
        self.refresh_models()
        refresh_button = QPushButton("Refresh")
        refresh_button.setToolTip("Read the model cards again (after `ads-synth models install`).")
        refresh_button.clicked.connect(self.refresh_models)
        models_row = QHBoxLayout()
        models_row.addWidget(self.model_combobox, 1)
        models_row.addWidget(refresh_button)

        self.gpu_spinbox = QSpinBox()
        self.gpu_spinbox.setRange(-1, 64)
        self.gpu_spinbox.setValue(-1)
        self.gpu_spinbox.setToolTip("GPU ID (-1: the CPU), as AxonDeepSeg's --gpu-id.")
        gpu_row = QHBoxLayout()
        gpu_row.addWidget(QLabel("GPU ID"))
        gpu_row.addWidget(self.gpu_spinbox, 1)

        self.overwrite_checkbox = QCheckBox("Overwrite existing segmentation files")
        self.apply_button = QPushButton("Pseudo-label image")
        self.apply_button.setToolTip("Select the image layer (opened from a file) and a model.")
        self.apply_button.clicked.connect(self._on_apply_click)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        self.corrected = []  # images whose corrected masks were saved in this session
        self.save_button = QPushButton("Save corrected masks")
        self.save_button.setToolTip("Write the edited axon and myelin layers of the selected image in AxonDeepSeg's "
                                    "format beside it (read by ads-synth refine).")
        self.save_button.clicked.connect(self._on_save_click)
        self.refine_button = QPushButton("Refine with my corrections")
        self.refine_button.setToolTip("Fine-tune the selected model's family on the corrected images and "
                                      "pseudo-label the other images of their folder again (ads-synth refine).")
        self.refine_button.clicked.connect(self._on_refine_click)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 4)
        self.progress_bar.setValue(0)

        self.rank_button = QPushButton("Rank images to correct")
        self.rank_button.setToolTip("Order the images of the selected image's folder by how much correcting them "
                                    "should help (ads-synth rank); double-click a row to open the image.")
        self.rank_button.clicked.connect(self._on_rank_click)
        self.rank_table = QTableWidget(0, len(RANK_COLUMNS))
        self.rank_table.setHorizontalHeaderLabels([title for _, title in RANK_COLUMNS])
        self.rank_table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.rank_table.cellDoubleClicked.connect(self._on_rank_row_open)
        self.ranking = []

        self.thread = PseudoLabelThread()
        self.thread.done.connect(self._on_done)
        from ads_synth.integration.annotation_actions import refine_progress

        self.rank_thread = CommandThread()
        self.rank_thread.finished_run.connect(self._on_rank_done)
        self.refine_thread = CommandThread(refine_progress)
        self.refine_thread.progress.connect(self._on_refine_progress)
        self.refine_thread.finished_run.connect(self._on_refine_done)

        self.setLayout(QVBoxLayout())
        self.layout().addWidget(QLabel("Pseudo labels for an unlabeled modality (ads-synth)"))
        self.layout().addLayout(models_row)
        self.layout().addLayout(gpu_row)
        self.layout().addWidget(self.overwrite_checkbox)
        self.layout().addWidget(self.apply_button)
        self.layout().addWidget(self.rank_button)
        self.layout().addWidget(self.rank_table)
        self.layout().addWidget(self.save_button)
        self.layout().addWidget(self.refine_button)
        self.layout().addWidget(self.progress_bar)
        self.layout().addWidget(self.status_label)
        self.layout().addStretch()

    # ------------------------------------------------------------------------------------------------------------
    def refresh_models(self):
        """Fill the model list with the installed cards (``'<name>  (<source> -> <target>, <strategy>)'``)."""
        from ads_synth.errors import InputError
        from ads_synth.integration.pseudo_action import installed_cards

        try:
            cards = installed_cards()
        except InputError as err:
            cards = []
            self.show_message(str(err))
        self.available_models = [c.name for c in cards]
        self.model_combobox.clear()
        self.model_combobox.addItem(NO_MODEL)
        for c in cards:
            self.model_combobox.addItem(f"{c.name}  ({c.description})", c.name)

    def selected_model(self):
        """The selected card name, or None."""
        return self.model_combobox.currentData()

    def show_message(self, message, warning=False):
        """Show ``message`` as a napari notification (non-blocking) and in the widget."""
        from napari.utils.notifications import show_info, show_warning

        self.last_message = message
        self.status_label.setText(message)
        (show_warning if warning else show_info)(message)

    def _selected_image_layer(self):
        import napari

        selection = self.viewer.layers.selection
        layer = selection.active if len(selection) == 1 else None
        if isinstance(layer, napari.layers.Labels) and "associated_image_name" in layer.metadata:
            name = layer.metadata["associated_image_name"]
            layer = next((lay for lay in self.viewer.layers if lay.name == name), None)
        return layer if isinstance(layer, napari.layers.Image) else None

    # ------------------------------------------------------------------------------------------------------------
    def _on_apply_click(self):
        card_name = self.selected_model()
        if card_name not in self.available_models:
            self.show_message("No model selected")
            return
        layer = self._selected_image_layer()
        if layer is None:
            self.show_message("No single image selected")
            return
        if not layer.source.path:
            self.show_message(f"The layer {layer.name} has no file: open the image from a file to pseudo-label it")
            return
        self._layer = layer
        self.thread.image = Path(layer.source.path)
        self.thread.card_name = card_name
        self.thread.gpu_id = self.gpu_spinbox.value()
        self.thread.overwrite = self.overwrite_checkbox.isChecked()
        self.apply_button.setEnabled(False)
        self.show_message(f"Pseudo-labelling {layer.name} with {card_name}... (see the terminal for progress)")
        self.thread.start()

    def _on_done(self, result, error):
        self.apply_button.setEnabled(True)
        if error is not None:
            self.show_message(error, warning=True)
            return
        self.last_result = result
        for message in result.warnings:
            self.show_message(message, warning=True)
        self.add_result_layers(self._layer, result)
        self.show_message(f"Pseudo labels written: {result.axonmyelin}")

    def add_result_layers(self, image_layer, result):
        """Add the axon and myelin masks of ``result`` as AxonDeepSeg-style labels layers of ``image_layer``."""
        from ads_synth.data.images import read_pixel_size
        from ads_synth.data.writers import AXON_SUFFIX, MYELIN_SUFFIX
        from ads_synth.integration.pseudo_action import read_masks

        masks = read_masks(result)
        base = image_layer.name
        names = {"axon": base + Path(AXON_SUFFIX).stem, "myelin": base + Path(MYELIN_SUFFIX).stem}
        for kind, colour in (("axon", "blue"), ("myelin", "red")):
            existing = next((lay for lay in self.viewer.layers if lay.name == names[kind]), None)
            if existing is not None:
                self.viewer.layers.remove(existing)
            self.viewer.add_labels(
                masks[kind],
                colormap={None: "transparent", 1: colour},
                name=names[kind],
                metadata={"associated_image_name": base, "ads_synth_card": result.card},
            )
        from ads_synth.integration.annotation_actions import read_confidence

        confidence = read_confidence(result.image)
        if confidence is not None:
            name = base + "_seg-confidence"
            existing = next((lay for lay in self.viewer.layers if lay.name == name), None)
            if existing is not None:
                self.viewer.layers.remove(existing)
            self.viewer.add_image(confidence, name=name, colormap="viridis", opacity=0.5, contrast_limits=(0, 1),
                                  visible=False, metadata={"associated_image_name": base})
        image_layer.metadata["associated_axon_mask_name"] = names["axon"]
        image_layer.metadata["associated_myelin_mask_name"] = names["myelin"]
        pixel_size = read_pixel_size(result.image)
        if pixel_size is not None:
            image_layer.metadata["pixel_size"] = pixel_size
        self.viewer.layers.selection.active = image_layer

    # -- the annotation loop -----------------------------------------------------------------------------------
    def _on_save_click(self):
        from ads_synth.errors import InputError
        from ads_synth.integration.annotation_actions import save_corrected_masks

        layer = self._selected_image_layer()
        if layer is None or not layer.source.path:
            self.show_message("No single image (opened from a file) selected")
            return
        masks = {}
        for kind in ("axon", "myelin"):
            name = layer.metadata.get(f"associated_{kind}_mask_name")
            found = next((lay for lay in self.viewer.layers if lay.name == name), None) if name else None
            if found is None:
                self.show_message(f"{layer.name} has no {kind} mask layer: pseudo-label it first", warning=True)
                return
            masks[kind] = found.data
        try:
            written = save_corrected_masks(layer.source.path, masks["axon"], masks["myelin"])
        except InputError as err:
            self.show_message(str(err), warning=True)
            return
        image = Path(layer.source.path)
        if image not in self.corrected:
            self.corrected.append(image)
        self.show_message(f"Corrected masks saved: {written[-1].name} ({len(self.corrected)} corrected image(s))")

    def _on_refine_click(self):
        from ads_synth.errors import InputError
        from ads_synth.integration.annotation_actions import refine_command
        from ads_synth.cards.lookup import get_card

        card_name = self.selected_model()
        if card_name not in self.available_models:
            self.show_message("No model selected")
            return
        try:
            argv = refine_command(get_card(card_name).pair, self.corrected)
        except InputError as err:
            self.show_message(str(err), warning=True)
            return
        self.refine_thread.argv = argv
        self.refine_button.setEnabled(False)
        self.progress_bar.setValue(0)
        self.show_message(f"Refining with {len(self.corrected)} corrected image(s)... (runs in the background)")
        self.refine_thread.start()

    def _on_rank_click(self):
        from ads_synth.cards.lookup import get_card
        from ads_synth.errors import InputError
        from ads_synth.integration.annotation_actions import rank_command

        card_name = self.selected_model()
        if card_name not in self.available_models:
            self.show_message("No model selected")
            return
        layer = self._selected_image_layer()
        if layer is None or not layer.source.path:
            self.show_message("No single image (opened from a file) selected: its folder's images are ranked")
            return
        try:
            argv = rank_command(get_card(card_name).pair, Path(layer.source.path).parent)
        except InputError as err:
            self.show_message(str(err), warning=True)
            return
        self.rank_thread.argv = argv
        self.rank_button.setEnabled(False)
        self.show_message(f"Ranking the images of {Path(layer.source.path).parent}... (runs in the background)")
        self.rank_thread.start()

    def _on_rank_done(self, code, last):
        from ads_synth.errors import InputError
        from ads_synth.integration.annotation_actions import read_ranking

        self.rank_button.setEnabled(True)
        if code != 0:
            self.show_message(last or f"ads-synth rank failed (exit {code})", warning=True)
            return
        csv_path = Path(self.rank_thread.argv[self.rank_thread.argv.index("-o") + 1])
        try:
            self.show_ranking(read_ranking(csv_path))
        except InputError as err:
            self.show_message(str(err), warning=True)
            return
        first = self.ranking[0]["image"].name if self.ranking else "no image"
        self.show_message(f"Ranking written to {csv_path}: correct {first} first")

    def show_ranking(self, rows):
        """Fill the ranking table with ``rows`` (:func:`~ads_synth.integration.annotation_actions.read_ranking`)."""
        self.ranking = list(rows)
        self.rank_table.setRowCount(len(self.ranking))
        for i, row in enumerate(self.ranking):
            for j, (key, _) in enumerate(RANK_COLUMNS):
                value = row[key]
                text = value.name if key == "image" else f"{value:.3f}" if isinstance(value, float) else str(value)
                self.rank_table.setItem(i, j, QTableWidgetItem(text))
        self.rank_table.resizeColumnsToContents()

    def _on_rank_row_open(self, row, _column=0):
        """Open (or select, when already open) the image of the ranking's ``row``."""
        image = self.ranking[row]["image"]
        layer = next((lay for lay in self.viewer.layers
                      if getattr(lay.source, "path", None) and Path(lay.source.path) == image), None)
        if layer is None:
            layer = self.viewer.open(str(image))[0]
        self.viewer.layers.selection.active = layer
        return layer

    def _on_refine_progress(self, done, total, text):
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(done)
        self.status_label.setText(f"refine: {text}")

    def _on_refine_done(self, code, last):
        self.refine_button.setEnabled(True)
        if code == 0:
            self.progress_bar.setValue(self.progress_bar.maximum())
            self.refresh_models()
            self.show_message(last or "Refine finished")
        else:
            self.show_message(last or f"ads-synth refine failed (exit {code})", warning=True)
