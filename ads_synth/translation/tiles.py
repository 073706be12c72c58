"""Training data for SynDiff: the two domains' images on their working pixel grids, and random tiles from them.

Pixel-size rule (the study's): the unlabeled domain U keeps a reference pixel size, the **median** of its images'
pixel sizes, and every U image is resampled to it. The labeled domain L is resampled to that same pixel size
divided by ``scale``: ``p_L = p_U / scale``. ``scale = 1`` puts both domains on one physical grid; ``scale > 1``
magnifies L on top of that, which matches structure sizes in pixels when the tissues differ (mouse CNS axons,
0.3 to 1.5 um, are about five times smaller than rat spinal-cord axons, 1 to 10 um: ``scale ~ 5``).

Every image is normalised on its own (:func:`ads_synth.data.normalize.normalize`, percentile clip to [-1, 1])
before it is resampled. Images are read with :func:`ads_synth.data.images.read_image` from the ``Sample.image``
paths only: label files are never opened here.

:class:`TileSampler` draws random square tiles (image chosen with probability proportional to its area, uniform
position, one of the 8 flips / quarter turns), skipping near-empty tiles, from its own seeded
``numpy.random.Generator`` whose state is part of a training checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ads_synth.data.datasets import sample_pixel_sizes  # noqa: F401 (re-exported)
from ads_synth.data.images import image_shape, pixel_size_source, read_image
from ads_synth.data.normalize import normalize
from ads_synth.data.resample import check_working_size, rescale_to_pixel_size
from ads_synth.errors import InputError

#: A tile whose standard deviation (in normalised units, range 2) is below this is redrawn (up to
#: ``MAX_REDRAWS`` times): it is background or blank.
MIN_TILE_STD = 0.05
MAX_REDRAWS = 8


@dataclass
class DomainImages:
    """One domain's images, normalised to [-1, 1] and resampled to the domain's working pixel size.

    Attributes
    ----------
    names : list of str
        Image stems, in the order of ``images``.
    images : list of numpy.ndarray
        float32 ``(H, W)`` arrays in [-1, 1].
    pixel_size : float
        Working pixel size, micrometres per pixel.
    padded : list of str
        Names of the images that were smaller than the tile and were padded by reflection.
    """

    names: list
    images: list
    pixel_size: float
    padded: list = field(default_factory=list)

    @property
    def num_pixels(self):
        return int(sum(im.size for im in self.images))


def working_pixel_sizes(sizes_l, sizes_u, scale=1.0):
    """The working pixel sizes ``(p_L, p_U)``: ``p_U`` = median of U's sizes, ``p_L = p_U / scale``.

    Parameters
    ----------
    sizes_l : list of float
        Pixel sizes of the L images (unused by the rule, checked only).
    sizes_u : list of float
        Pixel sizes of the U images.
    scale : float
        Magnification of L on top of U's grid (``> 0``).
    """
    if not sizes_l or not sizes_u:
        raise ValueError("both domains need at least one image")
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"--scale must be a positive number, got {scale!r}.")
    p_u = float(np.median(np.asarray(sizes_u, dtype=np.float64)))
    return p_u / float(scale), p_u


def load_domain(samples, pixel_sizes, work_pixel_size, min_side=None):
    """Read, normalise and resample one domain's images to ``work_pixel_size``.

    Parameters
    ----------
    samples : list of Sample
        Only ``Sample.image`` is read.
    pixel_sizes : list of float
        Each sample's pixel size (:func:`sample_pixel_sizes`).
    work_pixel_size : float
        Target micrometres per pixel.
    min_side : int, optional
        Images smaller than this on a side after resampling are padded by reflection up to it (tiles must fit).

    Returns
    -------
    DomainImages
    """
    held = 0.0  # the whole domain is held in memory: refuse, before reading any image, one over the pixel budget
    for sample, px in zip(samples, pixel_sizes):
        h, w = check_working_size(image_shape(sample.image), px, work_pixel_size, what=str(sample.image),
                                  source=pixel_size_source(sample.image, "--source/--target-pixel-size"),
                                  grid="its domain's working grid (--scale)", total=held)
        held += h * w
    images, names, padded = [], [], []
    for sample, px in zip(samples, pixel_sizes):
        x, _ = normalize(read_image(sample.image))
        x = rescale_to_pixel_size(x, px, work_pixel_size, order=1).astype(np.float32, copy=False)
        if min_side and min(x.shape) < min_side:
            x = pad_to(x, min_side)
            padded.append(sample.name)
        images.append(np.ascontiguousarray(x))
        names.append(sample.name)
    return DomainImages(names=names, images=images, pixel_size=float(work_pixel_size), padded=padded)


def pad_to(image, side):
    """Reflect-pad a 2-D image so that both sides are at least ``side`` (unchanged when already large enough)."""
    h, w = image.shape
    ph, pw = max(0, side - h), max(0, side - w)
    if not ph and not pw:
        return image
    # reflection needs the padding to be smaller than the side: repeat it until large enough
    while ph or pw:
        h, w = image.shape
        sh, sw = min(ph, h - 1), min(pw, w - 1)
        image = np.pad(image, ((sh // 2, sh - sh // 2), (sw // 2, sw - sw // 2)), mode="reflect")
        ph, pw = ph - sh, pw - sw
        if (sh, sw) == (0, 0):  # a 1-pixel side cannot be reflected
            image = np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="edge")
            break
    return image


class TileSampler:
    """Random square tiles from a list of images, reproducible from its own generator.

    Parameters
    ----------
    images : list of numpy.ndarray
        float32 ``(H, W)`` images, each at least ``tile`` on a side (see :func:`pad_to`).
    tile : int
        Tile side in pixels.
    seed : int
        Seed of the sampler's ``numpy.random.Generator``.
    augment : bool
        Apply one of the 8 flips / quarter turns to each tile.
    min_std : float
        Redraw tiles whose standard deviation is below this (near-empty), at most ``MAX_REDRAWS`` times.
    """

    def __init__(self, images, tile, seed=0, augment=True, min_std=MIN_TILE_STD):
        if not images:
            raise ValueError("TileSampler needs at least one image")
        small = [im.shape for im in images if min(im.shape) < tile]
        if small:
            raise ValueError(f"images smaller than the tile ({tile} px): {small}; pad them first")
        self.images = images
        self.tile = int(tile)
        self.augment = augment
        self.min_std = float(min_std)
        areas = np.array([im.size for im in images], dtype=np.float64)
        self.weights = areas / areas.sum()
        self.rng = np.random.default_rng(seed)

    def _one(self):
        rng, t = self.rng, self.tile
        for _ in range(MAX_REDRAWS + 1):
            k = int(rng.choice(len(self.images), p=self.weights))
            im = self.images[k]
            y = int(rng.integers(0, im.shape[0] - t + 1))
            x = int(rng.integers(0, im.shape[1] - t + 1))
            tile = im[y : y + t, x : x + t]
            if tile.std() >= self.min_std:
                break
        if self.augment:
            op = int(rng.integers(0, 8))
            tile = np.rot90(tile, op % 4)
            if op >= 4:
                tile = tile[:, ::-1]
        return tile

    def sample(self, n):
        """Return ``n`` tiles as a float32 array ``(n, 1, tile, tile)``."""
        return np.stack([self._one() for _ in range(n)])[:, None].astype(np.float32, copy=True)

    def state_dict(self):
        """The generator state (a plain dict, picklable)."""
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` output."""
        self.rng.bit_generator.state = state["bit_generator"]


#: A domain with at least this many images keeps some of them out of training, for scoring.
HOLDOUT_MIN_IMAGES = 4
#: Share of a domain's images held back (at least one).
HOLDOUT_FRACTION = 0.1


def holdout_split(samples):
    """Split one domain's samples into ``(train, held_back)`` for checkpoint scoring.

    A domain with at least :data:`HOLDOUT_MIN_IMAGES` images keeps ``max(1, round(HOLDOUT_FRACTION * n))`` of them
    out of training, spread evenly over the images sorted by name, and scores on those; a smaller domain trains on
    every image and scores on tiles of the same images (``held_back`` is then the full list too).
    """
    ordered = sorted(samples, key=lambda s: (s.name, str(s.image)))
    n = len(ordered)
    if n < HOLDOUT_MIN_IMAGES:
        return ordered, ordered
    k = max(1, int(round(HOLDOUT_FRACTION * n)))
    held = {int((i + 0.5) * n / k) for i in range(k)}
    return [s for i, s in enumerate(ordered) if i not in held], [s for i, s in enumerate(ordered) if i in held]
