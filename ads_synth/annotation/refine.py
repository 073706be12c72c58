"""``ads-synth refine``: fine-tune a family's model on a user's corrected images, re-pseudo-label the rest, and
install the result as the card ``<PAIR>_refined``.

Phases (resumable: ``OUT/refine_state.json`` through :class:`ads_synth.family.state.FamilyState`, the same
fingerprint rules as ``family train``; a rerun of the same command continues, another configuration is refused
unless ``--resume`` or ``--overwrite``):

1. ``teacher``: the family's base model (its ``proxy`` card, else its ``tutor``) pseudo-labels the uncorrected
   images into ``OUT/work/teacher/`` (labels + confidence);
2. ``boundary``: whether the refined pseudo labels place the myelin boundary at half-way intensity
   (:func:`~ads_synth.segmentation.postprocess.place_myelin_boundary`, ``--myelin-boundary``), decided from the
   user's own corrections: the teacher also labels the corrected images (``OUT/work/teacher_corrected/``), and
   the step is kept when it brings those labels closer to the corrections (mean of axon and myelin Dice). Annotators
   draw the sheath's edge differently (TEM's inside the half-way point, sem-dev's at or beyond it,
   docs/results.md); the corrections say which this user draws;
3. ``finetune``: a compact nnU-Net (the base model's plan) starts from the base model's weights (fold 0; trained
   from scratch when the family has no model that segments its target) and trains on the corrected images as full
   labels, repeated so that they make at least half the cases (``--weight``), plus the uncorrected images with
   their confident teacher labels (pixels below ``--min-confidence`` ignored), one fold on every case
   (``fold_all``), ``OUT/model/``; the one builder :func:`~ads_synth.segmentation.model_building.
   build_segmentation_model` (atomic checkpoints, resume from ``checkpoint_latest``);
4. ``relabel``: the refined model pseudo-labels the uncorrected images into ``OUT/pseudo_labels/`` (ADS files and
   confidence maps), with the boundary step when phase 2 kept it;
5. ``card``: the card ``<PAIR>_refined`` (strategy ``refined``; ``postprocess`` records phase 2's choice and the
   Dice that made it) in ``OUT/card/``, installed where ``family train``
   installs (first ``$ADS_SYNTH_MODELS`` folder, else the package's), so ``axondeepseg -t TARGET --pseudo refined``
   works; the original cards are never touched.

Corrected files are only read (:mod:`ads_synth.annotation.corrections` checks them before anything is written).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ads_synth.errors import InputError
from ads_synth.segmentation.warm_start import FINETUNE_LR

STATE_FILE = "refine_state.json"
OWNED = (STATE_FILE, "work", "model", "pseudo_labels", "card")
PHASES = ("teacher", "boundary", "finetune", "relabel", "card")
#: Dataset id of the refine's nnU-Net dataset (``OUT/work/nnunet``).
REFINED_DATASET_ID = 504
#: Default schedule: short, a fine-tune (about 300 steps of the compact network).
DEFAULT_EPOCHS = 12
DEFAULT_ITERATIONS = 25
#: From scratch (a family without a model of its target): nnU-Net's own learning rate, more epochs.
SCRATCH_LR = 1e-2
SCRATCH_EPOCH_FACTOR = 3
#: Rough cost of one compact training step on a 2-core CPU (patch 128, batch 4), for the printed estimate.
SECONDS_PER_STEP = 0.5


@dataclass
class RefineOptions:
    """The options of ``ads-synth refine`` (see the module docstring)."""

    family: str
    corrected: list
    out: Path
    unlabeled: list | None = None
    epochs: int | None = None
    iterations: int | None = None
    weight: int | None = None
    min_confidence: float = 0.5
    pixel_size: float | None = None
    device: str | None = None
    resume: bool = False
    overwrite: bool = False
    register: bool = True
    drop_bare_axons: bool = False
    pseudo_labels: Path | None = None
    verbose: int = 1
    warnings: list = field(default_factory=list)


def _say(opts, text):
    if opts.verbose:
        import sys

        print(f"ads-synth refine: {text}", file=sys.stderr, flush=True)


class RefineRun:
    """One refine: options checked, inputs found and read (nothing written until :meth:`run`)."""

    def __init__(self, opts: RefineOptions):
        from ads_synth.annotation.corrections import check_correction, find_corrections
        from ads_synth.data.images import check_images, check_pixel_size
        from ads_synth.segmentation.pseudo import _samples

        self.opts = opts
        opts.out = Path(opts.out)
        if opts.pixel_size is not None:
            opts.pixel_size = check_pixel_size(opts.pixel_size, "--pixel-size")
        for name in ("epochs", "iterations", "weight"):
            value = getattr(opts, name)
            if value is not None and int(value) < 1:
                raise InputError(f"--{name} {value}: must be at least 1.")
        if not (0.0 <= float(opts.min_confidence) <= 1.0):
            raise InputError(f"--min-confidence {opts.min_confidence}: give a confidence between 0 and 1.")
        if opts.out.exists() and not opts.out.is_dir():
            raise InputError(f"{opts.out}: exists and is not a folder; choose another -o folder.")
        from ads_synth.annotation.family_cards import base_card, family_cards, teacher_card

        self.cards = family_cards(opts.family)
        self.base = base_card(self.cards)
        self.teacher = teacher_card(self.cards)
        any_card = self.base or self.teacher
        self.pair, self.source, self.target = any_card.pair, any_card.source, any_card.target
        samples, uncorrected = find_corrections(opts.corrected, opts.pixel_size)
        check_images([s.image for s in samples])
        self.corrections = [check_correction(s, any_card, opts.drop_bare_axons) for s in samples]
        for c in self.corrections:
            opts.warnings += c.warnings
        corrected = {Path(c.sample.image).resolve() for c in self.corrections}
        sources = opts.unlabeled if opts.unlabeled else uncorrected
        unlabeled = _samples(sources, opts.pixel_size) if sources else []
        self.unlabeled = [(s, px) for s, px in unlabeled if Path(s.image).resolve() not in corrected]
        names = [c.name for c in self.corrections] + [s.name for s, _ in self.unlabeled]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise InputError(f"two images are named {dup!r} (corrected and unlabeled); rename one.")
        if opts.pseudo_labels is not None:
            from ads_synth.segmentation.pseudo import OutputOptions, output_paths

            for s, _ in self.unlabeled:
                for kind in ("axonmyelin", "confidence"):
                    path = output_paths(s.image, Path(opts.pseudo_labels), [], OutputOptions())[kind]
                    if not path.is_file():
                        raise InputError(f"--pseudo-labels {opts.pseudo_labels}: no {path.name}; pseudo-label "
                                         f"{s.image.name} there first (axondeepseg --pseudo ... writes it).")
        for s, px in self.unlabeled:
            if any_card.pixel_size_outside(px):
                low, high = any_card.pixel_size
                raise InputError(f"{s.image}: pixel size {px:g} um is more than 2x outside the {self.pair} family's "
                                 f"range {low:g}-{high:g} um; check the pixel size or leave the image out.")
        from ads_synth.segmentation.predict import read_model_info

        info = read_model_info(self.base.nnunet) if self.base is not None else {}
        if self.base is not None:
            self.pixel_size = float(info.get("pixel_size") or self._translation_u())
            plan = info.get("compact_plan") or {}
        else:
            self.pixel_size = self._translation_u()
            plan = {}
        self.patch = int(plan.get("patch_size", 128))
        self.batch = int(plan.get("batch_size", 4))
        self.init = None
        if self.base is not None:
            folds = sorted(self.base.nnunet.glob("fold_*/checkpoint_final.pth"))
            if not folds:
                raise InputError(f"{self.base.nnunet}: the {self.base.name} model has no trained fold; reinstall "
                                 "the family.")
            self.init = folds[0]
        scratch = self.init is None
        self.epochs = int(opts.epochs or DEFAULT_EPOCHS * (SCRATCH_EPOCH_FACTOR if scratch else 1))
        self.iterations = int(opts.iterations or DEFAULT_ITERATIONS)
        self.lr = SCRATCH_LR if scratch else FINETUNE_LR
        n_pseudo = len(self.unlabeled)
        self.weight = int(opts.weight or max(2, math.ceil(n_pseudo / len(self.corrections))))
        self.config = self._config()

    def _translation_u(self):
        pixel_size = self.teacher.working_pixel_size("U")
        if pixel_size is None:
            raise InputError(f"{self.teacher.translation}: no working pixel size in its config.json; reinstall "
                             f"the {self.pair} family.")
        return pixel_size

    def _config(self) -> dict:
        """What makes the result (no absolute paths): data checksums and the options that change it."""
        from ads_synth.checksums import sha256_file
        from ads_synth.family.state import data_fingerprint

        corrected = [{"name": c.name, "image": sha256_file(c.sample.image),
                      "masks": [sha256_file(p) for _, p in sorted(c.sample.labels.items())]}
                     for c in self.corrections]
        return {
            "family": self.pair,
            "base": self.base.name if self.base is not None else None,
            "base_files": sorted((self.base.files if self.base is not None else {}).values()),
            "corrected": corrected,
            "unlabeled": data_fingerprint([s for s, _ in self.unlabeled]),
            "epochs": self.epochs, "iterations": self.iterations, "weight": self.weight,
            "min_confidence": float(self.opts.min_confidence), "lr": self.lr,
            "drop_bare_axons": bool(self.opts.drop_bare_axons),
            "pseudo_labels": self._given_labels_digest(),
        }

    def _given_labels_digest(self):
        if self.opts.pseudo_labels is None:
            return None
        from ads_synth.checksums import files_digest
        from ads_synth.segmentation.pseudo import OutputOptions, output_paths

        return files_digest(output_paths(s.image, Path(self.opts.pseudo_labels), [], OutputOptions())[k]
                            for s, _ in self.unlabeled for k in ("axonmyelin", "confidence"))

    # -- phases ------------------------------------------------------------------------------------------------
    def _teacher(self):
        from ads_synth.integration.pseudo_action import run_pseudo_labels

        if not self.unlabeled:
            return {"folder": None, "n": 0}
        if self.opts.pseudo_labels is not None:
            return {"folder": str(Path(self.opts.pseudo_labels).resolve()), "n": len(self.unlabeled),
                    "card": "given (--pseudo-labels)"}
        folder = self.out / "work" / "teacher"
        run_pseudo_labels([s.image for s, _ in self.unlabeled], card=self.teacher, out_dir=folder, overwrite=True,
                          pixel_size=self.opts.pixel_size, progress=bool(self.opts.verbose),
                          gpu_id=-1 if (self.opts.device or "cpu") == "cpu" else 0, warn=self._warn)
        return {"folder": "work/teacher", "n": len(self.unlabeled), "card": self.teacher.name}

    def _warn(self, message):
        _say(self.opts, f"warning: {message}")

    def _boundary(self):
        from ads_synth.integration.pseudo_action import run_pseudo_labels

        folder = self.out / "work" / "teacher_corrected"
        run_pseudo_labels([c.sample.image for c in self.corrections], card=self.teacher, out_dir=folder,
                          overwrite=True, pixel_size=self.opts.pixel_size, progress=bool(self.opts.verbose),
                          gpu_id=-1 if (self.opts.device or "cpu") == "cpu" else 0, warn=self._warn)
        return choose_myelin_boundary(self.corrections, folder, _grid_pixel_size(self.teacher))

    def _cases(self, teacher_items):
        from ads_synth.data.images import read_image
        from ads_synth.data.resample import rescale_to_pixel_size
        from ads_synth.segmentation.dataset_export import case_ids
        from ads_synth.segmentation.model_building import pseudo_labeled_cases

        names = [f"corrected-{c.name}-{k}" for c in self.corrections for k in range(self.weight)]
        ids = iter(case_ids(names))
        for c in self.corrections:
            image = rescale_to_pixel_size(read_image(c.sample.image), c.sample.pixel_size, self.pixel_size, order=1)
            labels = rescale_to_pixel_size(c.label_map, c.sample.pixel_size, self.pixel_size, order=0)
            for _ in range(self.weight):
                yield next(ids), image, labels
        if teacher_items:
            yield from pseudo_labeled_cases(teacher_items, self.pixel_size, float(self.opts.min_confidence))

    def _finetune(self):
        from ads_synth.checksums import files_digest
        from ads_synth.segmentation.model_building import TrainSettings, build_segmentation_model
        from ads_synth.segmentation.pseudo import OutputOptions, output_paths

        teacher = self.state.result("teacher")
        items = []
        if teacher and teacher.get("folder"):
            folder = self.out / teacher["folder"]  # relative to OUT, or absolute (--pseudo-labels)
            items = [(s, px, *(output_paths(s.image, folder, [], OutputOptions())[k]
                               for k in ("axonmyelin", "confidence"))) for s, px in self.unlabeled]
        settings = TrainSettings(folds=["all"], trainer="compact", patch_size=self.patch, batch_size=self.batch,
                                 epochs=self.epochs, iterations=self.iterations, val_iterations=2,
                                 device=self.opts.device, num_processes=1, progress=bool(self.opts.verbose))
        info = {
            "pixel_size": self.pixel_size,
            "domain": "U",
            "strategy": "refined",
            "trained_on": {
                "base": self.config["base"],
                "corrected": sorted(c.name for c in self.corrections),
                "corrected_sha256": files_digest(p for c in self.corrections
                                                 for p in [c.sample.image, *c.sample.labels.values()]),
                "unlabeled": sorted(s.name for s, _ in self.unlabeled),
                "unlabeled_sha256": self.config["unlabeled"]["sha256"],
                "weight": self.weight, "min_confidence": float(self.opts.min_confidence),
                "initial_lr": self.lr,
            },
        }
        n_cases = len(self.corrections) * self.weight + len(items)
        model = build_segmentation_model(
            self.out / "model", self.out / "work" / "nnunet", dataset_id=REFINED_DATASET_ID,
            dataset_label="refined", cases=lambda: self._cases(items), n_cases=n_cases, info=info,
            settings=settings, channel_name="U", overwrite=True, ignore_label=True,
            init_weights={"all": self.init} if self.init is not None else None, initial_lr=self.lr)
        return {"model": "model", "cases": n_cases, "steps": self.epochs * self.iterations}

    def _relabel(self):
        from ads_synth.segmentation.pseudo import pseudo_label_images

        if not self.unlabeled:
            return {"folder": None, "n": 0}
        from ads_synth.device import resolve_device

        records = pseudo_label_images([s.image for s, _ in self.unlabeled], translation=None,
                                      segmentation=self.out / "model", strategy="refined",
                                      out_dir=self.out / "pseudo_labels", overwrite=True,
                                      device=resolve_device(self.opts.device), progress=bool(self.opts.verbose),
                                      pixel_size=self.opts.pixel_size,
                                      myelin_boundary=self.state.result("boundary")["myelin_boundary"])
        return {"folder": "pseudo_labels", "n": len(records),
                "mean_confidence": {r["name"]: round(r["mean_confidence"], 4) for r in records}}

    def _card(self):
        from ads_synth.family.cards import install_family
        from ads_synth.cards.create import create_card

        ref = self.base or self.teacher
        seconds = {n: round(self.state.seconds(n), 1) for n in PHASES if self.state.done(n)}
        training = {
            "how": "ads-synth refine (fine-tuned on corrected images plus confident pseudo labels)",
            "base": self.config["base"] or "none (trained from scratch)",
            "corrected": [c.name for c in self.corrections],
            "unlabeled": [s.name for s, _ in self.unlabeled],
            "nnunet": {"configuration": "2d_compact", "patch": self.patch, "folds": ["all"], "epochs": self.epochs,
                       "iterations_per_epoch": self.iterations, "initial_lr": self.lr,
                       "corrected_weight": self.weight, "min_confidence": float(self.opts.min_confidence)},
            "wall_time_s": seconds,
        }
        card = create_card(
            self.out / "card", source=self.source, target=self.target, strategy="refined",
            translation=ref.translation, nnunet=self.out / "model", pixel_size=tuple(ref.pixel_size),
            folds=["all"], training_data=f"{self.pair} family's {self.config['base'] or 'cards'}; "
            f"{len(self.corrections)} corrected {self.target} image(s) (full labels) and "
            f"{len(self.unlabeled)} uncorrected one(s) (confident pseudo labels).",
            model_info=f"{self.source}->{self.target} {self.config['base'] or 'model'} refined with a user's "
            f"corrected segmentations (ads-synth refine); segments {self.target} directly.",
            training=training, overwrite=True, postprocess=self.state.result("boundary"))
        installed = None
        if self.opts.register:
            installed = install_family([card], self.out / "work" / f"{card.name}.zip", overwrite=True)
        return {"card": card.name, "folder": "card", "installed": str(installed) if installed else None}

    # -- the run -----------------------------------------------------------------------------------------------
    def run(self) -> dict:
        from ads_synth.family.state import FamilyState, PhaseRunner

        for line in self.opts.warnings:
            _say(self.opts, f"warning: {line}")
        self.out = self.opts.out
        self.state = FamilyState.open(self.out, self.config, resume=self.opts.resume,
                                      overwrite=self.opts.overwrite, warn=self._warn, state_file=STATE_FILE,
                                      owned=OWNED, what="refine run")
        n = len(self.unlabeled)
        estimates = {"teacher": 15.0 * n, "finetune": 60 + SECONDS_PER_STEP * self.epochs * self.iterations,
                     "relabel": 15.0 * n, "card": 5.0}
        runner = PhaseRunner(self.state, PHASES, estimates, verbose=self.opts.verbose)
        runner.say = lambda text: _say(self.opts, text)
        t0 = time.time()
        results = {name: runner.run(name, getattr(self, f"_{name}")) for name in PHASES}
        return {"card": results["card"]["card"], "installed": results["card"]["installed"],
                "pseudo_labels": str(self.out / "pseudo_labels") if n else None, "n_corrected": len(self.corrections),
                "n_unlabeled": n, "seconds": round(time.time() - t0, 1),
                "phase_seconds": {p: round(self.state.seconds(p), 1) for p in PHASES}}


def _grid_pixel_size(card) -> float:
    """Pixel size (micrometres, target images' units) of the grid ``card``'s network labels target images at."""
    from ads_synth.segmentation.predict import read_model_info

    if card.segments_target:
        pixel_size = read_model_info(card.nnunet).get("pixel_size")
        if pixel_size:
            return float(pixel_size)
    return card.working_pixel_size("U")


def choose_myelin_boundary(corrections, teacher_folder, grid_pixel_size) -> dict:
    """Keep the half-way myelin boundary when it brings the teacher's labels of the corrected images (written in
    ``teacher_folder``) closer to the corrections: mean over images of the mean of axon and myelin Dice. Returns
    the ``postprocess`` record of the card."""
    import numpy as np

    from ads_synth.data.images import read_image
    from ads_synth.segmentation.label_free import read_candidate
    from ads_synth.segmentation.metrics import label_map_metrics
    from ads_synth.segmentation.postprocess import boundary_steps_for, place_myelin_boundary, postprocess_label_map

    without, with_step = [], []
    for c in corrections:
        labels = read_candidate(teacher_folder, c.sample.image)["label_map"]
        px = c.sample.pixel_size
        steps = boundary_steps_for(grid_pixel_size / px)
        placed = postprocess_label_map(place_myelin_boundary(labels, read_image(c.sample.image), steps),
                                       pixel_size=px)
        for pred, out in ((labels, without), (placed, with_step)):
            scores = label_map_metrics(pred, c.label_map)
            out.append(0.5 * (scores["axon"]["dice"] + scores["myelin"]["dice"]))
    dice_without, dice_with = float(np.mean(without)), float(np.mean(with_step))
    return {"myelin_boundary": bool(dice_with > dice_without),
            "chosen_by": "ads-synth refine: the teacher's labels of the corrected images against the corrections "
                         "(mean of axon and myelin Dice), without and with the half-way myelin boundary",
            "dice_without": round(dice_without, 4), "dice_with": round(dice_with, 4),
            "corrected": sorted(c.name for c in corrections)}


def refine(opts: RefineOptions) -> dict:
    """Check everything, then run the phases (module docstring); return a summary dict."""
    return RefineRun(opts).run()


__all__ = ["RefineOptions", "RefineRun", "refine"]
