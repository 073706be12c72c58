"""What the napari widget's annotation-loop buttons do, without Qt (testable headless).

* :func:`confidence_path` / :func:`read_confidence`: the ``<stem>_seg-confidence.png`` a pseudo-labelling wrote,
  as a float map in [0, 1] (shown as a layer);
* :func:`save_corrected_masks`: the user's edited axon and myelin masks written in AxonDeepSeg's format beside the
  image (``_seg-axon.png``, ``_seg-myelin.png``, ``_seg-axonmyelin.png``, atomically), which is what
  ``ads-synth refine --corrected`` reads;
* :func:`refine_command`: the ``ads-synth refine`` command line for the corrected images of one folder, run in the
  background by the widget; :func:`refine_progress` reads its phase lines (``[k/4] phase: done``) as progress;
* :func:`rank_command` / :func:`read_ranking`: the ``ads-synth rank`` command line for the images of one folder
  (the widget's "Rank images to correct" column) and the rows of the CSV it writes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from ads_synth.errors import InputError

#: Where the widget's refine runs go, inside the images' folder.
REFINE_FOLDER = "ads_synth_refine"
#: Where the widget's ranking goes (``ranking.csv`` and the paths' pseudo labels, reused by later rankings).
RANK_FOLDER = "ads_synth_rank"
_PHASE = re.compile(r"\[(\d+)/(\d+)\] (\w+): (started|done)")


def confidence_path(image, out_dir=None) -> Path:
    from ads_synth.segmentation.pseudo import CONFIDENCE_SUFFIX

    image = Path(image)
    return Path(out_dir or image.parent) / f"{image.stem}{CONFIDENCE_SUFFIX}"


def read_confidence(image, out_dir=None):
    """The confidence map (float32 in [0, 1]) of ``image``'s pseudo labels, or None when none was written."""
    from ads_synth.data.images import read_label

    path = confidence_path(image, out_dir)
    return read_label(path).astype(np.float32) / 255.0 if path.is_file() else None


def save_corrected_masks(image, axon, myelin) -> list:
    """Write the edited masks of ``image`` in AxonDeepSeg's format beside it (replacing its pseudo labels: the
    user's edit is the newer version); InputError when a mask's size differs from the image's."""
    from ads_synth.data.images import image_shape
    from ads_synth.data.writers import write_ads_segmentation

    image = Path(image)
    shape = image_shape(image)
    axon, myelin = np.asarray(axon) > 0, np.asarray(myelin) > 0
    for name, mask in (("axon", axon), ("myelin", myelin)):
        if mask.shape != tuple(shape):
            raise InputError(f"{image.name}: the {name} layer is {mask.shape[1]} x {mask.shape[0]} px but the image is "
                             f"{shape[1]} x {shape[0]} px; save masks of the image's size.")
    label_map = np.zeros(shape, np.uint8)
    label_map[myelin] = 1
    label_map[axon] = 2
    return write_ads_segmentation(label_map, image, overwrite=True)


def refine_command(family, corrected, unlabeled=None, out=None) -> list:
    """``[python, -m, ads_synth.cli, refine, ...]`` for ``corrected`` images (their masks beside them) and the
    other images of their folder (``unlabeled``; default: every image there that is not corrected)."""
    from ads_synth.data.datasets import is_candidate_image

    corrected = [Path(c) for c in corrected]
    if not corrected:
        raise InputError("no corrected image yet: edit the masks and press \"Save corrected masks\" first.")
    folder = corrected[0].parent
    if unlabeled is None:
        done = {c.resolve() for c in corrected}
        unlabeled = sorted(p for p in folder.iterdir() if p.is_file() and is_candidate_image(p)
                           and p.resolve() not in done)
    argv = [sys.executable, "-m", "ads_synth.cli", "refine", "--family", family,
            "--corrected", *map(str, corrected)]
    if unlabeled:
        argv += ["--unlabeled", *map(str, unlabeled)]
    argv += ["-o", str(out or folder / REFINE_FOLDER), "--overwrite"]
    return argv


def refine_progress(line):
    """``(finished phases, phases, text)`` of one line of ``ads-synth refine``'s output, or None."""
    match = _PHASE.search(line)
    if not match:
        return None
    k, n, name, what = int(match[1]), int(match[2]), match[3], match[4]
    return (k if what == "done" else k - 1), n, f"{name} {what}"


def rank_command(family, folder, out=None) -> list:
    """``[python, -m, ads_synth.cli, rank, folder, ...]``: rank the images of ``folder`` for ``family``, writing
    ``<out>/ranking.csv`` (default ``folder/ads_synth_rank``) and keeping the paths' pseudo labels in
    ``<out>/work`` so that ranking the folder again computes only new images. Creates ``out``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder; open an image from a folder of images to rank them.")
    out = Path(out or folder / RANK_FOLDER)
    out.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "ads_synth.cli", "rank", str(folder), "--family", family,
            "-o", str(out / "ranking.csv"), "--overwrite", "--work", str(out / "work"), "-v", "0"]


def read_ranking(path) -> list:
    """The rows of a ranking CSV written by ``ads-synth rank``: dicts with ``rank`` (int), ``image`` (Path),
    ``priority`` (float) and the other columns as text, in rank order; InputError when the file is not one."""
    import csv

    from ads_synth.annotation.rank import COLUMNS

    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise InputError(f"{path}: cannot read the ranking ({err}).") from None
    if rows and set(COLUMNS) - set(rows[0]):
        raise InputError(f"{path}: not a ranking written by ads-synth rank (columns {', '.join(COLUMNS)}).")
    out = []
    for row in rows:
        row = dict(row, rank=int(row["rank"]), image=Path(row["image"]),
                   priority=float(row["priority"]) if row["priority"] else float("nan"))
        out.append(row)
    return sorted(out, key=lambda r: r["rank"])
