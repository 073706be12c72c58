"""The L -> U scale factor from axon sizes, without U's labels (``--scale auto``).

Convention (:mod:`ads_synth.translation.tiles`): the working pixel sizes are ``p_U`` (the median of U's pixel
sizes) and ``p_L = p_U / scale``. An L axon of physical diameter ``D_L`` is ``D_L / p_L = scale * D_L / p_U``
pixels on L's working grid, a U axon of diameter ``D_U`` is ``D_U / p_U`` pixels on U's. They are the same size in
pixels when

    scale = D_U / D_L,

the ratio of the two domains' physical axon sizes (mouse CNS axons of ~0.6 um against rat spinal-cord axons of
several um give 5 to 10; ``scale = 1`` is the paper's rule, one physical grid). The L images are therefore shrunk
``scale`` times more than their pixel sizes alone would ask.

How the sizes are measured (one number per image, then the median over images):

* **L, from its labels**: the axons (connected components of the axon class), as equivalent-disc diameters.
* **U, from its images alone** (:func:`detected_axon_diameters`): myelin is one intensity phase, axons are the
  round enclosed components of the other, whatever the polarity; found by Otsu's threshold at the coarsest
  smoothing that still resolves them.
* The size of an image is the **area-weighted median** diameter (half of the axon area lies in wider axons): it
  depends little on how many small fragments a detector splits off or misses, where a plain median does.

The estimate is the median over U images of ``D_U,j / D_L``; its uncertainty is a two-level bootstrap (images of
both domains resampled, then the axons of each resampled image; 16th-84th percentile, +-1 standard deviation for a
normal spread), so that one image still gets an honest interval, beside the per-image spread. As a check,
the same detector also runs on L's images, whose labels give the truth (``detector_check``: the median ratio of
detected to labelled size; 1 is perfect). Large images are measured on a few seeded high-contrast crops
(:data:`MAX_PIXELS` in all), so time and memory are bounded.

Only numpy, scipy.ndimage (a scikit-image dependency) and scikit-image are used (no torch).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ads_synth.errors import InputError

#: Round components: at least this solid (area / convex hull area).
MIN_SOLIDITY = 0.85
#: The chosen smoothing leaves the area-weighted median axon at least this many smoothing widths across.
MIN_DIAMETER_PER_SMOOTHING = 12.0
#: Pixels measured per image at most (crops of large images).
MAX_PIXELS = 16_000_000
#: Side of the crops taken from an image with more than :data:`MAX_PIXELS` pixels.
CROP_SIDE = 1024
#: A phase is taken as axons only with at least this many round components.
MIN_COMPONENTS = 5
#: Bootstrap resamples for the uncertainty.
BOOTSTRAP = 1000


@dataclass
class ImageSize:
    """One image's axon size.

    Attributes
    ----------
    name : str
    domain : str
        ``"L"`` or ``"U"``.
    pixel_size : float
        Micrometres per pixel.
    diameter_um : float
        Area-weighted median axon diameter: from the labels for L, from the detector for U (NaN when none found).
    n_axons : int
        Axons it is computed from.
    detected_um : float or None
        L only: what the label-free detector measures on this image (the check).
    smoothing_px : float or None
        The detector's smoothing (pixels of the image).
    scale : float or None
        U only: this image's estimate ``diameter_um / D_L``.
    axon_phase : str or None
        The intensity phase the detector took as the axons (:func:`axon_phase`): ``"dark"``, ``"bright"`` or None.
    diameters_um : numpy.ndarray or None
        The axon diameters ``diameter_um`` comes from (for the bootstrap; not written to JSON).
    """

    name: str
    domain: str
    pixel_size: float
    diameter_um: float
    n_axons: int
    detected_um: float | None = None
    smoothing_px: float | None = None
    scale: float | None = None
    axon_phase: str | None = None
    diameters_um: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass
class ScaleEstimate:
    """The estimated L -> U scale and how it was found.

    Attributes
    ----------
    scale : float
        Median of the U images' ``D_U,j / D_L``.
    low, high : float
        16th and 84th percentiles of the bootstrap over images.
    spread : float
        Per-image spread: ``exp`` of the median absolute deviation of ``log(scale_j)`` (1.2 = +-20%).
    labeled_diameter_um, unlabeled_diameter_um : float
        ``D_L`` (median over L images, from labels) and ``D_U`` (median over U images, detected).
    detector_check : float or None
        Median over L images of detected / labelled size (None when not run).
    images : list of ImageSize
    """

    scale: float
    low: float
    high: float
    spread: float
    labeled_diameter_um: float
    unlabeled_diameter_um: float
    detector_check: float | None
    images: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready dict (without the per-axon diameters)."""
        out = asdict(self)
        for image in out["images"]:
            image.pop("diameters_um", None)
        return out


# ----------------------------------------------------------------------------------------------------------------
# sizes
# ----------------------------------------------------------------------------------------------------------------
def area_weighted_median(diameters) -> float:
    """Median of ``diameters`` weighted by area (``d**2``): half of the axon area lies in axons at least this wide.

    NaN for an empty list.
    """
    d = np.sort(np.asarray(diameters, dtype=np.float64))
    if d.size == 0:
        return math.nan
    cum = np.cumsum(d * d)
    return float(d[min(d.size - 1, int(np.searchsorted(cum, 0.5 * cum[-1])))])


def label_axon_diameters(label_map) -> np.ndarray:
    """Equivalent-disc diameters (pixels) of the axons (connected components of class 2) of a label map."""
    from skimage.measure import label as connected

    axons = connected(np.asarray(label_map) == 2)
    areas = np.bincount(axons.ravel())[1:]
    areas = areas[areas > 0]
    return 2.0 * np.sqrt(areas / math.pi)


def _round_components(x, min_area, min_solidity=MIN_SOLIDITY):
    """Diameters (pixels) of the round components of each Otsu phase of ``x``: ``(dark, bright)``."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label as connected
    from skimage.measure import regionprops
    from skimage.segmentation import clear_border

    if float(x.max()) <= float(x.min()):
        return np.zeros(0), np.zeros(0)
    t = threshold_otsu(x)
    out = []
    for phase in (x < t, x > t):
        lab = clear_border(connected(phase))
        max_area = (min(x.shape) / 4.0) ** 2  # many axons fit in an image: a bigger blob is background
        out.append(np.array([2.0 * math.sqrt(r.area / math.pi) for r in regionprops(lab)
                             if min_area <= r.area <= max_area and r.solidity >= min_solidity]))
    return tuple(out)


def detected_axon_diameters(image):
    """Axon diameters (pixels) found in an image without labels, and the smoothing (pixels) they were found at.

    Myelin is one phase of the image and axons are the round, enclosed components of the other phase (whatever the
    polarity: dark axons in bright SEM myelin, light axons in dark TEM or bright-field myelin; the extracellular space
    is irregular and fails the roundness test). At each smoothing ``s = 1, 2, 4, ...`` pixels (pyramid levels with a
    1-pixel Gaussian) the image is split by Otsu's threshold, components touching the border, smaller than
    16 level pixels, wider than a quarter of the image or less solid than :data:`MIN_SOLIDITY` are dropped, and the
    phase with more round components (at least :data:`MIN_COMPONENTS`) is taken as the axons. The result is that of the largest smoothing whose area-weighted median diameter is still at least
    :data:`MIN_DIAMETER_PER_SMOOTHING` times the smoothing: the most noise-free view that still resolves the axons.

    Returns
    -------
    (numpy.ndarray, float)
        Diameters in pixels of ``image`` (empty when nothing round is found) and the chosen smoothing.
    """
    found, smoothing, _ = _detect_axons(image)
    return found, smoothing


def axon_phase(image, *, max_pixels=MAX_PIXELS, crop_side=CROP_SIDE, seed=0):
    """Which intensity phase the detector of :func:`detected_axon_diameters` takes as the axons, without labels.

    Images above ``max_pixels`` are looked at in seeded high-contrast crops, as for the scale; the phase is the
    one most crops agree on.

    Returns
    -------
    str or None
        ``"dark"`` (dark axons in brighter myelin, as SEM), ``"bright"`` (as TEM and bright field) or None when
        nothing round was found.
    """
    return _detect(image, 1.0, max_pixels, crop_side, seed)[2]


def majority_phase(phases):
    """The axon phase (``"dark"`` / ``"bright"``) most of ``phases`` name, ignoring None; None when none does."""
    phases = [p for p in phases if p is not None]
    return max(("dark", "bright"), key=phases.count) if phases else None


def _detect_axons(image):
    """:func:`detected_axon_diameters`'s diameters and smoothing, and the phase they were found in."""
    from scipy import ndimage as ndi
    from skimage.transform import pyramid_reduce

    x = _normalise(image)
    if x is None:
        return np.zeros(0), math.nan, None
    best, best_s, best_phase, level, factor = np.zeros(0), math.nan, None, x, 1
    first = None
    while min(level.shape) >= 48:
        smooth = ndi.gaussian_filter(level, 1.0)
        dark, bright = _round_components(smooth, min_area=16)
        phase = "dark" if len(dark) >= len(bright) else "bright"
        found = (dark if phase == "dark" else bright) * factor
        if len(found) < MIN_COMPONENTS:
            found = np.zeros(0)
        if first is None and len(found):
            first = (found, float(factor), phase)
        if len(found) and area_weighted_median(found) >= MIN_DIAMETER_PER_SMOOTHING * factor:
            best, best_s, best_phase = found, float(factor), phase
        level = pyramid_reduce(level, downscale=2, preserve_range=True).astype(np.float32)
        factor *= 2
    if not len(best) and first is not None:
        best, best_s, best_phase = first
    return best, best_s, best_phase


def _normalise(image):
    x = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(x, [0.5, 99.5])
    if not hi > lo:
        return None
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _crops(image, max_pixels, crop_side, seed):
    """The image itself, or seeded high-contrast crops of it with at most ``max_pixels`` pixels in all."""
    h, w = image.shape
    if h * w <= max_pixels:
        return [image]
    side = min(crop_side, h, w)
    n = max(1, int(max_pixels // (side * side)))
    rng = np.random.default_rng(seed)
    candidates = []
    for _ in range(4 * n):
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        sub = image[y:y + side:8, x:x + side:8]
        candidates.append((float(np.std(sub)), y, x))
    candidates.sort(reverse=True)  # tissue rather than empty slide
    return [image[y:y + side, x:x + side] for _, y, x in candidates[:n]]


# ----------------------------------------------------------------------------------------------------------------
# the estimate
# ----------------------------------------------------------------------------------------------------------------
def estimate_from_sizes(l_sizes, u_sizes, *, bootstrap=BOOTSTRAP, seed=0) -> ScaleEstimate:
    """Combine measured :class:`ImageSize` records of L (labels) and U (detector) into a :class:`ScaleEstimate`."""
    l_ok = np.array([s.diameter_um for s in l_sizes if math.isfinite(s.diameter_um)])
    u_ok = np.array([s.diameter_um for s in u_sizes if math.isfinite(s.diameter_um)])
    if not l_ok.size:
        raise InputError("--labeled: no labeled image has an axon in its labels; give labeled images with axon and "
                         "myelin labels.")
    if not u_ok.size:
        raise InputError("--unlabeled: no round axon-like structure found in any image (blank, too small, or no "
                         "fibres); give images of at least 64 x 64 px that show myelinated fibres, or a --scale.")
    d_l = float(np.median(l_ok))
    for s in u_sizes:
        s.scale = float(s.diameter_um / d_l) if math.isfinite(s.diameter_um) else None
    per_image = u_ok / d_l
    boot = _bootstrap([s for s in l_sizes if math.isfinite(s.diameter_um)],
                      [s for s in u_sizes if math.isfinite(s.diameter_um)], bootstrap, seed)
    low, high = (float(v) for v in np.percentile(boot, [16, 84]))
    logs = np.log(per_image)
    checks = [s.detected_um / s.diameter_um for s in l_sizes
              if s.detected_um is not None and math.isfinite(s.detected_um) and math.isfinite(s.diameter_um)]
    return ScaleEstimate(
        scale=float(np.median(per_image)), low=low, high=high,
        spread=float(math.exp(np.median(np.abs(logs - np.median(logs))))),
        labeled_diameter_um=d_l, unlabeled_diameter_um=float(np.median(u_ok)),
        detector_check=float(np.median(checks)) if checks else None,
        images=list(l_sizes) + list(u_sizes))


def _bootstrap(l_sizes, u_sizes, n, seed):
    """``n`` bootstrap values of median(D_U) / median(D_L): images resampled, then each image's axons."""
    rng = np.random.default_rng(seed)

    def one(sizes):
        values = []
        for k in rng.integers(0, len(sizes), len(sizes)):
            d = sizes[k].diameters_um
            values.append(area_weighted_median(d[rng.integers(0, d.size, d.size)]) if d is not None and d.size
                          else sizes[k].diameter_um)
        return np.median(values)

    return np.array([one(u_sizes) / one(l_sizes) for _ in range(n)])


def _detect(image, pixel_size, max_pixels, crop_side, seed):
    """Detected axon diameters (um), median smoothing and majority axon phase over the image's crops."""
    crops = _crops(np.asarray(image), max_pixels, crop_side, seed)
    found = [_detect_axons(c) for c in crops]
    d = np.concatenate([f[0] for f in found])
    smoothing = [f[1] for f in found if math.isfinite(f[1])]
    return d * pixel_size, (float(np.median(smoothing)) if smoothing else None), majority_phase(f[2] for f in found)


def measure_labeled(samples, pixel_sizes, *, check=True, max_pixels=MAX_PIXELS, crop_side=CROP_SIDE,
                    seed=0) -> list:
    """:class:`ImageSize` of each labeled sample: labelled axon size (and the detector's, with ``check``)."""
    from ads_synth.data.datasets import load_label_map
    from ads_synth.data.images import read_image

    out = []
    for s, px in zip(samples, pixel_sizes):
        d = label_axon_diameters(load_label_map(s)) * px
        rec = ImageSize(name=s.name, domain="L", pixel_size=px, diameter_um=area_weighted_median(d),
                        n_axons=int(d.size), diameters_um=d)
        if check:
            det, smooth, phase = _detect(read_image(s.image, allow_large=True), px, max_pixels, crop_side, seed)
            rec.detected_um, rec.smoothing_px, rec.axon_phase = area_weighted_median(det), smooth, phase
        out.append(rec)
    return out


def measure_unlabeled(samples, pixel_sizes, *, max_pixels=MAX_PIXELS, crop_side=CROP_SIDE, seed=0) -> list:
    """:class:`ImageSize` of each unlabeled sample from its image alone (its labels, if any, are never read)."""
    from ads_synth.data.images import read_image

    out = []
    for s, px in zip(samples, pixel_sizes):
        det, smooth, phase = _detect(read_image(s.image, allow_large=True), px, max_pixels, crop_side, seed)
        out.append(ImageSize(name=s.name, domain="U", pixel_size=px, diameter_um=area_weighted_median(det),
                             n_axons=int(det.size), smoothing_px=smooth, axon_phase=phase, diameters_um=det))
    return out


def estimate_scale(labeled, unlabeled, *, labeled_pixel_size=None, unlabeled_pixel_size=None, check=True,
                   seed=0, labeled_option="--labeled-pixel-size",
                   unlabeled_option="--unlabeled-pixel-size") -> ScaleEstimate:
    """Estimate the L -> U scale (``p_L = p_U / scale``) from L's labels and U's images.

    Parameters
    ----------
    labeled, unlabeled : path-like, or list of path-like or Sample
        Image files / folders / BIDS / nnU-Net datasets (:func:`ads_synth.data.datasets.find_samples`); L must
        have labels; U's labels (if any) are never read.
    labeled_pixel_size, unlabeled_pixel_size : float, optional
        Micrometres per pixel for images without their own.
    check : bool
        Also run the detector on L's images (``detector_check``).
    seed : int
        Seed of the crops of large images and of the bootstrap.
    labeled_option, unlabeled_option : str
        Option names given in the error for a missing pixel size.

    Returns
    -------
    ScaleEstimate
    """
    from ads_synth.translation.tiles import sample_pixel_sizes

    l_samples = _samples(labeled, require_labels=True)
    u_samples = _samples(unlabeled, require_labels=False)
    l_px = sample_pixel_sizes(l_samples, labeled_pixel_size, labeled_option)
    u_px = sample_pixel_sizes(u_samples, unlabeled_pixel_size, unlabeled_option)
    l_sizes = measure_labeled(l_samples, l_px, check=check, seed=seed)
    u_sizes = measure_unlabeled(u_samples, u_px, seed=seed)
    return estimate_from_sizes(l_sizes, u_sizes, seed=seed)


def _samples(paths, require_labels):
    from ads_synth.data.datasets import Sample, find_samples

    if isinstance(paths, (str, bytes, Sample)) or hasattr(paths, "__fspath__"):
        paths = [paths]
    out = []
    for p in paths:
        if isinstance(p, Sample):
            if require_labels and not p.has_labels:
                raise InputError(f"{p.image}: no complete labels; the labeled set needs axon and myelin labels.")
            out.append(p)
        else:
            out.extend(find_samples(p, require_labels=require_labels))
    if not out:
        raise InputError("no images given; give an image, a folder or a dataset.")
    return out


def format_estimate(est) -> str:
    """Human-readable lines: the estimate, its uncertainty, the sizes, and one line per image."""
    lines = [
        f"scale {est.scale:.2f} (68% interval {est.low:.2f} to {est.high:.2f}; per-image spread x{est.spread:.2f})",
        f"axon diameter (area-weighted median): L {est.labeled_diameter_um:.3f} um from labels, "
        f"U {est.unlabeled_diameter_um:.3f} um detected in the images",
    ]
    if est.detector_check is not None:
        lines.append(f"detector check on L's labeled images: detected / labelled size = {est.detector_check:.2f}")
    lines.append("domain  pixel size  axons  diameter (um)  detected (um)  scale  image")
    for s in est.images:
        det = f"{s.detected_um:.3f}" if s.detected_um is not None else "-"
        scale = f"{s.scale:.2f}" if s.scale is not None else "-"
        lines.append(f"{s.domain:6s}  {s.pixel_size:10.5g}  {s.n_axons:5d}  {s.diameter_um:13.3f}  {det:>13s}  "
                     f"{scale:>5s}  {s.name}")
    return "\n".join(lines)


__all__ = [
    "ImageSize",
    "ScaleEstimate",
    "area_weighted_median",
    "axon_phase",
    "detected_axon_diameters",
    "majority_phase",
    "estimate_from_sizes",
    "estimate_scale",
    "format_estimate",
    "label_axon_diameters",
    "measure_labeled",
    "measure_unlabeled",
]
