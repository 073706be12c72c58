"""Memory and time of tiled processing of a 10,000 x 10,000 uint8 image (identity, tile 512, overlap 64).

Run: ``python benchmarks/tiling_memory.py [--size 10000] [--tile 512] [--overlap 64]``. Prints, for each output
mode, the wall time, the peak traced numpy/Python allocation (tracemalloc) during the call, and the increase of the
process's peak resident memory (``resource.getrusage``), and checks that the identity reproduces the image.
The input image itself (100 MB) is allocated before the measurement; the target is under 1 GB.
"""

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ads_synth.data.tiling import apply_tiled  # noqa: E402


def peak_rss_mb():
    # ru_maxrss is in kilobytes on Linux (bytes on macOS)
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024 ** 2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def make_image(size):
    """A deterministic uint8 image built row block by row block (no large temporaries)."""
    img = np.empty((size, size), dtype=np.uint8)
    rng = np.random.default_rng(0)
    for y in range(0, size, 256):
        img[y:y + 256] = rng.integers(0, 256, size=img[y:y + 256].shape, dtype=np.uint8)
    return img


def run(image, tile, overlap, label, **kwargs):
    base = peak_rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    out = apply_tiled(image, lambda b: b, tile, overlap, batch_size=4, progress=False, **kwargs)
    wall = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_increase = peak_rss_mb() - base
    # check the identity row block by row block (no full-size temporaries)
    worst = 0.0
    for y in range(0, image.shape[0], 512):
        worst = max(worst, float(np.max(np.abs(out[y:y + 512].astype(np.float32) - image[y:y + 512]))))
    print(
        f"{label:<28} wall {wall:6.1f} s   traced peak {traced_peak / 2**20:7.1f} MB   "
        f"peak RSS increase {rss_increase:7.1f} MB   output {out.dtype} {out.nbytes / 2**20:.0f} MB   "
        f"max |out - image| {worst:.2e}"
    )
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    args = parser.parse_args()
    image = make_image(args.size)
    print(f"image {args.size} x {args.size} uint8 ({image.nbytes / 2**20:.0f} MB), tile {args.tile}, "
          f"overlap {args.overlap}; process peak RSS before: {peak_rss_mb():.0f} MB")
    # smallest output first: ru_maxrss only grows, so each later run is measured against the earlier peak
    out = run(image, args.tile, args.overlap, "uint8 output (out_dtype)", out_dtype=np.uint8)
    del out
    out = run(image, args.tile, args.overlap, "float32 output (default)")
    del out
    print(f"process peak RSS at the end: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
