"""Rescaling images and label maps between pixel sizes.

Images use linear interpolation (``order=1``) with Gaussian anti-aliasing when shrinking and keep their dtype
and range; label maps use nearest neighbour (``order=0``) and keep their values. The output shape of
:func:`rescale` is ``round(shape * factor)`` (at least 1 px); :func:`resize_to` goes back to an exact shape.
Arrays are 2-D ``(H, W)`` or channel-first ``(C, H, W)`` (each channel resampled on its own).
"""

from __future__ import annotations

import numpy as np

from ads_synth.errors import InputError


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
