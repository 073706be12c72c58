"""Post-processing of predicted label maps, the AxonDeepSeg way.

Three steps, in this order:

1. **Specks**: connected axon or myelin components smaller than a minimum area become background
   (scikit-image's ``remove_small_objects``; AxonDeepSeg has no such function).
2. **Axons inside myelin**: background holes enclosed by myelin become axon, with AxonDeepSeg's own
   ``AxonDeepSeg.postprocessing.fill_myelin_holes`` (the "fill axons" action of its napari plugin; holes up to a
   tenth of the image area); with the fibre step, only convex holes (:data:`MIN_FILL_SOLIDITY`): gaps between
   touching sheaths are enclosed by myelin too, and filled they become false fibres.
3. **Fibres** (:func:`clean_fibres`): what a myelinated fibre is. An axon must be enclosed by myelin (at least
   :data:`MIN_ENCLOSURE` of its border); an axon below a minimum diameter (:data:`MIN_AXON_DIAMETER_UM`) is no
   fibre's axon (inside myelin it becomes myelin); a myelin component must touch an axon. This removes the false
   fragments between fibres that inflate the fibre count of AxonDeepSeg's morphometrics, and the specks inside
   sheaths that take part of a sheath in its watershed (thinning the myelin and raising the g-ratio).
4. **Myelin boundary at half-way intensity** (:func:`place_myelin_boundary`, opt-in: when the image is given):
   within a band of :data:`BOUNDARY_BAND` pixels of the network's grid around each sheath, a pixel whose intensity
   is nearer the image's own myelin intensity than its neighbour class's becomes myelin (the half-way point
   between the two intensities, the usual definition of an edge), then steps 1-3 run again. No label of any image
   sets it. Annotators disagree on where a sheath ends: sem-dev's draw it at or beyond the half-way point, TEM's
   inside it, and models trained from TEM labels draw SEM sheaths thin; so the step is chosen per use
   (``--myelin-boundary``, or a card's ``postprocess`` that ``ads-synth refine`` sets from a user's corrections).
"""

from __future__ import annotations

import warnings

import numpy as np

from ads_synth.data.datasets import AXON, BACKGROUND, MYELIN

#: Smallest object kept, in square micrometres (a 0.1 x 0.1 um speck), when the pixel size is known.
MIN_AREA_UM2 = 0.01
#: Smallest object kept, in pixels (also the floor when the pixel size is known).
MIN_AREA_PX = 4


def min_area_pixels(pixel_size=None, min_area_um2=MIN_AREA_UM2, min_area_px=MIN_AREA_PX) -> int:
    """Minimum object area in pixels: ``min_area_um2`` at ``pixel_size``, at least ``min_area_px``."""
    if pixel_size is None:
        return int(min_area_px)
    return max(int(min_area_px), int(round(min_area_um2 / float(pixel_size) ** 2)))


def remove_specks(label_map, min_area) -> np.ndarray:
    """Axon and myelin components smaller than ``min_area`` pixels become background (a new array)."""
    out = np.array(label_map, dtype=np.uint8, copy=True)
    for cls in (AXON, MYELIN):
        mask = out == cls
        out[mask & ~_without_small_objects(mask, int(min_area))] = BACKGROUND
    return out


def _without_small_objects(mask, min_area):
    """scikit-image's ``remove_small_objects`` keeping objects of at least ``min_area`` px (any version)."""
    import inspect

    from skimage.morphology import remove_small_objects

    if "max_size" in inspect.signature(remove_small_objects).parameters:  # scikit-image >= 0.26
        return remove_small_objects(mask, max_size=min_area - 1, connectivity=1)
    return remove_small_objects(mask, min_size=min_area, connectivity=1)


#: Smallest solidity (area / convex hull area) of a myelin hole filled as an axon. Axons are convex; the gaps
#: between touching sheaths, which myelin encloses too, are not. Learned from L's manual labels: 0.8 lies between
#: the 2nd and 5th percentiles (0.78, 0.84) of the solidity of tem-srf + tem-nyu's 324 axons (scale-free).
MIN_FILL_SOLIDITY = 0.8


def fill_axons(label_map, min_solidity=None) -> np.ndarray:
    """Background enclosed by myelin becomes axon (AxonDeepSeg's ``fill_myelin_holes``; a new array).

    With ``min_solidity``, only holes at least that solid (convex) are filled: a gap between touching sheaths is
    enclosed by myelin too, but concave.
    """
    from AxonDeepSeg.postprocessing import fill_myelin_holes

    out = np.array(label_map, dtype=np.uint8, copy=True)
    myelin = (out == MYELIN).astype(np.uint8)
    with warnings.catch_warnings():  # ADS 5.5.0 uses an argument scikit-image 0.26 deprecates
        warnings.simplefilter("ignore", FutureWarning)
        holes = (np.asarray(fill_myelin_holes(myelin)) > 0) & (out == BACKGROUND)
    if min_solidity is not None and holes.any():
        holes = _solid_parts(holes, min_solidity)
    out[holes] = AXON
    return out


def _solid_parts(mask, min_solidity) -> np.ndarray:
    """The 4-connected parts of ``mask`` whose solidity (scikit-image's: area / area of ``convex_hull_image``) is
    at least ``min_solidity``. A part at least that full of its bounding box is solid without its hull (the hull
    lies inside the box), which spares the hull of almost every small hole."""
    from scipy import ndimage as ndi
    from skimage.morphology import convex_hull_image

    parts, n = ndi.label(mask)
    areas = np.bincount(parts.ravel(), minlength=n + 1)
    solid = np.ones(n + 1, dtype=bool)
    solid[0] = False
    for label, box in enumerate(ndi.find_objects(parts), start=1):
        box_area = (box[0].stop - box[0].start) * (box[1].stop - box[1].start)
        if areas[label] < min_solidity * box_area:
            region = parts[box] == label
            solid[label] = areas[label] >= min_solidity * np.count_nonzero(convex_hull_image(region))
    return solid[parts]


def postprocess_label_map(label_map, pixel_size=None, fill=True, min_area_um2=MIN_AREA_UM2,
                          min_area_px=MIN_AREA_PX, fibres=True, min_fill_solidity=MIN_FILL_SOLIDITY,
                          image=None, boundary_steps=None, **fibre_options) -> np.ndarray:
    """Remove specks, fill axons inside myelin, keep what can be part of a fibre, and with the image place the
    myelin boundary at half-way intensity (the module docstring).

    Parameters
    ----------
    label_map : numpy.ndarray
        uint8 ``(H, W)``: 0 background, 1 myelin, 2 axon.
    pixel_size : float, optional
        Micrometres per pixel of ``label_map`` (sets the speck and minimum axon sizes).
    fill : bool
        Fill axons inside myelin.
    min_area_um2, min_area_px : float, int
        Speck size (:func:`min_area_pixels`).
    fibres : bool
        Fibre-level clean-up (:func:`clean_fibres`, with ``fibre_options``), and only convex holes filled
        (``min_fill_solidity``, :func:`fill_axons`).
    min_fill_solidity : float or None
        With ``fibres``: the smallest solidity of a filled hole (None: every hole, AxonDeepSeg's way).
    image : numpy.ndarray, optional
        The image ``label_map`` labels (same height and width; grey or RGB). With ``fibres``, the myelin boundary
        is placed at half-way intensity (:func:`place_myelin_boundary`) and steps 1-3 run again.
    boundary_steps : int, optional
        Width in pixels of that band (default: :func:`boundary_steps_for` of 1, a label map at the network's grid).

    Returns
    -------
    numpy.ndarray
        The post-processed label map (uint8).
    """
    def clean(labels):
        out = remove_specks(labels, min_area_pixels(pixel_size, min_area_um2, min_area_px))
        out = fill_axons(out, min_solidity=min_fill_solidity if fibres else None) if fill else out
        return clean_fibres(out, pixel_size=pixel_size, **fibre_options) if fibres else out

    out = clean(label_map)
    if fibres and image is not None:
        steps = boundary_steps_for(1.0) if boundary_steps is None else int(boundary_steps)
        placed = place_myelin_boundary(out, image, steps)
        if placed is not out:
            out = clean(placed)
    return out


# --- the myelin boundary at half-way intensity ----------------------------------------------------------------------

#: Width of the band in which the myelin boundary is placed, in pixels of the grid the network labelled at: a
#: network's boundary is uncertain by about a pixel of its own grid on each side.
BOUNDARY_BAND = 2
#: Pixels each class needs in its core (its pixels two erosions in) for its intensity to be measured.
MIN_CORE_PIXELS = 50


def boundary_steps_for(upsampling) -> int:
    """Image pixels of the boundary band for a label map that was upsampled ``upsampling`` times from the network's
    grid to the image (:data:`BOUNDARY_BAND` grid pixels; at least one)."""
    return max(1, int(round(BOUNDARY_BAND * float(upsampling))))


def class_intensities(label_map, image):
    """Median intensity of the core (two 4-neighbour erosions in) of background, myelin and axon in ``image``;
    None when a class has fewer than :data:`MIN_CORE_PIXELS` core pixels."""
    from scipy import ndimage as ndi

    out = {}
    for cls in (BACKGROUND, MYELIN, AXON):
        core = ndi.binary_erosion(label_map == cls, iterations=2)
        if np.count_nonzero(core) < MIN_CORE_PIXELS:
            return None
        out[cls] = float(np.median(image[core]))
    return out


def place_myelin_boundary(label_map, image, steps):
    """Grow each sheath, one pixel ring at a time up to ``steps`` rings, into the pixels whose intensity is nearer
    the image's myelin intensity than that of the class they have (axon inside, background outside; both measured
    on this image's own label map, :func:`class_intensities`).

    Returns ``label_map`` itself when nothing changes (no myelin, a class too small to measure, no pixel nearer
    myelin), else a new uint8 array.
    """
    from scipy import ndimage as ndi

    label_map = np.asarray(label_map)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=-1)
    if image.shape != label_map.shape:
        raise ValueError(f"image {image.shape} and label map {label_map.shape} differ in shape")
    levels = class_intensities(label_map, image)
    if levels is None or steps < 1:
        return label_map
    to_myelin = np.abs(image - levels[MYELIN])
    nearer_myelin = np.where(label_map == AXON, to_myelin < np.abs(image - levels[AXON]),
                             to_myelin < np.abs(image - levels[BACKGROUND]))
    out = label_map
    for _ in range(int(steps)):
        myelin = out == MYELIN
        take = ndi.binary_dilation(myelin) & ~myelin & nearer_myelin
        if not take.any():
            break
        if out is label_map:
            out = np.array(label_map, dtype=np.uint8, copy=True)
        out[take] = MYELIN
    return out


# --- fibre-level post-processing: what a fibre is -------------------------------------------------------------------

#: Smallest fraction of an axon's outer border that must be myelin for it to be a fibre's axon.
MIN_ENCLOSURE = 0.5
#: Axons smaller than this (equivalent diameter, micrometres) are no fibre's axon: inside myelin they become myelin,
#: elsewhere background. A physical minimum below the smallest myelinated axons of rat spinal cord and above specks.
MIN_AXON_DIAMETER_UM = 0.5


def _neighbour_labels(labels, both=False):
    """For every pixel outside the objects of ``labels``: the largest label among its 4-neighbours (0: none);
    with ``both``, also the smallest non-zero one (a pair of arrays)."""
    from scipy import ndimage as ndi

    footprint = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    grown = ndi.grey_dilation(labels, footprint=footprint, mode="constant", cval=0)
    grown[labels > 0] = 0
    if not both:
        return grown
    top = np.iinfo(labels.dtype).max
    smallest = ndi.grey_erosion(np.where(labels > 0, labels, top), footprint=footprint, mode="constant", cval=top)
    smallest[(labels > 0) | (smallest == top)] = 0
    return grown, smallest


def axon_enclosure(label_map):
    """Axon components (8-connected, as AxonDeepSeg's morphometrics) and the fraction of each one's outer border
    (the 4-neighbour pixels around it, inside the image) that is myelin.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        int32 component labels ``(H, W)`` (0 outside axons) and float ``(n + 1,)`` fractions (index 0 unused; NaN
        for an axon with no border pixel in the image).
    """
    from skimage import measure

    label_map = np.asarray(label_map)
    labels = measure.label(label_map == AXON, connectivity=2).astype(np.int32)
    n = int(labels.max())
    ring = _neighbour_labels(labels)
    on_border = ring > 0
    border = np.bincount(ring[on_border], minlength=n + 1).astype(float)
    on_myelin = np.bincount(ring[on_border & (label_map == MYELIN)], minlength=n + 1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = on_myelin / border
    return labels, fraction


def clean_fibres(label_map, pixel_size=None, min_enclosure=MIN_ENCLOSURE, min_axon_diameter_um=MIN_AXON_DIAMETER_UM,
                 min_axon_diameter_px=None, drop_lone_myelin=True) -> np.ndarray:
    """Keep only what can be part of a myelinated fibre (a new array).

    1. An axon must be enclosed by myelin: an axon component with less than ``min_enclosure`` of its outer border
       on myelin becomes background (false axons between fibres).
    2. An axon smaller than the minimum diameter is no fibre's axon: mostly enclosed by myelin (a speck inside a
       sheath, which would otherwise take part of the sheath in the morphometrics' watershed) it becomes myelin,
       else background.
    3. A myelin sheath must enclose an axon: with ``drop_lone_myelin``, myelin components (8-connected) touching no
       axon become background.

    Parameters
    ----------
    label_map : numpy.ndarray
        uint8 ``(H, W)``: 0 background, 1 myelin, 2 axon.
    pixel_size : float, optional
        Micrometres per pixel; sets the minimum diameter in pixels from ``min_axon_diameter_um``.
    min_enclosure : float
        0 to 1 (0 keeps every axon in step 1).
    min_axon_diameter_um : float
        Physical minimum axon diameter (equivalent diameter), used when ``pixel_size`` is known.
    min_axon_diameter_px : float, optional
        Minimum diameter in pixels; overrides ``min_axon_diameter_um`` (e.g. a size learned from L's labels at the
        working scale, :func:`min_axon_diameter_from_labels`).
    drop_lone_myelin : bool

    Returns
    -------
    numpy.ndarray
        uint8 label map.
    """
    from skimage import measure

    out = np.array(label_map, dtype=np.uint8, copy=True)
    labels, fraction = axon_enclosure(out)
    n = int(labels.max())
    if n:
        if min_axon_diameter_px is None:
            min_axon_diameter_px = (min_axon_diameter_um / float(pixel_size)) if pixel_size is not None else 0.0
        area = np.bincount(labels.ravel(), minlength=n + 1).astype(float)
        small = np.sqrt(4.0 * area / np.pi) < float(min_axon_diameter_px)
        enclosed = np.nan_to_num(fraction, nan=1.0) >= min_enclosure
        small[0] = enclosed[0] = False
        to_myelin = small & enclosed
        to_background = ~enclosed
        to_background[0] = False
        out[to_myelin[labels]] = MYELIN
        out[to_background[labels]] = BACKGROUND
    if drop_lone_myelin:
        sheaths = measure.label(out == MYELIN, connectivity=2)
        m = int(sheaths.max())
        if m:
            touching = np.zeros(m + 1, dtype=bool)
            for ring in _neighbour_labels(sheaths, both=True):  # an axon pixel may touch two sheaths
                touching[np.unique(ring[(ring > 0) & (out == AXON)])] = True
            touching[0] = True
            out[~touching[sheaths]] = BACKGROUND
    return out
