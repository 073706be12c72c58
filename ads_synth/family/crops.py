"""The parts of the unlabeled images that ``ads-synth family train`` works on.

* :func:`scoring_crops`: where the candidate paths are scored (up to :data:`SCORING_IMAGES` images, a centre crop of
  at most :data:`SCORING_CROP` a side each);
* :func:`training_images`: what the proxy learns from. Images of up to :data:`TRAINING_MPX` megapixels are used
  whole; a larger one (a whole-slide scan) is replaced by crops of :data:`TRAINING_CROP` a side, as many as fit in
  :data:`TRAINING_MPX`, taken among its tiles with the most texture (background glass has little) and spread over
  the slide. The proxy sees about 25 Mpx of 128 px patches in the default budget, so more distinct area would add
  little, and pseudo-labelling a 40 Mpx slide at every self-training round would take hours on a CPU.

Each crop is an 8-bit PNG in its own folder with its pixel size; crops are written once (a resumed run reuses them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Candidate pseudo labels are scored on at most this many U images, each cropped to at most this side.
SCORING_IMAGES = 4
SCORING_CROP = 1024
#: The proxy's training images: an image larger than this (megapixels) is replaced by crops of this side.
TRAINING_MPX = 4.2
TRAINING_CROP = 1024


def _as_uint8(image):
    from ads_synth.data.normalize import normalize, to_uint8

    return image if image.dtype == np.uint8 else to_uint8(normalize(image)[0])


def _write_crop(folder, name, px, crop) -> Path:
    from ads_synth.data.writers import write_image, write_pixel_size

    sub = Path(folder) / name
    sub.mkdir(parents=True, exist_ok=True)
    write_pixel_size(sub, px, overwrite=True)
    return write_image(sub / f"{name}.png", crop, overwrite=True)


def scoring_crops(u_jobs, folder) -> list:
    """Write (once) the scoring crops of ``u_jobs`` (``[(Sample, pixel size)]``) into ``folder``; return paths."""
    from ads_synth.data.images import read_image

    picks = list(u_jobs)[:: max(1, len(u_jobs) // SCORING_IMAGES)][:SCORING_IMAGES]
    out = []
    for sample, px in picks:
        path = Path(folder) / sample.name / f"{sample.name}.png"
        if not path.is_file():
            image = _as_uint8(read_image(sample.image))
            h, w = image.shape
            y0, x0 = max(0, (h - SCORING_CROP) // 2), max(0, (w - SCORING_CROP) // 2)
            path = _write_crop(folder, sample.name, px, image[y0:y0 + SCORING_CROP, x0:x0 + SCORING_CROP])
        out.append(path)
    return out


def crop_origins(image, n, side=None) -> list:
    """``n`` top-left corners of non-overlapping ``side`` x ``side`` tiles (default :data:`TRAINING_CROP`) of
    ``image``: among the textured tiles (intensity spread at least half the 90th percentile's: tissue, not glass),
    ``n`` evenly spaced in raster order (deterministic)."""
    side = side or TRAINING_CROP
    h, w = image.shape
    corners = [(y, x) for y in range(0, h - side + 1, side) for x in range(0, w - side + 1, side)]
    if not corners:
        return [(0, 0)]
    spread = np.array([float(np.std(image[y:y + side:8, x:x + side:8])) for y, x in corners])
    textured = [c for c, s in zip(corners, spread) if s >= 0.5 * np.percentile(spread, 90)]
    picks = np.linspace(0, len(textured) - 1, num=min(n, len(textured))).round().astype(int)
    return [textured[i] for i in sorted(set(picks.tolist()))]


def training_images(u_jobs, folder) -> list:
    """The proxy's training images (module docstring): ``[(path, pixel size)]``, the original file for an image of
    up to :data:`TRAINING_MPX` megapixels, else its crops written (once) into ``folder/<name>_<y>_<x>/``."""
    from ads_synth.data.images import image_shape, read_image

    out = []
    for sample, px in u_jobs:
        h, w = image_shape(sample.image)
        if h * w <= TRAINING_MPX * 1e6:
            out.append((Path(sample.image), px))
            continue
        n = max(1, int(TRAINING_MPX * 1e6 // (TRAINING_CROP * TRAINING_CROP)))
        listing = Path(folder) / f"{sample.name}.crops.txt"  # written last: the crops are complete
        if listing.is_file():
            done = [Path(folder) / line for line in listing.read_text().split()]
        else:
            from ads_synth.atomic import atomic_write_text

            image = _as_uint8(read_image(sample.image))
            done = sorted(_write_crop(folder, f"{sample.name}_{y}_{x}", px,
                                      image[y:y + TRAINING_CROP, x:x + TRAINING_CROP])
                          for y, x in crop_origins(image, n))
            atomic_write_text(listing, "".join(f"{p.relative_to(folder)}\n" for p in done))
        out += [(p, px) for p in done]
    return out
