"""Whole-image translation speed (Mpx/s) and peak memory of the SynDiff presets.

Translates a real SEM image (sem-dev ``sub-rat8``, 1541 x 1096, when ``../shared/data`` is there) and a synthetic
2048 x 2048 image with :func:`ads_synth.translation.translate.translate_image`, through the default tiling
(training tile size, an eighth of it as overlap, cosine blending) on the CPU and, when available, on CUDA.
Weights are random (speed does not depend on them). The model's working pixel sizes are set to the image's, so
no resampling happens and Mpx/s counts input pixels. Each case runs in a fresh process so that its peak RSS is its
own; CUDA cases also report ``torch.cuda.max_memory_allocated``.

The ``paper`` preset is far too slow for a whole image on a CPU (about 0.01 Mpx/s): on the CPU it runs on a
512 x 512 crop unless ``--full``.

Usage::

    python benchmarks/translation_speed.py [--presets compact paper] [--devices cpu cuda] [--threads N]
                                           [--batch-size 4] [--tile T] [--overlap O] [--full]

Target (issue 3): the compact preset at >= 0.5 Mpx/s on the project's 2-core CPU.
"""

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_IMAGE = REPO.parent / "shared" / "data" / "sem-dev" / "sub-rat8" / "micr" / "sub-rat8_sample-V915_SEM.png"
PAPER_CPU_CROP = 512


def _images():
    import numpy as np

    images = []
    if REAL_IMAGE.is_file():
        from ads_synth.data.images import read_image, read_pixel_size

        images.append(("sem-dev sub-rat8", read_image(REAL_IMAGE), read_pixel_size(REAL_IMAGE)))
    rng = np.random.default_rng(0)
    from skimage.filters import gaussian

    synthetic = gaussian(rng.uniform(0, 1, (2048, 2048)), sigma=3)
    synthetic = (255 * (synthetic - synthetic.min()) / np.ptp(synthetic)).astype(np.uint8)
    images.append(("synthetic 2048x2048", synthetic, 0.1))
    return images


def _case(args):
    """Run one case in this (fresh) process and return its result row."""
    preset, device, image_index, opts = args
    import torch

    torch.set_num_threads(opts["threads"])
    from ads_synth.translation.config import get_preset
    from ads_synth.translation.model import SynDiff
    from ads_synth.translation.translate import translate_image

    name, image, pixel_size = _images()[image_index]
    note = ""
    if preset == "paper" and device == "cpu" and not opts["full"]:
        image = image[:PAPER_CPU_CROP, :PAPER_CPU_CROP]
        note = f"crop {PAPER_CPU_CROP}"
    torch.manual_seed(0)
    model = SynDiff(get_preset(preset)).to(device).eval()
    model._extra = {"pixel_size": {"L": pixel_size, "U": pixel_size}}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tile = opts["tile"] or None
    warm = image[: min(image.shape[0], 256), : min(image.shape[1], 256)]
    translate_image(model, warm, pixel_size, "L2U", tile=tile, overlap=opts["overlap"],
                    batch_size=opts["batch_size"], progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out, _ = translate_image(model, image, pixel_size, "L2U", tile=tile, overlap=opts["overlap"],
                             batch_size=opts["batch_size"], progress=False)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    mpx = image.size / 1e6
    return {
        "preset": preset,
        "device": device,
        "image": name,
        "shape": "x".join(map(str, image.shape)),
        "note": note,
        "seconds": round(seconds, 2),
        "mpx_per_s": round(mpx / seconds, 4),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "cuda_peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
        "threads": opts["threads"],
        "gen_diff_params_m": round(model.parameter_counts()["gen_diff"] / 2e6, 2),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["compact", "paper"])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tile", type=int, default=0, help="tile side (default: the training tile size)")
    parser.add_argument("--overlap", type=int, default=None, help="overlap (default: an eighth of the tile)")
    parser.add_argument("--full", action="store_true", help="run the paper preset on whole images on the CPU too")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    import os

    import torch

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    opts = {"threads": args.threads or os.cpu_count(), "batch_size": args.batch_size, "tile": args.tile,
            "overlap": args.overlap, "full": args.full}
    n_images = len(_images())
    rows = []
    ctx = mp.get_context("spawn")
    for preset in args.presets:
        for device in devices:
            for index in range(n_images):
                with ctx.Pool(1) as pool:
                    row = pool.apply(_case, ((preset, device, index, opts),))
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    header = ("preset", "device", "image", "shape", "note", "seconds", "mpx_per_s", "peak_rss_gb", "cuda_peak_gb",
              "threads")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for row in rows:
        print(" | ".join("" if row[k] is None else str(row[k]) for k in header))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
