"""Checkpoint scoring for SynDiff training: cycle SSIM / PSNR / L1, the score and loss curves, example grids.

During training a fixed set of held-back tiles of each domain goes round the cycle through the diffusive
generators with the EMA weights and a fixed seed (``L -> U -> L`` and ``U -> L -> U``, each leg
:meth:`SynDiff.translate`). The cycle result is compared with the original tile: SSIM and PSNR from
``skimage.metrics`` (data range 2, images in [-1, 1]) and the mean absolute difference (L1), averaged over tiles.

**Best checkpoint criterion**: the mean of the two cycle SSIMs, ``(ssim_L + ssim_U) / 2`` (higher is better). It
rewards translations that keep the structure of the input, which is what pseudo labels need; it cannot see
whether the target contrast is right, so also look at the sample grids.

Files (all in the run folder): ``scores.csv`` (one row per evaluation), ``curves.png`` (losses from
``metrics.csv`` and the scores), ``samples/step_XXXXXX.png`` (rows: L, L->U, L->U->L, U, U->L, U->L->U).
matplotlib is imported lazily, with the Agg backend.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch

#: Columns of ``scores.csv``.
SCORE_COLUMNS = ("step", "score", "ssim_L", "psnr_L", "l1_L", "ssim_U", "psnr_U", "l1_U", "seconds")

#: Row titles of the example grids.
GRID_ROWS = ("L", "L->U", "L->U->L", "U", "U->L", "U->L->U")


def best_criterion(scores):
    """The number that picks the best checkpoint: mean cycle SSIM of both directions (higher is better)."""
    return 0.5 * (float(scores["ssim_L"]) + float(scores["ssim_U"]))


def _translate_batches(model, x, direction, seed, batch_size):
    outs = []
    for i in range(0, x.shape[0], batch_size):
        outs.append(model.translate(x[i : i + batch_size], direction, seed=seed + i))
    return torch.cat(outs)


@torch.no_grad()
def cycle_translations(model, tiles, source, seed=0, batch_size=8):
    """Translate ``tiles`` of domain ``source`` to the other domain and back.

    Parameters
    ----------
    model : SynDiff
        Translation model (in eval mode, the EMA weights during training).
    tiles : torch.Tensor
        ``(N, 1, s, s)`` in [-1, 1], on the model's device.
    source : {"L", "U"}
    seed : int
        Seed of the diffusion sampling (tile ``i`` of a batch gets ``seed + first index of the batch``).
    batch_size : int

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The translation and the cycle result, both ``(N, 1, s, s)``.
    """
    target = "U" if source == "L" else "L"
    forward = _translate_batches(model, tiles, f"{source}2{target}", seed, batch_size)
    back = _translate_batches(model, forward, f"{target}2{source}", seed + 1_000_003, batch_size)
    return forward, back


def tile_metrics(original, result):
    """Mean SSIM, PSNR and L1 between two stacks of images in [-1, 1] (numpy ``(N, s, s)``)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    original = np.asarray(original, dtype=np.float64)
    result = np.clip(np.asarray(result, dtype=np.float64), -1.0, 1.0)
    ssim = [structural_similarity(a, b, data_range=2.0) for a, b in zip(original, result)]
    psnr = [peak_signal_noise_ratio(a, b, data_range=2.0) for a, b in zip(original, result)]
    psnr = [p if np.isfinite(p) else 100.0 for p in psnr]
    return {"ssim": float(np.mean(ssim)), "psnr": float(np.mean(psnr)), "l1": float(np.abs(original - result).mean())}


def evaluate_cycles(model, tiles_l, tiles_u, seed=0, batch_size=8):
    """Cycle scores of both directions and the example tiles.

    Parameters
    ----------
    model : SynDiff
    tiles_l, tiles_u : torch.Tensor
        Held-back tiles ``(N, 1, s, s)`` of each domain, on the model's device.
    seed : int
    batch_size : int

    Returns
    -------
    (dict, dict)
        Scores ``ssim_L, psnr_L, l1_L, ssim_U, psnr_U, l1_U, score`` (score = :func:`best_criterion`), and the
        example stacks (numpy ``(N, s, s)``) keyed by :data:`GRID_ROWS`. The global torch RNG is left untouched.
    """
    was_training = model.training
    model.eval()
    devices = [tiles_l.device] if tiles_l.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        l2u, l2u2l = cycle_translations(model, tiles_l, "L", seed, batch_size)
        u2l, u2l2u = cycle_translations(model, tiles_u, "U", seed + 7, batch_size)
    model.train(was_training)

    def arr(t):
        return t[:, 0].float().cpu().numpy()

    examples = dict(zip(GRID_ROWS, map(arr, (tiles_l, l2u, l2u2l, tiles_u, u2l, u2l2u))))
    scores = {}
    for dom, orig, cyc in (("L", "L", "L->U->L"), ("U", "U", "U->L->U")):
        for key, value in tile_metrics(examples[orig], examples[cyc]).items():
            scores[f"{key}_{dom}"] = value
    scores["score"] = best_criterion(scores)
    return scores, examples


# ---------------------------------------------------------------------------------------------------------------
# CSV logs
# ---------------------------------------------------------------------------------------------------------------
def append_row(path, row, columns=None):
    """Append ``row`` (a dict) to the CSV at ``path``, writing the header first when the file is new.

    ``columns`` fixes the column order (default: the row's keys). Values are written with ``repr``-exact floats.
    """
    path = Path(path)
    columns = list(columns or row)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_rows(path):
    """Rows of a CSV log as a list of dicts of floats (empty when the file is missing)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(f)]


def truncate_rows(path, max_step):
    """Drop the rows of a CSV log whose ``step`` is above ``max_step`` (a resumed run rewrites them)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames
        rows = [row for row in reader if float(row["step"]) <= max_step]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _smooth(values, window):
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or values.size < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_curves(metrics_csv, scores_csv, out_png):
    """Write ``out_png``: training losses (moving average) and the cycle scores against the step."""
    plt = _pyplot()
    metrics, scores = read_rows(metrics_csv), read_rows(scores_csv)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    panels = (
        (axes[0, 0], "generator losses", ("g_adv", "g_nd_adv", "g_total")),
        (axes[0, 1], "discriminator losses", ("d_diff", "d_nd")),
        (axes[1, 0], "L1 losses", ("cycle_L", "cycle_U", "l1_L", "l1_U")),
    )
    if metrics:
        steps = np.array([r["step"] for r in metrics])
        window = max(1, len(metrics) // 50)
        for ax, title, keys in panels:
            for key in keys:
                if key in metrics[0]:
                    ax.plot(steps, _smooth([r[key] for r in metrics], window), label=key)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.legend(fontsize=8)
    ax = axes[1, 1]
    if scores:
        steps = [r["step"] for r in scores]
        for key in ("ssim_L", "ssim_U", "score"):
            ax.plot(steps, [r[key] for r in scores], marker="o", label=key)
        ax.set_ylabel("cycle SSIM")
        ax2 = ax.twinx()
        for key, style in (("psnr_L", "--"), ("psnr_U", ":")):
            ax2.plot(steps, [r[key] for r in scores], style, color="gray", label=key)
        ax2.set_ylabel("cycle PSNR (dB)")
        ax2.legend(fontsize=8, loc="lower right")
        ax.legend(fontsize=8, loc="upper left")
    ax.set_title("held-back cycle scores (EMA)")
    ax.set_xlabel("step")
    fig.tight_layout()
    _save_figure(fig, out_png)
    plt.close(fig)


def save_sample_grid(examples, out_png, n=4, title=None):
    """Write a PNG grid of example tiles: one row per entry of :data:`GRID_ROWS`, ``n`` tiles per row."""
    plt = _pyplot()
    rows = []
    for key in GRID_ROWS:
        tiles = np.clip(examples[key][:n], -1, 1)
        pad = np.ones((tiles.shape[1], 2), dtype=np.float32)
        rows.append(np.concatenate([np.concatenate([t, pad], axis=1) for t in tiles], axis=1))
    side = examples[GRID_ROWS[0]].shape[1]
    sep = np.ones((2, rows[0].shape[1]), dtype=np.float32)
    grid = np.concatenate([np.concatenate([r, sep]) for r in rows])
    height = 1.2 * len(GRID_ROWS)
    fig, ax = plt.subplots(figsize=(1.2 * n + 1.0, height + (0.3 if title else 0)))
    ax.imshow(grid, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_yticks([(side + 2) * i + side / 2 for i in range(len(GRID_ROWS))])
    ax.set_yticklabels(GRID_ROWS)
    ax.set_xticks([])
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save_figure(fig, out_png, dpi=max(100, int(side * 1.0)))
    plt.close(fig)


def _save_figure(fig, out_png, dpi=100):
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(out_png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    os.replace(tmp, out_png)
