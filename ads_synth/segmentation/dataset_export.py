"""Writing an nnU-Net v2 raw dataset: 2-D PNG, one channel, labels 0 background / 1 myelin / 2 axon.

Layout (nnU-Net's ``dataset_format.md``)::

    DatasetXXX_<name>/
        dataset.json            channel_names, labels, numTraining, file_ending ".png"
        imagesTr/<case>_0000.png
        labelsTr/<case>.png

:func:`verify_raw_dataset` runs nnU-Net's own ``verify_dataset_integrity`` on it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ads_synth.data.datasets import CLASSES
from ads_synth.data.writers import write_image
from ads_synth.errors import InputError

FILE_ENDING = ".png"
#: nnU-Net's label dictionary (the class values of :func:`ads_synth.data.load_label_map`).
LABELS = {"background": CLASSES["background"], "myelin": CLASSES["myelin"], "axon": CLASSES["axon"]}
#: nnU-Net's ignore label (its highest label value): pixels that carry no supervision (unsure pseudo labels).
IGNORE = max(LABELS.values()) + 1
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def dataset_name(dataset_id, name) -> str:
    """nnU-Net's folder name ``DatasetXXX_<name>`` (``dataset_id`` 1 to 999)."""
    dataset_id = int(dataset_id)
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"nnU-Net dataset ids are 1 to 999, got {dataset_id}")
    return f"Dataset{dataset_id:03d}_{_SAFE.sub('-', str(name))}"


def case_ids(names):
    """Unique nnU-Net case ids for sample names (characters nnU-Net file names dislike replaced)."""
    out, seen = [], set()
    for name in names:
        base = _SAFE.sub("-", str(name)) or "case"
        case, k = base, 1
        while case in seen:
            k += 1
            case = f"{base}-{k}"
        seen.add(case)
        out.append(case)
    return out


def dataset_json(num_training, channel_name="microscopy", ignore_label=False) -> dict:
    """The ``dataset.json`` of an ads-synth raw dataset (with nnU-Net's ``ignore`` label when asked)."""
    return {
        "channel_names": {"0": str(channel_name)},
        "labels": {**LABELS, "ignore": IGNORE} if ignore_label else dict(LABELS),
        "numTraining": int(num_training),
        "file_ending": FILE_ENDING,
    }


def export_raw_dataset(cases, folder, channel_name="microscopy", overwrite=False, progress=True, total=None,
                       ignore_label=False):
    """Write an nnU-Net v2 raw dataset from ``(case_id, image, label_map)`` triples.

    Parameters
    ----------
    cases : iterable of (str, numpy.ndarray, numpy.ndarray)
        Case id (see :func:`case_ids`), a 2-D uint8 (or uint16) image and its label map (0 / 1 / 2) of the same
        shape.
        Consumed lazily, so translated images need not all be in memory.
    folder : str or Path
        The dataset folder (``.../DatasetXXX_<name>``).
    channel_name : str
        Name of the single input channel in ``dataset.json``.
    overwrite : bool
        Replace an existing dataset folder; otherwise InputError when it exists.
    progress : bool
        tqdm bar over cases.
    total : int, optional
        Number of cases, for the bar.
    ignore_label : bool
        Label maps may hold :data:`IGNORE` (3): pixels nnU-Net's loss leaves out.

    Returns
    -------
    Path
        ``folder``; ``dataset.json`` is written last, so a dataset with one is complete.
    """
    folder = Path(folder)
    if folder.exists():
        if not overwrite:
            raise InputError(f"{folder}: the nnU-Net dataset exists; pass --overwrite to rebuild it.")
        shutil.rmtree(folder)
    images_dir, labels_dir = folder / "imagesTr", folder / "labelsTr"
    images_dir.mkdir(parents=True)
    labels_dir.mkdir()
    n = 0
    for case, image, label_map in tqdm(cases, total=total, desc="nnU-Net dataset", unit="image",
                                       disable=not progress):
        image, label_map = np.asarray(image), np.asarray(label_map)
        if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"case {case}: expected a 2-D uint8 or uint16 image, got {image.dtype} {image.shape}")
        if label_map.shape != image.shape:
            raise ValueError(f"case {case}: label map {label_map.shape} does not match the image {image.shape}")
        top = IGNORE if ignore_label else max(LABELS.values())
        if label_map.size and int(label_map.max()) > top:
            raise ValueError(f"case {case}: label values must be 0 to {top}")
        write_image(images_dir / f"{case}_0000{FILE_ENDING}", image)
        write_image(labels_dir / f"{case}{FILE_ENDING}", label_map.astype(np.uint8))
        n += 1
    if n == 0:
        raise InputError(f"{folder}: no training cases to export; give a labeled dataset with images.")
    meta = dataset_json(n, channel_name, ignore_label)
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder


def verify_raw_dataset(folder, num_processes=1):
    """Run nnU-Net's ``verify_dataset_integrity`` on ``folder`` (raises ``AssertionError`` / ``RuntimeError``); with
    ``num_processes`` 1 (or less) in this process (:func:`ads_synth.segmentation.plans.inline_pools`), not in the
    spawned pool nnU-Net starts even for one process (each worker imports torch again: seconds)."""
    import contextlib

    from ads_synth.segmentation.nnunet_env import import_nnunet, quiet
    from ads_synth.segmentation.plans import inline_pools

    import_nnunet()
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    with quiet(), (inline_pools() if num_processes <= 1 else contextlib.nullcontext()):
        verify_dataset_integrity(str(folder), max(1, num_processes))
