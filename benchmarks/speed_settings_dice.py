"""Inference settings of a shipped card: time beside Dice on sem-dev, so that no speed is bought with quality silently.

For each setting, every sem-dev image (labels used for evaluation only) goes through the card's path as
``axondeepseg --pseudo`` runs it (rescale to the model's grid, every fold, ensemble label, back to the image's grid,
post-processing), and the script prints the summed prediction time, its ratio to the first setting's (measured in
the same run, so the ratio holds on a loaded machine), and the mean axon / myelin Dice.

Settings (``--settings``, default all): ``default`` (streamed, step 0.5, 4 tiles per call, the ``auto`` precision),
``float32`` / ``bfloat16`` (the networks' dtype forced), ``nnunet`` (nnU-Net's own whole-image prediction, float32),
``batch1``, ``step0.75``, ``patch2x`` (tiles twice the training patch a side, step 0.5), ``patch2x_step0.75``
(such tiles overlapping by a quarter: the same overlap in pixels as step 0.5 of the training patch, 1.8 network
passes per pixel instead of 4), ``mirror`` (test-time mirroring). Each row also gives the share of pixels whose
label differs from the first setting's.

``--data TEM`` runs the L side instead: the card's L model (an ``adapt`` or ``invert`` card) on the bundled labeled
TEM set, where labels may choose a setting.

Usage::

    python benchmarks/speed_settings_dice.py [--card TEM2SEM_tutor] [--data sem-dev|TEM]
                                             [--settings default step0.75 ...] [--images N] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEM_DEV = REPO.parent / "shared" / "data" / "sem-dev"
SETTINGS = {
    "default": {},
    "float32": {"precision": "float32"},
    "bfloat16": {"precision": "bfloat16"},
    "nnunet": {"streaming": False},
    "batch1": {"batch_size": 1},
    "step0.75": {"tile_step_size": 0.75},
    "patch2x": {"patch_scale": 2},
    "patch2x_step0.75": {"patch_scale": 2, "tile_step_size": 0.75},
    "mirror": {"use_mirroring": True},
}


def _model(card, setting):
    from ads_synth.segmentation.predict import SegmentationModel

    kw = dict(SETTINGS[setting])
    scale = kw.pop("patch_scale", 1)
    model = SegmentationModel(card.nnunet, folds=card.folds, device="cpu", **kw)
    if scale != 1:
        config = model._predictor.configuration_manager.configuration
        config["patch_size"] = [int(p) * scale for p in config["patch_size"]]
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--card", default="TEM2SEM_tutor")
    parser.add_argument("--data", default="sem-dev", choices=["sem-dev", "TEM"],
                        help="sem-dev (a model of U: tutor / proxy cards) or the bundled TEM set (the L model of an "
                             "adapt / invert card)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--images", type=int, default=None, help="the first N sem-dev images only")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))

    import numpy as np

    from ads_synth.data.datasets import find_samples, load_label_map
    from ads_synth.data.images import read_image
    from ads_synth.segmentation.confidence import label_and_confidence
    from ads_synth.segmentation.metrics import label_map_metrics
    from ads_synth.segmentation.pseudo import OutputOptions, _finish_label, _segment_at_model_grid
    from ads_synth.sharding import set_cpu_threads
    from ads_synth.cards.lookup import get_card

    threads = set_cpu_threads()
    card = get_card(args.card)
    wanted = ("tutor", "proxy") if args.data == "sem-dev" else ("adapt", "invert")
    if card.strategy not in wanted:
        raise SystemExit(f"{card.name}: --data {args.data} compares {' / '.join(wanted)} cards only")
    if args.data == "sem-dev":
        folder = SEM_DEV
    else:
        from ads_synth.data.bundled import labeled_set

        folder = labeled_set("TEM")
    samples = sorted(find_samples(folder, require_labels=True), key=lambda s: s.name)[:args.images]
    print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "card": card.name,
                      "images": [s.name for s in samples], "threads": threads, "load_before": os.getloadavg()}),
          flush=True)
    data = [(s, read_image(s.image), load_label_map(s)) for s in samples]
    rows, base, first = [], None, None
    for setting in args.settings:
        model = _model(card, setting)
        seconds, dice, labels = 0.0, {"axon": [], "myelin": []}, []
        for sample, image, truth in data:
            t = time.perf_counter()
            stats, _ = _segment_at_model_grid(model, image, sample.pixel_size, False, None)
            seconds += time.perf_counter() - t
            label, _ = label_and_confidence(stats)
            label = _finish_label(label, image, sample.pixel_size, OutputOptions())
            labels.append(label)
            scores = label_map_metrics(label, truth)
            for c in dice:
                dice[c].append(scores[c]["dice"])
        base = base or seconds
        first = first or labels
        differ = sum(int((a != b).sum()) for a, b in zip(labels, first)) / sum(a.size for a in labels)
        row = {"setting": setting, "dtype": str(model.dtype), "predict_s": seconds, "ratio": seconds / base,
               "pixels_differ": differ,
               "axon_dice": float(np.nanmean(dice["axon"])), "myelin_dice": float(np.nanmean(dice["myelin"])),
               "load": os.getloadavg()[0]}
        rows.append(row)
        print(f"{setting:<10} {row['dtype']:<15} predict {seconds:7.1f} s  ({row['ratio']:.2f}x the first)  Dice axon "
              f"{row['axon_dice']:.4f}  myelin {row['myelin_dice']:.4f}  pixels differ {100 * differ:.3f}%  "
              f"load {row['load']:.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
