"""Rescaling images and label maps between pixel sizes.

Images use linear interpolation (``order=1``) with Gaussian anti-aliasing when shrinking and keep their dtype
and range; label maps use nearest neighbour (``order=0``) and keep their values. The output shape of
:func:`rescale` is ``round(shape * factor)`` (at least 1 px); :func:`resize_to` goes back to an exact shape.
Arrays are 2-D ``(H, W)`` or channel-first ``(C, H, W)`` (each channel resampled on its own).
"""

from __future__ import annotations

import math
import os

import numpy as np

from ads_synth.errors import InputError

#: Largest image, in megapixels, that a command rescales to a model's working pixel size (about 1.6 GB as float32);
#: the environment variable ``ADS_SYNTH_MAX_MEGAPIXELS`` changes it.
MAX_WORKING_MEGAPIXELS = 400.0
BUDGET_ENV = "ADS_SYNTH_MAX_MEGAPIXELS"
#: Smallest side, in pixels, of an image on a working grid.
MIN_WORKING_SIDE = 8


def pixel_budget() -> float:
    """The pixel budget in megapixels: ``$ADS_SYNTH_MAX_MEGAPIXELS``, else :data:`MAX_WORKING_MEGAPIXELS`."""
    value = os.environ.get(BUDGET_ENV, "").strip()
    if not value:
        return MAX_WORKING_MEGAPIXELS
    try:
        budget = float(value)
    except ValueError:
        budget = math.nan
    if not (math.isfinite(budget) and budget > 0):
        raise InputError(f"${BUDGET_ENV}={value!r}: give a positive number of megapixels, e.g. 400.")
    return budget


def check_working_size(shape, src_px, dst_px, *, what="the image", source=None, grid="the working grid",
                       total=0.0) -> tuple:
    """Refuse, before any work, an image that would not fit the pixel budget (or shrink below 8 px a side).

    Parameters
    ----------
    shape : (int, int)
        ``(height, width)`` of the image at ``src_px``.
    src_px, dst_px : float
        The image's pixel size and the working pixel size it is rescaled to (micrometres per pixel).
    what : str
        The image (its path), for the message.
    source : str, optional
        Where ``src_px`` was read (a file, an option); named in the message.
    grid : str
        What works at ``dst_px`` (e.g. ``"model TEM2SEM_tutor"``).
    total : float
        Pixels already taken by other images held at the same time (e.g. a training domain); counted in.

    Returns
    -------
    (int, int)
        The rescaled ``(height, width)``.

    Raises
    ------
    InputError
        One line: the size the image would have, the pixel size and where it was read, the budget.
    """
    h, w = int(shape[-2]), int(shape[-1])
    factor = float(src_px) / float(dst_px)
    new_h, new_w = h * factor, w * factor
    read = f" read from {source}" if source else ""
    hint = ("check the pixel size (micrometres per pixel: nanometres given as micrometres, or the reverse, are "
            "1000x off)")
    budget = pixel_budget()
    pixels = new_h * new_w
    if not math.isfinite(pixels) or (pixels + total) > budget * 1e6:
        size = (f"{new_w:,.0f} x {new_h:,.0f} px ({pixels / 1e6:,.0f} Mpx)" if math.isfinite(pixels)
                else f"{new_w:.3g} x {new_h:.3g} px")
        held = f" with {total / 1e6:,.0f} Mpx of other images" if total else ""
        raise InputError(
            f"{what}: {w} x {h} px at {float(src_px):g} um/px{read} would be {size} at the {float(dst_px):g} um/px "
            f"of {grid}{held}, over the pixel budget of {budget:g} Mpx; {hint}, or raise ${BUDGET_ENV}.")
    if min(new_h, new_w) < MIN_WORKING_SIDE - 0.5:
        raise InputError(
            f"{what}: {w} x {h} px at {float(src_px):g} um/px{read} would be {new_w:.3g} x {new_h:.3g} px at the "
            f"{float(dst_px):g} um/px of {grid}, smaller than {MIN_WORKING_SIDE} px a side; {hint}.")
    return max(1, int(round(new_h))), max(1, int(round(new_w)))


def scale_factor(src_px, dst_px) -> float:
    """Factor that takes an image at ``src_px`` micrometres per pixel to ``dst_px`` (``src_px / dst_px``)."""
    from ads_synth.data.images import check_pixel_size

    return check_pixel_size(src_px, "source pixel size") / check_pixel_size(dst_px, "target pixel size")


def _factors(factor):
    if np.ndim(factor) == 0:
        fy = fx = float(factor)
    else:
        fy, fx = (float(f) for f in factor)
    if not (np.isfinite(fy) and np.isfinite(fx)) or fy <= 0 or fx <= 0:
        raise ValueError(f"scale factor must be positive and finite, got {factor!r}")
    return fy, fx


def rescaled_shape(shape, factor) -> tuple[int, int]:
    """``round(shape * factor)`` for the last two axes of ``shape`` (each at least 1)."""
    fy, fx = _factors(factor)
    h, w = shape[-2:]
    return max(1, int(round(h * fy))), max(1, int(round(w * fx)))


def _resize_2d(img, out_shape, order, anti_aliasing):
    from skimage.transform import resize

    if tuple(img.shape) == tuple(out_shape):
        return img.copy()
    dtype = img.dtype
    if order == 0:
        # nearest neighbour by index lookup: exact values, any dtype, no float copy
        h, w = img.shape
        rows = np.minimum(((np.arange(out_shape[0]) + 0.5) * (h / out_shape[0])).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(out_shape[1]) + 0.5) * (w / out_shape[1])).astype(np.int64), w - 1)
        return img[rows[:, None], cols[None, :]]
    work = img.astype(np.float32) if dtype != np.float64 else img
    out = resize(
        work,
        out_shape,
        order=order,
        mode="reflect",
        anti_aliasing=anti_aliasing,
        preserve_range=True,
    )
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    elif dtype == bool:
        return out >= 0.5
    return out.astype(dtype, copy=False)


def resize_to(array, shape, order=1) -> np.ndarray:
    """Resize the last two axes of ``array`` to exactly ``shape`` = ``(height, width)``.

    ``order=1`` (images): linear, anti-aliased when shrinking, dtype and range kept; ``order=0`` (labels):
    nearest neighbour, values kept.
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"expected a (H, W) or (C, H, W) array, got shape {array.shape}")
    out_shape = (int(shape[-2]), int(shape[-1]))
    if min(out_shape) < 1:
        raise ValueError(f"target shape must be positive, got {shape!r}")
    shrinking = out_shape[0] < array.shape[-2] or out_shape[1] < array.shape[-1]
    anti_aliasing = bool(order > 0 and shrinking)
    if array.ndim == 2:
        return _resize_2d(array, out_shape, order, anti_aliasing)
    out = np.empty((array.shape[0],) + out_shape, dtype=array.dtype)
    for c in range(array.shape[0]):
        out[c] = _resize_2d(array[c], out_shape, order, anti_aliasing)
    return out


def rescale(array, factor, order=1) -> np.ndarray:
    """Rescale ``array`` by ``factor`` (a number or ``(fy, fx)``); output shape ``round(shape * factor)``.

    ``order=1`` for images (linear, anti-aliased when shrinking, dtype and range kept), ``order=0`` for label maps
    (nearest neighbour).
    """
    array = np.asarray(array)
    return resize_to(array, rescaled_shape(array.shape, factor), order=order)


#: Relative pixel-size difference below which an image is used as it is.
TOLERANCE = 1e-6


def rescale_to_pixel_size(array, src_px, dst_px, order=1) -> np.ndarray:
    """Rescale an image (``order=1``) or a label map (``order=0``) at ``src_px`` micrometres per pixel so that its
    pixels are ``dst_px`` micrometres: the one rescale-if-needed rule of the package.

    Returns ``array`` itself (no copy) when the two pixel sizes agree within :data:`TOLERANCE`.
    """
    if src_px is None:
        raise InputError("the image has no pixel size; give it with --pixel-size (micrometres per pixel).")
    factor = scale_factor(src_px, dst_px)
    if abs(factor - 1.0) <= TOLERANCE:
        return np.asarray(array)
    return rescale(array, factor, order=order)
