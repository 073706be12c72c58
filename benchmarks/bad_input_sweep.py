"""Sweep of bad inputs over the command lines: each must exit 2 with one line on stderr and touch nothing.

Every case runs in-process (``ads_synth.cli.main`` / ``ads_synth.integration.ads_cli.main``) in a fresh work folder
with the tiny random translation model of ``tests/tiny_models.py``, two synthetic one-image domains and crops of the
bundled demo image; a full disk is simulated (``OSError(ENOSPC)``), PIL's bomb limit lowered. A case is *clean* when
it exits with 2, prints exactly one line on stderr and leaves every file of the work folder as it was; a traceback,
another exit code, more lines, a written file, or 90 s without an answer (work started) is not. Prints one line per
case and the count (docs/results.md, "Reliability"). Run it under a memory limit: before the pixel budget, some
cases asked for tens of GiB.

    (ulimit -v 12000000; PYTHONPATH=$PWD:$PWD/tests OMP_NUM_THREADS=1 python benchmarks/bad_input_sweep.py /tmp/sweep)
"""
import contextlib
import errno
import io
import os
import shutil
import sys
import traceback
from pathlib import Path

import numpy as np
from PIL import Image

work = Path(sys.argv[1]).resolve()
if work.exists():
    shutil.rmtree(work)
work.mkdir(parents=True)
os.chdir(work)
os.environ.pop("ADS_SYNTH_MODELS", None)

from ads_synth.cli import main as cli  # noqa: E402
from ads_synth.integration import ads_cli  # noqa: E402
from test_translation_training import make_domain  # noqa: E402
from tiny_models import build_tiny_translation_model  # noqa: E402

REPO = Path(__import__("ads_synth").__file__).resolve().parents[1]
T = build_tiny_translation_model(work / "tiny")
make_domain(work / "L", "tem", n=1, pixel_size=0.025)
make_domain(work / "U", "sem", n=1)
demo = np.asarray(Image.open(REPO / "docs/demo/sub-rat8_sample-V915_SEM.png").convert("L"))[300:492, 500:692]


def folder(name, px="0.07", extra=None):
    d = work / name
    d.mkdir()
    Image.fromarray(demo).save(d / "crop.png")
    if px is not None:
        (d / "pixel_size_in_micrometer.txt").write_text(px + "\n")
    if extra:
        extra(d)
    return d


def truncated(d):
    data = (d / "crop.png").read_bytes()
    (d / "zz.png").write_bytes(data[: len(data) // 2])


def nan_tiff(d):
    import tifffile
    a = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    a[3, 3] = np.nan
    tifffile.imwrite(d / "nan.tif", a)


F = {k: folder(k, px) for k, px in [("ok", "0.07"), ("px70", "70"), ("px1e300", "1e300"), ("px1em300", "1e-300"),
                                    ("nopx", None)]}
F["trunc"] = folder("trunc", extra=truncated)
F["nan"] = folder("nan", extra=nan_tiff)
F["txt"] = folder("txt", extra=lambda d: (d / "notimage.png").write_text("hello"))
(work / "exists").mkdir()
(work / "exists" / "crop_U2L.png").write_bytes(b"x")
F["seg"] = folder("seg")
for name in ("crop_seg-axon.png",):
    (F["seg"] / name).write_bytes(b"old")
broken = work / "broken_cards"
broken.mkdir()
(broken / "X2Y_tutor.yaml").write_text("X2Y_tutor: [unclosed\n")


_n = [0]


def fresh(name):
    """A new output path for each case (no case sees another's outputs)."""
    _n[0] += 1
    return str(work / f"{name}{_n[0]}")


def tr(*a):
    return ["translate", "--model", str(T), "--direction", "U2L", "-o", fresh("out"), "--device", "cpu",
            "--no-progress", *a]


def tt(*a):
    return ["translation", "train", "--out", fresh("run"), "--preset", "tiny", "--steps", "1", "--device", "cpu",
            "--no-progress", *a]


L, U = str(work / "L"), str(work / "U")
crop = lambda k: str(F[k] / "crop.png")  # noqa: E731
adsp = lambda *a: ("ads", ["-t", "SEM", "--pseudo", "tutor", *a])  # noqa: E731
CASES = [
    ("translate: pixel size 70 (nm as um)", ("cli", tr("-i", crop("px70")))),
    ("translate: pixel size 1e300", ("cli", tr("-i", crop("px1e300")))),
    ("translate: pixel size 1e-300", ("cli", tr("-i", crop("px1em300")))),
    ("translate: --pixel-size -1", ("cli", tr("-i", crop("nopx"), "--pixel-size", "-1"))),
    ("translate: --pixel-size nan", ("cli", tr("-i", crop("nopx"), "--pixel-size", "nan"))),
    ("translate: --pixel-size abc", ("cli", tr("-i", crop("nopx"), "--pixel-size", "abc"))),
    ("translate: no pixel size", ("cli", tr("-i", crop("nopx")))),
    ("translate: --batch-size 0", ("cli", tr("-i", crop("ok"), "--batch-size", "0"))),
    ("translate: --tile 33", ("cli", tr("-i", crop("ok"), "--tile", "33"))),
    ("translate: --overlap -1", ("cli", tr("-i", crop("ok"), "--overlap", "-1"))),
    ("translate: --direction sideways", ("cli", ["translate", "--model", str(T), "--direction", "x", "-i", "a",
                                                 "-o", "b"])),
    ("translate: missing --model", ("cli", ["translate", "--direction", "L2U", "-i", "a", "-o", "b"])),
    ("translate: no such model", ("cli", ["translate", "--model", str(work / "nomodel"), "--direction", "L2U",
                                          "-i", crop("ok"), "-o", fresh("out")])),
    ("translate: folder with a truncated image", ("cli", tr("-i", str(F["trunc"])))),
    ("translate: text file named .png", ("cli", tr("-i", str(F["txt"] / "notimage.png")))),
    ("translate: NaN pixel in float TIFF", ("cli", tr("-i", str(F["nan"] / "nan.tif"), "--pixel-size", "0.2"))),
    ("translate: existing output", ("cli", ["translate", "--model", str(T), "--direction", "U2L", "-i", crop("ok"),
                                            "-o", str(work / "exists"), "--device", "cpu", "--no-progress"])),
    ("translate: unknown option", ("cli", tr("-i", crop("ok"), "--bogus"))),
    ("translation train: --scale 1e6", ("cli", tt("--source", L, "--target", U, "--scale", "1e6"))),
    ("translation train: --scale 1e300", ("cli", tt("--source", L, "--target", U, "--scale", "1e300"))),
    ("translation train: --scale 1e-300", ("cli", tt("--source", L, "--target", U, "--scale", "1e-300"))),
    ("translation train: --scale -1", ("cli", tt("--source", L, "--target", U, "--scale", "-1"))),
    ("translation train: --batch-size 0", ("cli", tt("--source", L, "--target", U, "--batch-size", "0"))),
    ("translation train: same --source and --target", ("cli", tt("--source", U, "--target", U))),
    ("translation train: --steps 0", ("cli", tt("--source", L, "--target", U, "--steps", "0"))),
    ("translation train: --resume without a run", ("cli", tt("--resume"))),
    ("translation train: missing --source path", ("cli", tt("--source", str(work / "nope"), "--target", U))),
    ("translation train: --tile 33", ("cli", tt("--source", L, "--target", U, "--tile", "33"))),
    ("axondeepseg: --pseudo foo", ("ads", ["-t", "SEM", "--pseudo", "foo", "-i", crop("ok")])),
    ("axondeepseg: missing -i", ("ads", ["-t", "SEM", "--pseudo", "tutor"])),
    ("axondeepseg: unknown option", adsp("-i", crop("ok"), "--bogus")),
    ("axondeepseg: -t XYZ", ("ads", ["-t", "XYZ", "--pseudo", "tutor", "-i", crop("ok")])),
    ("axondeepseg: pixel size 70", adsp("-i", crop("px70"))),
    ("axondeepseg: pixel size 1e300", adsp("-i", crop("px1e300"))),
    ("axondeepseg: pixel size 1e-300", adsp("-i", crop("px1em300"))),
    ("axondeepseg: folder with a truncated image", adsp("-i", str(F["trunc"]))),
    ("axondeepseg: --pixel-size 0", adsp("-i", crop("nopx"), "--pixel-size", "0")),
    ("axondeepseg: no pixel size", adsp("-i", crop("nopx"))),
    ("axondeepseg: NaN float TIFF", adsp("-i", str(F["nan"] / "nan.tif"), "--pixel-size", "0.07")),
    ("axondeepseg: existing outputs", adsp("-i", crop("seg"))),
    ("axondeepseg: -m with --pseudo", adsp("-i", crop("ok"), "-m", "x")),
    ("axondeepseg: over the bomb limit", ("bomb", adsp("-i", crop("ok"))[1])),
    ("axondeepseg: full disk", ("enospc-ads", adsp("-i", crop("ok"))[1])),
    ("pseudo: --min-confidence 2", ("cli", ["pseudo", "--strategy", "proxy", "--labeled", L, "--unlabeled", U,
                                            "--translation", str(T), "-o", fresh("pout"), "--min-confidence",
                                            "2", "--no-progress"])),
    ("pseudo: --strategy foo", ("cli", ["pseudo", "--strategy", "foo", "--labeled", L, "--unlabeled", U,
                                        "--translation", str(T), "-o", fresh("pout"), "--no-progress"])),
    ("pseudo: --epochs 0", ("cli", ["pseudo", "--strategy", "tutor", "--labeled", L, "--unlabeled", U,
                                    "--translation", str(T), "-o", fresh("pout"), "--epochs", "0"])),
    ("models show: unknown card", ("cli", ["models", "show", "NOPE"])),
    ("models show: broken card", ("broken", ["models", "show", "X2Y_tutor"])),
    ("evaluate: missing --pred", ("cli", ["evaluate", "--pred", str(work / "nopred"), "--truth", U])),
    ("segmentation predict: no such model", ("cli", ["segmentation", "predict", "-i", crop("ok"), "-m",
                                                     str(work / "nomodel"), "-o", fresh("sout")])),
    ("info: full disk", ("enospc-cli", ["info"])),
    ("ads-synth: unknown command", ("cli", ["nonsense"])),
]


def snapshot():
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in work.rglob("*")}


def run(kind, argv):
    import PIL.Image
    from ads_synth.commands import info
    from ads_synth.integration import pseudo_action

    saved = PIL.Image.MAX_IMAGE_PIXELS, info.collect_info, pseudo_action.run_pseudo_labels, \
        os.environ.get("ADS_SYNTH_MODELS")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(work / "out" / "x.png"))
    try:
        if kind == "bomb":
            PIL.Image.MAX_IMAGE_PIXELS = 10_000
        if kind == "enospc-cli":
            info.collect_info = full
        if kind == "enospc-ads":
            pseudo_action.run_pseudo_labels = full
        if kind == "broken":
            os.environ["ADS_SYNTH_MODELS"] = str(broken)
        main = ads_cli.main if kind in ("ads", "bomb", "enospc-ads") else cli
        try:
            return main(argv)
        except SystemExit as stop:
            return stop.code
    finally:
        PIL.Image.MAX_IMAGE_PIXELS, info.collect_info, pseudo_action.run_pseudo_labels = saved[:3]
        if saved[3] is None:
            os.environ.pop("ADS_SYNTH_MODELS", None)


import signal


class TooLong(Exception):
    pass


def _alarm(*a):
    raise TooLong("still running after 90 s (started the work)")


signal.signal(signal.SIGALRM, _alarm)
clean = 0
for name, (kind, argv) in CASES:
    before = snapshot()
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        signal.alarm(90)
        try:
            code = run(kind, argv)
        except BaseException as exc:  # noqa: BLE001 - a traceback
            code = f"traceback {type(exc).__name__}"
            traceback.print_exc(file=err)
        finally:
            signal.alarm(0)
    lines = [x for x in err.getvalue().splitlines() if x.strip()]
    touched = snapshot() != before
    ok = code == 2 and len(lines) == 1 and not touched
    clean += ok
    print(f"{'clean' if ok else 'NOT  '} exit={code} lines={len(lines)} touched={touched}  {name}"
          + f"   | {(lines[-1] if lines else '')[:150]}", flush=True)
print(f"{clean} of {len(CASES)} bad inputs clean (exit 2, one line, nothing touched)")
