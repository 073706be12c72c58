"""Dice against the L -> U scale for the cheap no-translation baselines (evaluation of ``ads-synth scale estimate``).

The shipped L model (``ads_synth_models/TEM2SEM/nnunet_adapt``, an nnU-Net trained on the TEM set at its working
pixel size) segments each sem-dev SEM image after

* ``invert``: ``255 - image`` (SEM myelin is bright, TEM myelin dark), or
* ``histmatch``: the image's intensities mapped onto the pooled intensity histogram of the bundled TEM set
  (quantile matching, as ``skimage.exposure.match_histograms`` does; no inversion),

read at the pixel size ``pixel_size / scale`` (so ``scale`` 1 is the physical pixel size, the paper's rule, and a
larger scale shrinks the SEM image by that factor more before the L model sees it; the same convention as
``ads-synth translation train --scale``). The label map goes back to the image's grid, is post-processed as the
pseudo-label paths do, and is scored against the manual labels (evaluation only: nothing is chosen from them here).

To bound the CPU time (the L model works at 0.0193 um/px, so ``scale`` 1 means 25x the pixels of ``scale`` 5), each
image is scored on its central ``--crop-um`` x ``--crop-um`` micrometres.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/scale_dice.py --sem ../shared/data/sem-dev --out OUT.jsonl \
        [--scales 8 6 5 4 3 2 1] [--modes invert] [--crop-um 40] [--morphometrics]

Each (mode, scale, image) is one JSON line in ``--out`` (appended, so a run that is stopped keeps what it did, and
lines already there are skipped); the summary table is printed at the end.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
L_MODEL = ROOT / "ads_synth_models" / "TEM2SEM" / "nnunet_adapt"


def pooled_histogram(samples):
    """256-bin intensity histogram pooled over ``samples`` (uint8 images; 16-bit ones are scaled down)."""
    from ads_synth.data.images import read_image

    hist = np.zeros(256, dtype=np.float64)
    for s in samples:
        img = read_image(s.image)
        if img.dtype != np.uint8:
            img = (img.astype(np.float64) * 255.0 / max(1, int(img.max()))).astype(np.uint8)
        hist += np.bincount(img.ravel(), minlength=256)
    return hist


def match_to_histogram(img, ref_hist):
    """Map ``img``'s intensities so that their histogram follows ``ref_hist`` (cumulative-distribution matching)."""
    values, counts = np.unique(img.ravel(), return_inverse=False, return_counts=True)
    src_cdf = np.cumsum(counts) / counts.sum()
    ref_cdf = np.cumsum(ref_hist) / ref_hist.sum()
    mapped = np.interp(src_cdf, ref_cdf, np.arange(256))
    lut = np.zeros(int(values.max()) + 1, dtype=np.float32)
    lut[values] = mapped
    return lut[img].astype(np.float32)


#: Morphometric columns written with ``--morphometrics`` (:func:`comparison_row`'s names).
MORPHO_KEYS = ("pred_fibres", "truth_fibres", "fibres_reldiff", "pred_gratio_median", "truth_gratio_median",
               "gratio_median_absdiff", "pred_axon_diam_median", "truth_axon_diam_median", "axon_diam_median_reldiff")


def center_crop(arr, side):
    h, w = arr.shape
    sh, sw = min(h, side), min(w, side)
    y, x = (h - sh) // 2, (w - sw) // 2
    return arr[y:y + sh, x:x + sw]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sem", required=True, help="labeled SEM set (sem-dev); labels used for scoring only")
    parser.add_argument("--out", required=True, help="JSON-lines file (appended)")
    parser.add_argument("--scales", type=float, nargs="+", default=[8, 6, 5, 4, 3, 2, 1])
    parser.add_argument("--modes", nargs="+", default=["invert"], choices=["invert", "histmatch"])
    parser.add_argument("--crop-um", type=float, default=40.0)
    parser.add_argument("--model", default=str(L_MODEL))
    parser.add_argument("--morphometrics", action="store_true",
                        help="also AxonDeepSeg's morphometrics of each crop against its manual labels: fibre count, "
                             "median g-ratio and axon diameter (what the scale does to the measurements)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from ads_synth.data.bundled import labeled_set
    from ads_synth.data.datasets import find_samples, load_label_map
    from ads_synth.data.images import read_image
    from ads_synth.data.resample import rescale, scale_factor
    from ads_synth.segmentation.confidence import label_and_confidence
    from ads_synth.segmentation.metrics import label_map_metrics
    from ads_synth.segmentation.morphometrics import comparison_row, measure_fibres
    from ads_synth.segmentation.predict import SegmentationModel
    from ads_synth.segmentation.pseudo import OutputOptions, _finish_label

    out = Path(args.out)
    done = set()
    if out.is_file():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["mode"], r["scale"], r["name"]))
    model = SegmentationModel(args.model, device="cpu")
    ref_hist = pooled_histogram(find_samples(labeled_set("TEM"))) if "histmatch" in args.modes else None
    sem = find_samples(args.sem, require_labels=True, require_pixel_size=True)
    truth_fibres = {}
    for mode in args.modes:
        for scale in args.scales:
            for s in sem:
                if (mode, float(scale), s.name) in done:
                    continue
                side = int(round(args.crop_um / s.pixel_size))
                img = center_crop(read_image(s.image), side)
                truth = center_crop(load_label_map(s), side)
                top = 255.0 if img.dtype == np.uint8 else float(np.iinfo(img.dtype).max)
                src = (top - img.astype(np.float32)) if mode == "invert" else match_to_histogram(img, ref_hist)
                t0 = time.perf_counter()
                factor = scale_factor(s.pixel_size / float(scale), model.pixel_size)
                x = rescale(src, factor, order=1)
                stats, _ = model.predict(x)
                label, _ = label_and_confidence(stats)
                label = _finish_label(label, img, s.pixel_size, OutputOptions())
                m = label_map_metrics(label, truth)
                rec = {"mode": mode, "scale": float(scale), "name": s.name, "pixel_size": s.pixel_size,
                       "crop_px": list(img.shape), "model_grid_px": list(x.shape),
                       "seconds": round(time.perf_counter() - t0, 2),
                       "dice_axon": m["axon"]["dice"], "dice_myelin": m["myelin"]["dice"]}
                if args.morphometrics:
                    if s.name not in truth_fibres:  # the same manual crop at every scale and mode
                        truth_fibres[s.name] = measure_fibres(truth, s.pixel_size)[0]
                    mm = comparison_row(measure_fibres(label, s.pixel_size)[0], truth_fibres[s.name])
                    rec.update({k: mm[k] for k in MORPHO_KEYS})
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(json.dumps(rec), flush=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    morpho = all("pred_fibres" in r for r in rows)
    print("\nmode       scale  axon Dice  myelin Dice  images  seconds"
          + ("  fibres pred/manual  |d fibres|  |d g|  |d axon diam.|" if morpho else ""))
    for mode in sorted({r["mode"] for r in rows}):
        for scale in sorted({r["scale"] for r in rows if r["mode"] == mode}):
            sel = [r for r in rows if r["mode"] == mode and r["scale"] == scale]
            line = (f"{mode:10s} {scale:5.2f}  {np.mean([r['dice_axon'] for r in sel]):.3f}      "
                    f"{np.mean([r['dice_myelin'] for r in sel]):.3f}        {len(sel)}     "
                    f"{sum(r['seconds'] for r in sel):.0f}")
            if morpho:
                mean = {k: np.nanmean([r[k] for r in sel]) for k in MORPHO_KEYS}
                line += (f"  {mean['pred_fibres']:.0f} / {mean['truth_fibres']:.0f}"
                         f"       {100 * mean['fibres_reldiff']:.1f}%     {mean['gratio_median_absdiff']:.3f}"
                         f"  {100 * mean['axon_diam_median_reldiff']:.1f}%")
            print(line)


if __name__ == "__main__":
    main()
