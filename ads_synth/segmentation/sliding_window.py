"""nnU-Net's sliding-window inference, streamed band by band so that memory does not grow with the image.

nnU-Net 2.2.1 (``nnUNetPredictor.predict_sliding_window_return_logits``) allocates the logits of the whole image
(``C x H x W``, float16 on the CPU), adds every tile's Gaussian-weighted logits into them, divides by the summed
weights, and only then applies the softmax, for one fold at a time; the caller then holds float32 probabilities of
the whole image, several times. On a 40 Mpx slide that is gigabytes.

:func:`stream_logits` computes the same numbers in another order. The tiles are nnU-Net's own
(``compute_steps_for_sliding_window`` over the whole image, the same Gaussian importance map, the same zero padding
of an image smaller than a patch), processed one *band* (one row of tile positions) at a time, every fold on each
batch of tiles. Only ``patch_height x W`` accumulators per fold are held (float32, so the sums are more exact than
nnU-Net's float16); as soon as no later tile touches a row, the normalised logits of those rows are handed to a
callback (which applies the softmax and keeps only compact statistics). The result equals nnU-Net's whole-image
prediction up to nnU-Net's float16 rounding (tested).

Tiles of one band go through the network in batches (instance normalisation is per sample, so batching does not
change the result), under ``torch.inference_mode``.

*Glass* (``flat_std``): empty glass around a section (:mod:`ads_synth.data.glass`) is not run when every network
labels most of each of a few sampled tiles of a flat region background (:func:`glass_regions`; the inside of a large
axon is flat too, and the networks call it axon); each network's mean background logits stand in for the glass
tiles', so glass comes out background and costs nothing.
"""

from __future__ import annotations

import numpy as np

from ads_synth.data.glass import GLASS_MIN_TILES, GLASS_SAMPLE, flat_regions, flat_tiles


def band_plan(shape, patch, step):
    """nnU-Net's tile starts for an image of ``shape`` ``(H, W)`` (padded to at least ``patch``).

    Returns
    -------
    (list of int, list of int, (int, int))
        Row starts, column starts and the padded shape.
    """
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    padded = tuple(max(int(n), int(p)) for n, p in zip(tuple(shape)[-2:], patch))
    ys, xs = compute_steps_for_sliding_window(padded, [int(p) for p in patch], float(step))
    return list(ys), list(xs), padded


def n_tiles(shape, patch, step) -> int:
    """Sliding-window tiles of one fold for an image of ``shape``."""
    ys, xs, _ = band_plan(shape, patch, step)
    return len(ys) * len(xs)


def glass_regions(networks, data, ys, xs, flat, patch, *, background=0, mirror_axes=None, device="cpu",
                  dtype=None, min_tiles=GLASS_MIN_TILES, n_sample=GLASS_SAMPLE):
    """Which flat tiles are glass, and the logits that stand in for them.

    Parameters
    ----------
    networks, data, ys, xs, patch, mirror_axes, device, dtype
        As :func:`stream_logits` (``data`` padded).
    flat : numpy.ndarray of bool
        :func:`ads_synth.data.glass.flat_tiles`.
    background : int
        The networks' background channel.
    min_tiles, n_sample : int
        A region of touching flat tiles (4-connected on the tile grid) with at least ``min_tiles`` tiles is glass if
        in each of ``n_sample`` of its tiles (spread over it in raster order) every network labels more than half
        the pixels background.

    Returns
    -------
    (numpy.ndarray of bool, list of torch.Tensor or None)
        The glass tiles, and per network its mean logits ``(K,)`` over the background pixels of the sampled tiles
        (None when no tile is glass).
    """
    import torch

    glass = np.zeros_like(flat)
    sums = [0.] * len(networks)
    counts = [0] * len(networks)
    ph, pw = (int(p) for p in patch)
    for where, pick in flat_regions(flat, min_tiles, n_sample):
        x = torch.stack([data[:, ys[i]:ys[i] + ph, xs[j]:xs[j] + pw] for i, j in pick]).to(device, dtype)
        outs = [_predict(net, x, mirror_axes).to("cpu", torch.float32) for net in networks]
        if not all(((o.argmax(1) == background).flatten(1).float().mean(1) > 0.5).all() for o in outs):
            continue
        glass[tuple(where.T)] = True
        for k, o in enumerate(outs):
            bg = o.argmax(1) == background
            sums[k] = sums[k] + o.movedim(1, -1)[bg].sum(0)
            counts[k] += int(bg.sum())
    if not glass.any():
        return glass, None
    return glass, [s / n for s, n in zip(sums, counts)]


def _predict(network, x, mirror_axes):
    """The network's logits for a batch ``x`` (B, C, h, w), averaged over test-time mirrors as nnU-Net does."""
    import torch

    out = network(x)
    if not mirror_axes:
        return out
    dims = [d + 2 for d in mirror_axes]
    n = 1
    for d in dims:
        out += torch.flip(network(torch.flip(x, (d,))), (d,))
        n += 1
    if len(dims) >= 2:
        for i in range(len(dims)):
            for j in range(i + 1, len(dims)):
                pair = (dims[i], dims[j])
                out += torch.flip(network(torch.flip(x, pair)), pair)
                n += 1
    if len(dims) == 3:
        out += torch.flip(network(torch.flip(x, tuple(dims))), tuple(dims))
        n += 1
    return out / n


def stream_logits(networks, data, patch, step, emit, *, batch_size=4, mirror_axes=None, progress=None,
                  device="cpu", gaussian=None, dtype=None, flat_std=None, background=0):
    """Sliding-window logits of every network over ``data``, handed to ``emit`` band by band.

    Parameters
    ----------
    networks : list of torch.nn.Module
        One network per fold (in eval mode, on ``device``).
    data : torch.Tensor or numpy.ndarray
        Preprocessed image ``(C, H, W)`` float32 (nnU-Net's normalisation already applied).
    patch : (int, int)
        Tile size.
    step : float
        nnU-Net's ``tile_step_size`` (fraction of the patch).
    emit : callable
        ``emit(y0, y1, logits)``: rows ``y0:y1`` of the image are final; ``logits`` is a list (one per network) of
        float32 tensors ``(K, y1 - y0, W)``, the Gaussian-weighted mean logits of those rows.
    batch_size : int
        Tiles per network call.
    mirror_axes : tuple of int, optional
        Test-time mirroring axes (nnU-Net's ``inference_allowed_mirroring_axes``); None: no mirroring.
    progress : tqdm, optional
        Advanced by one per tile and network.
    device : str or torch.device
    gaussian : torch.Tensor, optional
        The importance map; default nnU-Net's (``compute_gaussian(patch, 1/8, 10)``).
    dtype : torch.dtype, optional
        The networks' parameter dtype (tiles are cast to it); default float32. Logits are accumulated in float32.
    flat_std : float, optional
        Find glass among the flat tiles and do not run it (the module docstring,
        :data:`ads_synth.data.glass.FLAT_STD`); None: run every tile.
    background : int
        The networks' background channel (for ``flat_std``).

    Returns
    -------
    int
        Tiles (of one network) not run as glass.
    """
    import torch
    from acvl_utils.cropping_and_padding.padding import pad_nd_image
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    device = torch.device(device)
    dtype = dtype or torch.float32
    data = torch.as_tensor(data)
    if data.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {tuple(data.shape)}")
    height, width = int(data.shape[1]), int(data.shape[2])
    ph, pw = (int(p) for p in patch)
    # nnU-Net pads an image smaller than a patch with zeros, centred, and crops the padding off afterwards
    data, revert = pad_nd_image(data, (ph, pw), "constant", {"value": 0}, True, None)
    top_pad, left_pad = revert[1].start or 0, revert[2].start or 0
    hp, wp = int(data.shape[1]), int(data.shape[2])
    ys, xs, _ = band_plan((hp, wp), (ph, pw), step)
    if gaussian is None:
        gaussian = compute_gaussian((ph, pw), sigma_scale=1. / 8, value_scaling_factor=10, device=torch.device("cpu"))
    weight = gaussian.to(torch.float32)
    n_nets = len(networks)
    flat, refs = np.zeros((len(ys), len(xs)), bool), None
    if flat_std is not None:
        with torch.inference_mode():
            flat, refs = glass_regions(networks, data, ys, xs, flat_tiles(data.numpy(), ys, xs, (ph, pw), flat_std),
                                       (ph, pw), background=background, mirror_axes=mirror_axes, device=device,
                                       dtype=dtype)
    if refs is not None:
        refs = [r[:, None, None] * weight for r in refs]
    acc = None
    if refs is not None:
        acc = [torch.zeros((refs[0].shape[0], ph, wp), dtype=torch.float32) for _ in range(n_nets)]
    wsum = torch.zeros((ph, wp), dtype=torch.float32)
    state = {"top": ys[0], "emitted": 0}

    def finish(n_rows):
        """Hand rows top .. top + n_rows (padded coordinates) to ``emit``, cropped to the image."""
        top = state["top"]
        lo, hi = max(top, top_pad), min(top + n_rows, top_pad + height)
        if hi > lo:
            norm = wsum[lo - top:hi - top, left_pad:left_pad + width]
            emit(lo - top_pad, hi - top_pad,
                 [a[:, lo - top:hi - top, left_pad:left_pad + width] / norm for a in acc])

    with torch.inference_mode():
        for row, y in enumerate(ys):
            if y > state["top"] and acc is not None:
                d = y - state["top"]
                finish(d)
                for a in acc:
                    a[:, :ph - d] = a[:, d:].clone()
                    a[:, ph - d:] = 0
                wsum[:ph - d] = wsum[d:].clone()
                wsum[ph - d:] = 0
                state["top"] = y
            band = data[:, y:y + ph]
            for k, c in enumerate(xs):
                if flat[row, k]:
                    for a, r in zip(acc, refs):
                        a[:, :, c:c + pw] += r
                    wsum[:, c:c + pw] += weight
            if progress is not None and flat[row].any():
                progress.update(int(flat[row].sum()) * n_nets)
            run = [c for k, c in enumerate(xs) if not flat[row, k]]
            for j0 in range(0, len(run), batch_size):
                cols = run[j0:j0 + batch_size]
                x = torch.stack([band[:, :, c:c + pw] for c in cols]).to(device, dtype)
                for k, net in enumerate(networks):
                    out = _predict(net, x, mirror_axes).to("cpu", torch.float32)
                    if acc is None:
                        acc = [torch.zeros((out.shape[1], ph, wp), dtype=torch.float32) for _ in range(n_nets)]
                    for i, c in enumerate(cols):
                        acc[k][:, :, c:c + pw] += out[i] * weight
                    if progress is not None:
                        progress.update(len(cols))
                for c in cols:
                    wsum[:, c:c + pw] += weight
        finish(ph)
    return int(flat.sum())
