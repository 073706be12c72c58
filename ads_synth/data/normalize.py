"""Per-image intensity normalisation to [-1, 1] with percentile clipping, and its inverse.

``x = clip((img - lo) / (hi - lo), 0, 1) * 2 - 1`` with ``lo`` / ``hi`` the ``low`` / ``high`` percentiles of the
image (default 0.5 and 99.5). :func:`denormalize` maps ``[-1, 1]`` back to ``[lo, hi]`` in the original dtype
(values outside [-1, 1] are clipped; integers rounded). For large images compute the parameters once with
:func:`normalization_params` and apply them per tile with :func:`apply_normalization`.

Percentiles of uint8 / uint16 images come from a histogram (exactly ``np.percentile``'s linear method, without
sorting a copy of the image).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class NormParams:
    """What :func:`denormalize` needs: the clip range ``low`` .. ``high`` and the original dtype name."""

    low: float
    high: float
    dtype: str = "uint8"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d) -> "NormParams":
        return cls(float(d["low"]), float(d["high"]), str(d.get("dtype", "uint8")))


def _percentiles(img, qs):
    img = np.asarray(img)
    if img.dtype in (np.uint8, np.uint16, bool):
        counts = np.bincount(img.ravel().astype(np.intp, copy=False) if img.dtype == bool else img.ravel())
        cum = np.cumsum(counts)
        n = int(cum[-1])
        out = []
        for q in qs:
            pos = q / 100.0 * (n - 1)
            k0 = int(np.floor(pos))
            k1 = min(k0 + 1, n - 1)
            v0 = int(np.searchsorted(cum, k0, side="right"))
            v1 = int(np.searchsorted(cum, k1, side="right"))
            out.append(v0 + (pos - k0) * (v1 - v0))
        return out
    finite = img[np.isfinite(img)] if np.issubdtype(img.dtype, np.floating) else img
    if finite.size == 0:
        return [0.0 for _ in qs]
    return [float(v) for v in np.percentile(finite, qs)]


def normalization_params(img, low=0.5, high=99.5) -> NormParams:
    """Percentile clip range of ``img`` (``low`` / ``high`` in percent) and its dtype."""
    if not 0 <= low < high <= 100:
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    lo, hi = _percentiles(img, (low, high))
    return NormParams(float(lo), float(hi), np.asarray(img).dtype.name)


def apply_normalization(img, params: NormParams) -> np.ndarray:
    """Map ``img`` to float32 in [-1, 1] with given parameters (a constant image maps to -1)."""
    x = np.asarray(img, dtype=np.float32)
    span = params.high - params.low
    if span <= 0:
        return np.full(x.shape, -1.0, dtype=np.float32)
    x = (x - np.float32(params.low)) * np.float32(2.0 / span) - np.float32(1.0)
    np.clip(x, -1.0, 1.0, out=x)
    return x


def normalize(img, low=0.5, high=99.5):
    """Return ``(x, params)``: ``img`` as float32 in [-1, 1] (percentile clipped) and the :class:`NormParams`."""
    params = normalization_params(img, low, high)
    return apply_normalization(img, params), params


def to_uint8(x) -> np.ndarray:
    """Normalised values in [-1, 1] (clipped) as 8-bit grey levels: -1 -> 0, 1 -> 255."""
    return np.rint((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def denormalize(x, params) -> np.ndarray:
    """Inverse of :func:`normalize`: [-1, 1] -> [low, high] in the original dtype (clipped, integers rounded)."""
    if isinstance(params, dict):
        params = NormParams.from_dict(params)
    y = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    span = max(params.high - params.low, 0.0)
    y = (y + np.float32(1.0)) * np.float32(span / 2.0) + np.float32(params.low)
    dtype = np.dtype(params.dtype)
    if dtype == bool:
        return y >= 0.5
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        np.rint(y, out=y)
        np.clip(y, info.min, info.max, out=y)
        return y.astype(dtype)
    return y.astype(dtype, copy=False)


#: An image whose 0.5-99.5 percentile range spans less than this fraction of its dtype's range (uint8: about 5
#: grey levels) has no structure to segment: all black, all white, or flat.
MIN_CONTRAST = 0.02


def is_blank(img, min_contrast=MIN_CONTRAST) -> bool:
    """True for an image without structure: its 0.5-99.5 percentile range (the range :func:`normalize` stretches
    to [-1, 1]) is below ``min_contrast`` of the dtype's range (of 1.0 for float images)."""
    img = np.asarray(img)
    lo, hi = _percentiles(img, (0.5, 99.5))
    full = float(np.iinfo(img.dtype).max - np.iinfo(img.dtype).min) if np.issubdtype(img.dtype, np.integer) else 1.0
    return (hi - lo) < min_contrast * full
