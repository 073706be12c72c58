"""Pseudo labels for the unlabeled domain U: the tutorship and adaptation paths, and the floor.

Strategies (:data:`STRATEGIES`), for a U image at pixel size ``px``:

* ``tutor`` (L->U): the tutorship model (trained on ``{X_L->U, Y_L}``, working at U's working pixel size) segments
  the U image itself, rescaled to the model's pixel size.
* ``adapt`` (U->L): the U image is translated into L's look on the translation model's grid (effective pixel size
  = L's working pixel size) and segmented by a model trained on L (rescaled to its pixel size when it has one).
* ``direct``: the L model applied to the U image without translation (the floor of the comparison): exactly the
  adaptation path minus the translation, i.e. the U image rescaled to U's working pixel size and read as an image
  at L's working pixel size (without a translation model: at its physical pixel size).
* ``proxy`` (self-training, needs tutor and adapt first): a model trained on the U images themselves with the
  confident part of the ``combined`` pseudo labels, plus the tutorship's ``{X_L->U, Y_L}``
  (:func:`~ads_synth.segmentation.model_building.train_proxy_model`); it segments U images as the tutorship
  model does.

Each path predicts fold by fold (:class:`~ads_synth.segmentation.predict.SegmentationModel`), the ensemble label and
the confidence come from the folds' agreement (:mod:`ads_synth.segmentation.confidence`); the label map goes back to
the image's shape by nearest neighbour, the confidence linearly. When ``tutor`` and ``adapt`` both run, their folds
are also pooled (statistics resampled to the image's grid) into ``combined``. Label maps are post-processed as
AxonDeepSeg would (:mod:`ads_synth.segmentation.postprocess`) and written with the data layer's AxonDeepSeg writer,
plus ``<stem>_seg-confidence.png`` (8-bit, 255 = all folds agree with certainty) and optionally a float TIFF.

:func:`pseudo_label_images` segments with already-trained models (the AxonDeepSeg integration uses it);
:func:`run_pseudo` is ``ads-synth pseudo``: it trains what is missing under ``OUT/models/``, reuses what exists, and
writes ``OUT/pseudo_labels/<strategy>/`` (``fold_<k>/`` per fold with ``per_fold``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ads_synth.data.datasets import find_samples
from ads_synth.data.images import check_images, check_pixel_size, image_shape, pixel_size_source, read_image
from ads_synth.data.normalize import is_blank
from ads_synth.data.resample import check_working_size, rescale, rescaled_shape, resize_to, scale_factor
from ads_synth.data.writers import (
    check_targets,
    segmentation_paths,
    write_ads_segmentation,
    write_float_tiff,
    write_image,
)
from ads_synth.errors import InputError
from ads_synth.segmentation.confidence import confidence_to_uint8, label_and_confidence
from ads_synth.segmentation.postprocess import postprocess_label_map

STRATEGIES = ("tutor", "adapt", "direct", "proxy")
#: ``--strategy all``: the three paths of the paper's comparison (``proxy`` is asked for by name).
ALL = ("tutor", "adapt", "direct")
COMBINED = "combined"
CONFIDENCE_SUFFIX = "_seg-confidence.png"
CONFIDENCE_TIFF_SUFFIX = "_seg-confidence.tif"
#: Human names (tables, figures).
STRATEGY_TITLES = {
    "tutor": "Tutorship (L->U)",
    "adapt": "Adaptation (U->L)",
    "direct": "L model applied directly",
    "proxy": "Proxy (self-trained on U)",
    COMBINED: "Tutorship + adaptation",
}


@dataclass
class OutputOptions:
    """What to write for each image.

    Attributes
    ----------
    per_fold : bool
        Also each fold's own segmentation into ``fold_<k>/`` (for evaluation per fold).
    postprocess : bool
        Remove specks, fill axons inside myelin.
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
    confidence_tiff: bool = False
    overwrite: bool = False
    skip_existing: bool = False
    allow_large: bool = False


@dataclass
class _Job:
    sample: object
    pixel_size: float
    out_dirs: dict = field(default_factory=dict)  # strategy -> folder (None: beside the image)


def _check_strategy(strategy):
    if strategy not in STRATEGIES:
        raise InputError(f"--strategy {strategy!r}: choose tutor (L->U), adapt (U->L), direct or proxy.")
    return strategy


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
        factor = scale_factor(pixel_size, model.pixel_size)
        if abs(factor - 1.0) > 1e-6:
            image = rescale(image, factor, order=1)
    return model.predict(image, per_fold=per_fold, progress=bar)


def _finish_label(label_map, shape, pixel_size, options):
    label_map = resize_to(label_map, shape, order=0)
    if options.postprocess:
        label_map = postprocess_label_map(label_map, pixel_size=pixel_size)
    return label_map


def _write(label_map, confidence, fold_labels, job_image, paths, folds, pixel_size, overwrite):
    folder = paths["axonmyelin"].parent
    written = write_ads_segmentation(label_map, job_image, out_dir=folder, overwrite=overwrite)
    written.append(write_image(paths["confidence"], confidence_to_uint8(confidence), overwrite=overwrite))
    if "confidence_tiff" in paths:
        written.append(write_float_tiff(paths["confidence_tiff"], confidence, overwrite=overwrite,
                                        pixel_size=pixel_size))
    if fold_labels is not None:
        for fold, fold_label in zip(folds, fold_labels):
            written += write_ads_segmentation(fold_label, job_image, out_dir=folder / f"fold_{fold}",
                                              overwrite=overwrite)
    return written


def _grids(job, strategy, model, work, shape):
    """The rescaling steps ``(shape, from px, to px, what works there)`` of an image of ``shape`` for ``strategy``,
    and its shape on the segmentation model's grid."""
    steps = []
    px = job.pixel_size
    if strategy in ("adapt", "direct") and work is not None:
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
        for strategy, model in models.items():
            steps, final = _grids(job, strategy, model, work, shape0)
            for shape, px, dst, grid in steps:
                check_working_size(shape, px, dst, what=str(job.sample.image), source=source, grid=grid)
            per_fold = model.tiles_per_fold(final) if hasattr(model, "tiles_per_fold") else 1
            count += per_fold * model.n_folds
        tiles[str(job.sample.image)] = count
    return tiles


def _warn(message):
    print(f"warning: {message}", file=sys.stderr)


def _run_jobs(jobs, models, translation_model, options, progress=True, seed=0):
    """Segment every job with every strategy in ``models`` (+ combined); return one record per image/strategy."""
    from tqdm.auto import tqdm

    from ads_synth.translation.translate import translate_image, working_pixel_sizes

    strategies = list(models)
    work = working_pixel_sizes(translation_model) if translation_model is not None else None
    combine = "tutor" in models and "adapt" in models and COMBINED in (jobs[0].out_dirs if jobs else {})
    all_names = strategies + ([COMBINED] if combine else [])
    folds = {s: models[s].folds for s in strategies}
    folds[COMBINED] = []
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
    tiles = check_budget([job for job, _ in pending], models, work)

    records = []
    total = sum(tiles.values())  # the unit that takes the time: network tiles (tqdm estimates the time left)
    with tqdm(total=total, desc="pseudo labels", unit="tile", disable=not progress) as bar:
        for job, paths in pending:
            image = read_image(job.sample.image, allow_large=options.allow_large)
            shape, px = image.shape, job.pixel_size
            blank = is_blank(image)
            if blank:
                _warn(f"{job.sample.image}: the image has no structure (all black, all white or flat); its pseudo "
                      "labels are meaningless and their confidence is set to 0.")
            stats_here = {}
            for strategy in strategies:
                bar.set_postfix_str(f"{job.sample.name} {strategy}")
                source, source_px = image, px
                if strategy == "adapt":
                    source, source_px = translate_image(translation_model, image, px, "U2L", output_grid="model",
                                                        seed=seed, progress=False)
                elif strategy == "direct" and work is not None:
                    # the adaptation path without the translation: U's working grid read as L's
                    factor = scale_factor(px, work["U"])
                    source = rescale(image, factor, order=1) if abs(factor - 1.0) > 1e-6 else image
                    source_px = work["L"]
                stats, fold_labels = _segment_at_model_grid(models[strategy], source, source_px,
                                                            options.per_fold, bar)
                label_map, confidence = label_and_confidence(stats)
                label_map = _finish_label(label_map, shape, px, options)
                confidence = resize_to(confidence, shape, order=1)
                if blank:
                    confidence = np.zeros_like(confidence)
                if fold_labels is not None:
                    fold_labels = [_finish_label(f, shape, px, options) for f in fold_labels]
                files = _write(label_map, confidence, fold_labels, job.sample.image, paths[strategy],
                               folds[strategy], px, overwrite)
                records.append(_record(job, strategy, models[strategy].folds, files, label_map, confidence))
                if combine and strategy in ("tutor", "adapt"):
                    stats_here[strategy] = stats.resized(shape)
                del stats
            if combine:
                pooled = stats_here["tutor"].pooled(stats_here["adapt"])
                label_map, confidence = label_and_confidence(pooled)
                if blank:
                    confidence = np.zeros_like(confidence)
                if options.postprocess:
                    label_map = postprocess_label_map(label_map, pixel_size=px)
                files = _write(label_map, confidence, None, job.sample.image, paths[COMBINED], [], px, overwrite)
                records.append(_record(job, COMBINED, models["tutor"].folds + models["adapt"].folds, files,
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
    if isinstance(images, (str, Path)):
        images = [images]
    samples = [s for item in images for s in find_samples(item)]
    override = check_pixel_size(pixel_size, "--pixel-size") if pixel_size is not None else None
    out = []
    for s in samples:
        px = s.pixel_size if s.pixel_size is not None else override
        if px is None:
            raise InputError(f"{s.image}: no pixel size found; give it with --pixel-size (micrometres per pixel) "
                             "or write it into pixel_size_in_micrometer.txt beside the image.")
        out.append((s, px))
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
    from ads_synth.segmentation.trainer import parse_folds

    folds = None if folds is None else parse_folds(folds)
    return SegmentationModel(segmentation, folds=folds, device=device, use_mirroring=use_mirroring,
                             pixel_size=pixel_size)


def pseudo_label_images(images, *, translation, segmentation, strategy, out_dir=None, overwrite=False, folds=None,
                        device=None, progress=True, pixel_size=None, per_fold=False, use_mirroring=False,
                        postprocess=True, confidence_tiff=False, segmentation_pixel_size=None,
                        allow_large=False) -> list[dict]:
    """Pseudo-label images with already-trained models (one strategy).

    Parameters
    ----------
    images : str or Path or list
        Image files, folders or datasets of the unlabeled domain.
    translation : str or Path or SynDiff or None
        Translation model: needed by ``adapt``; gives ``direct`` its grid (the module docstring); unused by
        ``tutor`` and ``proxy``.
    segmentation : str or Path or SegmentationModel
        ``tutor`` / ``proxy``: the tutorship or proxy model; ``adapt`` / ``direct``: a model trained on L (an
        ads-synth folder or any AxonDeepSeg nnU-Net model folder).
    strategy : {"tutor", "adapt", "direct", "proxy"}
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
    per_fold, postprocess, confidence_tiff : bool
        See :class:`OutputOptions`.
    use_mirroring : bool
        nnU-Net's test-time mirroring.
    segmentation_pixel_size : float, optional
        Working pixel size of a segmentation folder without ``ads_synth.json``.
    allow_large : bool
        Read images over PIL's decompression-bomb limit.

    Returns
    -------
    list of dict
        Per image: ``image``, ``name``, ``strategy``, ``folds``, ``pixel_size``, ``files`` (written paths),
        ``axon_fraction``, ``myelin_fraction``, ``mean_confidence``.
    """
    _check_strategy(strategy)
    jobs = [_Job(s, px, {strategy: Path(out_dir) if out_dir is not None else None})
            for s, px in _samples(images, pixel_size, allow_large)]
    from ads_synth.device import resolve_device

    device = resolve_device(device)
    translation_model = None
    if strategy == "adapt" or (strategy == "direct" and translation is not None):
        translation_model = _translation(translation, device)
    model = _segmentation(segmentation, folds, device, use_mirroring, segmentation_pixel_size)
    options = OutputOptions(per_fold=per_fold, postprocess=postprocess, confidence_tiff=confidence_tiff,
                            overwrite=overwrite, allow_large=allow_large)
    return _run_jobs(jobs, {strategy: model}, translation_model, options, progress=progress)


def parse_strategies(strategies):
    """``--strategy`` values -> ordered unique strategies (``all`` = tutor, adapt, direct; ``proxy`` adds the two
    paths it learns from, and runs last)."""
    if isinstance(strategies, str):
        strategies = [strategies]
    out = []
    for s in strategies:
        for name in (ALL if s == "all" else [s]):
            _check_strategy(name)
            if name not in out:
                out.append(name)
    if not out:
        raise InputError("--strategy: give tutor, adapt, direct, proxy or all.")
    if "proxy" in out:
        out = [s for s in out if s != "proxy"]
        out += [s for s in ("tutor", "adapt") if s not in out] + ["proxy"]
    return out


def run_pseudo(strategies, labeled, unlabeled, translation, out, *, settings=None, pixel_size=None,
               l_model=None, l_model_pixel_size=None, options=None, use_mirroring=False, progress=True,
               min_confidence=None) -> dict:
    """``ads-synth pseudo``: train what is missing, then pseudo-label the unlabeled images.

    Parameters
    ----------
    strategies : str or list
        ``tutor``, ``adapt``, ``direct``, ``proxy`` or ``all`` (:func:`parse_strategies`).
    labeled : str or Path or list
        Labeled L dataset(s) (only their labels are read for training).
    unlabeled : str or Path
        U images (their labels, if any, are never read).
    translation : str or Path
        Translation model folder.
    out : str or Path
        ``OUT``: ``models/``, ``work/``, ``pseudo_labels/<strategy>/``.
    settings : TrainSettings, optional
        Training settings (folds, schedule, device).
    pixel_size : float, optional
        Pixel size of U images that carry none.
    l_model : str or Path, optional
        An existing model trained on L (e.g. an AxonDeepSeg model folder) for ``adapt`` / ``direct`` instead of
        training ``OUT/models/L``.
    l_model_pixel_size : float, optional
        Its working pixel size when it has no ``ads_synth.json``.
    options : OutputOptions, optional
        Default: ``skip_existing=True`` (resumable).
    use_mirroring, progress : bool
    min_confidence : float, optional
        ``proxy``: pseudo-label pixels below this confidence (0 to 1) are left out of its training; default
        :data:`~ads_synth.segmentation.model_building.DEFAULT_MIN_CONFIDENCE`.

    Returns
    -------
    dict
        ``{"models": {name: Path}, "records": [...], "out": Path}``.
    """
    from ads_synth.segmentation.model_building import (
        DEFAULT_MIN_CONFIDENCE,
        TrainSettings,
        check_labeled,
        train_labeled_model,
        train_proxy_model,
        train_tutor_model,
    )
    from ads_synth.device import resolve_device
    from ads_synth.translation.translate import working_pixel_sizes

    strategies = parse_strategies(strategies)
    if min_confidence is not None and not (0.0 <= float(min_confidence) <= 1.0):  # NaN fails too
        raise InputError(f"--min-confidence {min_confidence}: give a confidence between 0 and 1 (default "
                         f"{DEFAULT_MIN_CONFIDENCE}).")
    settings = (settings or TrainSettings()).check()
    settings.progress = progress
    options = options or OutputOptions(skip_existing=True)
    out = Path(out)
    device = resolve_device(settings.device)
    sources = labeled if isinstance(labeled, (list, tuple)) else [labeled]
    needs_l = any(s in strategies for s in ("adapt", "direct"))
    needs_labeled = "tutor" in strategies or (needs_l and l_model is None)
    labeled_samples = []
    if needs_labeled:
        labeled_samples = check_labeled([s for src in sources for s in find_samples(src, require_labels=True)])
    jobs_samples = _samples(unlabeled, pixel_size)
    translation_model = None
    if "tutor" in strategies or "adapt" in strategies or (needs_l and l_model is None):
        translation_model = _translation(translation, device)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another output folder.")
    if translation_model is not None:  # every path reads the U images on U's working grid: check before training
        u_px = working_pixel_sizes(translation_model, str(translation))["U"]
        for s, px in jobs_samples:
            check_working_size(image_shape(s.image), px, u_px, what=str(s.image),
                               source=pixel_size_source(s.image), grid="the translation model's U domain")

    models_dir, work_dir = out / "models", out / "work" / "nnunet"
    model_dirs = {}
    if "tutor" in strategies:
        model_dirs["tutor"] = train_tutor_model(labeled_samples, translation_model, translation,
                                                models_dir / "tutor", work_dir, settings=settings,
                                                overwrite=options.overwrite)
    if needs_l:
        if l_model is not None:
            model_dirs["L"] = Path(l_model)
        else:
            l_px = working_pixel_sizes(translation_model, str(translation))["L"]
            model_dirs["L"] = train_labeled_model(sources, models_dir / "L", work_dir, pixel_size=l_px,
                                                  settings=settings, overwrite=options.overwrite,
                                                  samples=labeled_samples)

    loaded = {}  # one SegmentationModel per folder (adapt and direct share the L model)
    models = {}
    for strategy in (s for s in strategies if s != "proxy"):
        key = "tutor" if strategy == "tutor" else "L"
        if key not in loaded:
            external = key == "L" and l_model is not None
            loaded[key] = _segmentation(model_dirs[key], None if external else settings.folds, device,
                                        use_mirroring, l_model_pixel_size if external else None)
        models[strategy] = loaded[key]
    pseudo_dir = out / "pseudo_labels"
    names = list(models) + ([COMBINED] if "tutor" in models and "adapt" in models else [])
    jobs = [_Job(s, px, {name: pseudo_dir / name for name in names}) for s, px in jobs_samples]
    records = _run_jobs(jobs, models, translation_model, options, progress=progress)
    if "proxy" in strategies:
        teacher = [(s, px, *(output_paths(s.image, pseudo_dir / COMBINED, [], OutputOptions())[k]
                             for k in ("axonmyelin", "confidence"))) for s, px in jobs_samples]
        min_confidence = DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence
        model_dirs["proxy"] = train_proxy_model(teacher, labeled_samples, translation_model, translation,
                                                models_dir / "proxy", work_dir, settings=settings,
                                                min_confidence=min_confidence, overwrite=options.overwrite)
        proxy = {"proxy": _segmentation(model_dirs["proxy"], settings.folds, device, use_mirroring, None)}
        jobs = [_Job(s, px, {"proxy": pseudo_dir / "proxy"}) for s, px in jobs_samples]
        records += _run_jobs(jobs, proxy, translation_model, options, progress=progress)
    return {"models": model_dirs, "records": records, "out": out}
