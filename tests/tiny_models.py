"""Tiny models on real data, for tests: a random-weight translation model and compact nnU-Nets trained briefly.

Every builder takes a target folder and returns at once when that folder already holds a complete result, so a
session-scoped fixture can share one build between test modules, e.g.::

    @pytest.fixture(scope="session")
    def tiny_dir(tmp_path_factory):
        return tmp_path_factory.getbasetemp() / "tiny_models"

    @pytest.fixture(scope="session")
    def tiny_translation(tiny_dir):
        return build_tiny_translation_model(tiny_dir / "translation")

    @pytest.fixture(scope="session")
    def tiny_tutor_model(tiny_dir, shared_data, tiny_translation):
        labeled = copy_labeled_subset(shared_data / "tem-srf", tiny_dir / "tem-srf-5")
        return build_tiny_segmentation_model(tiny_dir / "tutor", labeled, translation=tiny_translation)

The models learn nothing useful (a few dozen iterations, random translation): they exercise the real code paths
(SynDiff, nnU-Net planning, training, prediction) in seconds to a minute each on a CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

#: Working pixel sizes of the tiny translation model: tem-srf tiles (600 px at 0.00493 um) shrink to ~150 px, the
#: sem-dev image (822 x 771 px at 0.1 um) to ~410 px: seconds per nnU-Net fold on a CPU.
TINY_PIXEL_SIZES = {"L": 0.02, "U": 0.2}
#: Labeled images used for the tiny nnU-Nets (five: nnU-Net's five-fold split needs five cases).
N_LABELED = 5
#: The smallest sem-dev image (822 x 771 px at 0.1 um).
SEM_SUBJECT = "sub-rat4"
#: That subject with its manual labels, shipped with the tests (a BIDS dataset; MIT, see tests/data/README.md).
TEST_SEM = Path(__file__).resolve().parent / "data" / "sem-rat4"


def build_tiny_translation_model(folder, pixel_sizes=None, seed=0) -> Path:
    """A random-weight SynDiff (``tiny`` preset) saved with working pixel sizes into ``folder``.

    Parameters
    ----------
    folder : str or Path
    pixel_sizes : dict, optional
        ``{"L": ..., "U": ...}``; default :data:`TINY_PIXEL_SIZES`.
    seed : int
        Seed of the random weights.

    Returns
    -------
    Path
        ``folder`` (loadable with ``load_translation_model``).
    """
    import torch

    from ads_synth.translation.config import get_preset
    from ads_synth.translation.model import SynDiff

    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / "weights.pt").is_file():
        return folder
    torch.manual_seed(seed)
    model = SynDiff(get_preset("tiny"))
    model.save_pretrained(folder, extra={"pixel_size": dict(pixel_sizes or TINY_PIXEL_SIZES)},
                          generators_only=True)
    return folder


def copy_labeled_subset(bids_root, dest, n=N_LABELED) -> Path:
    """Copy the first ``n`` labeled images of a BIDS dataset into a flat folder ADS-style.

    Each image gets its manual labels beside it (``<stem>_seg-{axon,myelin}-manual.png``) and the folder a
    ``pixel_size_in_micrometer.txt`` (all images of one dataset share the pixel size here).
    """
    from ads_synth.data.datasets import find_samples

    dest = Path(dest)
    done = dest / ".complete"
    if done.is_file():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    samples = find_samples(bids_root, require_labels=True, require_pixel_size=True)[:n]
    for s in samples:
        shutil.copy2(s.image, dest / s.image.name)
        for kind, path in s.labels.items():
            shutil.copy2(path, dest / f"{s.name}_seg-{kind}-manual{path.suffix}")
    (dest / "pixel_size_in_micrometer.txt").write_text(f"{samples[0].pixel_size}\n", encoding="utf-8")
    done.touch()
    return dest


def copy_bids_subject(bids_root, dest, subject=SEM_SUBJECT, with_labels=True) -> Path:
    """Copy one subject of a BIDS dataset (images, sidecars, and optionally its derivatives/labels)."""
    bids_root, dest = Path(bids_root), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(bids_root / "dataset_description.json", dest / "dataset_description.json")
    shutil.copytree(bids_root / subject, dest / subject)
    labels = bids_root / "derivatives" / "labels" / subject
    if with_labels and labels.is_dir():
        shutil.copytree(labels, dest / "derivatives" / "labels" / subject)
    return dest


def tiny_settings(folds=(0,), patch=64, epochs=1, iterations=4, val_iterations=1):
    """``TrainSettings`` for a compact nnU-Net trained in seconds on a CPU."""
    from ads_synth.segmentation.model_building import TrainSettings

    return TrainSettings(folds=list(folds), trainer="compact", patch_size=patch, batch_size=2, epochs=epochs,
                         iterations=iterations, val_iterations=val_iterations, device="cpu", num_processes=1,
                         progress=False)


def build_tiny_segmentation_model(folder, labeled, *, translation=None, work=None, folds=(0,), patch=64,
                                  epochs=1, iterations=4) -> Path:
    """A compact nnU-Net trained for a few iterations into ``folder``.

    Parameters
    ----------
    folder : str or Path
        The model folder.
    labeled : str or Path
        Labeled L images (e.g. :func:`copy_labeled_subset` of tem-srf; at least 5 images for numbered folds).
    translation : str or Path, optional
        With a translation model folder: the tutorship model (trained on L images translated L->U, working at
        U's pixel size). Without: a model of L (``ads-synth segmentation train``) at the median L pixel size.
    work : str or Path, optional
        nnU-Net's work folder; default ``<folder>_work``.
    folds : sequence
        Folds to train.
    patch, epochs, iterations : int
        Compact configuration and schedule.

    Returns
    -------
    Path
        ``folder`` (``ads_synth.json``, ``dataset.json``, ``plans.json``, ``fold_<k>/checkpoint_final.pth``).
    """
    from ads_synth.segmentation.model_building import train_labeled_model, train_tutor_model
    from ads_synth.segmentation.predict import finished_folds, read_model_info

    folder = Path(folder)
    if folder.is_dir() and read_model_info(folder) and set(folds) <= set(finished_folds(folder)):
        return folder
    work = Path(work) if work is not None else folder.with_name(folder.name + "_work")
    settings = tiny_settings(folds, patch, epochs, iterations)
    if translation is None:
        return train_labeled_model(labeled, folder, work, settings=settings)
    from ads_synth.data.datasets import find_samples
    from ads_synth.translation.translate import load_translation_model

    samples = find_samples(labeled, require_labels=True)
    model = load_translation_model(translation, device="cpu")
    return train_tutor_model(samples, model, translation, folder, work, settings=settings)


def describe(folder) -> dict:
    """``ads_synth.json`` of a model folder (for assertions)."""
    return json.loads((Path(folder) / "ads_synth.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------------
# the whole pipeline, once per session
# ---------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def record_opened_files():
    """Record every path opened through ``open`` / ``io.open`` in this process (a set of resolved paths)."""
    import builtins
    import io

    opened = set()
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            try:
                opened.add(Path(file).resolve())
            except OSError:
                pass
        return real_open(file, *args, **kwargs)

    builtins.open, io.open = spy, spy
    try:
        yield opened
    finally:
        builtins.open, io.open = real_open, real_open


@dataclass
class TinyPipeline:
    """What :func:`tiny_pipeline` built: folders, the run's records and the files it opened."""

    base: Path
    translation: Path
    labeled: Path
    unlabeled: Path
    out: Path
    result: dict
    opened: set
    folds: tuple


_PIPELINES = {}


@contextlib.contextmanager
def one_torch_thread():
    """Run the block with one torch thread (two cores are shared with other processes; results then repeat bit
    for bit)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def tiny_pipeline(base, folds=(0, 1), patch=64, epochs=1, iterations=4) -> TinyPipeline:
    """Run ``ads-synth pseudo --strategy all --per-fold`` once per session on real data with tiny models.

    Bundled data only (no ../shared): L: the first 5 images of the bundled labeled TEM set (tem-srf tiles, labels
    beside them); U: sem-dev's sub-rat4 as shipped in ``tests/data/sem-rat4`` (BIDS, its labels in
    derivatives/labels, never to be read); a random tiny translation model. Trains ``OUT/models/tutor`` and
    ``OUT/models/L`` (compact nnU-Net, ``folds``, a few iterations), writes ``OUT/pseudo_labels/{tutor,adapt,
    direct,combined}/`` with ``fold_<k>/`` and confidence TIFFs. Files opened by this process during the run are
    recorded (:func:`record_opened_files`). Runs with one torch thread, as the tests do (conftest), so that the
    tests' own predictions can be compared with these bit for bit.
    """
    from ads_synth.segmentation.pseudo import OutputOptions
    from ads_synth.segmentation.pseudo_training import run_pseudo

    base = Path(base)
    key = (str(base.resolve()), tuple(folds), patch, epochs, iterations)
    if key in _PIPELINES:
        return _PIPELINES[key]
    from ads_synth.data.bundled import labeled_set

    translation = build_tiny_translation_model(base / "translation")
    labeled = copy_labeled_subset(labeled_set("TEM"), base / "tem-srf-5")
    unlabeled = copy_bids_subject(TEST_SEM, base / "sem-rat4")
    out = base / "OUT"
    settings = tiny_settings(folds, patch, epochs, iterations)
    options = OutputOptions(per_fold=True, confidence_tiff=True, skip_existing=True)
    with one_torch_thread(), record_opened_files() as opened:
        result = run_pseudo("all", labeled, unlabeled, translation, out, settings=settings, options=options,
                            progress=False)
    _PIPELINES[key] = TinyPipeline(base, translation, labeled, unlabeled, out, result, set(opened), tuple(folds))
    return _PIPELINES[key]


def run_ads_axon_segmentation(image, model_dir, timeout=300) -> dict:
    """Segment ``image`` with AxonDeepSeg's own loader (``apply_model.axon_segmentation``) in a subprocess.

    Returns ``{file name: array}`` of the ``<stem>_seg-*.png`` files it wrote beside the image.
    """
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    image = Path(image)
    code = (
        "import sys, pathlib, torch; torch.set_num_threads(1)\n"
        "from AxonDeepSeg.apply_model import axon_segmentation\n"
        "axon_segmentation([pathlib.Path(sys.argv[1])], pathlib.Path(sys.argv[2]), model_type='ensemble')\n"
    )
    env = {**os.environ, "nnUNet_def_n_proc": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", code, str(image), str(model_dir)], cwd=image.parent, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-2000:]
    return {p.name: np.array(Image.open(p)) for p in sorted(image.parent.glob(f"{image.stem}_seg-*.png"))}
