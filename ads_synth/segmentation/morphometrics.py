"""Fibre morphometrics of label maps with AxonDeepSeg's own functions, and prediction-against-truth comparisons.

Each label map (0 background, 1 myelin, 2 axon) is measured as ``axondeepseg_morphometrics`` measures it
(``AxonDeepSeg.morphometrics.compute_morphometrics.get_axon_morphometrics`` with the axon and myelin masks, the
pixel size and a circular axon shape), with ADS's own watershed of the fibres and ADS's formulas, in array
operations (:func:`fibre_table`; ADS's row-by-row table, :func:`ads_fibre_table`, takes a minute on a large image). A **fibre** is an object that
passes :class:`FibreCriteria`: by default ``0 < g-ratio < 1`` and axon diameter >= 1 um (objects without a myelin
sheath, with a g-ratio >= 1 or a tiny axon are specks and fragments, not fibres).

Per image, :func:`summarize_fibres` gives the number of ADS objects, the fibre count, the median and interquartile
range of the g-ratio, and the medians of axon diameter and myelin thickness over the fibres.
:func:`evaluate_morphometrics` does this for every ensemble prediction under an ``ads-synth evaluate`` prediction
folder and for the matching manual labels, with the absolute differences;
:func:`write_morphometrics_reports` writes ``morphometrics_images.csv``, ``morphometrics_table.csv``,
``morphometrics_table.md`` and ``morphometrics_gratio.png`` (the two g-ratio distributions per strategy).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ads_synth.data.datasets import AXON, MYELIN
from ads_synth.errors import InputError

#: Fibre criteria of the issue and of ``docs/results.md``.
DEFAULT_MIN_AXON_DIAMETER_UM = 1.0


@dataclass(frozen=True)
class FibreCriteria:
    """Which ADS objects count as fibres: ``min_gratio < g < max_gratio`` and axon diameter >= ``min_axon_diameter``.

    Attributes
    ----------
    min_axon_diameter : float
        Micrometres.
    min_gratio, max_gratio : float
        Open interval of the g-ratio.
    """

    min_axon_diameter: float = DEFAULT_MIN_AXON_DIAMETER_UM
    min_gratio: float = 0.0
    max_gratio: float = 1.0

    def check(self):
        if not (self.min_axon_diameter >= 0 and math.isfinite(self.min_axon_diameter)):
            raise InputError(f"--min-axon-diameter {self.min_axon_diameter}: give a length in micrometres >= 0.")
        if not (0 <= self.min_gratio < self.max_gratio <= 1):
            raise InputError(f"--gratio-range {self.min_gratio} {self.max_gratio}: give 0 <= low < high <= 1.")
        return self


#: Per-image summary keys (:func:`summarize_fibres`).
SUMMARY_KEYS = ("objects", "fibres", "gratio_median", "gratio_q1", "gratio_q3", "gratio_iqr", "axon_diam_median",
                "myelin_thickness_median")
#: The keys compared between prediction and truth, with the kind of difference reported.
COMPARED = ("fibres", "gratio_median", "gratio_iqr", "axon_diam_median", "myelin_thickness_median")


def fibre_table(label_map, pixel_size):
    """AxonDeepSeg's morphometrics of every axon object of ``label_map``, computed fast (a pandas DataFrame).

    The same objects and formulas as ``AxonDeepSeg.morphometrics.compute_morphometrics.get_axon_morphometrics``
    with ``axon_shape="circle"`` (a test checks that the values are equal): axons are the 8-connected components of
    the axon mask; each fibre is ADS's own ``get_watershed_segmentation`` of axon + myelin seeded at the axons'
    centroids; the axon diameter is the axon's equivalent diameter, the myelin thickness half the difference of
    the fibre's and the axon's equivalent diameters, ``g = (d/2) / (d/2 + thickness)``; a fibre whose centroid
    falls outside axon + myelin has no myelin values (NaN). ADS builds its table row by row (quadratic in the
    number of axons: a minute for 2,500 axons); this builds it with one pass of array operations.

    Parameters
    ----------
    label_map : numpy.ndarray
        uint8 ``(H, W)``: 0 background, 1 myelin, 2 axon.
    pixel_size : float
        Micrometres per pixel.

    Returns
    -------
    pandas.DataFrame
        ``x0``, ``y0`` (pixels), ``axon_diam``, ``myelin_thickness`` (um), ``axon_area``, ``myelin_area``,
        ``axonmyelin_area`` (um²) and ``gratio``, one row per axon, in ADS's order.
    """
    import pandas as pd
    from skimage import measure

    from AxonDeepSeg.morphometrics.compute_morphometrics import get_watershed_segmentation

    label_map = np.asarray(label_map)
    px = float(pixel_size)
    axon = (label_map == AXON).astype(np.uint8)
    myelin = (label_map == MYELIN).astype(np.uint8)
    labels = measure.label(axon, connectivity=2)
    n = int(labels.max())
    columns = ("x0", "y0", "axon_diam", "axon_area", "gratio", "myelin_thickness", "myelin_area", "axonmyelin_area")
    if n == 0:
        return pd.DataFrame({c: np.zeros(0) for c in columns})
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(float)
    rows, cols = np.nonzero(labels)
    ids = labels[rows, cols]
    y0 = np.bincount(ids, weights=rows, minlength=n + 1)[1:] / area
    x0 = np.bincount(ids, weights=cols, minlength=n + 1)[1:] / area
    seeds = (y0.astype(int), x0.astype(int))
    fibres = get_watershed_segmentation(axon, myelin, seeds)
    fibre_area = np.bincount(fibres.ravel(), minlength=n + 1).astype(float)
    at_centroid = fibres[seeds]
    d_axon = np.sqrt(4.0 * area / np.pi)
    d_fibre = np.where(at_centroid > 0, np.sqrt(4.0 * fibre_area[at_centroid] / np.pi), np.nan)
    thickness = (d_fibre - d_axon) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        gratio = (d_axon / 2.0) / (d_axon / 2.0 + thickness)
    return pd.DataFrame({
        "x0": x0, "y0": y0, "axon_diam": d_axon * px, "axon_area": area * px ** 2, "gratio": gratio,
        "myelin_thickness": thickness * px, "myelin_area": (np.where(at_centroid > 0, fibre_area[at_centroid], np.nan)
                                                            - area) * px ** 2,
        "axonmyelin_area": np.where(at_centroid > 0, fibre_area[at_centroid], np.nan) * px ** 2,
    })


def ads_fibre_table(label_map, pixel_size):
    """The table of ``AxonDeepSeg``'s own ``get_axon_morphometrics`` (slow on large images; see :func:`fibre_table`)."""
    import warnings

    from loguru import logger

    from AxonDeepSeg.morphometrics.compute_morphometrics import get_axon_morphometrics

    label_map = np.asarray(label_map)
    logger.disable("AxonDeepSeg")  # one warning per axon without myelin otherwise
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return get_axon_morphometrics((label_map == AXON).astype(np.uint8),
                                          im_myelin=(label_map == MYELIN).astype(np.uint8),
                                          pixel_size=float(pixel_size), axon_shape="circle", return_border_info=False)
    finally:
        logger.enable("AxonDeepSeg")


def fibre_mask(table, criteria=FibreCriteria()):
    """Boolean array: which rows of an ADS morphometrics table are fibres (:class:`FibreCriteria`)."""
    if len(table) == 0 or "gratio" not in table:
        return np.zeros(len(table), dtype=bool)
    g = table["gratio"].to_numpy(dtype=float)
    d = table["axon_diam"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return (g > criteria.min_gratio) & (g < criteria.max_gratio) & (d >= criteria.min_axon_diameter)


def _median(values):
    return float(np.median(values)) if len(values) else math.nan


def summarize_fibres(table, criteria=FibreCriteria()) -> dict:
    """Summary of one image's morphometrics table over its fibres (:data:`SUMMARY_KEYS`; NaN without fibres)."""
    keep = fibre_mask(table, criteria)
    g = table["gratio"].to_numpy(dtype=float)[keep] if keep.any() else np.array([])
    out = {"objects": int(len(table)), "fibres": int(keep.sum())}
    q1, q3 = (np.percentile(g, [25, 75]) if g.size else (math.nan, math.nan))
    out.update(gratio_median=_median(g), gratio_q1=float(q1), gratio_q3=float(q3), gratio_iqr=float(q3 - q1))
    for key, col in (("axon_diam_median", "axon_diam"), ("myelin_thickness_median", "myelin_thickness")):
        out[key] = _median(table[col].to_numpy(dtype=float)[keep]) if keep.any() else math.nan
    return out


def compare_summaries(pred, truth) -> dict:
    """Absolute differences ``|pred - truth|`` of :data:`COMPARED` (``<key>_absdiff``), and relative ones of the
    fibre count and the median axon diameter (``<key>_reldiff``, a fraction of the truth's value)."""
    out = {}
    for key in COMPARED:
        out[f"{key}_absdiff"] = abs(float(pred[key]) - float(truth[key]))
    for key in ("fibres", "axon_diam_median"):
        t = float(truth[key])
        out[f"{key}_reldiff"] = abs(float(pred[key]) - t) / t if t else math.nan
    return out


@dataclass
class MorphometricsReport:
    """Morphometrics of predictions and truth.

    Attributes
    ----------
    rows : list of dict
        One per (strategy, image): ``strategy``, ``image``, ``pixel_size``, ``pred_<key>`` and ``truth_<key>`` for
        :data:`SUMMARY_KEYS`, and the :func:`compare_summaries` differences.
    gratios : dict
        ``{strategy: {"pred": array, "truth": array}}``, the fibres' g-ratios pooled over images (figure).
    criteria : FibreCriteria
    """

    rows: list = field(default_factory=list)
    gratios: dict = field(default_factory=dict)
    criteria: FibreCriteria = field(default_factory=FibreCriteria)

    def strategies(self):
        seen = []
        for r in self.rows:
            if r["strategy"] not in seen:
                seen.append(r["strategy"])
        return seen


def measure_fibres(label_map, pixel_size, criteria=FibreCriteria()):
    """:func:`summarize_fibres` of one label map, and its fibres' g-ratios (a float array)."""
    table = fibre_table(label_map, pixel_size)
    keep = fibre_mask(table, criteria)
    gratios = table["gratio"].to_numpy(dtype=float)[keep] if keep.any() else np.array([])
    return summarize_fibres(table, criteria), gratios


def comparison_row(pred_summary, truth_summary) -> dict:
    """``pred_<key>``, ``truth_<key>`` for :data:`SUMMARY_KEYS` and the :func:`compare_summaries` differences."""
    row = {f"pred_{k}": v for k, v in pred_summary.items()}
    row.update({f"truth_{k}": v for k, v in truth_summary.items()})
    row.update(compare_summaries(pred_summary, truth_summary))
    return row


def label_map_morphometrics(pred, truth, pixel_size, criteria=FibreCriteria()) -> dict:
    """Morphometric comparison of a predicted and a true label map of one image (:func:`comparison_row`)."""
    return comparison_row(measure_fibres(pred, pixel_size, criteria)[0],
                          measure_fibres(truth, pixel_size, criteria)[0])


def evaluate_morphometrics(pred_dir, truth, criteria=FibreCriteria()) -> MorphometricsReport:
    """Morphometrics of every ensemble prediction under ``pred_dir`` and of the manual labels of ``truth``.

    Parameters
    ----------
    pred_dir : str or Path
        Predictions, as for :func:`ads_synth.segmentation.evaluate.evaluate` (only the ensembles are measured:
        they are what users measure).
    truth : str or Path
        Labeled dataset; every image needs a pixel size.
    criteria : FibreCriteria

    Returns
    -------
    MorphometricsReport
    """
    from ads_synth.data.datasets import find_samples, load_label_map
    from ads_synth.data.writers import AXONMYELIN_SUFFIX
    from ads_synth.segmentation.evaluate import ENSEMBLE, _prediction_label_map, prediction_sets
    from ads_synth.segmentation.strategies import strategy_names

    order = strategy_names()  # the registry's order; unregistered folder names follow alphabetically

    criteria = criteria.check()
    sets = prediction_sets(pred_dir)
    samples = [s for s in find_samples(truth) if s.has_labels]
    report = MorphometricsReport(criteria=criteria)
    truth_cache = {}
    for strategy in [s for s in order if s in sets] + sorted(set(sets) - set(order)):
        folder = sets[strategy].get(ENSEMBLE)
        if folder is None:
            continue
        pooled = {"pred": [], "truth": []}
        for s in samples:
            pred_path = folder / f"{s.image.stem}{AXONMYELIN_SUFFIX}"
            if not pred_path.is_file():
                continue
            if s.pixel_size is None:
                raise InputError(f"{s.image}: no pixel size for the morphometrics; add pixel_size_in_micrometer.txt "
                                 "or a BIDS sidecar, or run with --no-morphometrics.")
            if s.name not in truth_cache:
                truth_cache[s.name] = measure_fibres(load_label_map(s), s.pixel_size, criteria)
            truth_summary, truth_g = truth_cache[s.name]
            summary, pred_g = measure_fibres(_prediction_label_map(pred_path, s), s.pixel_size, criteria)
            row = {"strategy": strategy, "image": s.name, "pixel_size": float(s.pixel_size)}
            row.update(comparison_row(summary, truth_summary))
            report.rows.append(row)
            pooled["pred"].append(pred_g)
            pooled["truth"].append(truth_g)
        if pooled["pred"]:
            report.gratios[strategy] = {k: np.concatenate(v) for k, v in pooled.items()}
    return report


def summarize_report(report) -> list[dict]:
    """Per strategy, the mean over images of every numeric column of :attr:`MorphometricsReport.rows`."""
    from ads_synth.segmentation.strategies import titles

    names = titles()

    table = []
    for strategy in report.strategies():
        rows = [r for r in report.rows if r["strategy"] == strategy]
        entry = {"strategy": strategy, "title": names.get(strategy, strategy), "n": len(rows)}
        for key in rows[0]:
            if key in ("strategy", "image"):
                continue
            values = np.asarray([r[key] for r in rows], dtype=float)
            values = values[~np.isnan(values)]
            entry[key] = float(values.mean()) if values.size else math.nan
        table.append(entry)
    return table


#: Columns of the printed / Markdown table: (header, key, format).
_TABLE = (
    ("Fibres pred / manual", ("pred_fibres", "truth_fibres"), "{:.0f} / {:.0f}"),
    ("|Δ fibres|", ("fibres_reldiff",), "{:.1%}"),
    ("g-ratio pred / manual", ("pred_gratio_median", "truth_gratio_median"), "{:.3f} / {:.3f}"),
    ("|Δ g|", ("gratio_median_absdiff",), "{:.3f}"),
    ("g IQR pred / manual", ("pred_gratio_iqr", "truth_gratio_iqr"), "{:.3f} / {:.3f}"),
    ("Axon diam. pred / manual (um)", ("pred_axon_diam_median", "truth_axon_diam_median"), "{:.2f} / {:.2f}"),
    ("|Δ diam.|", ("axon_diam_median_reldiff",), "{:.1%}"),
    ("Myelin thick. pred / manual (um)", ("pred_myelin_thickness_median", "truth_myelin_thickness_median"),
     "{:.2f} / {:.2f}"),
    ("|Δ thick.| (um)", ("myelin_thickness_median_absdiff",), "{:.3f}"),
)


def _cells(entry):
    out = []
    for _, keys, fmt in _TABLE:
        values = [entry.get(k, math.nan) for k in keys]
        out.append("n/a" if any(math.isnan(v) for v in values) else fmt.format(*values))
    return out


def _rows_for_display(report, per_image):
    rows = []
    for entry in summarize_report(report):
        rows.append([entry["title"], f"mean of {entry['n']}"] + _cells(entry))
        if per_image:
            for r in (r for r in report.rows if r["strategy"] == entry["strategy"]):
                rows.append(["", r["image"]] + _cells(r))
    return rows


def _header(report):
    c = report.criteria
    return ["Strategy", "image"] + [h for h, _, _ in _TABLE], (
        f"fibres: {c.min_gratio:g} < g-ratio < {c.max_gratio:g}, axon diameter >= {c.min_axon_diameter:g} um; "
        "medians over fibres; |Δ| of fibres and diameter relative to manual")


def format_morphometrics(report, per_image=True) -> str:
    """The comparison as aligned text (per strategy the mean over images, then each image)."""
    header, note = _header(report)
    lines = [header] + _rows_for_display(report, per_image)
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    text = "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in lines)
    return f"Morphometrics ({note})\n{text}"


def markdown_morphometrics(report, per_image=True) -> str:
    """The comparison in Markdown."""
    header, note = _header(report)
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows_for_display(report, per_image)]
    return f"Morphometrics ({note}).\n\n" + "\n".join(lines) + "\n"


def plot_gratios(report, path) -> Path:
    """Histograms of the fibres' g-ratios, prediction against manual labels, one panel per strategy."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from ads_synth.segmentation.strategies import titles

    names = titles()

    strategies = [s for s in report.strategies() if s in report.gratios] or [None]
    fig = Figure(figsize=(3.6 * len(strategies), 3.2), constrained_layout=True)
    axes = fig.subplots(1, len(strategies), sharey=True, squeeze=False)[0]
    bins = np.linspace(report.criteria.min_gratio, report.criteria.max_gratio, 41)
    for ax, strategy in zip(axes, strategies):
        data = report.gratios.get(strategy, {"pred": np.array([]), "truth": np.array([])})
        for kind, color, label in (("truth", "#636363", "manual"), ("pred", "#e6550d", "prediction")):
            g = data[kind]
            ax.hist(g, bins=bins, density=True, histtype="step" if kind == "pred" else "stepfilled",
                    color=color, alpha=1.0 if kind == "pred" else 0.35, linewidth=1.5,
                    label=f"{label} (n={g.size}, median {np.median(g):.3f})" if g.size else f"{label} (n=0)")
        ax.set_title(names.get(strategy, strategy or "no predictions"), fontsize=9)
        ax.set_xlabel("g-ratio")
        ax.legend(fontsize=6, loc="upper left")
    axes[0].set_ylabel("density (fibres pooled over images)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def morphometrics_report_paths(out_dir) -> dict:
    """The files :func:`write_morphometrics_reports` writes into ``out_dir``."""
    out_dir = Path(out_dir)
    return {
        "morphometrics_images_csv": out_dir / "morphometrics_images.csv",
        "morphometrics_table_csv": out_dir / "morphometrics_table.csv",
        "morphometrics_table_md": out_dir / "morphometrics_table.md",
        "morphometrics_figure": out_dir / "morphometrics_gratio.png",
    }


def write_morphometrics_reports(report, out_dir, overwrite=True) -> dict:
    """Write the per-image CSV, the per-strategy CSV and Markdown, and the g-ratio figure; return ``{kind: Path}``."""
    from ads_synth.data.writers import check_targets

    paths = morphometrics_report_paths(out_dir)
    check_targets(paths.values(), overwrite=overwrite)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if report.rows:
        fields = list(report.rows[0])
        with open(paths["morphometrics_images_csv"], "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(report.rows)
        table = summarize_report(report)
        with open(paths["morphometrics_table_csv"], "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["strategy", "title", "n"] + [k for k in fields if k not in
                                                                           ("strategy", "image")])
            w.writeheader()
            w.writerows(table)
    else:
        for key in ("morphometrics_images_csv", "morphometrics_table_csv"):
            paths[key].write_text("", encoding="utf-8")
    paths["morphometrics_table_md"].write_text(markdown_morphometrics(report), encoding="utf-8")
    plot_gratios(report, paths["morphometrics_figure"])
    return paths


def criteria_from_args(args) -> FibreCriteria:
    """:class:`FibreCriteria` from the options of :func:`add_morphometric_arguments`."""
    low, high = args.gratio_range
    return FibreCriteria(min_axon_diameter=args.min_axon_diameter, min_gratio=low, max_gratio=high).check()


def add_morphometric_arguments(p):
    """``ads-synth evaluate``'s morphometrics options."""
    p.add_argument("--no-morphometrics", dest="no_morphometrics", action="store_true",
                   help="Dice etc. only: skip AxonDeepSeg's morphometrics of predictions and manual labels")
    p.add_argument("--min-axon-diameter", dest="min_axon_diameter", type=float,
                   default=DEFAULT_MIN_AXON_DIAMETER_UM, metavar="UM",
                   help="morphometrics: smallest axon diameter counted as a fibre (default 1 um)")
    p.add_argument("--gratio-range", dest="gratio_range", type=float, nargs=2, default=(0.0, 1.0),
                   metavar=("LOW", "HIGH"), help="morphometrics: fibres have LOW < g-ratio < HIGH (default 0 1)")


def run_morphometrics(args, out_dir, overwrite=True) -> list:
    """``ads-synth evaluate``'s morphometrics step: measure, print, write; return the written paths."""
    if getattr(args, "no_morphometrics", False):
        return []
    report = evaluate_morphometrics(args.pred, args.truth, criteria_from_args(args))
    print(format_morphometrics(report))
    return list(write_morphometrics_reports(report, out_dir, overwrite=overwrite).values())


