"""What ``ads-synth family train`` asks for, and every check made before anything is written."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ads_synth.errors import InputError

#: Smallest image side (pixels) a family can learn from: translation and nnU-Net train on tiles of this order.
MIN_IMAGE_SIDE = 128
_MODALITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
#: ``--proxy-start``: the teacher's network (the default) or random weights.
PROXY_STARTS = ("teacher", "scratch")


#: SynDiff preset of ``family train`` (``--preset``): ``compact-cl``, as ``translation train``. Its translation learns
#: the target's contrast on TEM -> SEM within the family's share (run E: +0.81 sd, where ``compact``'s stayed a copy
#: of TEM's), which a modality that inverting cannot imitate needs; with the candidates ranked by their labels' fit to
#: the images (:mod:`ads_synth.segmentation.label_free`), ``auto`` on sem-dev is 0.792 / 0.711 (run F), against
#: 0.790 / 0.710 with ``compact`` (run B) and 0.647 / 0.434 with ``compact-cl`` and the earlier choice (run E);
#: docs/results.md.
FAMILY_PRESET = "compact-cl"


@dataclass
class FamilyOptions:
    """The options of one family run (``ads-synth family train --help`` explains each).

    Attributes
    ----------
    unlabeled : list of str
        U images: files, folders, BIDS or nnU-Net datasets (their labels, if any, are never read).
    target : str
        Name of the new modality (``-t NAME`` afterwards).
    out : str or Path
        Run folder (``OUT/family/`` holds the cards and their files).
    labeled : list of str or None
        Labeled L data; None: the bundled labeled TEM set.
    source : str or None
        Name of the labeled modality; default ``TEM`` for the bundled set (required with ``labeled``).
    device : str or None
    time_budget : float
        Minutes of wall time for the whole run.
    resume, overwrite : bool
    verbose : int
        0: no output but errors; 1: one line per phase and progress bars.
    pixel_size : float or None
        Micrometres per pixel of U images that carry none.
    scale : str or float
        ``auto`` (estimated from fibre sizes) or a number (``1``: the paper's pixel-size rule).
    preset : str or None
        SynDiff preset; default :data:`FAMILY_PRESET`.
    folds : list of int
        nnU-Net folds of every model.
    steps, epochs, proxy_epochs, iterations, patch : int or None
        Overrides of the planned schedule (tests, experts).
    register : bool
        Install the cards where ``ads-synth models install`` puts them.
    train_l_model : bool
        Train the L model even when a shipped one was trained on exactly these labeled images
        (:mod:`ads_synth.family.l_model`); default reuse it.
    rounds : str or int
        Self-training rounds of the proxy: ``auto`` (up to :data:`ads_synth.family.train.MAX_ROUNDS`, while the
        label-free score improves and the budget allows) or a most number of rounds (each kept only if it
        improves).
    proxy_start : {"teacher", "scratch"}
        What the proxy's folds start from: the teacher's network (:mod:`ads_synth.segmentation.warm_start`, the
        default) or random weights.
    """

    unlabeled: list
    target: str
    out: Path
    labeled: list | None = None
    source: str | None = None
    device: str | None = None
    time_budget: float = 45.0
    resume: bool = False
    overwrite: bool = False
    verbose: int = 1
    pixel_size: float | None = None
    scale: object = "auto"
    preset: str | None = None
    folds: list = field(default_factory=lambda: [0, 1])
    steps: int | None = None
    epochs: int | None = None
    proxy_epochs: int | None = None
    iterations: int | None = None
    patch: int = 128
    register: bool = True
    train_l_model: bool = False
    rounds: object = "auto"
    proxy_start: str = "teacher"

    @property
    def pair(self) -> str:
        return f"{self.source}2{self.target}"

    def fingerprint(self) -> dict:
        """The options that change the result (data fingerprints are added by the caller)."""
        return {
            "target": self.target,
            "source": self.source,
            "time_budget": float(self.time_budget),
            "scale": self.scale if self.scale == "auto" else float(self.scale),
            "preset": self.preset,
            "folds": [int(f) for f in self.folds],
            "steps": self.steps,
            "epochs": self.epochs,
            "proxy_epochs": self.proxy_epochs,
            "iterations": self.iterations,
            "patch": int(self.patch),
            "pixel_size": self.pixel_size,
            "train_l_model": bool(self.train_l_model),
            "rounds": self.rounds,
            # recorded only when not the default, so that runs made before the option existed continue
            **({} if self.proxy_start == "teacher" else {"proxy_start": self.proxy_start}),
        }


def _positive_int(value, flag):
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{flag} {value!r}: give a whole number of at least 1.") from None
    if number < 1:
        raise InputError(f"{flag} {value}: give a whole number of at least 1.")
    return number


def check_options(opts) -> FamilyOptions:
    """Check every option before anything is read or written; fill defaults. InputError on the first problem."""
    import math

    from ads_synth.translation.config import list_presets

    opts.target = str(opts.target or "").strip()
    if not _MODALITY.match(opts.target):
        raise InputError(f"--target {opts.target!r}: name the new modality with letters, digits and '-' "
                         "(e.g. CARS or SEM-human).")
    if opts.labeled:
        if not opts.source:
            raise InputError("--source: name the modality of your --labeled images (e.g. --source TEM).")
    else:
        opts.labeled = None
        opts.source = opts.source or "TEM"
    opts.source = str(opts.source).strip()
    if not _MODALITY.match(opts.source):
        raise InputError(f"--source {opts.source!r}: name the labeled modality with letters, digits and '-'.")
    if opts.source.lower() == opts.target.lower():
        raise InputError(f"--target {opts.target}: the same as --source; the new modality needs its own name.")
    try:
        budget = float(opts.time_budget)
    except (TypeError, ValueError):
        raise InputError(f"--time-budget {opts.time_budget!r}: give minutes, e.g. 45.") from None
    if not math.isfinite(budget) or not 1 <= budget <= 7 * 24 * 60:
        raise InputError(f"--time-budget {opts.time_budget}: give minutes from 1 to 10080 (a week).")
    opts.time_budget = budget
    if opts.scale != "auto":
        try:
            scale = float(opts.scale)
        except (TypeError, ValueError):
            raise InputError(f"--scale {opts.scale!r}: give 'auto' or a number such as 1 or 5.") from None
        if not math.isfinite(scale) or not 0.01 <= scale <= 100:
            raise InputError(f"--scale {opts.scale}: give 'auto' or a factor from 0.01 to 100.")
        opts.scale = scale
    opts.preset = opts.preset or FAMILY_PRESET
    if opts.preset not in list_presets():
        raise InputError(f"--preset {opts.preset!r}: choose one of {', '.join(list_presets())}.")
    try:
        opts.folds = sorted({int(f) for f in opts.folds})
    except (TypeError, ValueError):
        raise InputError(f"--folds {opts.folds}: give fold numbers from 0 to 4.") from None
    if not opts.folds or any(f < 0 or f > 4 for f in opts.folds):
        raise InputError(f"--folds {opts.folds}: give fold numbers from 0 to 4.")
    for name in ("steps", "epochs", "proxy_epochs", "iterations"):
        setattr(opts, name, _positive_int(getattr(opts, name), "--" + name.replace("_", "-")))
    opts.patch = _positive_int(opts.patch, "--patch")
    if opts.proxy_start not in PROXY_STARTS:
        raise InputError(f"--proxy-start {opts.proxy_start!r}: give one of {', '.join(PROXY_STARTS)}.")
    if str(opts.rounds).strip().lower() == "auto":
        opts.rounds = "auto"
    else:
        opts.rounds = _positive_int(opts.rounds, "--rounds")
    if opts.patch % 16:
        raise InputError(f"--patch {opts.patch}: give a multiple of 16 (e.g. 128).")
    if opts.pixel_size is not None:
        from ads_synth.data.images import check_pixel_size

        opts.pixel_size = check_pixel_size(opts.pixel_size, "--pixel-size")
    if opts.verbose not in (0, 1):
        raise InputError(f"-v {opts.verbose}: give 0 (quiet) or 1.")
    opts.out = Path(opts.out)
    check_writable(opts.out)
    return opts


def check_writable(out):
    """InputError when ``out`` cannot be created or written (checked on its nearest existing folder)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another -o folder.")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{probe}: is a file, so {out} cannot be made; choose another -o folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{probe}: not writable, so {out} cannot be written; choose another -o folder.")


def labeled_inputs(opts) -> list:
    """The labeled data paths (the bundled set when none are given)."""
    if opts.labeled:
        return [str(p) for p in opts.labeled]
    from ads_synth.data.bundled import labeled_set

    return [str(labeled_set(opts.source))] if opts.source.upper() == "TEM" else _no_bundled(opts.source)


def _no_bundled(source):
    from ads_synth.data.bundled import LABELED_SETS

    raise InputError(f"--source {source}: no labeled {source} set is bundled (bundled: {', '.join(LABELED_SETS)}); "
                     "give your labeled images with --labeled.")


def check_images(samples, what):
    """InputError for an image too small to learn from or unreadable (header only: cheap)."""
    from ads_synth.data.images import image_shape

    for s in samples:
        h, w = image_shape(s.image)
        if min(h, w) < MIN_IMAGE_SIDE:
            raise InputError(f"{s.image}: {w} x {h} pixels is too small to learn a {what} modality from; give images "
                             f"of at least {MIN_IMAGE_SIDE} pixels a side.")


def check_name_free(opts, resuming):
    """InputError when a card of the pair ``SOURCE2TARGET`` exists already: in the package (shipped), or in a
    user folder (unless ``overwrite``). Not checked when continuing a run (its own cards may be registered)."""
    from ads_synth.cards import lookup

    if resuming:
        return
    for card in lookup.list_cards():
        if card.pair.lower() != opts.pair.lower():
            continue
        if card.root.resolve() == lookup.PACKAGE_DIR.resolve():
            raise InputError(f"--target {opts.target}: {card.name} is a model card of the package, so the family "
                             f"{opts.pair} exists; name your modality otherwise (e.g. --target {opts.target}-lab).")
        if not opts.overwrite:
            raise InputError(f"--target {opts.target}: a family {opts.pair} is installed ({card.path}); use "
                             "--overwrite to replace it, or another --target name.")
