"""Did a translation learn the unlabeled modality's contrast? :func:`ads_synth.family.look.look_check` on models.

For each model folder or training run given (a run is read at its ``best/`` for the diffusive translator and at
its checkpoint for the non-diffusive one, exported beside the run as ``<run>_nd``), L images translated into U's
look are compared, with L's own labels, against the contrast the axon detector finds in the U images (no U label
is read). Prints one line per translator: seconds, the myelin-minus-axon contrast before and after, the verdict.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/translation_contrast.py --labeled ads_synth_models/datasets/TEM \
        --unlabeled ../shared/data/sem-dev RUN_OR_MODEL [RUN_OR_MODEL ...]

This is how docs/results.md ("The translation kept TEM's contrast", 2026-12-03) measured the runs.
"""

import argparse
import time
from pathlib import Path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labeled", action="append", required=True, help="labeled L images (folder, BIDS); repeat")
    parser.add_argument("--unlabeled", action="append", required=True, help="unlabeled U images; repeat")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("models", nargs="+", help="translation model folders or training runs")
    args = parser.parse_args(argv)

    from ads_synth.data.datasets import find_samples, sample_pixel_sizes
    from ads_synth.data.images import read_image
    from ads_synth.family.look import look_check, unlabeled_phase
    from ads_synth.translation.formats import CHECKPOINT_NAME, is_run_dir
    from ads_synth.translation.nondiffusive import export_nondiffusive
    from ads_synth.translation.translate import load_translation_model, translate_image

    labeled = [s for p in args.labeled for s in find_samples(p, require_labels=True)]
    for s, px in zip(labeled, sample_pixel_sizes(labeled)):
        s.pixel_size = px
    u_phase = unlabeled_phase(read_image(s.image, allow_large=True) for p in args.unlabeled for s in find_samples(p))
    translators = []
    for name in args.models:
        path = Path(name)
        if not path.is_dir():
            raise SystemExit(f"{name}: no such model folder or training run.")
        translators.append((f"{path.name} (diffusive)" if is_run_dir(path) else path.name, path))
        if is_run_dir(path) and (path / CHECKPOINT_NAME).is_file():
            nd = export_nondiffusive(path, path.with_name(path.name + "_nd"), overwrite=True)
            translators.append((f"{path.name} (non-diffusive)", nd))
    for label, path in translators:
        t0 = time.perf_counter()
        model = load_translation_model(path, device=args.device)
        check = look_check(lambda im, px: translate_image(model, im, px, "L2U", progress=False)[0], labeled, u_phase)
        print(f"{label}: {time.perf_counter() - t0:.0f} s  myelin - axon {check['contrast_L']:+.2f} -> "
              f"{check['contrast_translated']:+.2f} sd  learned={check['learned']}  {check['verdict']}", flush=True)


if __name__ == "__main__":
    main()
