"""Pseudo labels for the unlabeled domain U with trained models: the inference engine.

The strategies are registered objects (:mod:`ads_synth.segmentation.strategies`); this engine reads their
properties and never their names. For a U image at pixel size ``px`` and a strategy ``s``:

* ``s.translate`` (``adapt``: ``"U2L"``): the U image is translated on the translation model's grid (effective
  pixel size = the target domain's working pixel size) and segmented there.
* ``s.on_translation_grid`` (an L model on untranslated U: ``direct``, ``invert``, ``histmatch``): exactly the
  adaptation path minus the translation, i.e. the U image (after ``s.intensity``, if any) rescaled to U's working
  pixel size and read as an image at L's working pixel size (without a translation model: at its physical size).
* otherwise (``tutor``, ``proxy``: a model for U): the U image itself, rescaled to the model's pixel size.
* ``s.pooled_from`` (``combined``): the folds of those strategies pooled (statistics resampled to the image's
  grid), written when they all run and the job names an output folder for it.

Each path predicts fold by fold (:class:`~ads_synth.segmentation.predict.SegmentationModel`), the ensemble label and
the confidence come from the folds' agreement (:mod:`ads_synth.segmentation.confidence`); the label map goes back to
the image's shape by nearest neighbour, the confidence linearly. Label maps are post-processed as AxonDeepSeg would
(:mod:`ads_synth.segmentation.postprocess`) and written with the data layer's AxonDeepSeg writer, plus
``<stem>_seg-confidence.png`` (8-bit, 255 = all folds agree with certainty) and optionally a float TIFF.

:func:`pseudo_label_images` segments with already-trained models (the AxonDeepSeg integration, napari and FSLeyes
use it). Training (``ads-synth pseudo``: :func:`~ads_synth.segmentation.pseudo_training.run_pseudo`) lives in
:mod:`ads_synth.segmentation.pseudo_training`, which this module never imports.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ads_synth.data.datasets import find_samples
from ads_synth.data.images import check_images, image_shape, pixel_size_source, read_image
from ads_synth.data.normalize import is_blank
from ads_synth.data.resample import check_working_size, rescale_to_pixel_size, rescaled_shape, resize_to, scale_factor
from ads_synth.data.writers import (
    check_targets,
    float_tiff_writer,
    image_writer,
    segmentation_items,
    segmentation_paths,
    write_files,
)
from ads_synth.errors import InputError
from ads_synth.locking import locked_jobs
from ads_synth.segmentation.confidence import confidence_to_uint8, label_and_confidence
from ads_synth.segmentation.postprocess import boundary_steps_for, postprocess_label_map

from ads_synth.segmentation.strategies import get_strategy, pooled_strategies

CONFIDENCE_SUFFIX = "_seg-confidence.png"
CONFIDENCE_TIFF_SUFFIX = "_seg-confidence.tif"


@dataclass
class OutputOptions:
    """What to write for each image.

    Attributes
    ----------
    per_fold : bool
        Also each fold's own segmentation into ``fold_<k>/`` (for evaluation per fold).
    postprocess : bool
        Remove specks, fill axons inside myelin, keep only fibres
        (:func:`~ads_synth.segmentation.postprocess.postprocess_label_map`).
    myelin_boundary : bool
        With ``postprocess``: also place each myelin boundary at half-way intensity, within two pixels of the
        model's grid (:func:`~ads_synth.segmentation.postprocess.place_myelin_boundary`; off by default: it
        helps on SEM and harms on TEM, docs/results.md).
    confidence_tiff : bool
        Also write the confidence as a float32 TIFF.
    overwrite : bool
    skip_existing : bool
        Skip an image whose outputs all exist (resuming ``ads-synth pseudo``) instead of refusing.
    allow_large : bool
        Read images over PIL's decompression-bomb limit (``--allow-large-images``).
    """

    per_fold: bool = False
    postprocess: bool = True
    myelin_boundary: bool = False
    confidence_tiff: bool = False
    overwrite: bool = False
    skip_existing: bool = False
    allow_large: bool = False


@dataclass
class _Job:
    sample: object
    pixel_size: float
    out_dirs: dict = field(default_factory=dict)  # strategy -> folder (None: beside the image)


def output_paths(image_path, out_dir, folds, options) -> dict:
    """Every file written for one image and one strategy: ``{key: Path}``.

    Keys: ``axon``, ``myelin``, ``axonmyelin``, ``confidence`` (and ``confidence_tiff``), and with ``per_fold``
    ``fold_<k>/axon`` ... for each fold.
    """

    image_path = Path(image_path)
    folder = Path(out_dir) if out_dir is not None else image_path.parent
    paths = dict(segmentation_paths(image_path, folder))
    paths["confidence"] = folder / f"{image_path.stem}{CONFIDENCE_SUFFIX}"
    if options.confidence_tiff:
        paths["confidence_tiff"] = folder / f"{image_path.stem}{CONFIDENCE_TIFF_SUFFIX}"
    if options.per_fold:
        for fold in folds:
            for key, p in segmentation_paths(image_path, folder / f"fold_{fold}").items():
                paths[f"fold_{fold}/{key}"] = p
    return paths


def _segment_at_model_grid(model, image, pixel_size, per_fold, bar):
    """Rescale ``image`` to the model's pixel size (when it has one) and predict; stats on the model grid."""
    if model.pixel_size is not None:
        image = rescale_to_pixel_size(image, pixel_size, model.pixel_size)
    return model.predict(image, per_fold=per_fold, progress=bar)


def _finish_label(label_map, image, pixel_size, options, upsampling=None):
    """The label map from the model's grid (``upsampling`` times coarser than ``image``'s; default: the ratio of
    their heights) to ``image``'s, post-processed as ``options`` ask."""
    upsampling = image.shape[0] / label_map.shape[0] if upsampling is None else upsampling
    if label_map.shape != image.shape[:2]:
        label_map = resize_to(label_map, image.shape[:2], order=0)
    if options.postprocess:
        label_map = postprocess_label_map(label_map, pixel_size=pixel_size,
                                          image=image if options.myelin_boundary else None,
                                          boundary_steps=boundary_steps_for(upsampling))
    return label_map


def _write(label_map, confidence, fold_labels, job_image, paths, folds, pixel_size, overwrite):
    """Write an image's files (masks, confidence, per-fold masks) as one all-or-nothing set."""
    folder = paths["axonmyelin"].parent
    items = segmentation_items(label_map, job_image, out_dir=folder)
    items.append((paths["confidence"], image_writer(paths["confidence"], confidence_to_uint8(confidence))))
    if "confidence_tiff" in paths:
        items.append((paths["confidence_tiff"], float_tiff_writer(paths["confidence_tiff"], confidence,
                                                                  pixel_size=pixel_size)))
    if fold_labels is not None:
        for fold, fold_label in zip(folds, fold_labels):
            items += segmentation_items(fold_label, job_image, out_dir=folder / f"fold_{fold}")
    return write_files(items, overwrite)


def _source_image(strategy, image, px, translation_model, work, reference, seed):
    """The image ``strategy``'s model reads, and its pixel size (see the module docstring)."""
    from ads_synth.translation.translate import translate_image

    if strategy.translate is not None:
        return translate_image(translation_model, image, px, strategy.translate, output_grid="model", seed=seed,
                               progress=False)
    if strategy.intensity is not None:
        image = strategy.intensity(image, reference)
    if strategy.on_translation_grid and work is not None:
        # the adaptation path without the translation: U's working grid read as L's
        return rescale_to_pixel_size(image, px, work["U"]), work["L"]
    return image, px


def _grids(job, strategy, model, work, shape):
    """The ``(shape, pixel size, target pixel size, what)`` steps an image of ``shape`` is rescaled through for
    ``strategy`` (see the module docstring), and its final shape on the model's grid."""
    steps = []
    px = job.pixel_size
    if (strategy.translate is not None or strategy.on_translation_grid) and work is not None:
        steps.append((shape, px, work["U"], "the translation model's U domain"))
        shape, px = rescaled_shape(shape, scale_factor(px, work["U"])), work["L"]
    if model.pixel_size is not None:
        steps.append((shape, px, model.pixel_size, f"segmentation model {Path(getattr(model, 'folder', '')).name}"))
        shape = rescaled_shape(shape, scale_factor(px, model.pixel_size))
    return steps, shape


def check_budget(jobs, models, work, given="--pixel-size") -> dict:
    """Refuse (InputError) any image that would exceed the pixel budget on a model's grid; return the progress
    units (tiles) per image: ``{image path: tiles}`` over every strategy and fold."""
    tiles = {}
    for job in jobs:
        shape0 = image_shape(job.sample.image)
        source = pixel_size_source(job.sample.image, given)
        count = 0
        for name, model in models.items():
            steps, final = _grids(job, get_strategy(name), model, work, shape0)
            for shape, px, dst, grid in steps:
                check_working_size(shape, px, dst, what=str(job.sample.image), source=source, grid=grid)
            per_fold = model.tiles_per_fold(final) if hasattr(model, "tiles_per_fold") else 1
            count += per_fold * model.n_folds
        tiles[str(job.sample.image)] = count
    return tiles


def _warn(message):
    print(f"warning: {message}", file=sys.stderr)


@locked_jobs
def _run_jobs(jobs, models, translation_model, options, progress=True, seed=0, reference=None):
    """Segment every job with every strategy in ``models`` (+ pooled ones); return one record per image/strategy.

    ``models`` maps strategy names to loaded segmentation models; ``reference`` is L's intensity quantiles for
    strategies that need them.
    """
    from tqdm.auto import tqdm

    from ads_synth.translation.translate import working_pixel_sizes

    names = list(models)
    chosen = {name: get_strategy(name) for name in names}
    out_dirs = jobs[0].out_dirs if jobs else {}
    pooled = [p for p in pooled_strategies(names) if p.name in out_dirs]
    keep = {source for p in pooled for source in p.pooled_from}
    work = working_pixel_sizes(translation_model) if translation_model is not None else None
    all_names = names + [p.name for p in pooled]
    folds = {name: models[name].folds for name in names}
    folds.update({p.name: [] for p in pooled})
    # a resumed run completes images it left unfinished: their partial outputs are its own
    overwrite = options.overwrite or options.skip_existing
    pending, targets = [], []
    for job in jobs:
        paths = {s: output_paths(job.sample.image, job.out_dirs.get(s), folds[s], options) for s in all_names}
        flat = [p for s in all_names for p in paths[s].values()]
        if options.skip_existing and not options.overwrite and all(p.is_file() for p in flat):
            continue
        pending.append((job, paths))
        targets += flat
    if len({str(p) for p in targets}) != len(targets):
        raise InputError(f"{targets[0].parent}: two images would write the same output files (same name); "
                         "rename one or give them separate output folders.")
    check_targets(targets, overwrite=overwrite)  # before anything is written

    records = []
    tiles = check_budget([job for job, _ in pending], models, work)
    total = sum(tiles.values())  # the unit that takes the time: network tiles (tqdm estimates the time left)
    with tqdm(total=total, desc="pseudo labels", unit="tile", disable=not progress) as bar:
        for job, paths in pending:
            image = read_image(job.sample.image, allow_large=options.allow_large)
            blank = is_blank(image)
            if blank:
                _warn(f"{job.sample.image}: the image has no structure (all black, all white or flat); its pseudo "
                      "labels are meaningless and their confidence is set to 0.")
            shape, px = image.shape[:2], job.pixel_size
            stats_here, upsampling = {}, {}
            for name in names:
                bar.set_postfix_str(f"{job.sample.name} {name}")
                source, source_px = _source_image(chosen[name], image, px, translation_model, work, reference, seed)
                stats, fold_labels = _segment_at_model_grid(models[name], source, source_px,
                                                            options.per_fold, bar)
                del source
                label_map, confidence = label_and_confidence(stats)
                upsampling[name] = shape[0] / label_map.shape[0]
                label_map = _finish_label(label_map, image, px, options)
                confidence = resize_to(confidence, shape, order=1)
                if blank:
                    confidence = np.zeros_like(confidence)
                if fold_labels is not None:
                    fold_labels = [_finish_label(f, image, px, options) for f in fold_labels]
                files = _write(label_map, confidence, fold_labels, job.sample.image, paths[name],
                               folds[name], px, overwrite)
                records.append(_record(job, name, models[name].folds, files, label_map, confidence))
                if name in keep:
                    stats_here[name] = stats.resized(shape)
                del stats
            for p in pooled:
                stats = stats_here[p.pooled_from[0]]
                for other in p.pooled_from[1:]:
                    stats = stats.pooled(stats_here[other])
                label_map, confidence = label_and_confidence(stats)
                if blank:
                    confidence = np.zeros_like(confidence)
                label_map = _finish_label(label_map, image, px, options,
                                          upsampling=max(upsampling[source] for source in p.pooled_from))
                files = _write(label_map, confidence, None, job.sample.image, paths[p.name], [], px, overwrite)
                records.append(_record(job, p.name, [f for s in p.pooled_from for f in models[s].folds], files,
                                       label_map, confidence))
    return records


def _record(job, strategy, folds, files, label_map, confidence):
    return {
        "image": Path(job.sample.image),
        "name": job.sample.name,
        "strategy": strategy,
        "folds": list(folds),
        "pixel_size": job.pixel_size,
        "files": [Path(f) for f in files],
        "axon_fraction": float(np.mean(label_map == 2)),
        "myelin_fraction": float(np.mean(label_map == 1)),
        "mean_confidence": float(np.mean(confidence)),
    }


def _samples(images, pixel_size, allow_large=False):
    """Samples of ``images`` (files / folders / datasets) with a pixel size each (``pixel_size`` fills gaps);
    every image is read once here, so that a corrupt one fails before anything is written."""
    from ads_synth.data.datasets import sample_pixel_sizes

    if isinstance(images, (str, Path)):
        images = [images]
    samples = [s for item in images for s in find_samples(item)]
    out = list(zip(samples, sample_pixel_sizes(samples, pixel_size)))
    check_images([s.image for s, _ in out], allow_large=allow_large)
    return out


def _translation(translation, device):
    if translation is None:
        raise InputError("--translation: the adaptation path needs a translation model; give its folder.")
    if isinstance(translation, (str, Path)):
        from ads_synth.translation.translate import load_translation_model

        return load_translation_model(translation, device=device)
    return translation


def _segmentation(segmentation, folds, device, use_mirroring, pixel_size):
    from ads_synth.segmentation.predict import SegmentationModel

    if isinstance(segmentation, SegmentationModel):
        return segmentation
    if segmentation is None:
        raise InputError("--segmentation: give a segmentation model folder.")
    from ads_synth.segmentation.folds import parse_folds

    folds = None if folds is None else parse_folds(folds)
    return SegmentationModel(segmentation, folds=folds, device=device, use_mirroring=use_mirroring,
                             pixel_size=pixel_size)


def pseudo_label_images(images, *, translation, segmentation, strategy, out_dir=None, overwrite=False, folds=None,
                        device=None, progress=True, pixel_size=None, per_fold=False, use_mirroring=False,
                        postprocess=True, confidence_tiff=False, segmentation_pixel_size=None,
                        intensity_reference=None, allow_large=False, myelin_boundary=False) -> list[dict]:
    """Pseudo-label images with already-trained models (one strategy).

    Under ``torchrun`` (``RANK`` / ``WORLD_SIZE``), this process handles only its share of the images, on
    ``cuda:LOCAL_RANK`` or its share of the CPU cores (:mod:`ads_synth.sharding`), and returns only their records.

    Parameters
    ----------
    images : str or Path or list
        Image files, folders or datasets of the unlabeled domain.
    translation : str or Path or translator or None
        Translation model folder (or a loaded one): needed by strategies that translate (``adapt``); gives the
        no-translation L strategies (``direct``, ``invert``, ``histmatch``) their grid (the module docstring);
        unused by ``tutor`` and ``proxy``.
    segmentation : str or Path or SegmentationModel
        ``tutor`` / ``proxy``: the tutorship or proxy model; the L strategies: a model trained on L (an
        ads-synth folder or any AxonDeepSeg nnU-Net model folder).
    strategy : str
        A selectable registered strategy (:func:`ads_synth.segmentation.strategies.list_strategies`).
    out_dir : str or Path, optional
        Output folder; default beside each image (AxonDeepSeg's convention).
    overwrite : bool
        Replace existing outputs; otherwise InputError naming the first one, and nothing written.
    folds : list, optional
        Folds of the segmentation model to ensemble; default all trained folds.
    device : str, optional
    progress : bool
    pixel_size : float, optional
        Pixel size of images that carry none.
    per_fold, postprocess, confidence_tiff, myelin_boundary : bool
        See :class:`OutputOptions`.
    use_mirroring : bool
        nnU-Net's test-time mirroring.
    segmentation_pixel_size : float, optional
        Working pixel size of a segmentation folder without ``ads_synth.json``.
    intensity_reference : str or Path or array, optional
        L's intensity quantiles for a strategy that needs them (``histmatch``): a JSON file, or default the
        segmentation model folder's ``intensity_reference.json`` (:mod:`ads_synth.data.intensity`).
    allow_large : bool
        Read images over PIL's decompression-bomb limit.

    Returns
    -------
    list of dict
        Per image: ``image``, ``name``, ``strategy``, ``folds``, ``pixel_size``, ``files`` (written paths),
        ``axon_fraction``, ``myelin_fraction``, ``mean_confidence``.
    """
    from ads_synth.device import resolve_device
    from ads_synth.sharding import process_share, set_cpu_threads, shard, shard_device

    chosen = get_strategy(strategy)
    share = process_share()  # under torchrun: this process's images, GPU and CPU share (ads_synth.sharding)
    jobs = [_Job(s, px, {strategy: Path(out_dir) if out_dir is not None else None})
            for s, px in _samples(images, pixel_size, allow_large)]
    jobs = shard(jobs, share)
    device = shard_device(resolve_device(device), share)
    if device.type == "cpu":
        set_cpu_threads(share)
    if not jobs:
        return []
    progress = progress and share.rank == 0
    translation_model = None
    if chosen.translate is not None or (chosen.on_translation_grid and translation is not None):
        translation_model = _translation(translation, device)
    reference = _reference(chosen, intensity_reference, segmentation)
    model = _segmentation(segmentation, folds, device, use_mirroring, segmentation_pixel_size)
    options = OutputOptions(per_fold=per_fold, postprocess=postprocess, confidence_tiff=confidence_tiff,
                            overwrite=overwrite, allow_large=allow_large, myelin_boundary=myelin_boundary)
    return _run_jobs(jobs, {strategy: model}, translation_model, options, progress=progress, reference=reference)


def _reference(strategy, reference, segmentation):
    """L's intensity quantiles for ``strategy`` (None when it needs none); InputError when they cannot be found."""
    if not strategy.needs_reference:
        return None
    from ads_synth.data.intensity import REFERENCE_FILE, load_reference

    if reference is None:
        folder = getattr(segmentation, "folder", segmentation)
        if folder is None or not (Path(folder) / REFERENCE_FILE).is_file():
            raise InputError(f"--strategy {strategy.name}: the L model {folder} has no {REFERENCE_FILE}; run "
                             f"ads-synth pseudo --strategy {strategy.name} (it computes L's reference intensities).")
        reference = Path(folder)
    if isinstance(reference, (str, Path)):
        return load_reference(reference)
    return np.asarray(reference, dtype=np.float64)
