"""``ads-synth rank``: which image to correct first, without labels.

Every image is pseudo-labelled by the family's paths (its base card, proxy or tutor, with all its folds; each other
path that has a card with its first fold), then scored by three label-free signals, each higher when correcting the
image should teach the model more:

================ ============================================================================================
signal           what it measures
================ ============================================================================================
``uncertainty``  1 - mean confidence of the base card (:mod:`ads_synth.segmentation.confidence`)
``disagreement`` 1 - mean leave-one-out agreement (Dice of axon and myelin) between the paths
                 (:func:`ads_synth.segmentation.label_free.agreement_scores`); NaN with a single path
``unusual``      how far the image's fibres are from the set's: the mean over median axon diameter (um), median
                 g-ratio and axon area fraction of ``|x - median| / MAD`` over the images
                 (:func:`ads_synth.segmentation.label_free.fibre_measures`)
================ ============================================================================================

``priority`` is the mean of the signals' normalised ranks over the images (0 lowest, 1 highest; a NaN signal is
left out), with no fitted weight; images are listed by decreasing priority. Inference only (no training import):
the napari widget uses it too.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from ads_synth.errors import InputError

SIGNALS = ("uncertainty", "disagreement", "unusual")
COLUMNS = ("rank", "image", "priority", "uncertainty", "disagreement", "unusual", "mean_confidence",
           "axon_diameter_um", "g_ratio", "axon_fraction", "n_fibres")


def _robust_z(values):
    x = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(x)
    if ok.sum() < 2:
        return np.zeros_like(x)
    med = np.median(x[ok])
    mad = np.median(np.abs(x[ok] - med))
    scale = mad if mad > 0 else (np.std(x[ok]) or 1.0)
    z = np.abs(x - med) / scale
    return np.where(ok, z, np.nan)


def score_images(items) -> list:
    """Rank scored images (rows) by priority.

    Parameters
    ----------
    items : list of dict
        Per image: ``image`` (Path), ``pixel_size``, ``candidates`` (``{path name: label map}``, the base first),
        ``confidence`` (float array in [0, 1] of the base).

    Returns
    -------
    list of dict
        Rows with :data:`COLUMNS`, highest priority first.
    """
    from ads_synth.segmentation.label_free import agreement_scores, fibre_measures, normalised_ranks

    rows = []
    for item in items:
        maps = item["candidates"]
        base = next(iter(maps.values()))
        agreement = agreement_scores(maps) if len(maps) > 1 else {}
        values = [v for v in agreement.values() if not math.isnan(v)]
        measures = fibre_measures(base, item["pixel_size"])
        diameters, g = measures["axon_diameter"], measures["g_ratio"]
        confidence = float(np.mean(item["confidence"])) if item.get("confidence") is not None else math.nan
        rows.append({
            "image": str(item["image"]),
            "mean_confidence": confidence,
            "uncertainty": 1.0 - confidence if not math.isnan(confidence) else math.nan,
            "disagreement": 1.0 - float(np.mean(values)) if values else math.nan,
            "axon_diameter_um": float(np.median(diameters)) if diameters.size else math.nan,
            "g_ratio": float(np.median(g)) if g.size else math.nan,
            "axon_fraction": float(np.mean(base == 2)),
            "n_fibres": int(diameters.size),
        })
    features = [_robust_z([r[k] for r in rows]) for k in ("axon_diameter_um", "g_ratio", "axon_fraction")]
    stacked = np.vstack(features) if rows else np.zeros((3, 0))
    for i, row in enumerate(rows):
        col = stacked[:, i]
        row["unusual"] = float(np.nanmean(col)) if np.isfinite(col).any() else math.nan
    keys = [str(i) for i in range(len(rows))]
    ranks = {s: normalised_ranks({k: rows[int(k)][s] for k in keys}) for s in SIGNALS
             if any(not math.isnan(r[s]) for r in rows)}
    for k in keys:
        got = [ranks[s][k] for s in ranks if not math.isnan(rows[int(k)][s])]
        rows[int(k)]["priority"] = float(np.mean(got)) if got else 0.0
    rows.sort(key=lambda r: (-r["priority"], r["image"]))
    for n, row in enumerate(rows, 1):
        row["rank"] = n
    return rows


def rank_images(paths, family, *, work, pixel_size=None, device=None, progress=True, reuse=False) -> list:
    """Pseudo-label ``paths`` with the family's paths into ``work/<strategy>/`` and rank them (module docstring).

    Parameters
    ----------
    paths : list of str or Path
        Images, folders or datasets.
    family : str
        Model family, e.g. ``TEM2SEM``.
    work : str or Path
        Where the paths' pseudo labels go (reused by ``ads-synth refine --pseudo-labels work/<base strategy>``).
    pixel_size : float, optional
    device : str, optional
    progress : bool
    reuse : bool
        Keep the pseudo labels already in ``work/<strategy>/`` (each image's set is written atomically) and compute
        only the missing ones (a stopped ranking continues; ``--work`` reused).

    Returns
    -------
    list of dict
        :func:`score_images` rows.
    """
    from ads_synth.annotation.family_cards import base_card, family_cards
    from ads_synth.data.datasets import sample_pixel_sizes
    from ads_synth.segmentation.label_free import read_candidate
    from ads_synth.segmentation.pseudo import pseudo_label_images

    cards = family_cards(family)
    base = base_card(cards) or next(iter(cards.values()))
    order = [base] + [c for s, c in sorted(cards.items()) if c is not base]
    from ads_synth.data.datasets import find_samples

    samples = [s for p in ([paths] if isinstance(paths, (str, Path)) else paths) for s in find_samples(p)]
    sizes = sample_pixel_sizes(samples, pixel_size)
    work = Path(work)
    from ads_synth.device import resolve_device
    from ads_synth.integrity import require_verified_card

    device = resolve_device(device)
    for card in order:
        require_verified_card(card)
        folds = list(card.folds) if card.folds is not None else None
        if card is not base and folds:
            folds = folds[:1]
        from ads_synth.segmentation.pseudo import OutputOptions, output_paths

        todo = [s.image for s in samples
                if not (reuse and all(p.is_file() for p in output_paths(s.image, work / card.strategy, [],
                                                                        OutputOptions()).values()))]
        if not todo:
            continue
        pseudo_label_images(todo, translation=card.translation, segmentation=card.nnunet,
                            strategy=card.strategy, out_dir=work / card.strategy, overwrite=True, folds=folds,
                            device=device, progress=progress, pixel_size=pixel_size)
    items = []
    for s, px in zip(samples, sizes):
        maps, confidence = {}, None
        for card in order:
            got = read_candidate(work / card.strategy, s.image)
            maps[card.strategy] = got["label_map"]
            if card is base:
                confidence = got["confidence"]
        items.append({"image": s.image, "pixel_size": px, "candidates": maps, "confidence": confidence})
    return score_images(items)


def _cell(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def rows_csv(rows) -> str:
    """The CSV text of ``rows`` (:data:`COLUMNS`)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([_cell(r[c]) for c in COLUMNS])
    return buf.getvalue()


def rows_table(rows) -> str:
    """A plain-text table of ``rows`` (image names, not paths)."""
    cols = ("rank", "image", "priority", "uncertainty", "disagreement", "unusual", "n_fibres")
    cells = [[_cell(Path(r[c]).name if c == "image" else r[c]) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_rows(rows, path, overwrite=False) -> Path:
    """Write the CSV atomically; InputError when ``path`` exists (a dangling link counts) without ``overwrite``."""
    from ads_synth.atomic import atomic_write_text

    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise InputError(f"{path}: already exists; pass --overwrite to replace it, or choose another -o file.")
    if path.is_symlink():
        path.unlink()
    return atomic_write_text(path, rows_csv(rows))
