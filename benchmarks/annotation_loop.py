"""Measure the annotation loop on sem-dev: correct 1, 2, 3 images (cumulative), refine, score the rest.

The manual labels of sem-dev are used ONLY as the simulated user's corrections (saved as AxonDeepSeg
``_seg-axonmyelin.png`` files beside a copy of the image, what the napari widget writes) and for scoring; nothing
is chosen from them. Two orders of correction: ``ads-synth rank``'s (label-free) and a seeded random one. Each
step is a fresh ``ads-synth refine`` of the shipped TEM2SEM proxy with the first k images of the order corrected;
the other 6 - k images are re-pseudo-labelled and scored (Dice, ADS's metric) against their manual labels, beside
the shipped proxy's Dice on the same images. The teacher pseudo labels are the proxy's from the rank step
(``--pseudo-labels``), so each refine's seconds are fine-tune + re-pseudo-labelling.

Results go to ``OUT/loop.json`` after every step (a killed run keeps what it measured; rerun to continue).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/annotation_loop.py --data ../shared/data/sem-dev -o /tmp/loop \
        [--steps 3] [--orders rank random] [--epochs 12] [--iterations 25]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np


def dice(a, b):
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def score(pred_dir, samples):
    from ads_synth.data.datasets import load_label_map
    from ads_synth.segmentation.label_free import read_candidate

    out = {}
    for s in samples:
        pred = read_candidate(pred_dir, s.image)["label_map"]
        truth = load_label_map(s)
        out[s.name] = {"axon": dice(pred == 2, truth == 2), "myelin": dice(pred == 1, truth == 1)}
    return out


def mean(scores, names, key):
    return float(np.mean([scores[n][key] for n in names]))


def corrected_copy(sample, folder):
    """The simulated correction: the image, its pixel size and its manual labels as ADS's _seg-axonmyelin.png."""
    from PIL import Image

    from ads_synth.data.datasets import load_label_map

    folder.mkdir(parents=True, exist_ok=True)
    image = folder / sample.image.name
    if not image.is_file():
        shutil.copy2(sample.image, image)
        (folder / "pixel_size_in_micrometer.txt").write_text(f"{sample.pixel_size}\n")
        lm = load_label_map(sample)
        am = np.zeros(lm.shape, np.uint8)
        am[lm == 1], am[lm == 2] = 127, 255
        Image.fromarray(am).save(folder / f"{sample.image.stem}_seg-axonmyelin.png")
    return image


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="../shared/data/sem-dev")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--orders", nargs="+", default=["rank", "random"])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="only plot OUT/loop.json (Dice of the uncorrected images against images corrected)")
    args = p.parse_args()
    if args.plot:
        return plot(Path(args.out) / "loop.json", Path(args.plot))

    import torch

    torch.set_num_threads(1)
    from ads_synth.annotation.rank import rank_images, write_rows
    from ads_synth.annotation.refine import RefineOptions, refine
    from ads_synth.data.datasets import find_samples

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "loop.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"steps": []}

    def save():
        results_path.write_text(json.dumps(results, indent=2))

    samples = find_samples(args.data)  # images only; labels found by find_labels but read only to score
    by_name = {s.name: s for s in samples}
    work = out / "rank_work"
    if "rank" not in results:
        t0 = time.time()
        rows = rank_images([args.data], "TEM2SEM", work=work, progress=False, reuse=True)
        results["rank"] = {"seconds": round(time.time() - t0, 1),
                           "order": [Path(r["image"]).stem for r in rows],
                           "rows": [{k: r[k] for k in ("image", "priority", "uncertainty", "disagreement",
                                                        "unusual")} for r in rows]}
        write_rows(rows, out / "ranking.csv", overwrite=True)
        results["proxy"] = score(work / "proxy", samples)
        save()
    proxy = results["proxy"]
    names = sorted(by_name)
    rnd = random.Random(args.seed)
    random_order = names[:]
    rnd.shuffle(random_order)
    orders = {"rank": results["rank"]["order"], "random": random_order}
    results["orders"] = orders
    save()
    # step 1 of both orders first, then the rank order's later steps, then the random order's: what fits first
    first = [(1, o) for o in args.orders]
    plan = first + [(k, o) for o in args.orders for k in range(2, args.steps + 1)]
    for k, order in plan:
        key = f"{order}-{k}"
        if any(s["key"] == key for s in results["steps"]):
            continue
        chosen = orders[order][:k]
        rest = [n for n in names if n not in chosen]
        corrected = [corrected_copy(by_name[n], out / "corrections" / n) for n in chosen]
        run_out = out / "runs" / key
        t0 = time.time()
        summary = refine(RefineOptions(family="TEM2SEM", corrected=[str(c) for c in corrected],
                                       unlabeled=[str(by_name[n].image) for n in rest], out=run_out,
                                       epochs=args.epochs, iterations=args.iterations, register=False,
                                       pseudo_labels=work / "proxy", verbose=0, resume=True))
        seconds = time.time() - t0
        scores = score(run_out / "pseudo_labels", [by_name[n] for n in rest])
        step = {"key": key, "order": order, "k": k, "corrected": chosen, "scored": rest,
                "seconds": round(seconds, 1), "phase_seconds": summary["phase_seconds"],
                "refined": scores,
                "refined_mean": {c: mean(scores, rest, c) for c in ("axon", "myelin")},
                "proxy_mean": {c: mean(proxy, rest, c) for c in ("axon", "myelin")}}
        results["steps"].append(step)
        save()
        print(json.dumps({k2: step[k2] for k2 in ("key", "seconds", "refined_mean", "proxy_mean")}), flush=True)


def plot(results_path, png):
    """Dice (axon, myelin) of the uncorrected images against the number of corrected images, per order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(Path(results_path).read_text())
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
    for ax, cls in zip(axes, ("axon", "myelin")):
        for order, style in (("rank", "o-"), ("random", "s--")):
            steps = sorted((s for s in results["steps"] if s["order"] == order), key=lambda s: s["k"])
            if not steps:
                continue
            xs = [0] + [s["k"] for s in steps]
            ys = [float(np.mean([v[cls] for v in results["proxy"].values()]))] + [s["refined_mean"][cls] for s in steps]
            ax.plot(xs, ys, style, label=f"{order} order")
            for s in steps:
                ax.plot([s["k"]], [s["proxy_mean"][cls]], "x", color="grey")
        ax.axhline(0.85 if cls == "axon" else 0.80, color="k", lw=0.8, ls=":", label="goal")
        ax.set_title(f"{cls} Dice of the uncorrected images")
        ax.set_xlabel("images corrected")
        ax.set_xticks(range(0, 4))
    axes[0].set_ylabel("Dice (x: shipped proxy, same images)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(png)


if __name__ == "__main__":
    main()
