"""Pseudo-labelling speed (seconds per megapixel) and peak memory of each path, next to AxonDeepSeg's own inference.

Cases, on one real SEM image (sem-dev ``sub-rat4``, 822 x 771 px at 0.1 um, when ``../shared/data`` is there):

* ``tutor``: the tutorship model's nnU-Net on the U image (at the model's pixel size);
* ``adapt``: SynDiff U->L translation (compact preset) + the L model's nnU-Net;
* ``direct``: the L model's nnU-Net on the U image (no translation);
* ``direct+mirror``: the same with nnU-Net's test-time mirroring (what AxonDeepSeg does);
* ``ADS``: ``AxonDeepSeg.apply_model.axon_segmentation`` (AxonDeepSeg 5.5.0's own nnU-Net inference, mirroring on,
  its multiprocess export) with the *same* model folder on the same image (saved at the model's grid, so the same
  pixels are segmented).

The nnU-Net model is the compact configuration (1.94M parameters, 256 px patch), trained for one iteration on
tem-srf (speed does not depend on the weights); the translation model has random weights of the ``compact`` preset.
All models are told to work at the image's pixel size, so nothing is resampled and every case segments the same
pixels (AxonDeepSeg gets the image itself). One fold unless ``--folds``.
Each case runs in a fresh process, so its peak RSS (``VmHWM``) is its own (CUDA cases also give
``torch.cuda.max_memory_allocated``). ``s/Mpx`` counts the input image's pixels; ``infer`` excludes model
loading, ``total`` includes it (AxonDeepSeg only has a total).

Usage::

    python benchmarks/pseudo_label_speed.py [--image IMG] [--devices cpu cuda] [--threads N] [--folds 0 1]
                                            [--work DIR] [--json OUT.json]
"""

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
REAL_IMAGE = DATA / "sem-dev" / "sub-rat4" / "micr" / "sub-rat4_sample-data12_SEM.png"
CASES = ("tutor", "adapt", "direct", "direct+mirror", "ADS")


def build_models(work, folds, device):
    """A compact nnU-Net model folder (trained 1 iteration per fold on tem-srf) and a random compact SynDiff."""
    import torch

    from ads_synth.segmentation.model_building import TrainSettings, train_labeled_model
    from ads_synth.translation.config import get_preset
    from ads_synth.translation.model import SynDiff

    from ads_synth.segmentation.predict import finished_folds

    seg = Path(work) / "nnunet_compact"
    if not (seg.is_dir() and set(folds) <= set(finished_folds(seg))):
        shutil.rmtree(seg, ignore_errors=True)
        settings = TrainSettings(folds=list(folds), epochs=1, iterations=1, val_iterations=1, device=device,
                                 progress=False)
        train_labeled_model(DATA / "tem-srf", seg, Path(work) / "nnunet_work", pixel_size=0.01, settings=settings)
    translation = Path(work) / "syndiff_compact"
    if not (translation / "config.json").is_file():
        torch.manual_seed(0)
        SynDiff(get_preset("compact")).save_pretrained(translation, extra={"pixel_size": {"L": 0.01, "U": 0.01}},
                                                       generators_only=True)
    return seg, translation


def _peak_rss_mb():
    """Peak resident memory of this process (Linux: VmHWM, which, unlike ru_maxrss, restarts at exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e6


def _child(queue, args):
    try:
        queue.put(_case(args))
    except BaseException as err:  # noqa: BLE001 - reported by the parent
        queue.put({"error": f"{type(err).__name__}: {err}"})
        raise


def _case(args):
    """One case in this fresh process; returns its row."""
    case, device, opts = args
    import torch

    torch.set_num_threads(opts["threads"])
    from ads_synth.data.images import read_image

    image = read_image(opts["image"])
    mpx = image.size / 1e6
    row = {"case": case, "device": device, "image_mpx": round(mpx, 3)}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if case == "ADS":
        from AxonDeepSeg.apply_model import axon_segmentation

        folder = Path(opts["ads_dir"])
        target = folder / "image.png"
        axon_segmentation([target], Path(opts["segmentation"]), model_type="ensemble",
                          gpu_id=0 if device == "cuda" else -1)
        row["total_s"] = time.perf_counter() - t0
    else:
        from ads_synth.segmentation.predict import SegmentationModel
        from ads_synth.translation.translate import load_translation_model, translate_image

        model = SegmentationModel(opts["segmentation"], folds=opts["folds"], device=device,
                                  use_mirroring=case == "direct+mirror")
        translator = load_translation_model(opts["translation"], device=device) if case == "adapt" else None
        t1 = time.perf_counter()
        x = image
        if case == "adapt":  # working pixel sizes = the image's: the translation keeps the grid
            x, _ = translate_image(translator, image, opts["pixel_size"], "U2L", output_grid="model", progress=False)
        row["translate_s"] = time.perf_counter() - t1
        model.predict(x)
        row["infer_s"] = time.perf_counter() - t1
        row["total_s"] = time.perf_counter() - t0
    row["s_per_mpx"] = row.get("infer_s", row["total_s"]) / mpx
    row["total_s_per_mpx"] = row["total_s"] / mpx
    row["peak_rss_mb"] = _peak_rss_mb()
    if device == "cuda":
        row["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 1e6
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=str(REAL_IMAGE))
    parser.add_argument("--pixel-size", type=float, default=None, help="of --image (default: read from it)")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per case (default 1)")
    parser.add_argument("--folds", nargs="+", type=int, default=[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--work", default="/tmp/ads_synth_pseudo_speed", help="models are built (once) here")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)

    import torch

    from ads_synth.data.images import read_image, read_pixel_size
    from ads_synth.data.writers import write_image

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    torch.set_num_threads(args.threads)
    image_path = Path(args.image)
    pixel_size = args.pixel_size or read_pixel_size(image_path)
    work = Path(args.work)
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:  # training in a worker keeps this process (and its children) small
        seg, translation = pool.apply(build_models, (work, args.folds, "cpu"))
    # every model works at the image's pixel size: no resampling, s/Mpx counts the pixels the networks see
    for path, key in ((seg / "ads_synth.json", None), (translation / "config.json", "extra")):
        meta = json.loads(path.read_text())
        if key is None:
            meta["pixel_size"] = pixel_size
        else:
            meta["extra"] = {"pixel_size": {"L": pixel_size, "U": pixel_size}}
        path.write_text(json.dumps(meta, indent=2))
    ads_dir = work / "ads_input"
    shutil.rmtree(ads_dir, ignore_errors=True)
    ads_dir.mkdir(parents=True)
    write_image(ads_dir / "image.png", read_image(image_path))
    opts = {"image": str(image_path), "pixel_size": pixel_size, "segmentation": str(seg),
            "translation": str(translation), "folds": args.folds, "threads": args.threads,
            "ads_dir": str(ads_dir)}
    rows = []
    for device in devices:
        for case in args.cases:
            # a fresh, non-daemonic process per case (AxonDeepSeg starts worker processes of its own)
            queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=(queue, (case, device, opts)))
            proc.start()
            row = queue.get()
            proc.join()
            if "error" in row:
                raise RuntimeError(f"{case} on {device}: {row['error']}")
            rows.append(row)
            print(f"{row['case']:<14} {device:<5} {row['s_per_mpx']:7.2f} s/Mpx (total {row['total_s_per_mpx']:.2f})"
                  f"  peak RSS {row['peak_rss_mb']:.0f} MB"
                  + (f"  CUDA {row['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in row else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
