"""``ads-synth family train``: every phase from unlabeled images of a new modality to an installed family.

Phases (each one's result is recorded in ``OUT/family_state.json`` when it ends, so a killed run continues with
the phase it was in; the training inside a phase resumes from its own checkpoints):

1. ``scale``: the L -> U scale factor from fibre sizes (L's labels, U's images), unless ``--scale`` gives one.
2. ``translation``: SynDiff between L and U (``OUT/work/translation``), its best model, and its non-diffusive
   half exported as a second translator (``OUT/work/translation_nd``).
3. ``teachers``: the tutorship model (nnU-Net on L translated into U's look) and the L model (nnU-Net on L; a
   shipped one when it was trained on exactly these labeled images, :mod:`ads_synth.family.l_model`).
4. ``candidates``: pseudo labels of every candidate path on up to :data:`~ads_synth.family.crops.SCORING_IMAGES`
   crops of U images: tutor, adapt (diffusive and non-diffusive translation), their pooled ``combined``, and the
   no-translation baselines direct, invert and histmatch.
5. ``choice``: label-free scores of the candidates; the best one teaches the proxy.
6. ``proxy``: the teacher's pseudo labels on every U image (a whole slide: on crops of it,
   :func:`ads_synth.family.crops.training_images`), a proxy nnU-Net self-trained on their confident part
   (plus L translated into U's look when the tutorship candidate passes the fibre-validity gate), its folds
   fine-tuned from the teacher's network (:mod:`ads_synth.segmentation.warm_start`; ``--proxy-start scratch``:
   random weights), scored like the candidates; then more rounds, each learning from the last one's labels and
   starting from its network, while the label-free score improves and the budget allows (``--rounds``).
7. ``family``: the cards (tutor, adapt, proxy, and the cheap baselines direct, invert and histmatch, which apply
   the L model's files) and ``auto`` = the best-scoring of them (:func:`ads_synth.family.cards.choose_auto`), in
   ``OUT/family/``, installed.
8. ``report``: ``OUT/report.md`` and its figures.

U's labels are never read: every choice is made from the data (:mod:`ads_synth.segmentation.label_free`).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np

from ads_synth.errors import InputError
from ads_synth.family.budget import TRANSLATION_TILE, Plan, make_plan
from ads_synth.family.crops import SCORING_CROP, SCORING_IMAGES, TRAINING_MPX
from ads_synth.family.l_model import trained_l_models
from ads_synth.family.options import FamilyOptions, check_images, check_name_free, check_options, labeled_inputs
from ads_synth.family.state import FamilyState, PhaseRunner, data_fingerprint

PHASES = ("scale", "translation", "teachers", "candidates", "choice", "proxy", "family", "report")
#: Candidates segmented in the ``candidates`` phase with the diffusive translator (``combined`` is pooled).
CANDIDATES = ("tutor", "adapt", "direct", "invert", "histmatch")
#: Most self-training rounds of ``--rounds auto`` (fewer when one stops improving or the budget is spent).
MAX_ROUNDS = 3
#: The candidate adapting with SynDiff's non-diffusive generator (the CycleGAN half).
ADAPT_ND = "adapt_nd"


def _warn(message):
    print(f"ads-synth family: warning: {message}", file=sys.stderr, flush=True)


class FamilyRun:
    """One run of ``ads-synth family train`` (see the module docstring); :meth:`run` does everything."""

    def __init__(self, opts: FamilyOptions):
        self.opts = check_options(opts)
        self.out = Path(self.opts.out).resolve()
        self.work = self.out / "work"
        self._training = None  # the proxy's training images, once worked out (_training_images)
        self.progress = self.opts.verbose > 0

    # -- inputs ------------------------------------------------------------------------------------------------
    def _read_inputs(self):
        from ads_synth.data.datasets import find_samples
        from ads_synth.segmentation.model_building import check_labeled
        from ads_synth.segmentation.pseudo import _samples

        self.labeled_paths = labeled_inputs(self.opts)
        labeled = [s for p in self.labeled_paths for s in find_samples(p, require_labels=True)]
        self.labeled = check_labeled(labeled)
        check_images(self.labeled, "labeled")
        self.unlabeled_paths = [str(Path(p)) for p in self.opts.unlabeled]
        if not self.unlabeled_paths:
            raise InputError("--unlabeled: give the images of the new modality (files, folders or a dataset).")
        self.u_jobs = _samples(self.unlabeled_paths, self.opts.pixel_size)  # [(Sample, pixel size)]
        check_images([s for s, _ in self.u_jobs], "new")
        labeled_names = {s.name for s in self.labeled}
        clash = [s.name for s, _ in self.u_jobs if s.name in labeled_names]
        if clash:
            raise InputError(f"{clash[0]}: an unlabeled image has the name of a labeled one; rename it.")

    def _config(self):
        config = self.opts.fingerprint()
        config["labeled"] = data_fingerprint(self.labeled)
        unlabeled = [type(s)(name=s.name, image=s.image, pixel_size=px, labels={}) for s, px in self.u_jobs]
        config["unlabeled"] = data_fingerprint(unlabeled)  # U's labels are never read, not even to checksum them
        return config

    # -- the run -----------------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Run (or continue) every phase; return the ``family`` phase's result (cards, ``auto``)."""
        from ads_synth.device import resolve_device

        self._read_inputs()
        resuming = (self.out / "family_state.json").is_file() and not self.opts.overwrite
        check_name_free(self.opts, resuming)
        self.device = resolve_device(self.opts.device)
        self.state = FamilyState.open(self.out, self._config(), resume=self.opts.resume,
                                      overwrite=self.opts.overwrite, warn=_warn)
        self.shipped_l = [] if self.opts.train_l_model else trained_l_models(self.labeled, self.opts.folds)
        plan = self.state.get("plan")
        if plan is None:
            plan = make_plan(self.opts.time_budget, device=str(self.device), n_folds=len(self.opts.folds),
                             inference_mpx=self._inference_mpx(), steps=self.opts.steps, epochs=self.opts.epochs,
                             proxy_epochs=self.opts.proxy_epochs, iterations=self.opts.iterations,
                             train_l_model=not self.shipped_l).to_dict()
            self.state.set("plan", plan)
        self.plan = Plan.from_dict(plan)
        runner = PhaseRunner(self.state, PHASES, self.plan.estimates_s, verbose=self.opts.verbose)
        runner.say(f"{self.opts.pair}: {len(self.labeled)} labeled {self.opts.source} images, {len(self.u_jobs)} "
                   f"{self.opts.target} images; budget {self.opts.time_budget:g} min on {self.device.type} "
                   f"(translation {self._translation_plan()}, nnU-Net {self.plan.teacher_epochs} / "
                   f"{self.plan.proxy_epochs} epochs of {self.plan.iterations} iterations)")
        if self.shipped_l:
            runner.say(f"L model: a shipped nnU-Net trained on exactly these labeled images "
                       f"({', '.join(c.name for c, _ in self.shipped_l)}; --train-l-model trains a new one)")
        for name in PHASES:
            runner.run(name, getattr(self, f"_phase_{name}"))
        family = self.state.result("family")
        runner.say(f"family {self.opts.pair} ready: {', '.join(family['cards'])}; auto = {family['auto']}; "
                   f"report: {self.out / 'report.md'}")
        return family

    def _inference_mpx(self):
        """Megapixels predicted by the candidates and the proxy, for the plan."""
        from ads_synth.data.images import image_shape

        sizes = [np.prod(image_shape(s.image)) / 1e6 for s, _ in self.u_jobs]
        crops = sum(min(m, SCORING_CROP * SCORING_CROP / 1e6) for m in sizes[:SCORING_IMAGES])
        return crops * (len(CANDIDATES) + 2) + 3 * sum(min(m, TRAINING_MPX) for m in sizes)

    def _rel(self, path):
        return Path(path).resolve().relative_to(self.out).as_posix()

    def _abs(self, rel):
        return self.out / rel

    def _settings(self, epochs, fold_time_s=None):
        from ads_synth.segmentation.model_building import TrainSettings

        return TrainSettings(folds=list(self.opts.folds), trainer="compact", patch_size=self.opts.patch,
                             batch_size=4, epochs=epochs, iterations=self.plan.iterations,
                             val_iterations=max(1, self.plan.iterations // 5), device=str(self.device),
                             num_processes=1, progress=self.progress, fold_time_s=fold_time_s).check()

    def _fold_time_s(self, planned, phase):
        """``planned`` seconds per nnU-Net fold, scaled by the budget left over what the plan gave the phases from
        ``phase`` on: time the earlier phases saved (or overran) goes to (or comes from) the trainings still to
        run, within a quarter and twice the plan. None when the epochs were given."""
        if planned is None:
            return None
        at = PHASES.index(phase)
        left = self.plan.budget_s - sum(self.state.seconds(n) for n in PHASES[:at])
        ahead = sum(self.plan.estimates_s.get(n, 0.0) for n in PHASES[at:])
        return float(planned) * min(max(left / max(ahead, 1.0), 0.25), 2.0)

    # -- 1. scale ----------------------------------------------------------------------------------------------
    def _phase_scale(self):
        if self.opts.scale != "auto":
            return {"scale": float(self.opts.scale), "method": "given (--scale)", "low": None, "high": None}
        from ads_synth.family.scale import estimate

        return estimate(self.labeled, self.u_jobs)

    # -- 2. translation ----------------------------------------------------------------------------------------
    def _translation_tile(self, scale):
        """The training tile: :data:`~ads_synth.family.budget.TRANSLATION_TILE` (what the cost model was measured
        with) or the preset's, smaller when a quarter of the images are smaller than it on their working grids."""
        from ads_synth.translation.config import get_preset
        from ads_synth.data.images import image_shape

        preset = get_preset(self.opts.preset)
        multiple = preset.training_size_multiple
        p_u = float(np.median([px for _, px in self.u_jobs]))
        p_l = p_u / scale
        sides = [min(image_shape(s.image)) * s.pixel_size / p_l for s in self.labeled]
        sides += [min(image_shape(s.image)) * px / p_u for s, px in self.u_jobs]
        fit = int(min(np.percentile(sides, 25), preset.image_size, TRANSLATION_TILE)) // multiple * multiple
        return max(multiple, fit)

    def _translation_plan(self):
        """The translation's schedule in words: fixed steps, or its time share (steps set from measured speed)."""
        if self.plan.translation_s is None:
            return f"{self.plan.translation_steps} steps"
        return (f"{self.plan.translation_s / 60:.0f} min, its steps set from its measured speed "
                f"(about {self.plan.translation_steps} by the cost model)")

    def _phase_translation(self):
        from ads_synth.translation.formats import CONFIG_NAME, run_model_dir
        from ads_synth.translation.nondiffusive import export_nondiffusive
        from ads_synth.translation.trainer import TrainOptions, train

        scale = float(self.state.result("scale")["scale"])
        run = self.work / "translation"
        steps = self.plan.translation_steps
        opts = TrainOptions(source=self.labeled_paths, target=self.unlabeled_paths, out=str(run),
                            preset=self.opts.preset, scale=scale, steps=steps,
                            checkpoint_every=max(5, steps // 10), eval_every=max(5, steps // 5),
                            tile=self._translation_tile(scale), target_pixel_size=self.opts.pixel_size,
                            source_name=self.opts.source, target_name=self.opts.target, eval_tiles=4,
                            device=str(self.device), progress=self.progress,
                            time_limit_s=self.plan.translation_s, keep_snapshots=True)
        run.parent.mkdir(parents=True, exist_ok=True)
        trainer = train(opts, resume=(run / CONFIG_NAME).is_file())
        steps = int(trainer.step)
        if run_model_dir(run) is None:
            raise InputError(f"{run}: translation training wrote no model; rerun the same command to continue.")
        nd = export_nondiffusive(run, self.work / "translation_nd", overwrite=True)
        model, look, chosen_by, checked = self._choose_translation(run)
        if look["learned"] is False:
            _warn(f"{look['verdict']}; the tutorship and adaptation candidates will likely fail the label-free "
                  "checks (a longer --time-budget trains the translation longer).")
        return {"run": self._rel(run), "model": self._rel(model), "nondiffusive": self._rel(nd), "steps": steps,
                "tile": opts.tile, "best": _best_score(run), "look": look, "chosen_by": chosen_by,
                "contrast_by_step": checked}

    def _choose_translation(self, run):
        """The translation the family uses: the run's best cycle score (``best/``), unless that model did not learn
        U's contrast (:mod:`ads_synth.family.look`) where a scoring's snapshot (not step 0's) did: then the snapshot
        with the best cycle score among those that learned it. The cycle score alone prefers early, copy-like
        models: a copy goes round the cycle unchanged.

        Returns
        -------
        (Path, dict, str, dict)
            The model folder, its contrast check, how it was chosen, and each snapshot's translated contrast by step.
        """
        from ads_synth.translation.formats import CONFIG_NAME, run_model_dir, run_snapshots

        best = run_model_dir(run)
        look = self._look(best)
        if look["learned"] is not False:
            return best, look, "the best cycle score (best/)", {}
        checked, learned = {}, []
        for snap in run_snapshots(run):
            extra = json.loads((snap / CONFIG_NAME).read_text(encoding="utf-8")).get("extra", {})
            step = int(extra.get("step", 0))
            if step == 0:  # the untrained networks
                continue
            snap_look = self._look(snap)
            checked[step] = round(snap_look["contrast_translated"], 3)
            if snap_look["learned"]:
                learned.append((float(extra.get("scores", {}).get("score", -1.0)), step, snap, snap_look))
        if not learned:
            return best, look, "the best cycle score (best/); no snapshot learned the contrast", checked
        score, step, snap, snap_look = max(learned, key=lambda item: item[:2])
        return snap, snap_look, (f"the contrast check: best/ did not learn it; step {step} did "
                                 f"(cycle score {score:.3f}, the best of the {len(learned)} that did)"), checked

    @functools.cached_property
    def _u_phase(self):
        """U's axon phase: the majority of the phases the scale phase's detector recorded per U image, or
        (``--scale`` given, or a run from before they were recorded) :func:`ads_synth.family.look.unlabeled_phase`."""
        from ads_synth.translation.scale import majority_phase

        images = (self.state.result("scale").get("estimate") or {}).get("images", [])
        recorded = [im for im in images if im.get("domain") == "U" and "axon_phase" in im]
        if recorded:
            return majority_phase(im["axon_phase"] for im in recorded)
        from ads_synth.data.images import read_image
        from ads_synth.family.look import unlabeled_phase

        return unlabeled_phase(read_image(s.image, allow_large=True) for s, _ in self.u_jobs)

    def _look(self, model_dir):
        """:func:`ads_synth.family.look.look_check` of the translation in ``model_dir``."""
        from ads_synth.family.look import look_check
        from ads_synth.translation.translate import load_translation_model, translate_image

        model = load_translation_model(model_dir, device=self.device)

        def translate(image, pixel_size):
            return translate_image(model, image, pixel_size, "L2U", progress=False)[0]

        return look_check(translate, self.labeled, self._u_phase)

    def _translation_model(self, key="model"):
        from ads_synth.translation.translate import load_translation_model

        return load_translation_model(self._abs(self.state.result("translation")[key]), device=self.device)

    # -- 3. teachers -------------------------------------------------------------------------------------------
    def _phase_teachers(self):
        from ads_synth.data.intensity import REFERENCE_FILE
        from ads_synth.segmentation.pseudo_training import _reference_quantiles
        from ads_synth.segmentation.model_building import train_labeled_model, train_tutor_model
        from ads_synth.segmentation.predict import trained_epochs
        from ads_synth.translation.translate import working_pixel_sizes

        translation = self._abs(self.state.result("translation")["model"])
        model = self._translation_model()
        settings = self._settings(self.plan.teacher_epochs,
                                  self._fold_time_s(self.plan.teacher_fold_s, "teachers"))
        nnunet = self.work / "nnunet"
        tutor = train_tutor_model(self.labeled, model, translation, self.work / "models" / "tutor", nnunet,
                                  settings=settings)
        l_dir = self.work / "models" / "L"
        l_px = working_pixel_sizes(model, str(translation))["L"]
        if self.shipped_l:  # trained on exactly these labeled images: copied, not trained again
            from ads_synth.family.l_model import closest, copy_l_model, describe

            card, folder = closest(self.shipped_l, l_px)
            copy_l_model(folder, l_dir)
            l_from = describe(card, folder)
        else:
            train_labeled_model(self.labeled_paths, l_dir, nnunet, pixel_size=l_px, settings=settings,
                                samples=self.labeled)
            l_from = None
        _reference_quantiles(self.labeled, l_dir / REFERENCE_FILE)  # L's intensities for histmatch (kept if present)
        return {"tutor": self._rel(tutor), "L": self._rel(l_dir), "epochs": trained_epochs(tutor),
                "L_from": l_from}

    # -- 4. candidates -----------------------------------------------------------------------------------------
    def _scoring_images(self):
        from ads_synth.family.crops import scoring_crops

        return scoring_crops(self.u_jobs, self.work / "scoring_images")

    def _label(self, images, strategies, models, out_dirs, translation_model, reference=None):
        """Pseudo-label ``images`` (paths) with ``models`` ({strategy: model folder}) into ``out_dirs``."""
        from ads_synth.segmentation.pseudo import OutputOptions, _Job, _run_jobs, _samples, _segmentation

        loaded, seg = {}, {}
        for name in strategies:
            folder = models[name]
            if folder not in loaded:
                loaded[folder] = _segmentation(folder, self.opts.folds, self.device, False, None)
            seg[name] = loaded[folder]
        jobs = [_Job(s, px, dict(out_dirs)) for s, px in _samples(images, self.opts.pixel_size)]
        return _run_jobs(jobs, seg, translation_model, OutputOptions(skip_existing=True), progress=self.progress,
                         reference=reference)

    def _reference(self):
        from ads_synth.data.intensity import REFERENCE_FILE, load_reference

        return load_reference(self._abs(self.state.result("teachers")["L"]) / REFERENCE_FILE)

    def _phase_candidates(self):
        teachers = self.state.result("teachers")
        images = self._scoring_images()
        labels = self.work / "candidates"
        models = {"tutor": self._abs(teachers["tutor"])}
        models.update({name: self._abs(teachers["L"]) for name in CANDIDATES if name != "tutor"})
        dirs = {name: labels / name for name in CANDIDATES + ("combined",)}
        self._label(images, CANDIDATES, models, dirs, self._translation_model(), reference=self._reference())
        self._label(images, ["adapt"], {"adapt": self._abs(teachers["L"])}, {"adapt": labels / ADAPT_ND},
                    self._translation_model("nondiffusive"))
        names = list(CANDIDATES) + ["combined", ADAPT_ND]
        return {"images": [self._rel(p) for p in images], "folders": {n: self._rel(labels / n) for n in names}}

    # -- 5. choice ---------------------------------------------------------------------------------------------
    def _working_pixel_sizes(self):
        """U's working pixel size (the median of the U images') and L's (U's divided by the scale)."""
        p_u = float(np.median([px for _, px in self.u_jobs]))
        return {"U": p_u, "L": p_u / float(self.state.result("scale")["scale"])}

    def _l_statistics(self):
        from ads_synth.data.datasets import load_label_map
        from ads_synth.segmentation.label_free import label_statistics

        samples = self.labeled[:8]
        return label_statistics([load_label_map(s) for s in samples], [s.pixel_size for s in samples],
                                unit_size=self._working_pixel_sizes()["L"])

    def _score(self, folders):
        """Label-free scores of the candidates in ``folders`` ({name: folder relative to OUT}) on the crops."""
        from ads_synth.family.auto import score_folders

        images = [self._abs(p) for p in self.state.result("candidates")["images"]]
        return score_folders({n: self._abs(rel) for n, rel in folders.items()}, images,
                             reference=self._l_statistics(), unit_size=self._working_pixel_sizes()["U"])

    def _phase_choice(self):
        from ads_synth.segmentation.label_free import choose_candidate

        scores = self._score(self.state.result("candidates")["folders"])
        teacher = choose_candidate(scores)
        return {"scores": scores, "teacher": teacher}

    # -- 6. proxy ----------------------------------------------------------------------------------------------
    def _training_images(self):
        """The proxy's training images: the U images, a whole slide replaced by crops
        (:func:`ads_synth.family.crops.training_images`; worked out once per run)."""
        if self._training is None:
            from ads_synth.family.crops import training_images

            self._training = [str(p) for p, _ in training_images(self.u_jobs, self.work / "training_images")]
        return self._training

    def _label_items(self, folder):
        """``[(Sample, px, axonmyelin path, confidence path)]`` of every training image's pseudo labels in
        ``folder``."""
        from ads_synth.segmentation.pseudo import OutputOptions, _samples, output_paths

        items = []
        for s, px in _samples(self._training_images(), self.opts.pixel_size):
            paths = output_paths(s.image, folder, [], OutputOptions())
            items.append((s, px, paths["axonmyelin"], paths["confidence"]))
        return items

    def _teacher_labels(self, teacher):
        """The teacher's pseudo labels on every training image: ``[(Sample, px, axonmyelin path, confidence
        path)]``."""
        from ads_synth.segmentation.strategies import get_strategy

        teachers = self.state.result("teachers")
        folder = self.work / "teacher_labels"
        if teacher == "combined":
            names = list(get_strategy("combined", selectable=False).pooled_from)
        else:
            names = ["adapt" if teacher == ADAPT_ND else teacher]
        models = {n: self._abs(teachers["tutor"] if get_strategy(n).segments_target else teachers["L"])
                  for n in names}
        dirs = {n: folder / n for n in names}
        if teacher == "combined":
            dirs["combined"] = folder / "combined"
        key = "nondiffusive" if teacher == ADAPT_ND else "model"
        self._label(self._training_images(), names, models, dirs, self._translation_model(key),
                    reference=self._reference())
        return self._label_items(dirs["combined" if teacher == "combined" else names[0]])

    def _phase_proxy(self):
        """Self-training in rounds: round 1 learns from the chosen teacher's labels, each later round from the
        previous round's labels on every U image. A round is kept only when its label-free score (on the scoring
        crops, beside every candidate) beats the best round so far; the rounds stop at the first that does not, at
        ``--rounds``, or when another round would not fit in the time budget (``--rounds auto``, the default)."""
        import time

        from ads_synth.segmentation.model_building import train_proxy_model
        from ads_synth.segmentation.predict import trained_epochs
        from ads_synth.segmentation.trainer import MIN_CASES_FOR_FOLDS
        from ads_synth.segmentation.warm_start import warm_start

        choice = self.state.result("choice")
        teacher = choice["teacher"]
        teachers = self.state.result("teachers")
        items = self._teacher_labels(teacher)
        # the L images translated into U's look teach the proxy (their labels are exact) only when the translation
        # is shown to give U's look: its tutorship model passes the label-free fibre-validity gate, and the chosen
        # teacher is a translated path (a no-translation baseline chosen means its labels fit U better than the
        # translated paths': translated L would teach the translation's idea of U). Otherwise they keep L's look
        # (e.g. TEM's dark myelin) and teach the opposite of the U pseudo labels; unless the U images alone are too
        # few for nnU-Net's five folds.
        valid = choice["scores"].get("tutor", {}).get("valid") and _translated_path(teacher)
        translated = self.labeled if valid or len(items) < MIN_CASES_FOR_FOLDS else []
        translation = self._abs(self.state.result("translation")["model"])
        cands = self.state.result("candidates")
        images = [self._abs(p) for p in cands["images"]]
        limit = MAX_ROUNDS if self.opts.rounds == "auto" else int(self.opts.rounds)
        spent = sum(self.state.seconds(n) for n in PHASES[:PHASES.index("proxy")])
        rounds, best, started = [], None, time.monotonic()
        proxy_fold_s = self._fold_time_s(self.plan.proxy_fold_s, "proxy")  # every round alike
        for r in range(1, limit + 1):
            t0 = time.monotonic()
            name = "proxy" if r == 1 else f"proxy_r{r}"
            settings = self._settings(self.plan.proxy_epochs, proxy_fold_s)
            init, how = {}, None
            if self.opts.proxy_start == "teacher":  # round 1 from the teacher's network, later ones from the last
                init, how = warm_start(teacher if r == 1 else "proxy", l_model=self._abs(teachers["L"]),
                                       u_model=self._abs(teachers["tutor"] if r == 1 else best["model"]),
                                       folds=settings.folds, network=settings.compact_plan().to_dict(),
                                       work=self.work / "warm_start" / name)
            model = train_proxy_model(items, translated, self._translation_model(), translation,
                                      self.work / "models" / name,
                                      self.work / ("nnunet" if r == 1 else f"nnunet_{name}"),
                                      settings=settings, init_weights=init, initial_weights=how)
            folder = self.work / "candidates" / name
            self._label(images, ["proxy"], {"proxy": model}, {"proxy": folder}, None)
            tried = {x["name"]: x["candidates"] for x in rounds}
            scores = self._score(dict(cands["folders"], **tried, **{name: self._rel(folder)}))
            against = None if best is None else scores[best["name"]]["score"]  # the best round, ranked alike
            kept = against is None or scores[name]["score"] > against
            rounds.append({"round": r, "name": name, "model": self._rel(model), "candidates": self._rel(folder),
                           "initial_weights": how,
                           "score": scores[name]["score"], "best_before": against, "kept": kept,
                           "seconds": round(time.monotonic() - t0, 1)})
            if not kept:
                break
            best = rounds[-1]
            round_s = time.monotonic() - t0
            left = self.plan.budget_s - spent - (time.monotonic() - started)
            if r == limit or (self.opts.rounds == "auto" and round_s > left):
                break
            labels = self.work / "teacher_labels" / name
            self._label(self._training_images(), ["proxy"], {"proxy": model}, {"proxy": labels}, None)
            items = self._label_items(labels)
        folders = dict(cands["folders"], proxy=best["candidates"])
        scores = self._score(folders)  # the kept round as "proxy", ranked beside the candidates alone
        return {"model": best["model"], "teacher": teacher, "epochs": trained_epochs(self._abs(best["model"])),
                "translated_labeled": len(translated),
                "rounds": rounds, "round": best["round"], "scores": scores}

    # -- 7. family ---------------------------------------------------------------------------------------------
    def _phase_family(self):
        from ads_synth.family.cards import write_family

        return write_family(self)

    # -- 8. report ---------------------------------------------------------------------------------------------
    def _phase_report(self):
        from ads_synth.family.report import write_report

        return {"report": self._rel(write_report(self))}


def _translated_path(name) -> bool:
    """Whether the candidate ``name`` goes through the translation (not a no-translation baseline: the L model on
    the U image as it is or intensity-transformed)."""
    from ads_synth.segmentation.strategies import list_strategies

    if name == ADAPT_ND:
        return True
    s = {x.name: x for x in list_strategies()}[name]
    return not (s.segments == "L" and s.translate is None)


def _best_score(run):
    """The run's best mean cycle score and its step, from ``scores.csv`` (None when it scored nothing)."""
    import csv

    path = Path(run) / "scores.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("score")]
    if not rows:
        return None
    best = max(rows, key=lambda r: float(r["score"]))
    return {"step": int(best["step"]), "score": float(best["score"]), "last_step": int(rows[-1]["step"])}


def train_family(opts: FamilyOptions) -> dict:
    """Run ``ads-synth family train`` (see the module docstring); return the family phase's result."""
    return FamilyRun(opts).run()
