"""Intensity transforms of the no-translation baselines: inversion and histogram matching to L (numpy only).

* :func:`invert`: ``255 - img`` for uint8 (``max - img`` for any integer type; ``max + min - img`` for floats).
* :func:`histogram_match`: each pixel's rank in the U image is mapped to the same quantile of L's intensities.
  L's intensities are summarised by :data:`N_QUANTILES` quantiles (:func:`intensity_quantiles`), pooled over the
  labeled images, stored as ``intensity_reference.json`` (:data:`REFERENCE_FILE`, ``{"quantiles": [...]}``)
  beside the L model's ``ads_synth.json``, or computed from the labeled set by ``ads-synth pseudo``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ads_synth.atomic import atomic_write_text
from ads_synth.errors import InputError

#: Quantiles that describe a domain's intensities.
N_QUANTILES = 257
#: Where a model folder keeps its training images' reference quantiles.
REFERENCE_FILE = "intensity_reference.json"
#: At most this many pixels per image enter the reference (an even subsample).
_MAX_PIXELS = 1 << 20


def invert(image, reference=None):
    """The intensity-inverted image, same dtype: ``255 - img`` for uint8 (``reference`` is ignored)."""
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.integer):
        return (np.iinfo(image.dtype).max - image).astype(image.dtype)
    return (image.max() + image.min() - image).astype(image.dtype)


def intensity_quantiles(images, n=N_QUANTILES) -> np.ndarray:
    """``n`` quantiles (levels 0..1) of the pixel values of ``images`` pooled (each subsampled evenly)."""
    values = []
    for image in images:
        flat = np.asarray(image).ravel()
        step = max(1, flat.size // _MAX_PIXELS)
        values.append(flat[::step].astype(np.float64))
    if not values:
        raise InputError("no images to compute reference intensities from; give labeled images.")
    return np.quantile(np.concatenate(values), np.linspace(0.0, 1.0, n))


def histogram_match(image, reference):
    """``image`` with its histogram matched to the ``reference`` quantiles (same dtype; integers clipped).

    Raises
    ------
    InputError
        No reference (give the L model's ``intensity_reference.json``).
    """
    if reference is None:
        raise InputError(f"histmatch needs L's reference intensities: put {REFERENCE_FILE} beside the L model "
                         "(ads-synth pseudo writes it) or run ads-synth pseudo --strategy histmatch.")
    image = np.asarray(image)
    reference = np.asarray(reference, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, reference.size)
    values, inverse, counts = np.unique(image.ravel(), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - 0.5 * counts) / image.size  # mid-rank of each distinct value, in (0, 1)
    out = np.interp(ranks, levels, reference)[inverse].reshape(image.shape)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(image.dtype)
    return out.astype(image.dtype)


def save_reference(path, quantiles) -> Path:
    """Write reference quantiles to ``path`` (JSON, atomically)."""
    return atomic_write_text(Path(path), json.dumps({"quantiles": [float(q) for q in quantiles]}) + "\n")


def load_reference(path) -> np.ndarray:
    """Reference quantiles from ``path`` (a JSON file, or a model folder holding :data:`REFERENCE_FILE`)."""
    path = Path(path)
    if path.is_dir():
        path = path / REFERENCE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        quantiles = np.asarray(data["quantiles"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{path}: not a reference intensity file ({{\"quantiles\": [...]}}); recompute it with "
                         "ads-synth pseudo.") from None
    if quantiles.ndim != 1 or quantiles.size < 2 or np.any(np.diff(quantiles) < 0):
        raise InputError(f"{path}: the quantiles must be a non-decreasing list of 2 or more numbers.")
    return quantiles
