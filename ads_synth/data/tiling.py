"""Overlapping tiles with smooth cosine blending, in memory bounded by one band (row) of tiles.

:func:`apply_tiled` cuts a 2-D image into ``tile x tile`` tiles that overlap by at least ``overlap`` pixels
(spread evenly so that the last tile ends at the image border), calls ``fn`` on batches of tiles, and blends the
results with separable cosine windows::

    out = sum_k w_k * fn(tile_k) / sum_k w_k

Each window is 1 in the tile's middle and rises as ``sin^2`` over the overlap with each neighbouring tile (flat
on sides at the image border), so the weights of two neighbours add up to 1 across their overlap, no weight is
ever zero inside the image, and the identity function reproduces the image to float32 precision. Tiles are
processed band by band (all tiles of one tile row); only one band of float32 accumulators (``C x tile x W``) is
held, and rows are written to the output (a new array, or a caller-provided ``out`` such as a ``np.memmap``) as
soon as no later tile touches them. Images smaller than a tile are padded (reflect) and cropped back.
"""

from __future__ import annotations

import math

import numpy as np


def _pair(value, name):
    if np.ndim(value) == 0:
        a = b = int(value)
    else:
        a, b = (int(v) for v in value)
    return a, b


def _positions_1d(length, tile, overlap):
    length, tile, overlap = int(length), int(tile), int(overlap)
    if tile < 1:
        raise ValueError(f"tile must be at least 1 px, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap} for tile={tile}")
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    n = max(n, 2)
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


def tile_positions(length, tile, overlap):
    """Start positions of overlapping tiles.

    ``length`` an int: the start offsets along one axis (``[0]`` when ``length <= tile``; the image is then
    padded to ``tile``). ``length`` a shape ``(H, W)``: the list of ``(y, x)`` tile corners, row by row.
    ``tile`` and ``overlap`` may be ints or ``(y, x)`` pairs. Consecutive tiles overlap by at least ``overlap``
    pixels, spread evenly, and the last tile ends at the (padded) border.
    """
    if np.ndim(length) == 0:
        return _positions_1d(length, tile if np.ndim(tile) == 0 else tile[0], overlap if np.ndim(overlap) == 0
                             else overlap[0])
    th, tw = _pair(tile, "tile")
    oy, ox = _pair(overlap, "overlap")
    ys = _positions_1d(max(int(length[0]), th), th, oy)
    xs = _positions_1d(max(int(length[1]), tw), tw, ox)
    return [(y, x) for y in ys for x in xs]


def _ramp(n):
    """Rising half-cosine ``sin^2(pi/2 * (i + 0.5) / n)``, strictly between 0 and 1."""
    i = np.arange(n, dtype=np.float64) + 0.5
    return np.sin(0.5 * np.pi * i / n) ** 2


def axis_windows(starts, tile):
    """One 1-D blending window per tile start: 1 in the middle, ``sin^2`` ramps across each neighbour's overlap."""
    windows = []
    for k, s in enumerate(starts):
        w = np.ones(tile, dtype=np.float64)
        if k > 0:
            r = min(starts[k - 1] + tile - s, tile // 2)
            if r > 0:
                w[:r] *= _ramp(r)
        if k < len(starts) - 1:
            r = min(s + tile - starts[k + 1], tile // 2)
            if r > 0:
                w[tile - r:] *= _ramp(r)[::-1]
        windows.append(w.astype(np.float32))
    return windows


def _progress(total, enabled, desc):
    if not enabled:
        return None
    if hasattr(enabled, "update"):  # the caller's bar (e.g. over every tile of a whole run): not closed here
        return enabled
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is installed with ADS
        return None
    return tqdm(total=total, desc=desc, unit="tile", leave=False)


def _read_band(image, y, th, height, width, hp, wp, pad_mode):
    if hp > height:
        band = np.asarray(image[0:height], dtype=np.float32)
    else:
        band = np.asarray(image[y:y + th], dtype=np.float32)
    pad_rows = hp - height if hp > height else 0
    pad_cols = wp - width
    if pad_rows or pad_cols:
        band = np.pad(band, ((0, pad_rows), (0, pad_cols)), mode=pad_mode)
    return band


def _cast_rows(block, dtype):
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if np.issubdtype(block.dtype, np.floating):
            block = np.rint(block, out=block if block.flags.writeable else None)
            np.clip(block, info.min, info.max, out=block)
        else:
            block = np.clip(block, info.min, info.max)
    elif dtype == bool:
        return block >= 0.5
    return block.astype(dtype, copy=False)


def apply_tiled(image, fn, tile, overlap, batch_size=4, out=None, progress=True, *, postprocess=None,
                out_dtype=np.float32, pad_mode="reflect", desc="tiles", fill=None):
    """Apply ``fn`` to overlapping tiles of a 2-D ``image`` and blend the results with cosine weights.

    Parameters
    ----------
    image : 2-D array-like (``ndarray``, ``np.memmap``, anything sliceable by rows), any real dtype.
    fn : callable mapping a float32 batch ``(B, th, tw)`` (``B <= batch_size``) to ``(B, th, tw)`` or
        ``(B, C, th, tw)`` (anything ``np.asarray`` accepts). Tiles hold the raw image values as float32.
    tile, overlap : int or ``(y, x)``; ``0 <= overlap < tile``.
    batch_size : tiles per ``fn`` call (batches do not cross tile rows).
    out : optional preallocated output (e.g. a ``np.memmap``) of shape ``(H, W)`` or ``(C, H, W)`` (or the shape
        ``postprocess`` produces); written row block by row block.
    progress : show a tqdm bar over tiles; or a tqdm bar (anything with ``update``) to advance by one per tile.
    postprocess : optional callable applied to each finished block of rows, a float32 ``(rows, W)`` or
        ``(C, rows, W)`` array, returning the array to store (e.g. ``uint8`` values or an argmax label map
        ``(rows, W)``); the output takes its dtype and leading shape.
    out_dtype : dtype of the returned array when ``out`` and ``postprocess`` are not given (float32 by default;
        float16 or uint8 keep the output small; integers are rounded and clipped).
    pad_mode : ``np.pad`` mode for images smaller than a tile (cropped back afterwards).
    fill : optional float array ``(n_rows, n_cols)`` over the tiles (:func:`tile_positions` of each axis): where it
        is not NaN, the tile is not passed to ``fn`` and its result is that constant (``fn`` returning 3-D results).

    Returns
    -------
    The output array: float32 ``(H, W)`` for a 3-D ``fn`` result, ``(C, H, W)`` for a 4-D one (or ``out``).
    """
    shape = np.shape(image)
    if len(shape) != 2:
        raise ValueError(f"apply_tiled expects a 2-D image, got shape {shape}")
    height, width = int(shape[0]), int(shape[1])
    if height < 1 or width < 1:
        raise ValueError(f"empty image of shape {shape}")
    th, tw = _pair(tile, "tile")
    oy, ox = _pair(overlap, "overlap")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    hp, wp = max(height, th), max(width, tw)
    ys = _positions_1d(hp, th, oy)
    xs = _positions_1d(wp, tw, ox)
    wys, wxs = axis_windows(ys, th), axis_windows(xs, tw)

    state = {"acc": None, "wsum": None, "channels": None, "squeeze": False, "out": out}

    def finish(n_rows, top):
        """Normalise accumulator rows [0, n_rows) (image rows top..top+n_rows) and store the part inside the image."""
        n_keep = min(n_rows, height - top)
        if n_keep <= 0:
            return
        acc, wsum = state["acc"], state["wsum"]
        block = acc[:, :n_keep, :width]  # normalised in place: these rows are not accumulated into again
        block /= wsum[None, :n_keep, :width]
        if state["squeeze"]:
            block = block[0]
        if postprocess is not None:
            block = np.asarray(postprocess(block))
            if block.shape[-2:] != (n_keep, width):
                raise ValueError(
                    f"postprocess must keep the last two dimensions {(n_keep, width)}, returned {block.shape}"
                )
        target = state["out"]
        if target is None:
            dtype = block.dtype if postprocess is not None else np.dtype(out_dtype)
            target = np.empty(block.shape[:-2] + (height, width), dtype=dtype)
            state["out"] = target
        elif tuple(target.shape) != tuple(block.shape[:-2]) + (height, width):
            raise ValueError(
                f"out has shape {tuple(target.shape)}, expected {tuple(block.shape[:-2]) + (height, width)}"
            )
        target[..., top:top + n_keep, :] = _cast_rows(block, target.dtype)

    bar = _progress(len(ys) * len(xs), progress, desc)
    try:
        top = ys[0]
        for bi, y in enumerate(ys):
            if y > top and state["acc"] is not None:
                d = y - top
                finish(d, top)
                acc, wsum = state["acc"], state["wsum"]
                acc[:, : th - d] = acc[:, d:]
                acc[:, th - d:] = 0
                wsum[: th - d] = wsum[d:]
                wsum[th - d:] = 0
                top = y
            band = _read_band(image, y, th, height, width, hp, wp, pad_mode)
            wy = wys[bi]
            filled = [] if fill is None else [j for j in range(len(xs)) if not np.isnan(fill[bi, j])]
            run = [j for j in range(len(xs)) if j not in filled]
            if filled and state["acc"] is None:
                state["channels"], state["squeeze"] = 1, True
                state["acc"] = np.zeros((1, th, wp), dtype=np.float32)
                state["wsum"] = np.zeros((th, wp), dtype=np.float32)
            for j in filled:
                w = wy[:, None] * wxs[j][None, :]
                state["acc"][:, :, xs[j]:xs[j] + tw] += np.float32(fill[bi, j]) * w
                state["wsum"][:, xs[j]:xs[j] + tw] += w
            if bar is not None and filled:
                bar.update(len(filled))
            for j0 in range(0, len(run), batch_size):
                cols = run[j0:j0 + batch_size]
                tiles = np.stack([band[:, xs[j]: xs[j] + tw] for j in cols])
                result = np.asarray(fn(tiles))
                if result.ndim == 3:
                    result = result[:, None]
                    squeeze = True
                elif result.ndim == 4:
                    squeeze = False
                else:
                    raise ValueError(f"fn must return (B, {th}, {tw}) or (B, C, {th}, {tw}), got {result.shape}")
                if result.shape[0] != len(cols) or result.shape[-2:] != (th, tw):
                    raise ValueError(
                        f"fn returned shape {result.shape} for a batch of {len(cols)} tiles of {th} x {tw}"
                    )
                if state["acc"] is None:
                    state["channels"], state["squeeze"] = result.shape[1], squeeze
                    state["acc"] = np.zeros((result.shape[1], th, wp), dtype=np.float32)
                    state["wsum"] = np.zeros((th, wp), dtype=np.float32)
                elif result.shape[1] != state["channels"] or squeeze != state["squeeze"]:
                    raise ValueError("fn must return the same number of channels for every batch")
                acc, wsum = state["acc"], state["wsum"]
                for k, j in enumerate(cols):
                    x = xs[j]
                    w = wy[:, None] * wxs[j][None, :]
                    acc[:, :, x:x + tw] += result[k].astype(np.float32, copy=False) * w
                    wsum[:, x:x + tw] += w
                if bar is not None:
                    bar.update(len(cols))
        finish(th, top)
    finally:
        if bar is not None and bar is not progress:
            bar.close()
    return state["out"]
