"""Label-free scores of candidate pseudo labels: rank the candidates of one U image set without U's labels.

Numpy and scikit-image only (no torch, no nnU-Net): ``ads-synth family train`` and ``ads-synth pseudo`` call it on
the label maps and confidences the candidates (:mod:`ads_synth.segmentation.strategies`) wrote.

A *candidate* is one strategy's pseudo labels of the same images, in the same order: a list of items
``{"label_map": uint8 (H, W) 0 background / 1 myelin / 2 axon, "confidence": float32 (H, W) in [0, 1] or None}``.
Every score is higher-is-better and computed per image, then averaged over the images (each image counts once):

========================= ===================================================================================
score                     what it measures
========================= ===================================================================================
``agreement``             Dice (mean of axon and myelin) of the candidate against the pixel-wise majority of the
                          *other* candidates (leave-one-out; a tie goes to background)
``confidence``            mean pixel confidence (NaN when the candidate has none)
``intensity_coherence``   share of the image's intensity variance that the labels explain (eta squared,
                          :func:`intensity_coherence`; items with their ``"image"``, else NaN)
``axon_enclosed``         fraction of the axon area that lies in holes of the myelin mask (closed rings)
``myelin_enclosing``      fraction of the myelin area in components whose holes hold axon
``g_ratio_plausible``     fraction of axons whose g-ratio ``sqrt(A_axon / (A_axon + A_myelin))`` is in
                          :data:`G_RANGE` (myelin assigned to the nearest axon)
``axon_solidity``         mean solidity of the axons
``axon_roundness``        mean minor / major axis of the axons
``g_ratio_match``         ``1 - KS`` distance between the candidate's g-ratios and L's (``reference``)
``size_match``            ``1 - KS`` distance between axon diameters and L's at the working scale (``reference``)
``shape_match``           ``1 - KS`` distance between axon solidities and L's (``reference``)
========================= ===================================================================================

Candidates that are not fibre-like (``fibre_validity``, the mean of ``axon_enclosed`` and ``myelin_enclosing``,
below :data:`VALIDITY_GATE` of the best candidate's) are set apart first: they do not vote in ``agreement`` and
rank below every candidate that passes (``valid``). The combined ``score`` is parameter-free: the mean over
:data:`COMBINED_SCORES` (``intensity_coherence``; :data:`FALLBACK_SCORES`, ``agreement`` and ``confidence``, when
the items carry no image) of each candidate's normalised rank (0 = worst, 1 = best among the candidates; ties share
the mean rank; a NaN score ranks last; a score NaN for every candidate is left out). Which scores enter it was
measured on sem-dev (docs/results.md, "Label-free scores of the candidates" and "Which score chooses"); no weight is
fitted. Caveats: ``agreement`` needs most candidates to be decent (a majority of broken clones would outvote a good
one) and rewards candidates built on the same translation (they share its errors); ``confidence`` favours
self-trained models (trained on their teachers' confident pixels) over pooled ones (whose folds disagree more);
``intensity_coherence`` assumes the classes differ in mean intensity and rewards a thresholding of the image as much
as a segmentation, hence the gate first.

:func:`label_statistics` summarises labels (L's manual labels, for ``reference``) as quantiles of the fibre
measures, JSON-ready; :func:`ranking_study` measures, when true Dice is known (evaluation only), how well each
score ranks the candidates (Spearman, Dice lost by picking with it).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

BACKGROUND, MYELIN, AXON = 0, 1, 2
#: Plausible g-ratio range of a myelinated fibre.
G_RANGE = (0.4, 0.9)
#: Myelin is assigned to the nearest axon within the thickness of a ring of this g-ratio around a large axon
#: (90th percentile radius), so that g-ratios below :data:`G_RANGE` are measured, not capped.
G_REACH = 0.25
#: Axon components smaller than this many pixels are not fibres (specks).
MIN_AXON_PX = 16
#: Quantile levels stored by :func:`label_statistics`.
N_QUANTILES = 101
#: Morphological scores (no reference needed).
MORPHOLOGY_SCORES = ("axon_enclosed", "myelin_enclosing", "g_ratio_plausible", "axon_solidity", "axon_roundness")
#: Scores against L's label statistics (need ``reference``).
REFERENCE_SCORES = ("g_ratio_match", "size_match", "shape_match")
#: Scores of the labels against their own image (items with an ``"image"``).
IMAGE_SCORES = ("intensity_coherence",)
#: Every score, in table order.
ALL_SCORES = ("agreement", "confidence") + IMAGE_SCORES + MORPHOLOGY_SCORES + REFERENCE_SCORES
#: Scores that enter the combined ``score`` (mean normalised rank), chosen by the sem-dev studies (docs/results.md):
#: the labels' fit to their own image ranked the working candidates of both pools measured (Spearman +0.94 and
#: +0.80), where agreement and confidence, which reward candidates built on the same translation, ranked one pool
#: right and the other backwards; the morphological scores only single out broken candidates.
COMBINED_SCORES = ("intensity_coherence",)
#: The combination when no candidate has its image (:data:`IMAGE_SCORES` NaN for all): the first study's choice.
FALLBACK_SCORES = ("agreement", "confidence")
#: Tie-break of :func:`choose_candidate` (the best single score of the study).
TIE_BREAK = "agreement"
#: What a fibre is: the mean of these is a candidate's ``fibre_validity`` (axons enclosed by myelin, myelin
#: enclosing an axon).
VALIDITY_SCORES = ("axon_enclosed", "myelin_enclosing")
#: A candidate whose ``fibre_validity`` is below this fraction of the best candidate's does not vote in
#: ``agreement`` and ranks below every candidate that passes (``valid`` = 0): broken candidates that resemble each
#: other (e.g. an L model on U images of the other polarity, as is and histogram-matched) would otherwise form a
#: majority against a good one. Parameter-free in spirit: "at least half as fibre-like as the most fibre-like".
VALIDITY_GATE = 0.5


# ---------------------------------------------------------------------------------------------- fibre measures
def _fill_holes(mask) -> np.ndarray:
    """``mask`` with its holes filled (background components not touching the border), scikit-image only."""
    from skimage.measure import label

    mask = np.asarray(mask, dtype=bool)
    background = label(~mask, connectivity=1)
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    holes = (background > 0) & ~np.isin(background, border)
    return mask | holes


def _pixel_sizes(pixel_size, n):
    if pixel_size is None or np.isscalar(pixel_size):
        return [pixel_size] * n
    sizes = list(pixel_size)
    if len(sizes) != n:
        raise ValueError(f"pixel_size: {len(sizes)} values for {n} images")
    return sizes


def fibre_measures(label_map, pixel_size=None, unit_size=None) -> dict:
    """Fibre measures of one label map.

    Parameters
    ----------
    label_map : numpy.ndarray
        uint8 ``(H, W)``: 0 background, 1 myelin, 2 axon.
    pixel_size : float, optional
        Micrometres per pixel (diameters in pixels when None).
    unit_size : float, optional
        Diameters are given in units of ``unit_size`` micrometres (e.g. the domain's working pixel size, so that
        L and U are compared at the working scale); default 1 um (pixels when ``pixel_size`` is None).

    Returns
    -------
    dict
        ``g_ratio``, ``axon_diameter``, ``solidity``, ``roundness`` (one value per axon of at least
        :data:`MIN_AXON_PX` pixels), and the image fractions ``axon_enclosed``, ``myelin_enclosing``
        (NaN when there is no axon / no myelin).
    """
    from skimage.measure import label, regionprops
    from skimage.segmentation import expand_labels

    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError(f"label_map must be 2-D, not {label_map.shape}")
    axon = label_map == AXON
    myelin = label_map == MYELIN
    out = {"g_ratio": np.zeros(0), "axon_diameter": np.zeros(0), "solidity": np.zeros(0), "roundness": np.zeros(0),
           "axon_enclosed": math.nan, "myelin_enclosing": math.nan}
    if axon.any():
        holes = _fill_holes(myelin) & ~myelin
        out["axon_enclosed"] = float(np.count_nonzero(axon & holes) / np.count_nonzero(axon))
    if myelin.any():
        comps = label(myelin, connectivity=2)
        enclosing = 0
        for region in regionprops(comps):
            r0, c0, r1, c1 = region.bbox
            inside = region.image_filled & ~region.image
            if inside.any() and axon[r0:r1, c0:c1][inside].any():
                enclosing += region.area
        out["myelin_enclosing"] = float(enclosing / np.count_nonzero(myelin))
    axons = label(axon, connectivity=1)
    regions = [r for r in regionprops(axons) if r.area >= MIN_AXON_PX]
    if not regions:
        return out
    radii = np.array([r.equivalent_diameter_area / 2 for r in regions])
    reach = int(math.ceil((1 / G_REACH - 1) * float(np.quantile(radii, 0.9)))) + 1
    owner = expand_labels(axons, distance=reach)
    owner[~myelin] = 0
    myelin_area = np.bincount(owner.ravel(), minlength=axons.max() + 1)
    areas = np.array([r.area for r in regions], dtype=np.float64)
    own = myelin_area[[r.label for r in regions]].astype(np.float64)
    out["g_ratio"] = np.sqrt(areas / (areas + own))
    scale = 1.0
    if pixel_size is not None:
        scale = float(pixel_size) / (float(unit_size) if unit_size is not None else 1.0)
    out["axon_diameter"] = 2 * radii * scale
    out["solidity"] = np.array([r.solidity for r in regions])
    out["roundness"] = np.array([r.axis_minor_length / r.axis_major_length if r.axis_major_length > 0 else 1.0
                                 for r in regions])
    return out


def _fractions(measures) -> dict:
    g = measures["g_ratio"]
    none = g.size == 0
    return {
        "axon_enclosed": 0.0 if math.isnan(measures["axon_enclosed"]) else measures["axon_enclosed"],
        "myelin_enclosing": 0.0 if math.isnan(measures["myelin_enclosing"]) else measures["myelin_enclosing"],
        "g_ratio_plausible": 0.0 if none else float(np.mean((g >= G_RANGE[0]) & (g <= G_RANGE[1]))),
        "axon_solidity": 0.0 if none else float(np.mean(measures["solidity"])),
        "axon_roundness": 0.0 if none else float(np.mean(measures["roundness"])),
    }


def label_statistics(label_maps, pixel_size, unit_size=None) -> dict:
    """Statistics of a set of label maps (L's manual labels: the ``reference`` of :func:`score_candidates`).

    Parameters
    ----------
    label_maps : list of numpy.ndarray
        uint8 label maps (0 / 1 / 2).
    pixel_size : float or list of float or None
        Micrometres per pixel, one for all or one per map.
    unit_size : float, optional
        Unit of the diameters in micrometres (see :func:`fibre_measures`); pass L's working pixel size to compare
        with U candidates scored with U's working pixel size.

    Returns
    -------
    dict
        JSON-ready: ``n_images``, ``n_fibres``, ``unit_um``; quantiles (:data:`N_QUANTILES` levels) of ``g_ratio``,
        ``axon_diameter``, ``solidity``, ``roundness``; medians ``g_ratio_median``, ``axon_diameter_median``; and
        the mean image fractions ``axon_enclosed``, ``myelin_enclosing``, ``g_ratio_plausible``.
    """
    label_maps = list(label_maps)
    sizes = _pixel_sizes(pixel_size, len(label_maps))
    pooled = {k: [] for k in ("g_ratio", "axon_diameter", "solidity", "roundness")}
    fractions = []
    for lm, px in zip(label_maps, sizes):
        m = fibre_measures(lm, px, unit_size)
        for k in pooled:
            pooled[k].append(m[k])
        fractions.append(_fractions(m))
    levels = np.linspace(0, 1, N_QUANTILES)
    out = {"n_images": len(label_maps), "unit_um": None if pixel_size is None else (unit_size or 1.0)}
    values = {k: np.concatenate(v) if v else np.zeros(0) for k, v in pooled.items()}
    out["n_fibres"] = int(values["g_ratio"].size)
    for k, v in values.items():
        out[k] = [float(q) for q in np.quantile(v, levels)] if v.size else []
    out["g_ratio_median"] = float(np.median(values["g_ratio"])) if values["g_ratio"].size else math.nan
    out["axon_diameter_median"] = (float(np.median(values["axon_diameter"])) if values["axon_diameter"].size
                                   else math.nan)
    for k in ("axon_enclosed", "myelin_enclosing", "g_ratio_plausible"):
        out[k] = float(np.mean([f[k] for f in fractions])) if fractions else math.nan
    return out


def ks_distance(values, quantiles) -> float:
    """Kolmogorov-Smirnov distance between a sample ``values`` and a distribution given by its ``quantiles``
    (equally spaced levels 0..1); 1 when ``values`` is empty."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    quantiles = np.asarray(quantiles, dtype=np.float64)
    if values.size == 0 or quantiles.size < 2:
        return 1.0
    levels = np.linspace(0, 1, quantiles.size)
    grid = np.union1d(values, quantiles)
    ref_cdf = np.interp(grid, quantiles, levels, left=0.0, right=1.0)
    own_cdf = np.searchsorted(values, grid, side="right") / values.size
    own_before = np.searchsorted(values, grid, side="left") / values.size
    return float(max(np.max(np.abs(own_cdf - ref_cdf)), np.max(np.abs(own_before - ref_cdf))))


# -------------------------------------------------------------------------------------------------- scoring
def _check(candidates):
    if not candidates:
        raise ValueError("no candidates to score")
    counts = {name: len(items) for name, items in candidates.items()}
    if len(set(counts.values())) != 1 or not next(iter(counts.values())):
        raise ValueError(f"every candidate needs the same non-zero number of images: {counts}")
    n = next(iter(counts.values()))
    for i in range(n):
        shapes = {name: np.shape(items[i]["label_map"]) for name, items in candidates.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"image {i}: the candidates' label maps differ in shape: {shapes}")
    return n


def _dice(a, b):
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(a & b) / total


def agreement_scores(label_maps) -> dict:
    """Leave-one-out agreement of each of several label maps of one image: ``{name: Dice}``.

    Dice (mean of axon and myelin) of each map against the pixel-wise majority of the others (ties go to
    background, then myelin); NaN with fewer than two candidates.
    """
    names = list(label_maps)
    if len(names) < 2:
        return {n: math.nan for n in names}
    votes = np.zeros((3,) + np.shape(label_maps[names[0]]), dtype=np.int16)
    for name in names:
        lm = np.asarray(label_maps[name])
        for cls in (BACKGROUND, MYELIN, AXON):
            votes[cls] += lm == cls
    out = {}
    for name in names:
        lm = np.asarray(label_maps[name])
        others = votes.copy()
        for cls in (BACKGROUND, MYELIN, AXON):
            others[cls] -= lm == cls
        consensus = np.argmax(others, axis=0)
        out[name] = 0.5 * (_dice(lm == AXON, consensus == AXON) + _dice(lm == MYELIN, consensus == MYELIN))
    return out


def intensity_coherence(image, label_map) -> float:
    """The share of ``image``'s intensity variance that ``label_map`` explains (the correlation ratio, eta squared).

    ``sum_c p_c (mean_c - mean)^2 / var``, over the classes c of the label map (``p_c`` its share of the pixels,
    ``mean_c`` its mean intensity): 1 when every class is of one intensity, 0 when the classes do not differ. Labels
    that follow the image's own structures make homogeneous classes that differ from each other (intra-region
    uniformity, the oldest family of unsupervised segmentation measures); labels shifted off the sheaths mix them
    with their neighbours. It needs no reference and no other candidate, and it does not know which class should be
    brighter, so it holds for any modality whose classes differ in mean intensity. A label map that merely
    thresholds the image scores high too: it is meant for candidates that pass the fibre-validity gate. NaN for a
    constant image or a 1-class map.
    """
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3:  # RGB: its luminance
        x = x[..., :3].mean(axis=2)
    label_map = np.asarray(label_map)
    if x.shape != label_map.shape:
        raise ValueError(f"image {x.shape} and label map {label_map.shape} differ in shape")
    total = x.var()
    if not total > 0 or np.unique(label_map).size < 2:
        return math.nan
    counts = np.bincount(label_map.ravel(), minlength=3).astype(np.float64)
    sums = np.bincount(label_map.ravel(), weights=x.ravel(), minlength=3)
    present = counts > 0
    means = sums[present] / counts[present]
    return float(np.sum(counts[present] / x.size * (means - x.mean()) ** 2) / total)


def score_candidates(candidates, *, pixel_size=None, reference=None, unit_size=None,
                     combined=COMBINED_SCORES, per_image=False) -> dict:
    """Label-free scores of each candidate (higher is better) and their combination ``score``.

    Parameters
    ----------
    candidates : dict
        ``{name: [item, ...]}``, items ``{"label_map": uint8 (H, W), "confidence": float32 (H, W) or None}``; the
        same images in the same order for every candidate.
    pixel_size : float or list of float, optional
        Micrometres per pixel of the images (one for all or one per image); sizes in pixels when None.
    reference : dict, optional
        :func:`label_statistics` of L's labels: adds ``g_ratio_match``, ``size_match``, ``shape_match``.
    unit_size : float, optional
        Unit of the U diameters in micrometres (U's working pixel size when ``reference`` was computed with L's).
    combined : sequence of str
        Scores whose mean normalised rank is ``score`` (those that are NaN for every candidate are left out).
    per_image : bool
        Also return each score image by image under ``"per_image"`` (``{score_name: [float, ...]}``).

    Returns
    -------
    dict
        ``{name: {score_name: float, ..., "score": float}}``; the reference scores compare the fibres pooled over
        the images (per image: each image's own fibres).
    """
    n = _check(candidates)
    names = list(candidates)
    sizes = _pixel_sizes(pixel_size, n)
    per_image = {name: {k: [] for k in ALL_SCORES} for name in names}
    pooled = {name: {k: [] for k in ("g_ratio", "axon_diameter", "solidity")} for name in names}
    for i in range(n):
        maps = {name: np.asarray(candidates[name][i]["label_map"]) for name in names}
        for name, value in agreement_scores(maps).items():
            per_image[name]["agreement"].append(value)
        for name in names:
            conf = candidates[name][i].get("confidence")
            per_image[name]["confidence"].append(math.nan if conf is None else float(np.mean(conf)))
            image = candidates[name][i].get("image")
            per_image[name]["intensity_coherence"].append(
                math.nan if image is None else intensity_coherence(image, maps[name]))
            m = fibre_measures(maps[name], sizes[i], unit_size)
            for k, v in _fractions(m).items():
                per_image[name][k].append(v)
            for k in pooled[name]:
                pooled[name][k].append(m[k])
            if reference:
                for k, v in _reference_scores(m, reference).items():
                    per_image[name][k].append(v)
    scores = {}
    for name in names:
        s = {k: float(np.mean(v)) if v and not all(math.isnan(x) for x in v) else math.nan
             for k, v in per_image[name].items() if k not in REFERENCE_SCORES}
        if reference:
            s.update(_reference_scores({k: np.concatenate(v) for k, v in pooled[name].items()}, reference))
        scores[name] = s
    valid = _validity_gate(scores)
    if 2 <= len(valid) < len(names):  # agreement among the candidates that pass the gate only
        votes = {name: [] for name in valid}
        for i in range(n):
            for name, value in agreement_scores({v: np.asarray(candidates[v][i]["label_map"])
                                                 for v in valid}).items():
                votes[name].append(value)
        for name in valid:
            scores[name]["agreement"] = float(np.mean(votes[name]))
    if not _available(scores, combined):
        combined = FALLBACK_SCORES
    combine_ranks(scores, combined)
    if len(valid) < len(names):  # every candidate that passes the gate ranks above every one that does not
        for group, offset in ((valid, 0.5), ([x for x in names if x not in valid], 0.0)):
            sub = {x: dict(scores[x]) for x in group}
            combine_ranks(sub, combined)
            for x in group:
                scores[x]["score"] = offset + 0.5 * sub[x]["score"] if not math.isnan(sub[x]["score"]) else offset
    if per_image:
        for name in names:
            scores[name]["per_image"] = {k: v for k, v in per_image[name].items() if v}
    return scores


def _available(scores, use) -> bool:
    """Whether any of the scores ``use`` is a number for some candidate."""
    return any(not math.isnan(s.get(k, math.nan)) for s in scores.values() for k in use)


def _validity_gate(scores) -> list:
    """Add ``fibre_validity`` and ``valid`` (1.0 / 0.0, :data:`VALIDITY_GATE`) to ``scores`` (in place); return the
    names of the candidates that pass."""
    for s in scores.values():
        values = [s.get(k, math.nan) for k in VALIDITY_SCORES]
        s["fibre_validity"] = float(np.mean(values)) if not any(math.isnan(v) for v in values) else math.nan
    best = max((s["fibre_validity"] for s in scores.values() if not math.isnan(s["fibre_validity"])), default=0.0)
    valid = [name for name, s in scores.items()
             if best <= 0 or (not math.isnan(s["fibre_validity"]) and s["fibre_validity"] >= VALIDITY_GATE * best)]
    for name, s in scores.items():
        s["valid"] = 1.0 if name in valid else 0.0
    return valid


def _reference_scores(measures, reference) -> dict:
    """``1 - KS`` of the fibres' g-ratios, diameters and solidities against ``reference``'s quantiles."""
    return {"g_ratio_match": 1.0 - ks_distance(measures["g_ratio"], reference.get("g_ratio", [])),
            "size_match": 1.0 - ks_distance(measures["axon_diameter"], reference.get("axon_diameter", [])),
            "shape_match": 1.0 - ks_distance(measures["solidity"], reference.get("solidity", []))}


def normalised_ranks(values) -> dict:
    """``{name: rank in [0, 1]}`` of ``{name: value}`` (1 = highest; ties share the mean rank; NaN ranks last)."""
    names = list(values)
    if len(names) == 1:
        return {names[0]: 1.0}
    x = np.array([values[n] for n in names], dtype=np.float64)
    x = np.where(np.isnan(x), -np.inf, x)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    for v in np.unique(x):  # ties: the mean rank
        ranks[x == v] = ranks[x == v].mean()
    return {n: float(r / (len(x) - 1)) for n, r in zip(names, ranks)}


def combine_ranks(scores, use=COMBINED_SCORES, key="score") -> dict:
    """Add ``key``: the mean normalised rank over the scores ``use`` to each candidate of ``scores`` (in place).

    Scores missing or NaN for every candidate are left out; with none left the combination is NaN.
    """
    names = list(scores)
    use = [k for k in use if _available(scores, (k,))]
    if not use:
        for n in names:
            scores[n][key] = math.nan
        return scores
    ranks = {k: normalised_ranks({n: scores[n].get(k, math.nan) for n in names}) for k in use}
    for n in names:
        scores[n][key] = float(np.mean([ranks[k][n] for k in use]))
    return scores


def choose_candidate(scores, eligible=None, key="score", tie_break=TIE_BREAK) -> str:
    """The candidate with the best ``key`` score among ``eligible`` ones (default all).

    Ties go to the higher ``tie_break`` score (when the candidates have it), then to the first in ``scores``.

    Raises
    ------
    ValueError
        No eligible candidate was scored.
    """
    names = [n for n in scores if eligible is None or n in set(eligible)]
    if not names:
        raise ValueError(f"no eligible candidate among the scored ones {sorted(scores)}")
    def value(n, k):
        v = scores[n].get(k, math.nan)
        return -math.inf if v is None or math.isnan(v) else v

    return max(names, key=lambda n: (value(n, key), value(n, tie_break), -names.index(n)))


# -------------------------------------------------------------------------------------------- reading
def read_candidate(folder, image) -> dict | None:
    """One candidate item for ``image`` from the files a strategy wrote into ``folder``; None when missing.

    The label map comes from ``<stem>_seg-axon.png`` and ``<stem>_seg-myelin.png`` (axon wins); the confidence from
    ``<stem>_seg-confidence.tif`` when written, else ``<stem>_seg-confidence.png`` / 255, else None.
    """
    from ads_synth.data.images import read_label
    from ads_synth.data.writers import segmentation_paths
    from ads_synth.segmentation.pseudo import CONFIDENCE_SUFFIX, CONFIDENCE_TIFF_SUFFIX

    paths = segmentation_paths(Path(image), Path(folder))
    if not (paths["axon"].is_file() and paths["myelin"].is_file()):
        return None
    axon = read_label(paths["axon"]) > 0
    label_map = np.zeros(axon.shape, np.uint8)
    label_map[read_label(paths["myelin"]) > 0] = MYELIN
    label_map[axon] = AXON
    stem = Path(image).stem
    confidence = None
    tiff, png = Path(folder) / f"{stem}{CONFIDENCE_TIFF_SUFFIX}", Path(folder) / f"{stem}{CONFIDENCE_SUFFIX}"
    if tiff.is_file():
        import tifffile

        confidence = np.clip(np.asarray(tifffile.imread(tiff), dtype=np.float32), 0, 1)
    elif png.is_file():
        confidence = read_label(png).astype(np.float32) / 255.0
    return {"label_map": label_map, "confidence": confidence}


def load_candidates(folders, images) -> dict:
    """``{name: [item, ...]}`` of :func:`read_candidate` for ``images`` from ``folders`` (``{name: folder}``), each
    item with its ``"image"`` (the array of ``images``' file, for :func:`intensity_coherence`).

    Raises
    ------
    FileNotFoundError
        A candidate lacks an image's label files (score only the images every candidate wrote).
    """
    from ads_synth.data.images import read_image

    arrays = [read_image(image) for image in images]  # one array per image, shared by the candidates' items
    out = {}
    for name, folder in folders.items():
        items = []
        for image, array in zip(images, arrays):
            item = read_candidate(folder, image)
            if item is None:
                raise FileNotFoundError(f"{folder}: no segmentation of {Path(image).name} for candidate {name}")
            if array.shape[:2] == item["label_map"].shape:
                item["image"] = array
            items.append(item)
        out[name] = items
    return out


# ----------------------------------------------------------------------------------------- ranking study
def spearman(x, y) -> float:
    """Spearman rank correlation of two equal-length sequences (mean ranks for ties; NaN when constant)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size < 2:
        return math.nan
    rx = np.array(list(normalised_ranks(dict(enumerate(x))).values()))
    ry = np.array(list(normalised_ranks(dict(enumerate(y))).values()))
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def ranking_study(scores, true_dice, score_names=None) -> dict:
    """How well each label-free score ranks the candidates (evaluation only: ``true_dice`` uses U's labels).

    Parameters
    ----------
    scores : dict
        :func:`score_candidates` output.
    true_dice : dict
        ``{name: Dice}`` against the manual labels.
    score_names : sequence of str, optional
        Default every score present, and ``score``.

    Returns
    -------
    dict
        ``{score_name: {"spearman": rho, "chosen": name, "dice_lost": best Dice - chosen's Dice}}``.
    """
    names = [n for n in scores if n in true_dice]
    if score_names is None:
        score_names = [k for k in ALL_SCORES + ("score",) if any(k in scores[n] for n in names)]
    best = max(true_dice[n] for n in names)
    out = {}
    for k in score_names:
        values = {n: scores[n].get(k, math.nan) for n in names}
        if all(math.isnan(v) for v in values.values()):
            continue
        chosen = choose_candidate({n: {k: values[n]} for n in names}, key=k)
        out[k] = {"spearman": spearman([values[n] for n in names], [true_dice[n] for n in names]),
                  "chosen": chosen, "dice_lost": float(best - true_dice[chosen])}
    return out
