"""Label-free candidate scores on sem-dev: make the candidates with the shipped models, then rank them.

Two steps (docs/results.md, "Label-free scores of the candidates")::

    # 1. candidates (shipped TEM2SEM models, 2 folds each; one pass over the images, smallest first)
    OMP_NUM_THREADS=1 python benchmarks/label_free_study.py generate --out /work/scratch-labelfree/candidates
    # 2. label-free scores, true Dice (manual labels: evaluation only), Spearman and Dice lost per score
    python benchmarks/label_free_study.py study --out /work/scratch-labelfree/candidates

Candidates: ``tutor``, ``adapt`` and ``proxy`` with their shipped cards, ``combined`` (tutor and adapt pooled fold
by fold), and the no-translation baselines ``direct``, ``invert``, ``histmatch`` with the L model of the adapt card
(on the translation model's grid, exactly as ``pseudo_label_images`` runs them). histmatch's reference intensities
are L's (tem-srf + tem-nyu) quantiles, computed as ``ads-synth pseudo`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path("/work/shared/data")
CANDIDATES = ("tutor", "adapt", "combined", "proxy", "direct", "invert", "histmatch")


#: Study budget: each image is centre-cropped to at most this many megapixels at U's working grid (0.0965 um)
#: so that the seven candidates of all six images run in about 40 minutes on a shared 2-core CPU.
MAX_WORKING_MPX = 0.8
WORKING_PX = 0.0965
#: Order of the images (smallest at the working grid first, so that partial runs hold whole images).
ORDER = ("rat4", "rat8", "rat2", "rat7", "rat1", "rat5")


def _crop_box(shape, pixel_size):
    scale = (pixel_size / WORKING_PX) ** 2
    mpx = shape[0] * shape[1] * scale / 1e6
    f = min(1.0, (MAX_WORKING_MPX / mpx) ** 0.5)
    h, w = int(round(shape[0] * f)), int(round(shape[1] * f))
    r0, c0 = (shape[0] - h) // 2, (shape[1] - w) // 2
    return r0, c0, h, w


def prepare_crops(sem, folder):
    """Centre crops of the sem-dev images (one folder each, with its pixel size) and their manual labels (.npy,
    for the evaluation only); returns the samples in :data:`ORDER`."""
    from ads_synth.data.datasets import find_samples, load_label_map
    from ads_synth.data.images import read_image
    from ads_synth.data.writers import write_image

    folder = Path(folder)
    out = []
    for sample in find_samples(sem, require_labels=True, require_pixel_size=True):
        here = folder / sample.name
        target = here / f"{sample.name}.png"
        if not target.is_file():
            image = read_image(sample.image)
            r0, c0, h, w = _crop_box(image.shape[:2], sample.pixel_size)
            here.mkdir(parents=True, exist_ok=True)
            write_image(target, image[r0:r0 + h, c0:c0 + w], overwrite=True)
            (here / "pixel_size_in_micrometer.txt").write_text(f"{sample.pixel_size}\n")
            np.save(here / "truth.npy", load_label_map(sample)[r0:r0 + h, c0:c0 + w])
        out.append(find_samples(target)[0])
    return sorted(out, key=lambda s: [i for i, k in enumerate(ORDER) if f"{k}_" in s.name] or [99])


def generate(out, sem, labeled, device="cpu"):
    """Pseudo-label every sem-dev image with every candidate (outputs under ``out/<candidate>/``)."""
    from ads_synth.data.datasets import find_samples
    from ads_synth.data.images import read_image
    from ads_synth.data.intensity import intensity_quantiles, load_reference, save_reference
    from ads_synth.segmentation.predict import SegmentationModel
    from ads_synth.segmentation.pseudo import OutputOptions, _Job, _run_jobs
    from ads_synth.translation.translate import load_translation_model
    from ads_synth.cards.lookup import get_card, require_files

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cards = {s: require_files(get_card(f"TEM2SEM_{s}")) for s in ("tutor", "adapt", "proxy")}
    ref_path = out / "intensity_reference.json"
    if not ref_path.is_file():
        l_samples = [s for d in labeled for s in find_samples(d)]
        save_reference(ref_path, intensity_quantiles(read_image(s.image) for s in l_samples))
    reference = load_reference(ref_path)
    translation = load_translation_model(cards["adapt"].translation, device=device)
    folds = [int(f) for f in cards["adapt"].folds]
    l_model = SegmentationModel(cards["adapt"].nnunet, folds=folds, device=device)
    models = {"tutor": SegmentationModel(cards["tutor"].nnunet, folds=folds, device=device),
              "adapt": l_model,
              "proxy": SegmentationModel(cards["proxy"].nnunet, folds=folds, device=device),
              "direct": l_model, "invert": l_model, "histmatch": l_model}
    options = OutputOptions(confidence_tiff=True, skip_existing=True)
    timings = {}
    for sample in prepare_crops(sem, out / "images"):
        job = _Job(sample, sample.pixel_size, {c: out / c for c in CANDIDATES})
        start = time.time()
        _run_jobs([job], models, translation, options, progress=False, reference=reference)
        timings[sample.name] = round(time.time() - start, 1)
        print(f"{sample.name}: {timings[sample.name]} s", flush=True)
        (out / "timings.json").write_text(json.dumps(timings, indent=1))


def _read_candidate(out, candidate, sample):
    from ads_synth.segmentation.label_free import read_candidate

    return read_candidate(Path(out) / candidate, sample.image)


#: Working pixel sizes of the shipped TEM2SEM translation (its card: training.translation.working_pixel_size_um):
#: L's fibre statistics and U's candidates are compared in these pixels (the translation's scale).
WORKING = {"L": 0.0193, "U": WORKING_PX}
#: Parameter-free combinations measured (mean normalised rank of the named scores).
COMBOS = {
    "agreement only": ("agreement",),
    "morphology (3)": ("axon_enclosed", "myelin_enclosing", "g_ratio_plausible"),
    "agreement + morphology (3)": ("agreement", "axon_enclosed", "myelin_enclosing", "g_ratio_plausible"),
    "agreement + confidence [default]": ("agreement", "confidence"),
    "every score without reference": ("agreement", "confidence", "axon_enclosed", "myelin_enclosing",
                                      "g_ratio_plausible", "axon_solidity", "axon_roundness"),
    "every score": None,
}


def study(out, sem):
    """Scores, true Dice, Spearman and Dice lost; prints Markdown tables and writes ``out/study.json``."""
    from ads_synth.segmentation import label_free as lf
    from ads_synth.segmentation.metrics import label_map_metrics

    samples = prepare_crops(sem, Path(out) / "images")
    items = {c: [] for c in CANDIDATES}
    kept = []
    for sample in samples:
        read = {c: _read_candidate(out, c, sample) for c in CANDIDATES}
        if any(v is None for v in read.values()):
            continue
        kept.append(sample)
        for c in CANDIDATES:
            items[c].append(read[c])
    if not kept:
        raise SystemExit(f"{out}: no image has every candidate yet")
    truths = [np.load(Path(s.image).parent / "truth.npy") for s in kept]
    per_image_dice = {}
    for c in CANDIDATES:
        per = [label_map_metrics(it["label_map"], t) for it, t in zip(items[c], truths)]
        per_image_dice[c] = [0.5 * (p["axon"]["dice"] + p["myelin"]["dice"]) for p in per]
        per_image_dice[c + ":axon"] = [p["axon"]["dice"] for p in per]
        per_image_dice[c + ":myelin"] = [p["myelin"]["dice"] for p in per]
    dice = {c: {"axon": float(np.nanmean(per_image_dice[c + ":axon"])),
                "myelin": float(np.nanmean(per_image_dice[c + ":myelin"])),
                "mean": float(np.nanmean(per_image_dice[c]))} for c in CANDIDATES}
    start = time.time()
    reference = _l_reference()
    ref_seconds = time.time() - start
    start = time.time()
    scores = lf.score_candidates(items, pixel_size=[s.pixel_size for s in kept], reference=reference,
                                 unit_size=WORKING["U"], per_image=True)
    seconds = time.time() - start
    for name, use in COMBOS.items():
        lf.combine_ranks(scores, use or lf.ALL_SCORES, key=name)
    names = list(lf.ALL_SCORES) + list(COMBOS)
    overall = lf.ranking_study(scores, {c: dice[c]["mean"] for c in CANDIDATES}, score_names=names)
    # among the candidates that work (true Dice >= 0.5: the evaluation's view, never an input of the scores)
    working = [c for c in CANDIDATES if dice[c]["mean"] >= 0.5]
    among = lf.ranking_study({c: scores[c] for c in working}, {c: dice[c]["mean"] for c in working},
                             score_names=names)
    # image by image: each image's candidates ranked by that image's scores
    by_image = {k: {"spearman": [], "dice_lost": [], "chosen": []} for k in names}
    for i, sample in enumerate(kept):
        one = {c: {k: scores[c]["per_image"][k][i] for k in scores[c]["per_image"]} for c in CANDIDATES}
        for name, use in COMBOS.items():
            lf.combine_ranks(one, use or lf.ALL_SCORES, key=name)
        r = lf.ranking_study(one, {c: per_image_dice[c][i] for c in CANDIDATES}, score_names=names)
        for k, v in r.items():
            for key in ("spearman", "dice_lost", "chosen"):
                by_image[k][key].append(v[key])
    result = {"images": [s.name for s in kept], "shapes": [list(t.shape) for t in truths], "dice": dice,
              "per_image_dice": per_image_dice, "reference": {k: reference[k] for k in
                                                              ("n_images", "n_fibres", "g_ratio_median",
                                                               "axon_diameter_median", "unit_um")},
              "scores": scores, "overall": overall, "by_image": by_image,
              "working": working, "among_working": among,
              "reference_seconds": round(ref_seconds, 1), "score_seconds": round(seconds, 1),
              "chosen": lf.choose_candidate(scores)}
    Path(out, "study.json").write_text(json.dumps(result, indent=1))
    _markdown(result, names)


def _markdown(result, names):
    dice = result["dice"]
    order = sorted(CANDIDATES, key=lambda c: -dice[c]["mean"])
    print(f"images: {', '.join(result['images'])}")
    print("\n| candidate | axon Dice | myelin Dice | mean | " + " | ".join(names[:10]) + " | score |")
    print("|---|---|---|---|" + "---|" * 11)
    for c in order:
        s = result["scores"][c]
        cells = " | ".join(f"{s[k]:.3f}" for k in names[:10])
        print(f"| {c} | {dice[c]['axon']:.3f} | {dice[c]['myelin']:.3f} | {dice[c]['mean']:.3f} | {cells} | "
              f"{s['score']:.3f} |")
    print(f"\n| score | Spearman, {len(CANDIDATES)} candidates | Spearman, the {len(result['working'])} that work | "
          "picks | Dice lost | "
          "Spearman per image (mean) | Dice lost per image (mean) | picks per image |")
    print("|---|---|---|---|---|---|---|---|")
    for k in names:
        if k not in result["overall"]:
            continue
        o, b = result["overall"][k], result["by_image"][k]
        w = result["among_working"][k]["spearman"]
        print(f"| {k} | {o['spearman']:+.2f} | {w:+.2f} | {o['chosen']} | {o['dice_lost']:.3f} | "
              f"{np.nanmean(b['spearman']):+.2f} | {np.mean(b['dice_lost']):.3f} | {', '.join(b['chosen'])} |")
    print(f"\nscoring {len(result['images'])} images x {len(CANDIDATES)} candidates: {result['score_seconds']} s; "
          f"L reference: {result['reference_seconds']} s ({result['reference']})")


def _l_reference():
    from ads_synth.data.datasets import find_samples, load_label_map
    from ads_synth.segmentation import label_free

    samples = [s for d in ("tem-srf", "tem-nyu") for s in find_samples(DATA / d, require_labels=True,
                                                                         require_pixel_size=True)]
    return label_free.label_statistics([load_label_map(s) for s in samples], [s.pixel_size for s in samples],
                                       unit_size=WORKING["L"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("generate", "study"))
    parser.add_argument("--out", default="/work/scratch-labelfree/candidates")
    parser.add_argument("--sem", default=str(DATA / "sem-dev"))
    args = parser.parse_args(argv)
    if args.step == "generate":
        generate(args.out, args.sem, [DATA / "tem-srf", DATA / "tem-nyu"])
    else:
        study(args.out, args.sem)


if __name__ == "__main__":
    main()
