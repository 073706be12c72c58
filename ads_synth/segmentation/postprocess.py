"""Post-processing of predicted label maps, the AxonDeepSeg way.

Two steps, in this order:

1. **Specks**: connected axon or myelin components smaller than a minimum area become background
   (scikit-image's ``remove_small_objects``; AxonDeepSeg has no such function).
2. **Axons inside myelin**: background holes enclosed by myelin become axon, with AxonDeepSeg's own
   ``AxonDeepSeg.postprocessing.fill_myelin_holes`` (the "fill axons" action of its napari plugin; holes up to a
   tenth of the image area).
"""

from __future__ import annotations

import warnings

import numpy as np

from ads_synth.data.datasets import AXON, BACKGROUND, MYELIN

#: Smallest object kept, in square micrometres (a 0.1 x 0.1 um speck), when the pixel size is known.
MIN_AREA_UM2 = 0.01
#: Smallest object kept, in pixels (also the floor when the pixel size is known).
MIN_AREA_PX = 4


def min_area_pixels(pixel_size=None, min_area_um2=MIN_AREA_UM2, min_area_px=MIN_AREA_PX) -> int:
    """Minimum object area in pixels: ``min_area_um2`` at ``pixel_size``, at least ``min_area_px``."""
    if pixel_size is None:
        return int(min_area_px)
    return max(int(min_area_px), int(round(min_area_um2 / float(pixel_size) ** 2)))


def remove_specks(label_map, min_area) -> np.ndarray:
    """Axon and myelin components smaller than ``min_area`` pixels become background (a new array)."""
    out = np.array(label_map, dtype=np.uint8, copy=True)
    for cls in (AXON, MYELIN):
        mask = out == cls
        out[mask & ~_without_small_objects(mask, int(min_area))] = BACKGROUND
    return out


def _without_small_objects(mask, min_area):
    """scikit-image's ``remove_small_objects`` keeping objects of at least ``min_area`` px (any version)."""
    import inspect

    from skimage.morphology import remove_small_objects

    if "max_size" in inspect.signature(remove_small_objects).parameters:  # scikit-image >= 0.26
        return remove_small_objects(mask, max_size=min_area - 1, connectivity=1)
    return remove_small_objects(mask, min_size=min_area, connectivity=1)


def fill_axons(label_map) -> np.ndarray:
    """Background enclosed by myelin becomes axon (AxonDeepSeg's ``fill_myelin_holes``; a new array)."""
    from AxonDeepSeg.postprocessing import fill_myelin_holes

    out = np.array(label_map, dtype=np.uint8, copy=True)
    myelin = (out == MYELIN).astype(np.uint8)
    with warnings.catch_warnings():  # ADS 5.5.0 uses an argument scikit-image 0.26 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        holes = np.asarray(fill_myelin_holes(myelin)) > 0
    out[holes & (out == BACKGROUND)] = AXON
    return out


def postprocess_label_map(label_map, pixel_size=None, fill=True, min_area_um2=MIN_AREA_UM2,
                          min_area_px=MIN_AREA_PX) -> np.ndarray:
    """Remove specks, then fill axons inside myelin (see the module docstring).

    Parameters
    ----------
    label_map : numpy.ndarray
        uint8 ``(H, W)``: 0 background, 1 myelin, 2 axon.
    pixel_size : float, optional
        Micrometres per pixel of ``label_map`` (sets the speck size).
    fill : bool
        Fill axons inside myelin.
    min_area_um2, min_area_px : float, int
        Speck size (:func:`min_area_pixels`).

    Returns
    -------
    numpy.ndarray
        The post-processed label map (uint8).
    """
    out = remove_specks(label_map, min_area_pixels(pixel_size, min_area_um2, min_area_px))
    return fill_axons(out) if fill else out
