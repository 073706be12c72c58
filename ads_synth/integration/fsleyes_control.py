"""An FSLeyes control panel "ads-synth pseudo labels" (entry point group ``fsleyes_controls``).

FSLeyes opens 2-D microscopy images (PNG, TIFF, JPEG) as bitmaps converted to images whose ``dataSource`` is the
file. The control lists the installed model cards, runs
:func:`ads_synth.integration.pseudo_action.pseudo_label_file` on the selected overlay's file and adds the axon and
myelin masks as ``mask`` overlays (blue and red, AxonDeepSeg's colours).

The logic (:func:`card_choices`, :func:`overlay_image_path`, :func:`pseudo_label_overlay`,
:func:`result_overlays`, :func:`add_result_overlays`) needs neither wx nor FSLeyes. The wx class
``PseudoLabelControl`` is built on first access (module ``__getattr__``), so this module imports without wx and
FSLeyes only loads it when it looks the entry point up.
"""

from __future__ import annotations

from pathlib import Path

from ads_synth.errors import InputError

TITLE = "ads-synth pseudo labels"
#: Mask overlay colours (RGB in [0, 1]): AxonDeepSeg's napari colours.
COLOURS = {"axon": (0.0, 0.0, 1.0), "myelin": (1.0, 0.0, 0.0)}


def card_choices() -> list:
    """``[(label, card name), ...]`` of the installed cards, for the model choice."""
    from ads_synth.integration.pseudo_action import installed_cards

    return [(f"{c.name} ({c.description})", c.name) for c in installed_cards()]


def overlay_image_path(overlay) -> Path:
    """The image file an FSLeyes overlay was loaded from; InputError when it has none."""
    if overlay is None:
        raise InputError("no overlay selected: load the image (PNG, TIFF, JPEG) and select it.")
    source = getattr(overlay, "dataSource", None)
    if not source:
        raise InputError(f"overlay {getattr(overlay, 'name', '?')} has no file: load the image from a file.")
    return Path(source)


def pseudo_label_overlay(overlay, card_name, gpu_id=-1, overwrite=False):
    """Pseudo-label the file of ``overlay`` with ``card_name``; return the :class:`PseudoLabelResult`."""
    from ads_synth.integration.pseudo_action import pseudo_label_file

    if not card_name:
        raise InputError("no model selected: choose a model card (see `ads-synth models list`).")
    return pseudo_label_file(overlay_image_path(overlay), card_name, gpu_id=gpu_id, overwrite=overwrite)


def result_overlays(result) -> list:
    """``[(mask file, overlay name, display properties), ...]`` to add for a pseudo-label result."""
    out = []
    for kind in ("axon", "myelin"):
        path = getattr(result, kind)
        name = Path(path).name.rsplit(".", 1)[0]
        out.append((Path(path), name, {"overlayType": "mask", "colour": COLOURS[kind], "name": name}))
    return out


def add_result_overlays(overlay_list, result, load=None) -> list:
    """Append the masks of ``result`` to an FSLeyes ``OverlayList``; return the added overlays.

    ``load(path)`` turns a PNG into an FSLeyes overlay (default: ``fsl.data.bitmap.Bitmap(path).asImage()``).
    """
    if load is None:
        from fsl.data.bitmap import Bitmap

        def load(path):
            return Bitmap(str(path)).asImage()

    added = []
    for path, _name, props in result_overlays(result):
        image = load(path)
        overlay_list.append(image, **props)
        added.append(image)
    return added


def _build_control_class():
    """Define the wx ``ControlPanel`` subclass (needs wx and FSLeyes)."""
    import wx
    import fsleyes.controls.controlpanel as ctrlpanel

    class PseudoLabelControl(ctrlpanel.ControlPanel):
        """FSLeyes control: pseudo-label the selected overlay's image with a model card."""

        @staticmethod
        def title():
            return TITLE

        @staticmethod
        def defaultLayout():
            return {"location": wx.RIGHT}

        def __init__(self, parent, overlayList, displayCtx, viewPanel):
            super().__init__(parent, overlayList, displayCtx, viewPanel)
            self.__choices = card_choices()
            self.__model = wx.Choice(self, choices=[label for label, _ in self.__choices])
            if self.__choices:
                self.__model.SetSelection(0)
            self.__gpu = wx.SpinCtrl(self, min=-1, max=64, initial=-1)
            self.__overwrite = wx.CheckBox(self, label="Overwrite existing segmentation files")
            self.__button = wx.Button(self, label="Pseudo-label image")
            self.__status = wx.StaticText(self, label="" if self.__choices else "No model installed "
                                          "(ads-synth models install --archive FILE.zip)")
            sizer = wx.BoxSizer(wx.VERTICAL)
            for item in (self.__model, self.__gpu, self.__overwrite, self.__button, self.__status):
                sizer.Add(item, flag=wx.EXPAND | wx.ALL, border=4)
            self.SetSizer(sizer)
            self.__button.Bind(wx.EVT_BUTTON, self.__on_run)

        def __on_run(self, ev):
            index = self.__model.GetSelection()
            card_name = self.__choices[index][1] if index != wx.NOT_FOUND and self.__choices else None
            overlay = self.displayCtx.getSelectedOverlay()
            self.__button.Disable()
            self.__status.SetLabel("Pseudo-labelling... (see the terminal for progress)")
            wx.Yield()
            try:
                result = pseudo_label_overlay(overlay, card_name, self.__gpu.GetValue(),
                                              self.__overwrite.GetValue())
            except InputError as err:
                self.__status.SetLabel(str(err))
                return
            finally:
                self.__button.Enable()
            add_result_overlays(self.overlayList, result)
            self.__status.SetLabel("\n".join(result.warnings + [f"Written: {result.axonmyelin}"]))

    return PseudoLabelControl


def __getattr__(name):
    if name == "PseudoLabelControl":
        cls = _build_control_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
