"""``ads-synth pseudo``: train what a pseudo-labelling path is missing, then pseudo-label the unlabeled images.

Training orchestration only: the models are built by :mod:`ads_synth.segmentation.model_building` and applied by
the inference engine :mod:`ads_synth.segmentation.pseudo` (which never imports this module).
"""

from __future__ import annotations

from pathlib import Path

from ads_synth.data.datasets import find_samples
from ads_synth.errors import InputError
from ads_synth.segmentation.pseudo import (
    ALL,
    COMBINED,
    OutputOptions,
    _check_strategy,
    _Job,
    _run_jobs,
    _samples,
    _segmentation,
    _translation,
    output_paths,
)


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
