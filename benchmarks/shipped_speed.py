"""Speed of what users run: every shipped model card through ``axondeepseg -t ... --pseudo ...``, and its parts.

In one run, on this machine (the header prints the CPU count and the load average before and after):

1. **Convolution peak**: a 3x3 convolution microbenchmark (32 -> 32 and 64 -> 64 channels, 256 x 256, batch 4) in
   float32 and, where the networks run in it (``ads_synth.device.inference_dtype``), bfloat16, contiguous and
   channels-last. The peak is the best GFLOP/s in the networks' dtype and memory layout (contiguous: nnU-Net's
   instance normalisation has no fast channels-last kernel on the CPU, so its networks run contiguous); the
   fraction of the channels-last peak is printed too.
2. **The real entry point**, per card (``ads_synth_models/*.yaml``: TEM2SEM tutor / adapt / proxy / auto, TEM2BF
   tutor / adapt / auto): ``axondeepseg -t TARGET --pseudo STRATEGY -i IMAGE --overwrite`` in a fresh process
   (start-up and model loading included): wall seconds, s/Mpx, peak RSS of the process (``wait4``).
3. **Its parts**, per card, in a fresh process: start-up (imports), model loading, translation (adapt), each fold's
   network (one fold's sliding window), post-processing (ensemble label and confidence, back to the image's grid,
   the fibre clean-up), writing; FLOPs per image pixel of every network (``torch.utils.flop_counter``, counted
   over the same sliding window, so the tiles' overlap is included), and the achieved GFLOP/s of each fold as a
   fraction of the measured peak.
4. **AxonDeepSeg's own** ``axon_segmentation`` on the same nnU-Net folder and the same pixels (the image saved on
   the model's grid), for the cards whose model AxonDeepSeg can run (tutor, proxy).
5. **The shipped translators**' Mpx/s (U -> L, the direction adaptation uses, on the image's working grid).
6. With ``--competitor``: the recommended path again beside one CPU-bound process (a busy loop), and its ratio
   to the quiet time of the same run.
7. With ``--slide``: the whole 40 Mpx bright-field slide (bf-unlabeled) through ``axondeepseg -t BF --pseudo
   tutor``: wall time, peak RSS and the fibres counted in the output (``--slide-crop N`` takes an N x N crop from
   its centre instead; ``--slide-glass skip run`` runs it with empty glass left out, the default, and with every
   tile run).
8. With ``--shards N``: images per hour of the recommended path over a folder of 4N copies of the demo image
   (``--shard-images``), one process with one torch thread against ``torchrun --nproc_per_node=N`` (each process
   its share of the cores, by the package's rule), and one process with the package's default threads; the scaling
   is the ratio of images per hour (ideal N), printed beside the machine's own: the one-thread convolution's
   GFLOP/s in N processes at once over one process's, in the networks' dtype.

Images: the bundled demo images (SEM ``docs/demo``, 1.7 Mpx at 0.07 um; BF ``docs/demo/bf``), copied into
``--work``. Threads: torch's default rule of the package (``ads_synth.sharding.cpu_threads``) unless
``OMP_NUM_THREADS`` is set. The default run takes a few minutes on a quiet 2-core CPU; ``--cards`` narrows it.

Usage::

    python benchmarks/shipped_speed.py [--cards TEM2SEM_tutor ...] [--competitor] [--slide] [--slide-crop 3168]
                                       [--shards 2] [--no-parts] [--no-cli] [--work DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DEMO = {"SEM": REPO / "docs" / "demo" / "sub-rat8_sample-V915_SEM.png", "BF": REPO / "docs" / "demo" / "bf" /
        "bf_nerve_demo.png"}
SLIDE = DATA / "bf-unlabeled" / "ROI_test_BF_0.226um.tif"
SLIDE_PIXEL_SIZE = 0.226  # micrometres per pixel, as its name says; written beside it for the CLI
RECOMMENDED = "TEM2SEM_tutor"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _load():
    return round(os.getloadavg()[0], 2)


def conv_peak(threads=None, seconds=1.0, dtypes=("float32",)):
    """GFLOP/s of 3x3 convolutions (the networks' main operation) on this CPU, per channel count, dtype and memory
    format (keys ``conv3x3_{channels}_{dtype}[_cl]``)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    best = {}
    with torch.inference_mode():
        for name in dtypes:
            dtype = getattr(torch, name)
            for ch in (32, 64):
                for cl in (False, True):
                    conv = torch.nn.Conv2d(ch, ch, 3, padding=1, bias=False).eval().to(dtype)
                    x = torch.randn(4, ch, 256, 256, dtype=dtype)
                    if cl:
                        conv, x = conv.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
                    conv(x)
                    flops = 2 * ch * ch * 9 * 4 * 256 * 256
                    n, t0 = 0, time.perf_counter()
                    while time.perf_counter() - t0 < seconds or n < 2:
                        conv(x)
                        n += 1
                    best[f"conv3x3_{ch}_{name}{'_cl' if cl else ''}"] = flops * n / (time.perf_counter() - t0) / 1e9
    return best


def conv_scaling(n, dtype="bfloat16", seconds=5.0):
    """The machine's own scaling over ``n`` processes: the summed GFLOP/s of the one-thread 3x3 convolution (64
    channels, ``dtype``) in ``n`` processes at once over that of one process alone (the bound for sharded runs)."""
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import shipped_speed as s; "
            f"print('ROW ' + json.dumps(s.conv_peak(1, {seconds!r}, ({dtype!r},))))")

    def run(k):
        procs = [subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE, text=True)
                 for _ in range(k)]
        rows = [json.loads([line for line in p.communicate()[0].splitlines() if line.startswith("ROW ")][-1][4:])
                for p in procs]
        return sum(r[f"conv3x3_64_{dtype}"] for r in rows)

    one, many = run(1), run(n)
    return {"dtype": dtype, "one_process_gflops": one, "n_processes_gflops": many, "scaling": many / one}


def _run_timed(cmd, env, cwd):
    """Run ``cmd``; wall seconds, peak RSS (MB) of the child (``wait4``) and its exit status."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, proc.returncode, out.decode(errors="replace")


def _image_for(card, work, crop=None):
    """The card's demo image copied into ``work`` (its top-left ``crop x crop`` with ``crop``)."""
    src = DEMO[card.target] if card.target in DEMO else DEMO["SEM"]
    folder = Path(work) / "images" / f"{card.target}{'' if crop is None else f'_crop{crop}'}"
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / src.name
    if not dst.is_file():
        if crop is None:
            shutil.copy(src, dst)
        else:
            from PIL import Image

            with Image.open(src) as im:
                im.crop((0, 0, min(crop, im.width), min(crop, im.height))).save(dst)
        shutil.copy(src.parent / "pixel_size_in_micrometer.txt", folder / "pixel_size_in_micrometer.txt")
    return dst


def cli_case(card, image, work):
    """``axondeepseg -t TARGET --pseudo STRATEGY`` on ``image`` (card name chosen by target and path)."""
    from ads_synth.data.images import image_shape

    pseudo = card.name.rsplit("_", 1)[1]
    exe = Path(sys.executable).with_name("axondeepseg")
    cmd = [str(exe), "-t", card.target, "--pseudo", pseudo, "-i", str(image), "--overwrite"]
    wall, rss, rc, out = _run_timed(cmd, _env(), work)
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {rc}:\n{out[-2000:]}")
    h, w = image_shape(image)
    return {"case": "cli", "card": card.name, "image": str(image), "mpx": h * w / 1e6, "wall_s": wall,
            "s_per_mpx": wall / (h * w / 1e6), "peak_rss_mb": rss, "load": _load()}


def _flops(fn):
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def parts_case(card_name, image_path, peak_gflops):
    """The parts of one card's path, timed in this (fresh) process."""
    t0 = time.perf_counter()
    import numpy as np
    import torch

    from ads_synth.data.images import read_image, read_pixel_size
    from ads_synth.data.resample import rescale_to_pixel_size, resize_to
    from ads_synth.segmentation.confidence import label_and_confidence
    from ads_synth.segmentation.predict import SegmentationModel
    from ads_synth.segmentation.pseudo import (OutputOptions, _finish_label, _reference, _source_image, _write,
                                               output_paths)
    from ads_synth.segmentation.strategies import get_strategy
    from ads_synth.sharding import set_cpu_threads
    from ads_synth.translation.translate import load_translation_model, working_pixel_sizes
    from ads_synth.cards.lookup import get_card

    row = {"case": "parts", "card": card_name, "threads": set_cpu_threads(), "imports_s": time.perf_counter() - t0}
    card = get_card(card_name)
    strategy = get_strategy(card.strategy)
    image = read_image(image_path)
    px = read_pixel_size(image_path)
    mpx = image.size / 1e6
    row["mpx"] = mpx
    t = time.perf_counter()
    # the translation's grid serves the no-translation baselines too (invert, histmatch, direct: the engine's rule)
    needs_translation = strategy.translate is not None or strategy.on_translation_grid
    translator = load_translation_model(card.translation, device="cpu") if needs_translation else None
    model = SegmentationModel(card.nnunet, folds=card.folds, device="cpu")
    reference = _reference(strategy, None, card.nnunet)
    row["load_models_s"] = time.perf_counter() - t
    work = working_pixel_sizes(translator) if translator is not None else None
    t = time.perf_counter()
    source, source_px = _source_image(strategy, image, px, translator, work, reference, 0)
    if strategy.translate is not None:
        row["translate_s"] = time.perf_counter() - t
        row["translate_mpx_per_s"] = mpx / row["translate_s"]
        # FLOPs per input pixel of the translation (its tiles' overlap included), on a 256 x 256 crop
        crop = image[:256, :256]
        row["translator_flops_per_px"] = _flops(
            lambda: _source_image(strategy, crop, px, translator, work, None, 0)) / crop.size
    t = time.perf_counter()
    grid = rescale_to_pixel_size(source, source_px, model.pixel_size) if model.pixel_size else source
    row["rescale_s"] = time.perf_counter() - t
    row["grid_mpx"] = grid.size / 1e6
    # one forward pass of a patch: FLOPs per patch pixel, and per image pixel over the whole sliding window
    patch = model.patch_size
    net = model._networks()[0]
    x = torch.zeros((1, 1, *patch), dtype=model.dtype)
    with torch.no_grad():  # FlopCounterMode (torch 2.3) sees nothing under inference_mode
        per_patch = _flops(lambda: net(x))
    tiles = model.tiles_per_fold(grid.shape)
    per_fold_flops = per_patch * tiles * (4 if model._predictor.use_mirroring else 1)
    row["nnunet_flops_per_patch_px"] = per_patch / (patch[0] * patch[1])
    row["nnunet_flops_per_image_px"] = per_fold_flops / grid.size
    row["tiles_per_fold"] = tiles
    for fold in model.folds:
        single = SegmentationModel(card.nnunet, folds=[fold], device="cpu")
        t = time.perf_counter()
        single.predict(grid)
        dt = time.perf_counter() - t
        row[f"fold_{fold}_s"] = dt
        row[f"fold_{fold}_gflops"] = per_fold_flops / dt / 1e9
        row[f"fold_{fold}_peak_fraction"] = per_fold_flops / dt / 1e9 / peak_gflops
    t = time.perf_counter()
    stats, _ = model.predict(grid)
    row["ensemble_predict_s"] = time.perf_counter() - t
    t = time.perf_counter()
    label, conf = label_and_confidence(stats)
    label = _finish_label(label, image, px, OutputOptions())
    conf = resize_to(conf, image.shape, order=1)
    row["postprocess_s"] = time.perf_counter() - t
    out = Path(os.environ.get("ADS_SYNTH_BENCH_OUT", "/tmp")) / "parts_out"
    paths = output_paths(image_path, out / card_name, model.folds, OutputOptions())
    t = time.perf_counter()
    _write(label, conf, None, image_path, paths, model.folds, px, True)
    row["write_s"] = time.perf_counter() - t
    row["s_per_mpx_inference"] = (row.get("translate_s", 0) + row["rescale_s"] + row["ensemble_predict_s"]
                                  + row["postprocess_s"] + row["write_s"]) / mpx
    row["load"] = _load()
    del np
    return row


def ads_case(card_name, image_path, work):
    """AxonDeepSeg 5.5.0's ``axon_segmentation`` with the card's nnU-Net folder, on the image on its grid."""
    code = f"""
import time, json, resource, sys
t0 = time.perf_counter()
from pathlib import Path
from ads_synth.cards.lookup import get_card
from ads_synth.data.images import read_image, read_pixel_size
from ads_synth.data.resample import rescale_to_pixel_size
from ads_synth.data.writers import write_image
from ads_synth.segmentation.predict import read_model_info
card = get_card({card_name!r})
image = read_image({str(image_path)!r}); px = read_pixel_size({str(image_path)!r})
grid = rescale_to_pixel_size(image, px, read_model_info(card.nnunet)['pixel_size'])
folder = Path({str(work)!r}) / 'ads_input' / card.name; folder.mkdir(parents=True, exist_ok=True)
target = folder / 'image.png'; write_image(target, grid)
t1 = time.perf_counter()
from AxonDeepSeg.apply_model import axon_segmentation
axon_segmentation([target], Path(card.nnunet), model_type='ensemble', gpu_id=-1)
print(json.dumps({{'mpx': grid.size / 1e6, 'segment_s': time.perf_counter() - t1, 'total_s': time.perf_counter() - t0}}))
"""
    wall, rss, rc, out = _run_timed([sys.executable, "-c", code], _env(), work)
    if rc != 0:
        raise RuntimeError(f"AxonDeepSeg on {card_name} exited with {rc}:\n{out[-2000:]}")
    row = json.loads(out.strip().splitlines()[-1])
    row.update(case="ads", card=card_name, wall_s=wall, peak_rss_mb=rss, s_per_mpx=row["segment_s"] / row["mpx"],
               load=_load())
    return row


def _parts_in_child(card, image, peak):
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import shipped_speed as s; "
            f"print('ROW ' + json.dumps(s.parts_case({card!r}, {str(image)!r}, {peak!r})))")
    wall, rss, rc, out = _run_timed([sys.executable, "-c", code], _env(), REPO)
    if rc != 0:
        raise RuntimeError(f"parts of {card} exited with {rc}:\n{out[-3000:]}")
    row = json.loads([line for line in out.splitlines() if line.startswith("ROW ")][-1][4:])
    row["peak_rss_mb"] = rss
    return row


def _busy():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def shards_case(card, image, work, n, images=None):
    """Images per hour over a folder of ``images`` (default ``4 n``) copies of ``image``: one process with one torch
    thread, ``n`` processes under torchrun (the package's thread rule), one process with the package's default
    threads; beside them the machine's own scaling (:func:`conv_scaling`)."""
    images = 4 * n if images is None else int(images)
    folder = Path(work) / f"shards_{card.name}_{images}"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        dst = folder / f"copy{i}_{image.name}"
        if not dst.exists():
            shutil.copy(image, dst)
    shutil.copy(image.parent / "pixel_size_in_micrometer.txt", folder / "pixel_size_in_micrometer.txt")
    exe = str(Path(sys.executable).with_name("axondeepseg"))
    run = Path(sys.executable).with_name("torchrun")
    strategy = card.name.rsplit("_", 1)[1]
    args = ["-t", card.target, "--pseudo", strategy, "-i", str(folder), "--overwrite"]
    cases = {"one process, 1 thread": ([exe, *args], {"ADS_SYNTH_THREADS": "1"}),
             f"torchrun {n} processes": ([str(run), f"--nproc_per_node={n}", exe, *args], {}),
             "one process, default threads": ([exe, *args], {})}
    row = {"case": "shards", "card": card.name, "n": n, "images": images}
    for name, (cmd, extra) in cases.items():
        env = {k: v for k, v in _env().items() if k not in ("OMP_NUM_THREADS", "ADS_SYNTH_THREADS")}
        env.update(extra)
        wall, rss, rc, out = _run_timed(cmd, env, work)
        if rc != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {rc}:\n{out[-2000:]}")
        row[name] = {"wall_s": wall, "images_per_hour": images * 3600 / wall, "peak_rss_mb": rss, "load": _load()}
    one = row["one process, 1 thread"]["images_per_hour"]
    row["scaling"] = row[f"torchrun {n} processes"]["images_per_hour"] / one
    from ads_synth.device import inference_dtype

    row["machine"] = conv_scaling(n, str(inference_dtype("cpu", None)).replace("torch.", ""))
    return row


def slide_case(work, crop=None, strategy="tutor", glass=None):
    """The slide (or a centre crop) through ``axondeepseg -t BF --pseudo STRATEGY``: wall time, peak RSS and the
    fibres ADS's morphometrics counts in the output; ``glass`` (``skip`` / ``run``) sets ``$ADS_SYNTH_GLASS``."""
    folder = Path(work) / "slide"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pixel_size_in_micrometer.txt").write_text(f"{SLIDE_PIXEL_SIZE}\n")
    if crop:
        import tifffile

        full = tifffile.imread(SLIDE)
        h, w = full.shape[:2]
        y, x = (h - crop) // 2, (w - crop) // 2
        image = folder / f"bf_slide_crop{crop}.tif"
        tifffile.imwrite(image, full[y:y + crop, x:x + crop])
        del full
    else:
        image = folder / SLIDE.name
        if not image.exists():
            image.symlink_to(SLIDE)
    exe = Path(sys.executable).with_name("axondeepseg")
    cmd = [str(exe), "-t", "BF", "--pseudo", strategy, "-i", str(image), "--overwrite"]
    env = _env()
    if glass is not None:
        from ads_synth.data.glass import GLASS_ENV

        env[GLASS_ENV] = glass
    wall, rss, rc, out = _run_timed(cmd, env, work)
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {rc}:\n{out[-2000:]}")
    from ads_synth.data.images import image_shape
    from ads_synth.segmentation.label_free import read_candidate
    from ads_synth.segmentation.morphometrics import measure_fibres

    h, w = image_shape(image)
    summary, _ = measure_fibres(read_candidate(folder, image)["label_map"], SLIDE_PIXEL_SIZE)
    return {"case": "slide", "card": f"TEM2BF_{strategy}", "image": str(image), "mpx": h * w / 1e6, "wall_s": wall,
            "s_per_mpx": wall / (h * w / 1e6), "peak_rss_mb": rss, "load": _load(), "glass": glass or "default",
            "fibres": summary["fibres"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", nargs="+", default=None, help="default: every installed shipped card")
    parser.add_argument("--competitor", action="store_true", help="also run the recommended path beside a busy loop")
    parser.add_argument("--slide", action="store_true", help="also the 40 Mpx bright-field slide (minutes)")
    parser.add_argument("--slide-crop", type=int, default=None, help="an N x N crop of the slide instead")
    parser.add_argument("--slide-strategies", nargs="+", default=["tutor"])
    parser.add_argument("--slide-glass", nargs="+", default=[None], choices=["skip", "run"],
                        help="$ADS_SYNTH_GLASS for the slide runs, each in turn (default: the default, skip)")
    parser.add_argument("--shards", type=int, default=None, metavar="N",
                        help="also images per hour with N torchrun processes against one process")
    parser.add_argument("--shard-images", type=int, default=None, metavar="K",
                        help="copies of the demo image for --shards (default 4N: start-up amortised)")
    parser.add_argument("--no-parts", action="store_true")
    parser.add_argument("--no-cli", action="store_true")
    parser.add_argument("--no-ads", action="store_true")
    parser.add_argument("--work", default="/tmp/ads_synth_shipped_speed")
    parser.add_argument("--crop", type=int, default=None, help="the demo images' top-left N x N only (a quick run)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from ads_synth.sharding import available_cores, cpu_threads
    from ads_synth.cards.lookup import list_cards

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["ADS_SYNTH_BENCH_OUT"] = str(work)
    cards = [c for c in list_cards() if c.is_installed() and (args.cards is None or c.name in args.cards)]
    header = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": available_cores(),
              "load_before": list(os.getloadavg()), "threads_rule": cpu_threads(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    import torch

    from ads_synth.device import inference_dtype

    dtype = str(inference_dtype(torch.device("cpu"))).split(".")[-1]
    header["networks_dtype"] = dtype
    print(json.dumps(header), flush=True)
    peak = conv_peak(threads=header["threads_rule"], dtypes=sorted({"float32", dtype}))
    peak_gflops = max(v for k, v in peak.items() if k.endswith(f"_{dtype}"))
    cl_peak = max(v for k, v in peak.items() if k.endswith(f"_{dtype}_cl"))
    header.update(peak_gflops=peak_gflops, channels_last_peak_gflops=cl_peak)
    print("conv peak GFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in peak.items())
          + f"; the networks run in {dtype}, contiguous: peak {peak_gflops:.1f} (channels-last {cl_peak:.1f})",
          flush=True)
    rows = [{"case": "conv_peak", **peak}]
    for card in cards:
        image = _image_for(card, work, args.crop)
        if not args.no_cli:
            row = cli_case(card, image, work)
            rows.append(row)
            print(f"cli   {card.name:<15} {row['wall_s']:6.1f} s  {row['s_per_mpx']:5.2f} s/Mpx  "
                  f"peak RSS {row['peak_rss_mb']:5.0f} MB  load {row['load']}", flush=True)
        if not args.no_parts:
            row = _parts_in_child(card.name, image, peak_gflops)
            rows.append(row)
            folds = " ".join(f"fold {f[5:-2]} {row[f]:.1f} s ({row[f[:-2] + '_peak_fraction']:.0%} of peak, "
                             f"{row[f[:-2] + '_peak_fraction'] * peak_gflops / cl_peak:.0%} of the channels-last)"
                             for f in row if f.startswith("fold_") and f.endswith("_s"))
            trans = (f"translate {row['translate_s']:.1f} s ({row['translate_mpx_per_s']:.2f} Mpx/s, "
                     f"{row['translator_flops_per_px'] / 1e6:.2f} MFLOP/px)  " if "translate_s" in row else "")
            print(f"parts {card.name:<15} imports {row['imports_s']:.1f} s  load {row['load_models_s']:.1f} s  "
                  f"{trans}{folds}  nnU-Net {row['nnunet_flops_per_image_px'] / 1e6:.2f} MFLOP/px "
                  f"({row['tiles_per_fold']} tiles/fold)  ensemble {row['ensemble_predict_s']:.1f} s  "
                  f"post {row['postprocess_s']:.1f} s  write {row['write_s']:.1f} s  "
                  f"-> {row['s_per_mpx_inference']:.2f} s/Mpx after loading  peak RSS {row['peak_rss_mb']:.0f} MB",
                  flush=True)
        if not args.no_ads and card.strategy in ("tutor", "proxy") and card.name.rsplit("_", 1)[1] != "auto":
            row = ads_case(card.name, image, work)
            rows.append(row)
            print(f"ADS   {card.name:<15} axon_segmentation {row['segment_s']:.1f} s on {row['mpx']:.2f} Mpx "
                  f"({row['s_per_mpx']:.2f} s/Mpx), whole process {row['wall_s']:.1f} s, "
                  f"peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
    if args.competitor:
        by_name = {c.name: c for c in cards}
        card = by_name.get(RECOMMENDED) or cards[0]
        image = _image_for(card, work, args.crop)
        quiet = cli_case(card, image, work)
        busy = _busy()
        try:
            loaded = cli_case(card, image, work)
        finally:
            busy.kill()
            busy.wait()
        rows.append({"case": "competitor", "card": card.name, "quiet_s": quiet["wall_s"], "busy_s": loaded["wall_s"],
                     "ratio": loaded["wall_s"] / quiet["wall_s"], "load": _load()})
        print(f"competitor {card.name}: {quiet['wall_s']:.1f} s alone, {loaded['wall_s']:.1f} s beside a busy loop "
              f"({loaded['wall_s'] / quiet['wall_s']:.2f}x)", flush=True)
    if args.shards:
        by_name = {c.name: c for c in cards}
        card = by_name.get(RECOMMENDED) or cards[0]
        row = shards_case(card, _image_for(card, work, args.crop), work, args.shards, args.shard_images)
        rows.append(row)
        cases = "; ".join(f"{k}: {v['wall_s']:.1f} s, {v['images_per_hour']:.0f} images/h" for k, v in row.items()
                          if isinstance(v, dict) and "wall_s" in v)
        machine = row["machine"]
        print(f"shards {card.name} ({row['images']} images) {cases}; scaling {row['scaling']:.2f}x "
              f"(ideal {args.shards}; the machine's own {machine['dtype']} convolution: {machine['scaling']:.2f}x, "
              f"{machine['one_process_gflops']:.0f} -> {machine['n_processes_gflops']:.0f} GFLOP/s)", flush=True)
    if args.slide or args.slide_crop:
        for strategy in args.slide_strategies:
            for glass in args.slide_glass:
                row = slide_case(work, args.slide_crop, strategy, glass)
                rows.append(row)
                print(f"slide {row['card']} {row['mpx']:.1f} Mpx, glass {row['glass']}: {row['wall_s']:.0f} s "
                      f"({row['s_per_mpx']:.2f} s/Mpx), peak RSS {row['peak_rss_mb']:.0f} MB, {row['fibres']} fibres, "
                      f"load {row['load']}", flush=True)
    header["load_after"] = list(os.getloadavg())
    print(json.dumps({"load_after": header["load_after"]}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
