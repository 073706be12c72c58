"""Empty glass in an image: flat tiles, and the regions they form.

A whole-slide image is often a third empty glass around the section. The networks see the dust and bubbles of the
mounting medium there as fibres, and the tiles cost as much as tissue. A tile whose intensities vary by less than
:data:`FLAT_STD` times the image's own standard deviation is flat (:func:`flat_tiles`); flat tiles that touch form
regions (:func:`flat_regions`), and only regions of at least :data:`GLASS_MIN_TILES` tiles count. What is done
with them is the caller's: the segmentation confirms with its networks that a region is background and does not
run it (:func:`ads_synth.segmentation.sliding_window.glass_regions`); the translation gives each region its own mean
output (:func:`ads_synth.translation.translate.translate_image`). ``$ADS_SYNTH_GLASS`` (:func:`skip_glass`) turns
both off.
"""

from __future__ import annotations

import os

import numpy as np

from ads_synth.errors import InputError

FLAT_STD = 0.1
"""A tile is flat when its standard deviation is under this fraction of the image's. On the 40 Mpx bright-field
slide (bf-unlabeled) the tiles' standard deviations fall in two groups, glass at 0.02-0.1 of the image's and tissue
at 0.3-2; one small myelinated fibre (2 um across, 0.23 um pixels) in a 128 px tile already gives about 0.17."""

GLASS_MIN_TILES = 8
"""Flat regions with fewer tiles are treated as tissue."""

GLASS_SAMPLE = 4
"""Tiles of a flat region that are run to decide what it is."""

GLASS_ENV = "ADS_SYNTH_GLASS"
"""``skip`` (the default) or ``run``: whether glass is found and left out, when the caller does not say."""


def skip_glass(value=None) -> bool:
    """Whether to find glass and leave it out: ``value`` if given, else ``$ADS_SYNTH_GLASS`` (``skip`` / ``run``;
    default ``skip``)."""
    if value is not None:
        return bool(value)
    choice = os.environ.get(GLASS_ENV, "").strip().lower() or "skip"
    if choice not in ("skip", "run"):
        raise InputError(f"${GLASS_ENV}={choice!r}: use skip (leave empty glass out, the default) or run (run "
                         "every tile).")
    return choice == "skip"


def flat_tiles(data, ys, xs, patch, flat_std=FLAT_STD, image_std=None):
    """Which tiles of an image are flat.

    Parameters
    ----------
    data : numpy.ndarray or torch.Tensor
        ``(H, W)`` or ``(C, H, W)``: the image the tiles are cut from (at least a tile in each dimension).
    ys, xs : list of int
        Tile starts (rows, columns).
    patch : (int, int)
    flat_std : float
        A tile is flat when its standard deviation is below ``flat_std`` times the image's.
    image_std : float, optional
        The image's standard deviation; default estimated from every other pixel of ``data``.

    Returns
    -------
    numpy.ndarray of bool, shape ``(len(ys), len(xs))``
    """
    ph, pw = (int(p) for p in patch)
    arr = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
    if arr.ndim == 2:
        arr = arr[None]
    if image_std is None:
        image_std = arr[:, ::2, ::2].astype(np.float32).std()
    limit = float(flat_std) * float(image_std)
    flat = np.zeros((len(ys), len(xs)), bool)
    for i, y in enumerate(ys):
        band = arr[:, y:y + ph].astype(np.float32)
        for j, x in enumerate(xs):
            flat[i, j] = float(band[:, :, x:x + pw].std()) < limit
    return flat


def flat_regions(flat, min_tiles=GLASS_MIN_TILES, n_sample=GLASS_SAMPLE):
    """The regions of touching flat tiles (4-connected on the tile grid) with at least ``min_tiles`` tiles.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        Per region its tiles' ``(row, column)`` indices ``(n, 2)`` and ``n_sample`` of them spread over it in
        raster order (the tiles to run).
    """
    from skimage.measure import label

    regions = label(np.asarray(flat, bool), connectivity=1)
    out = []
    for r in range(1, int(regions.max()) + 1):
        where = np.argwhere(regions == r)
        if len(where) < int(min_tiles):
            continue
        pick = np.unique(np.linspace(0, len(where) - 1, min(int(n_sample), len(where))).round().astype(int))
        out.append((where, where[pick]))
    return out
