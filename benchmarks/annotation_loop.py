"""Measure the annotation loop on sem-dev: correct 1, 2, 3 images (cumulative), refine, score the rest.

The manual labels of sem-dev are used ONLY as the simulated user's corrections (saved as AxonDeepSeg
``_seg-axonmyelin.png`` files beside a copy of the image, what the napari widget writes) and for scoring; nothing
is chosen from them. Two orders of correction: ``ads-synth rank``'s (label-free) and a seeded random one. Each
step is a fresh ``ads-synth refine`` of the shipped TEM2SEM proxy with the first k images of the order corrected;
the other 6 - k images are re-pseudo-labelled and scored (Dice, ADS's metric) against their manual labels, beside
the shipped proxy's Dice on the same images. The teacher pseudo labels are the proxy's from the rank step
(``--pseudo-labels``), so each refine's seconds are fine-tune + re-pseudo-labelling.

Results go to ``OUT/loop.json`` after every step (a killed run keeps what it measured; rerun to continue).

``--orders each`` is the fair comparison for the first correction: one refine per image with that image alone
corrected (a step 1 already run for the same image is reused), so the mean over all of them is what a random first
choice gives on average; it prints where ``rank``'s first choice falls among them (gain over the shipped proxy on
the same uncorrected images, and the absolute Dice of those images). ``--shard R/N`` runs every N-th of those
refines (two processes on two cores); both write their own ``loop.R.json`` that a run without ``--shard`` merges.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/annotation_loop.py --data ../shared/data/sem-dev -o /tmp/loop \
        [--steps 3] [--orders rank random each] [--shard 0/2] [--epochs 12] [--iterations 25]
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
    p.add_argument("--shard", default=None, metavar="R/N", help="only every N-th refine of the plan, from the R-th")
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
    shard = tuple(int(v) for v in args.shard.split("/")) if args.shard else None
    for part in sorted(out.glob("loop.*.json")):  # what sharded runs measured
        known = {st["key"] for st in results["steps"]}
        results["steps"] += [st for st in json.loads(part.read_text())["steps"] if st["key"] not in known]
    if shard is not None:
        main_results, results_path = results, out / f"loop.{shard[0]}.json"
        results = dict(main_results, steps=list(main_results["steps"]))

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
    sequential = [o for o in args.orders if o != "each"]
    first = [(1, o, orders[o][:1]) for o in sequential]
    plan = first + [(k, o, orders[o][:k]) for o in sequential for k in range(2, args.steps + 1)]
    if "each" in args.orders:
        plan += [(1, f"each:{n}", [n]) for n in names]
    if shard is not None:  # share out only the refines still to run (a done or reusable step costs nothing)
        done = [st["corrected"] for st in results["steps"]]
        plan = [p for p in plan if p[2] not in done][shard[0]::shard[1]]
    for k, order, chosen in plan:
        key = f"{order}-{k}"
        if any(s["key"] == key for s in results["steps"]):
            continue
        same = [s for s in results["steps"] if s["corrected"] == chosen]
        if same:  # the same single correction was refined already (e.g. rank-1): reuse its scores
            results["steps"].append(dict(same[0], key=key, order=order, reused=same[0]["key"]))
            save()
            continue
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
    if "each" in args.orders:
        each_summary(results, orders["rank"][0])
        save()


def each_summary(results, ranked_first):
    """Where the ranked first choice falls among every single-image correction (``--orders each``)."""
    each = {s["corrected"][0]: s for s in results["steps"] if s["order"].startswith("each:")}
    if not each:
        return None
    rows = []
    for name, s in sorted(each.items()):
        gain = {c: s["refined_mean"][c] - s["proxy_mean"][c] for c in ("axon", "myelin")}
        rows.append({"corrected": name, "refined_mean": s["refined_mean"], "gain": gain,
                     "ranked_first": name == ranked_first})
        print(f"correct {name:<34} rest: axon {s['refined_mean']['axon']:.3f} myelin {s['refined_mean']['myelin']:.3f}"
              f"  gain over proxy {gain['axon']:+.3f} / {gain['myelin']:+.3f}{'  <- rank' if name == ranked_first else ''}")
    summary = {}
    for what in ("refined_mean", "gain"):
        for c in ("axon", "myelin"):
            values = [r[what][c] for r in rows]
            mine = [r[what][c] for r in rows if r["ranked_first"]]
            summary[f"{what}_{c}"] = {"random_expected": float(np.mean(values)), "best": float(max(values)),
                                      "worst": float(min(values)), "ranked_first": mine[0] if mine else None,
                                      "ranked_position": (1 + sorted(values, reverse=True).index(mine[0]))
                                      if mine else None}
    for key, v in summary.items():
        if v["ranked_first"] is None:  # a shard without rank's first choice
            continue
        print(f"{key:<20} rank's pick {v['ranked_first']:.4f} (position {v['ranked_position']} of {len(rows)}), "
              f"random pick expected {v['random_expected']:.4f}, best {v['best']:.4f}, worst {v['worst']:.4f}")
    results["each_summary"] = {"rows": rows, "summary": summary, "complete": len(rows) == len(results["proxy"])}
    return summary


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
