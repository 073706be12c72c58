"""Building segmentation models: labeled images -> nnU-Net raw dataset -> plans -> trained folds + ``ads_synth.json``.

Two kinds of training data, one builder (:func:`build_segmentation_model`):

* :func:`labeled_cases`: the labeled domain L itself, every image rescaled to one reference pixel size (labels
  nearest neighbour). The model segments L images (the adaptation path and the "L model applied directly" floor).
* :func:`translated_cases`: tutorship, ``{X_L->U, Y_L}``: each labeled L image translated into U's look on the
  translation model's working grid (``output_grid="model"``, effective pixel size = U's working pixel size), its
  labels resized (nearest neighbour) to the translated image's shape. The model segments U images.
* :func:`pseudo_labeled_cases`: the proxy (self-training), the unlabeled images themselves with the pseudo labels
  that both paths agreed on (``combined``), rescaled to U's working pixel size; pixels whose confidence is below a
  threshold become nnU-Net's ignore label, so only confident pseudo labels teach. :func:`train_proxy_model` adds
  the tutorship cases ``{X_L->U, Y_L}``, so the proxy learns from both paths' outputs and the true L labels.

Everything is resumable: the raw dataset is written once (``dataset.json`` last), planning and preprocessing are
skipped when done, folds with ``checkpoint_final.pth`` are skipped and interrupted folds continue from
``checkpoint_latest.pth``. Only the labeled domain's labels are ever read.
"""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ads_synth.errors import InputError

#: nnU-Net dataset ids in a work folder.
TUTOR_DATASET_ID = 501
LABELED_DATASET_ID = 502
PROXY_DATASET_ID = 503
#: Pseudo-label pixels below this confidence are left out of the proxy's loss.
DEFAULT_MIN_CONFIDENCE = 0.5
_SOURCE_FILE = "ads_synth_source.json"


@dataclass
class TrainSettings:
    """How to train (the ``segmentation train`` / ``pseudo`` options).

    Attributes
    ----------
    folds : list, optional
        Folds to train (``parse_folds``); default 0..4.
    trainer : {"compact", "default"}
    patch_size, batch_size : int
        Compact configuration (``--patch``); ignored by the default trainer.
    epochs, iterations, val_iterations : int, optional
        Schedule overrides (default: the trainer's).
    device : str, optional
    num_processes : int
        nnU-Net's worker processes for fingerprinting and preprocessing.
    progress, verbose : bool
    fold_time_s : float, optional
        Seconds each fold's training may take: the epochs are then fitted to it from the measured speed
        (``epochs`` is the planned count; :func:`ads_synth.segmentation.trainer.train_fold`).
    """

    folds: list | None = None
    trainer: str = "compact"
    patch_size: int = 256
    batch_size: int = 4
    epochs: int | None = None
    iterations: int | None = None
    val_iterations: int | None = None
    device: str | None = None
    num_processes: int = 2
    progress: bool = True
    verbose: bool = False
    fold_time_s: float | None = None

    def compact_plan(self):
        from ads_synth.segmentation.plans import CompactPlan

        return CompactPlan(patch_size=int(self.patch_size), batch_size=int(self.batch_size))

    def check(self):
        """InputError for invalid settings (before anything is written)."""
        from ads_synth.segmentation.trainer import configuration_for, parse_folds

        self.folds = parse_folds(self.folds)
        configuration_for(self.trainer)
        self.compact_plan()
        for name in ("epochs", "iterations", "val_iterations"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise InputError(f"--{name.replace('_', '-')} {value}: must be at least 1.")
        if int(self.num_processes) < 1:
            raise InputError(f"--processes {self.num_processes}: nnU-Net needs at least 1 worker process.")
        return self


# -------------------------------------------------------------------------------------------------------------
# training cases
# -------------------------------------------------------------------------------------------------------------
def reference_pixel_size(samples) -> float:
    """Median pixel size of the samples (the L model's working pixel size when none is given)."""
    sizes = [s.pixel_size for s in samples if s.pixel_size is not None]
    if not sizes:
        raise InputError(f"{samples[0].image}: no pixel size found; give --pixel-size (micrometres per pixel).")
    return float(statistics.median(sizes))


def check_labeled(samples):
    """InputError unless every labeled sample has a pixel size (labels are checked by ``find_samples``)."""
    for s in samples:
        if s.pixel_size is None:
            raise InputError(f"{s.image}: the labeled image has no pixel size; add a JSON sidecar or "
                             "pixel_size_in_micrometer.txt beside it.")
    return samples


def labeled_cases(samples, pixel_size):
    """Yield ``(case_id, image, label_map)`` of labeled samples rescaled to ``pixel_size``."""
    from ads_synth.data.datasets import load_label_map
    from ads_synth.data.images import read_image
    from ads_synth.data.resample import rescale_to_pixel_size
    from ads_synth.segmentation.dataset_export import case_ids

    for case, s in zip(case_ids(s.name for s in samples), samples):
        image = rescale_to_pixel_size(read_image(s.image), s.pixel_size, pixel_size, order=1)
        labels = rescale_to_pixel_size(load_label_map(s), s.pixel_size, pixel_size, order=0)
        yield case, image, labels


def translated_cases(samples, translation_model, seed=0):
    """Yield ``(case_id, X_L->U, Y_L)``: L images translated on the model grid, labels resized to match."""
    from ads_synth.data.datasets import load_label_map
    from ads_synth.data.images import read_image
    from ads_synth.data.resample import resize_to
    from ads_synth.segmentation.dataset_export import case_ids
    from ads_synth.translation.translate import translate_image

    for case, s in zip(case_ids(s.name for s in samples), samples):
        image = read_image(s.image)
        translated, _ = translate_image(translation_model, image, s.pixel_size, "L2U", output_grid="model",
                                        seed=seed, progress=False)
        labels = resize_to(load_label_map(s), translated.shape, order=0)
        yield case, translated, labels


def pseudo_labeled_cases(items, pixel_size, min_confidence=DEFAULT_MIN_CONFIDENCE):
    """Yield ``(case_id, X_U, pseudo label map)`` at ``pixel_size``; unsure pixels get the ignore label.

    Parameters
    ----------
    items : list of (Sample, float, Path, Path)
        U sample, its pixel size, its pseudo-label ``_seg-axonmyelin.png`` and ``_seg-confidence.png``.
    pixel_size : float
        U's working pixel size.
    min_confidence : float
        Pixels with a lower confidence (0 to 1) get :data:`~ads_synth.segmentation.dataset_export.IGNORE`.

    An image without one confident pixel teaches nothing (and nnU-Net 2.2.1's data loader fails on a case that is
    all ignore label): it is left out with a warning; InputError when no image is left.
    """
    import warnings

    from ads_synth.data.datasets import _nearest_axonmyelin
    from ads_synth.data.images import read_image, read_label
    from ads_synth.data.resample import rescale_to_pixel_size, resize_to
    from ads_synth.segmentation.dataset_export import IGNORE, case_ids

    kept = 0
    for case, (s, px, label_path, confidence_path) in zip(case_ids(item[0].name for item in items), items):
        image = read_image(s.image)
        labels = _nearest_axonmyelin(read_label(label_path))
        confidence = read_label(confidence_path).astype(np.float32) / 255.0
        if labels.shape != image.shape or confidence.shape != image.shape:
            raise InputError(f"{label_path}: pseudo labels do not match {s.image.name}; pseudo-label it again.")
        image = rescale_to_pixel_size(image, px, pixel_size, order=1)
        if image.shape != labels.shape:
            labels = resize_to(labels, image.shape, order=0)
            confidence = resize_to(confidence, image.shape, order=1)
        labels[confidence < min_confidence] = IGNORE
        if not (labels != IGNORE).any():
            warnings.warn(f"{s.image.name}: no pseudo-label pixel reaches confidence {min_confidence}; the proxy "
                          "does not train on this image.", stacklevel=2)
            continue
        kept += 1
        yield case, image, labels
    if items and not kept:
        raise InputError(f"no pseudo-label pixel of the {len(items)} unlabeled images reaches confidence "
                         f"{min_confidence}: lower --min-confidence (see their _seg-confidence.png).")


# -------------------------------------------------------------------------------------------------------------
# the builder
# -------------------------------------------------------------------------------------------------------------
_DATA_KEYS = ("pixel_size", "domain", "trained_on", "strategy")
#: A model folder is only continued with the same data and the same network (configuration, compact plan).
_MODEL_KEYS = _DATA_KEYS + ("configuration", "compact_plan")


def _identity(info, keys=_DATA_KEYS):
    return {k: info.get(k) for k in keys}


def _is_path(value):
    """An absolute path, or a list of them (what older ``ads_synth.json`` files recorded)."""
    if isinstance(value, str):
        return value.startswith("/") or (len(value) > 2 and value[1] == ":" and value[2] in "\\/")
    return isinstance(value, list) and bool(value) and all(_is_path(v) for v in value)


def same_training(a, b, keys=_MODEL_KEYS) -> bool:
    """True when two ``ads_synth.json`` contents describe the same training: paths are ignored (a model folder
    copied to another machine resumes), and ``trained_on`` keys are compared where both record them."""
    for key in keys:
        x, y = a.get(key), b.get(key)
        if key == "trained_on" and isinstance(x, dict) and isinstance(y, dict):
            common = [k for k in set(x) & set(y) if not (_is_path(x[k]) or _is_path(y[k]))]
            if any(x[k] != y[k] for k in common):
                return False
        elif x != y:
            return False
    return True


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def build_segmentation_model(model_dir, work_dir, *, dataset_id, dataset_label, cases, n_cases, info, settings,
                             channel_name="microscopy", overwrite=False, ignore_label=False, init_weights=None,
                             initial_lr=None) -> Path:
    """Train (or finish training) a segmentation model folder.

    Parameters
    ----------
    model_dir : str or Path
        The model folder (``dataset.json``, ``plans.json``, ``fold_<k>/``, ``ads_synth.json``).
    work_dir : str or Path
        nnU-Net's raw / preprocessed / results folders.
    dataset_id : int
        nnU-Net dataset id inside ``work_dir``.
    dataset_label : str
        Name part of the nnU-Net dataset.
    cases : callable
        Returns an iterator of ``(case_id, image, label_map)``; called only when the raw dataset is missing.
    n_cases : int
        Number of cases (progress bar, fold check).
    info : dict
        ``ads_synth.json`` content: at least ``pixel_size``, ``domain``, ``trained_on``, ``strategy``.
    settings : TrainSettings
    channel_name : str
    overwrite : bool
        Retrain when ``model_dir`` holds a model trained on something else (else InputError).
    ignore_label : bool
        The label maps use nnU-Net's ignore label (see ``export_raw_dataset``; the trained model folder's
        ``dataset.json`` leaves it out, :class:`~ads_synth.segmentation.nnunet_trainers.AdsSynthTrainer`).
    init_weights : dict, optional
        Fine-tuning: fold -> checkpoint whose network weights start that fold (``trainer.train_fold``).
    initial_lr : float, optional
        nnU-Net's initial learning rate (default nnU-Net's).

    Returns
    -------
    Path
        ``model_dir``.
    """
    from ads_synth import __version__
    from ads_synth.segmentation.dataset_export import dataset_name, export_raw_dataset, verify_raw_dataset
    from ads_synth.segmentation.nnunet_env import use_folders
    from ads_synth.segmentation.plans import plan_and_preprocess
    from ads_synth.segmentation.predict import finished_folds, read_model_info, write_model_info
    from ads_synth.segmentation.trainer import configuration_for

    settings.check()
    model_dir, work_dir = Path(model_dir), Path(work_dir)
    if settings.folds != ["all"] and n_cases < 5:
        raise InputError(f"{info.get('trained_on', {}).get('data', model_dir)}: {n_cases} labeled images are too "
                         "few for five-fold cross-validation (at least 5); use --folds all.")
    configuration = configuration_for(settings.trainer)
    info = {**info, "configuration": configuration,
            "compact_plan": settings.compact_plan().to_dict() if settings.trainer == "compact" else None}
    existing = read_model_info(model_dir) if model_dir.is_dir() else {}
    if existing and not same_training(existing, info):
        if not overwrite:
            changed = [k for k in _MODEL_KEYS if not same_training(existing, info, (k,))]
            raise InputError(f"{model_dir}: holds a model trained with another {', '.join(changed)}; pass "
                             "--overwrite to retrain it, or choose another output folder.")
        shutil.rmtree(model_dir)
        existing = {}
    if model_dir.is_dir() and set(settings.folds) <= set(finished_folds(model_dir)):
        return model_dir

    folders = use_folders(work_dir)
    name = dataset_name(dataset_id, dataset_label)
    raw = folders.raw / name
    source = _identity(info)
    if _read_json(raw / _SOURCE_FILE) != source or not (raw / "dataset.json").is_file():
        for stale in (raw, folders.preprocessed / name):
            if stale.exists():
                shutil.rmtree(stale)
        export_raw_dataset(cases(), raw, channel_name=channel_name, overwrite=True, progress=settings.progress,
                           total=n_cases, ignore_label=ignore_label)
        verify_raw_dataset(raw, settings.num_processes)
        (raw / _SOURCE_FILE).write_text(json.dumps(source, indent=2), encoding="utf-8")
    log = work_dir / "nnunet_log.txt"
    plan_and_preprocess(folders, dataset_id, configuration=configuration, compact=settings.compact_plan(),
                        num_processes=settings.num_processes, log_file=log, verbose=settings.verbose,
                        progress=settings.progress)
    full_info = {
        **info,
        "trainer": settings.trainer,
        "folds": finished_folds(model_dir) if model_dir.is_dir() else [],  # the trained folds, kept up to date
        "epochs": settings.epochs,
        "iterations_per_epoch": settings.iterations,
        "nnunet_dataset": name,
        "ads_synth_version": __version__,
    }
    write_model_info(model_dir, full_info)
    from ads_synth.segmentation.trainer import train_fold

    for fold in settings.folds:
        train_fold(folders, name, model_dir, fold, trainer=settings.trainer, epochs=settings.epochs,
                   iterations=settings.iterations, val_iterations=settings.val_iterations, device=settings.device,
                   progress=settings.progress, verbose=settings.verbose,
                   init_weights=(init_weights or {}).get(fold), initial_lr=initial_lr,
                   time_limit_s=settings.fold_time_s)
    write_model_info(model_dir, {**full_info, "folds": finished_folds(model_dir)})
    return model_dir


def data_record(samples) -> dict:
    """What a model was trained on, without paths: dataset names, the image count, a digest of the images (names
    and contents) and one of their contents alone (:func:`ads_synth.checksums.contents_digest`)."""
    from ads_synth.checksums import contents_digest, files_digest
    from ads_synth.data.datasets import dataset_name

    return {"data": sorted({dataset_name(s.image) for s in samples}), "n_images": len(samples),
            "images_sha256": files_digest(s.image for s in samples),
            "images_contents_sha256": contents_digest(s.image for s in samples)}


def translation_record(translation_path) -> dict:
    """The translation model a model was trained with: its folder name and a digest of its files."""
    from ads_synth.checksums import files_digest
    from ads_synth.translation.formats import is_run_dir, run_model_dir

    folder = Path(translation_path)
    if is_run_dir(folder):
        folder = run_model_dir(folder) or folder
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return {"translation": Path(translation_path).name, "translation_sha256": files_digest(files) if files else None}


def train_labeled_model(labeled, model_dir, work_dir=None, *, pixel_size=None, settings=None, overwrite=False,
                        samples=None) -> Path:
    """Train an nnU-Net model on labeled images of one domain (``ads-synth segmentation train``).

    Parameters
    ----------
    labeled : str or Path or list
        Labeled dataset(s) (anything ``find_samples`` reads), e.g. tem-srf and tem-nyu.
    model_dir : str or Path
    work_dir : str or Path, optional
        nnU-Net's work folder; default ``<model_dir>_work``.
    pixel_size : float, optional
        Working pixel size; default the median of the images' pixel sizes.
    settings : TrainSettings, optional
    overwrite : bool
    samples : list of Sample, optional
        Already found samples (skips finding them again).

    Returns
    -------
    Path
        ``model_dir``.
    """
    from ads_synth.data.datasets import find_samples
    from ads_synth.data.images import check_pixel_size

    settings = (settings or TrainSettings()).check()
    sources = labeled if isinstance(labeled, (list, tuple)) else [labeled]
    if samples is None:
        samples = [s for src in sources for s in find_samples(src, require_labels=True)]
    check_labeled(samples)
    px = check_pixel_size(pixel_size, "--pixel-size") if pixel_size is not None else reference_pixel_size(samples)
    model_dir = Path(model_dir)
    work_dir = Path(work_dir) if work_dir is not None else model_dir.with_name(model_dir.name + "_work")
    info = {
        "pixel_size": px,
        "domain": "L",
        "strategy": "labeled",
        "trained_on": data_record(samples),
    }
    return build_segmentation_model(model_dir, work_dir, dataset_id=LABELED_DATASET_ID, dataset_label="labeled",
                                    cases=lambda: labeled_cases(samples, px), n_cases=len(samples), info=info,
                                    settings=settings, channel_name="L", overwrite=overwrite)


def _u_model_info(strategy, labeled_samples, translation_model, translation_path, seed, **trained_on):
    """``ads_synth.json`` of a model that segments U (tutor, proxy): U's working pixel size and its sources."""
    from ads_synth.translation.translate import working_pixel_sizes

    check_labeled(labeled_samples)
    work = working_pixel_sizes(translation_model, str(translation_path))
    return {
        "pixel_size": work["U"],
        "domain": "U",
        "strategy": strategy,
        "trained_on": {**data_record(labeled_samples), **trained_on, **translation_record(translation_path),
                       "seed": seed},
    }


def train_tutor_model(labeled_samples, translation_model, translation_path, model_dir, work_dir, *, settings=None,
                      overwrite=False, seed=0) -> Path:
    """Train the tutorship model on ``{X_L->U, Y_L}`` (see the module docstring).

    Parameters
    ----------
    labeled_samples : list of Sample
        Labeled L samples with pixel sizes.
    translation_model : SynDiff
        Loaded translation model (``load_translation_model``).
    translation_path : str or Path
        Where it came from (recorded in ``ads_synth.json``).
    model_dir, work_dir : str or Path
    settings : TrainSettings, optional
    overwrite : bool
    seed : int
        Translation seed.

    Returns
    -------
    Path
        ``model_dir``.
    """
    settings = (settings or TrainSettings()).check()
    info = _u_model_info("tutor", labeled_samples, translation_model, translation_path, seed)
    return build_segmentation_model(model_dir, work_dir, dataset_id=TUTOR_DATASET_ID, dataset_label="tutor",
                                    cases=lambda: translated_cases(labeled_samples, translation_model, seed),
                                    n_cases=len(labeled_samples), info=info, settings=settings,
                                    channel_name="L2U", overwrite=overwrite)


def train_proxy_model(pseudo_items, labeled_samples, translation_model, translation_path, model_dir, work_dir, *,
                      settings=None, min_confidence=DEFAULT_MIN_CONFIDENCE, overwrite=False, seed=0,
                      init_weights=None, initial_weights=None) -> Path:
    """Train the proxy: U images with their confident pseudo labels plus ``{X_L->U, Y_L}`` (module docstring).

    Parameters
    ----------
    pseudo_items : list of (Sample, float, Path, Path)
        See :func:`pseudo_labeled_cases`.
    labeled_samples : list of Sample
        Labeled L samples (the tutorship cases); may be empty.
    translation_model : SynDiff
    translation_path : str or Path
    model_dir, work_dir : str or Path
    settings : TrainSettings, optional
    min_confidence : float
        Confidence (0 to 1) below which pseudo-label pixels are ignored.
    overwrite : bool
    seed : int
        Translation seed.
    init_weights : dict, optional
        ``{fold: checkpoint}`` starting each fold (:func:`ads_synth.segmentation.warm_start.warm_start`); the
        folds are then fine-tuned from :data:`~ads_synth.segmentation.warm_start.FINETUNE_LR`.
    initial_weights : str, optional
        How ``init_weights`` were made, recorded in ``ads_synth.json`` (``trained_on.initial_weights``).

    Returns
    -------
    Path
        ``model_dir``.
    """
    from ads_synth.checksums import files_digest
    from ads_synth.segmentation.warm_start import FINETUNE_LR

    settings = (settings or TrainSettings()).check()
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise InputError(f"--min-confidence {min_confidence}: give a value from 0 to 1.")
    info = _u_model_info("proxy", labeled_samples, translation_model, translation_path, seed,
                         unlabeled=sorted(item[0].name for item in pseudo_items),
                         unlabeled_sha256=files_digest(item[0].image for item in pseudo_items),
                         pseudo_labels=sorted({Path(item[2]).parent.name for item in pseudo_items}),
                         pseudo_labels_sha256=files_digest(p for item in pseudo_items for p in item[2:4]),
                         min_confidence=float(min_confidence),
                         initial_weights=initial_weights if init_weights else None)
    return build_segmentation_model(
        model_dir, work_dir, dataset_id=PROXY_DATASET_ID, dataset_label="proxy",
        cases=lambda: itertools.chain(pseudo_labeled_cases(pseudo_items, info["pixel_size"], min_confidence),
                                      translated_cases(labeled_samples, translation_model, seed)),
        n_cases=len(pseudo_items) + len(labeled_samples), info=info, settings=settings, channel_name="U",
        overwrite=overwrite, ignore_label=True, init_weights=init_weights or None,
        initial_lr=FINETUNE_LR if init_weights else None)
