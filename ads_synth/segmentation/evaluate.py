"""Scoring pseudo labels against manual labels: per image, per fold, and the paper's Table 2.

Prediction folders are what ``ads-synth pseudo`` writes: ``<pred>/<strategy>/<stem>_seg-axonmyelin.png`` (the
ensemble) and, with ``--per-fold``, ``<pred>/<strategy>/fold_<k>/<stem>_seg-axonmyelin.png`` (each fold's model
alone). ``<pred>`` may also be one strategy's folder, or any folder of AxonDeepSeg outputs.

Each prediction is scored against the truth image of the same stem (:mod:`ads_synth.segmentation.metrics`: Dice,
sensitivity, specificity of axon and myelin). A strategy's row of Table 2 is the mean ± standard deviation over its
folds of each fold's mean over images (as the paper reports five-fold results); without fold folders it is the
mean ± standard deviation over images of the ensemble. Standard deviations use ``ddof=1`` (none for one value).

:func:`write_reports` writes ``evaluation_images.csv`` (every score), ``evaluation_table.csv`` and
``evaluation_table.md`` (Table 2) and ``evaluation_dice.png`` (Dice per fold for each strategy, with the
"L model applied directly" floor as a dashed line).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ads_synth.data.datasets import Sample, find_samples, load_label_map
from ads_synth.data.writers import AXONMYELIN_SUFFIX
from ads_synth.errors import InputError
from ads_synth.segmentation.metrics import METRICS, SCORED_CLASSES, label_map_metrics
from ads_synth.segmentation.strategies import FLOOR, strategy_names, titles

ENSEMBLE = "ensemble"
COLUMNS = tuple(f"{c}_{m}" for c in SCORED_CLASSES for m in METRICS)


@dataclass
class Evaluation:
    """Scores of one evaluation.

    Attributes
    ----------
    rows : list of dict
        One per (strategy, fold, image): ``strategy``, ``fold`` (``"ensemble"`` or ``"fold_<k>"``), ``image`` and
        the :data:`COLUMNS` scores.
    missing : dict
        ``(strategy, fold) -> [truth stems without a prediction]``.
    """

    rows: list = field(default_factory=list)
    missing: dict = field(default_factory=dict)

    def strategies(self):
        names = {r["strategy"] for r in self.rows}
        order = strategy_names()  # the registry's order; unregistered folder names follow alphabetically
        return [s for s in order if s in names] + sorted(names - set(order))


def _has_predictions(folder):
    return any(folder.glob(f"*{AXONMYELIN_SUFFIX}"))


def prediction_sets(pred_dir) -> dict:
    """``{strategy: {fold: folder}}`` under ``pred_dir`` (see the module docstring)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError(f"{pred_dir}: no such prediction folder; give the pseudo_labels folder of ads-synth pseudo.")

    def folds_of(folder):
        sets = {}
        if _has_predictions(folder):
            sets[ENSEMBLE] = folder
        for sub in sorted(folder.glob("fold_*")):
            if sub.is_dir() and _has_predictions(sub):
                sets[sub.name] = sub
        return sets

    own = folds_of(pred_dir)
    if own:
        return {pred_dir.name: own}
    out = {}
    for sub in sorted(p for p in pred_dir.iterdir() if p.is_dir()):
        sets = folds_of(sub)
        if sets:
            out[sub.name] = sets
    if not out:
        raise InputError(f"{pred_dir}: no predictions found (*{AXONMYELIN_SUFFIX} in it, in its fold_*/ or in "
                         "strategy sub-folders); run ads-synth pseudo first.")
    return out


def _prediction_label_map(path, truth_sample):
    """A predicted ``_seg-axonmyelin.png`` as a label map, checked against the truth image's size."""
    return load_label_map(Sample(name=truth_sample.name, image=truth_sample.image, labels={"axonmyelin": path}))


def evaluate(pred_dir, truth) -> Evaluation:
    """Score every prediction under ``pred_dir`` against the labeled dataset ``truth``.

    Parameters
    ----------
    pred_dir : str or Path
        Predictions (see the module docstring).
    truth : str or Path
        Labeled dataset (anything ``find_samples`` reads) with the images' manual labels.

    Returns
    -------
    Evaluation
    """
    sets = prediction_sets(pred_dir)
    samples = [s for s in find_samples(truth) if s.has_labels]
    if not samples:
        raise InputError(f"{truth}: no labeled images found; give the dataset with the manual labels.")
    result = Evaluation()
    truth_cache = {}
    for strategy, folds in sets.items():
        for fold, folder in folds.items():
            missing = []
            for s in samples:
                pred = folder / f"{s.image.stem}{AXONMYELIN_SUFFIX}"
                if not pred.is_file():
                    missing.append(s.name)
                    continue
                if s.name not in truth_cache:
                    truth_cache[s.name] = load_label_map(s)
                scores = label_map_metrics(_prediction_label_map(pred, s), truth_cache[s.name])
                row = {"strategy": strategy, "fold": fold, "image": s.name}
                for c in SCORED_CLASSES:
                    for m in METRICS:
                        row[f"{c}_{m}"] = scores[c][m]
                result.rows.append(row)
            if missing:
                result.missing[(strategy, fold)] = missing
    if not result.rows:
        raise InputError(f"{pred_dir}: no prediction matches an image of {truth} by name "
                         f"(<image stem>{AXONMYELIN_SUFFIX}); check both folders.")
    return result


def _mean_std(values):
    values = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if values.size == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else math.nan


def summarize(evaluation) -> list[dict]:
    """Table 2: per strategy, mean and std of each score over folds (else over images); see the module docstring.

    Returns
    -------
    list of dict
        ``strategy``, ``title``, ``over`` (``"folds"`` / ``"images"``), ``n``, ``fold_values`` (per column, the
        folds' means), and ``<column>_mean`` / ``<column>_std`` for each of :data:`COLUMNS`.
    """
    table = []
    for strategy in evaluation.strategies():
        rows = [r for r in evaluation.rows if r["strategy"] == strategy]
        folds = sorted({r["fold"] for r in rows if r["fold"] != ENSEMBLE})
        entry = {"strategy": strategy, "title": titles().get(strategy, strategy), "fold_values": {}}
        if folds:
            entry.update(over="folds", n=len(folds))
            for col in COLUMNS:
                per_fold = [_mean_std([r[col] for r in rows if r["fold"] == f])[0] for f in folds]
                entry["fold_values"][col] = dict(zip(folds, per_fold))
                entry[f"{col}_mean"], entry[f"{col}_std"] = _mean_std(per_fold)
        else:
            ens = [r for r in rows if r["fold"] == ENSEMBLE]
            entry.update(over="images", n=len(ens))
            for col in COLUMNS:
                entry[f"{col}_mean"], entry[f"{col}_std"] = _mean_std([r[col] for r in ens])
        table.append(entry)
    return table


def _fmt(mean, std):
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if not math.isnan(std) else f"{mean:.3f}"


_HEAD = ("Dice", "Sens.", "Spec.")


def format_table(table) -> str:
    """Table 2 as aligned text (rows: strategy; columns: Dice / sensitivity / specificity of axon and myelin)."""
    header = ["Strategy", "over"] + [f"{c.capitalize()} {h}" for c in SCORED_CLASSES for h in _HEAD]
    lines = [header]
    for e in table:
        lines.append([e["title"], f"{e['n']} {e['over']}"] +
                     [_fmt(e[f"{col}_mean"], e[f"{col}_std"]) for col in COLUMNS])
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in lines)


def markdown_table(table) -> str:
    """Table 2 in Markdown."""
    head = "| Strategy | over | " + " | ".join(f"{c.capitalize()} {h}" for c in SCORED_CLASSES for h in _HEAD) + " |"
    sep = "|" + "---|" * (2 + len(COLUMNS))
    body = ["| " + " | ".join([e["title"], f"{e['n']} {e['over']}"] +
                              [_fmt(e[f"{col}_mean"], e[f"{col}_std"]) for col in COLUMNS]) + " |" for e in table]
    return "\n".join([head, sep, *body]) + "\n"


def plot_dice(table, path) -> Path:
    """Dice per fold (points) and mean (bars) of axon and myelin for each strategy, the floor dashed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 + 1.6 * len(table), 4), constrained_layout=True)
    axes = fig.subplots(1, len(SCORED_CLASSES), sharey=True, squeeze=False)[0]
    floor = next((e for e in table if e["strategy"] == FLOOR), None)
    shown = [e for e in table if e["strategy"] != FLOOR] or table
    for ax, cls in zip(axes, SCORED_CLASSES):
        col = f"{cls}_dice"
        x = np.arange(len(shown))
        means = [e[f"{col}_mean"] for e in shown]
        ax.bar(x, np.nan_to_num(means), color="#9ecae1", width=0.6, label="mean")
        for i, e in enumerate(shown):
            values = list(e["fold_values"].get(col, {}).values())
            if values:
                ax.scatter(np.full(len(values), i) + np.linspace(-0.12, 0.12, len(values)), values, color="#08519c",
                           s=18, zorder=3, label="fold" if i == 0 else None)
        if floor is not None and not math.isnan(floor[f"{col}_mean"]):
            ax.axhline(floor[f"{col}_mean"], color="#cb181d", linestyle="--", label=titles()[FLOOR])
        ax.set_xticks(x, [e["title"] for e in shown], rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{cls.capitalize()} Dice")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("Dice")
    axes[-1].legend(fontsize=7, loc="upper right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    return path


#: Report files of :func:`write_reports`, in ``out_dir``.
REPORT_FILES = {
    "images_csv": "evaluation_images.csv",
    "table_csv": "evaluation_table.csv",
    "table_md": "evaluation_table.md",
    "figure": "evaluation_dice.png",
}


def report_targets(out_dir, overwrite=False) -> dict:
    """``{kind: Path}`` of the report files; InputError when one exists (a dangling symlink too) and not
    ``overwrite``."""
    from ads_synth.data.writers import check_targets

    paths = {kind: Path(out_dir) / name for kind, name in REPORT_FILES.items()}
    check_targets(paths.values(), overwrite=overwrite)
    return paths


def _csv_text(fieldnames, rows, **kwargs):
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fieldnames, **kwargs)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_reports(evaluation, out_dir, overwrite=False) -> dict:
    """Write the CSVs, the Markdown table and the figure into ``out_dir``; return ``{kind: Path}``.

    Existing report files (or symlinks there) are an InputError unless ``overwrite``; each file is written
    atomically (a symlink at a report path is replaced, never written through).
    """
    from ads_synth.atomic import atomic_write, atomic_write_text

    out_dir = Path(out_dir)
    table = summarize(evaluation)
    paths = report_targets(out_dir, overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths["images_csv"], _csv_text(["strategy", "fold", "image", *COLUMNS], evaluation.rows))
    fields = ["strategy", "title", "over", "n"] + [f"{c}_{s}" for c in COLUMNS for s in ("mean", "std")]
    atomic_write_text(paths["table_csv"], _csv_text(fields, table, extrasaction="ignore"))
    atomic_write_text(paths["table_md"], markdown_table(table))
    atomic_write(paths["figure"], lambda tmp: plot_dice(table, tmp))
    return paths
