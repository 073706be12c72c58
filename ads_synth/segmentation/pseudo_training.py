"""``ads-synth pseudo``: train what a pseudo-labelling path is missing, then pseudo-label the unlabeled images.

Training orchestration only: the models are built by :mod:`ads_synth.segmentation.model_building` and applied by
the inference engine :mod:`ads_synth.segmentation.pseudo` (which never imports this module).
"""

from __future__ import annotations

from pathlib import Path

from ads_synth.data.datasets import find_samples
from ads_synth.errors import InputError
from ads_synth.segmentation.pseudo import (
    OutputOptions,
    _Job,
    _run_jobs,
    _samples,
    _segmentation,
    _translation,
    output_paths,
)
from ads_synth.segmentation.strategies import get_strategy, parse_strategies, pooled_strategies

__all__ = ["parse_strategies", "run_pseudo", "teacher_folder"]


def teacher_folder(strategy, pseudo_dir) -> Path:
    """Where ``strategy``'s teachers' pseudo labels are: the one teacher's folder, or the folder of the pooled
    strategy that pools exactly its teachers (``proxy``: ``combined``)."""
    if len(strategy.teachers) == 1:
        return Path(pseudo_dir) / strategy.teachers[0]
    for pooled in pooled_strategies(strategy.teachers):
        if set(pooled.pooled_from) == set(strategy.teachers):
            return Path(pseudo_dir) / pooled.name
    raise ValueError(f"strategy {strategy.name!r}: no registered strategy pools its teachers {strategy.teachers}")


def _reference_quantiles(samples, path):
    """L's intensity quantiles from the labeled images, written to ``path`` (reused when it exists)."""
    from ads_synth.data.images import read_image
    from ads_synth.data.intensity import intensity_quantiles, load_reference, save_reference

    if path.is_file():
        return load_reference(path)
    quantiles = intensity_quantiles(read_image(s.image) for s in samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_reference(path, quantiles)
    return quantiles


def run_pseudo(strategies, labeled, unlabeled, translation, out, *, settings=None, pixel_size=None,
               l_model=None, l_model_pixel_size=None, options=None, use_mirroring=False, progress=True,
               min_confidence=None) -> dict:
    """``ads-synth pseudo``: train what is missing, then pseudo-label the unlabeled images.

    Parameters
    ----------
    strategies : str or list
        Registered strategy names or ``all`` (:func:`~ads_synth.segmentation.strategies.parse_strategies`).
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

    chosen = [get_strategy(name) for name in parse_strategies(strategies)]
    if min_confidence is not None and not (0.0 <= float(min_confidence) <= 1.0):  # NaN fails too
        raise InputError(f"--min-confidence {min_confidence}: give a confidence between 0 and 1 (default "
                         f"{DEFAULT_MIN_CONFIDENCE}).")
    settings = (settings or TrainSettings()).check()
    settings.progress = progress
    options = options or OutputOptions(skip_existing=True)
    out = Path(out)
    device = resolve_device(settings.device)
    sources = labeled if isinstance(labeled, (list, tuple)) else [labeled]
    first = [s for s in chosen if not s.teachers]  # segment with models trained on L (translated or not)
    later = [s for s in chosen if s.teachers]  # self-trained on the first ones' pseudo labels
    needs_l = any(s.model == "L" for s in chosen)
    needs_u = any(s.segments == "U" for s in chosen)  # tutorship-style models: trained on translated L
    needs_labeled = needs_u or (needs_l and l_model is None)
    labeled_samples = []
    if needs_labeled:
        labeled_samples = check_labeled([s for src in sources for s in find_samples(src, require_labels=True)])
    jobs_samples = _samples(unlabeled, pixel_size)
    translation_model = None
    # an L model on untranslated U reads it on the translation's grid, whoever trained the L model (module docs)
    if needs_u or needs_l:
        translation_model = _translation(translation, device)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another output folder.")
    if translation_model is not None:  # every path reads the U images on U's working grid: check before training
        from ads_synth.data.images import image_shape, pixel_size_source
        from ads_synth.data.resample import check_working_size

        u_px = working_pixel_sizes(translation_model, str(translation))["U"]
        for s, px in jobs_samples:
            check_working_size(image_shape(s.image), px, u_px, what=str(s.image),
                               source=pixel_size_source(s.image), grid="the translation model's U domain")

    models_dir, work_dir = out / "models", out / "work" / "nnunet"
    model_dirs = {}
    for s in first:
        if s.segments == "U" and s.model not in model_dirs:
            model_dirs[s.model] = train_tutor_model(labeled_samples, translation_model, translation,
                                                    models_dir / s.model, work_dir, settings=settings,
                                                    overwrite=options.overwrite)
    if needs_l:
        if l_model is not None:
            model_dirs["L"] = Path(l_model)
        else:
            l_px = working_pixel_sizes(translation_model, str(translation))["L"]
            model_dirs["L"] = train_labeled_model(sources, models_dir / "L", work_dir, pixel_size=l_px,
                                                  settings=settings, overwrite=options.overwrite,
                                                  samples=labeled_samples)
    reference = None
    if any(s.needs_reference for s in chosen):
        from ads_synth.data.intensity import REFERENCE_FILE

        where = models_dir / ("L" if l_model is None else "L_reference") / REFERENCE_FILE
        reference = _reference_quantiles(labeled_samples or [x for src in sources for x in find_samples(src)],
                                         where)

    loaded = {}  # one SegmentationModel per folder (the L strategies share the L model)
    models = {}
    for s in first:
        if s.model not in loaded:
            external = s.model == "L" and l_model is not None
            loaded[s.model] = _segmentation(model_dirs[s.model], None if external else settings.folds, device,
                                            use_mirroring, l_model_pixel_size if external else None)
        models[s.name] = loaded[s.model]
    pseudo_dir = out / "pseudo_labels"
    names = list(models) + [p.name for p in pooled_strategies(list(models))]
    jobs = [_Job(s, px, {name: pseudo_dir / name for name in names}) for s, px in jobs_samples]
    records = _run_jobs(jobs, models, translation_model, options, progress=progress, reference=reference)
    for s in later:
        folder = teacher_folder(s, pseudo_dir)
        teacher = [(x, px, *(output_paths(x.image, folder, [], OutputOptions())[k]
                             for k in ("axonmyelin", "confidence"))) for x, px in jobs_samples]
        min_confidence = DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence
        model_dirs[s.model] = train_proxy_model(teacher, labeled_samples, translation_model, translation,
                                                models_dir / s.model, work_dir, settings=settings,
                                                min_confidence=min_confidence, overwrite=options.overwrite)
        student = {s.name: _segmentation(model_dirs[s.model], settings.folds, device, use_mirroring, None)}
        jobs = [_Job(x, px, {s.name: pseudo_dir / s.name}) for x, px in jobs_samples]
        records += _run_jobs(jobs, student, translation_model, options, progress=progress)
    return {"models": model_dirs, "records": records, "out": out}
