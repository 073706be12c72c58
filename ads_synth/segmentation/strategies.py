"""Pseudo-label strategies: one registered, self-describing object per strategy (no torch, no nnU-Net).

A :class:`Strategy` says what the engine (:func:`ads_synth.segmentation.pseudo._run_jobs`), the training
orchestration (:mod:`ads_synth.segmentation.pseudo_training`), the model cards, the ``axondeepseg --pseudo``
choices and the evaluation need to know; none of them lists strategy names. A new strategy is one
:func:`register_strategy` call (plus, for an intensity baseline, its transform in :mod:`ads_synth.data.intensity`)::

    register_strategy(Strategy(name="gamma", title="L model on gamma-corrected U", segments="L", model="L",
                               intensity=my_transform, order=60))

Built-in strategies, for a U image:

========== ======== ============ ========= ======================================================================
name       segments translated   model     what it is
========== ======== ============ ========= ======================================================================
tutor      U        no           tutor     nnU-Net trained on ``{X_L->U, Y_L}`` segments the U image (a card)
adapt      L        U2L          L         the U image translated into L's look, segmented by the L model (a card)
combined   U        (pooled)     --        tutor and adapt pooled fold by fold (written when both run)
proxy      U        no           proxy     self-trained on U's confident ``combined`` labels (a card)
refined    U        no           refined   the proxy fine-tuned on a user's corrected images (``ads-synth refine``)
direct     L        no           L         the L model on the U image as it is: the floor of the comparison
invert     L        no           L         the L model on the intensity-inverted U image (baseline; a card)
histmatch  L        no           L         the L model on U histogram-matched to L's intensities (baseline)
========== ======== ============ ========= ======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ads_synth.errors import InputError

DOMAINS = ("L", "U")
DIRECTIONS = ("L2U", "U2L")


@dataclass(frozen=True)
class Strategy:
    """One way to pseudo-label U images.

    Attributes
    ----------
    name : str
        ``--strategy`` / ``--pseudo`` value and output folder name.
    title : str
        Human name (tables, figures).
    segments : {"L", "U"}
        The domain of the images its segmentation model was trained on (and so reads).
    model : str or None
        Which model it applies: ``"L"`` (trained on the labeled images, shared by every L strategy), or the
        strategy's own model folder name under ``OUT/models/`` (``"tutor"``, ``"proxy"``); None when it has no
        model of its own (``pooled_from``).
    translate : {"U2L", "L2U"} or None
        Direction the U image is translated in before segmentation; None for none.
    teachers : tuple of str
        Strategies whose (pooled) pseudo labels its model learns from; they run first.
    pooled_from : tuple of str
        Strategies whose fold statistics are pooled into this one (no model of its own).
    shippable : bool
        A model card may ship it (``axondeepseg --pseudo`` offers it).
    intensity : callable or None
        ``intensity(image, reference) -> image`` applied to the U image before a no-translation strategy
        segments it (``reference``: L's intensity quantiles, see :mod:`ads_synth.data.intensity`).
    needs_reference : bool
        ``intensity`` needs L's reference intensities.
    in_all : bool
        Part of ``--strategy all``.
    order : int
        Position in tables and figures (lower first).
    made_by : str or None
        The command that trains its model when ``ads-synth pseudo`` cannot (``refined``: ``ads-synth refine``,
        from corrected images); ``--strategy`` then refuses it, while cards, ``--pseudo`` and the engine use it.
    """

    name: str
    title: str
    segments: str
    model: str | None
    translate: str | None = None
    teachers: tuple = ()
    pooled_from: tuple = ()
    shippable: bool = False
    intensity: Callable | None = None
    needs_reference: bool = False
    in_all: bool = False
    order: int = 100
    made_by: str | None = None

    def __post_init__(self):
        if self.segments not in DOMAINS:
            raise ValueError(f"strategy {self.name!r}: segments must be 'L' or 'U'")
        if self.translate is not None and self.translate not in DIRECTIONS:
            raise ValueError(f"strategy {self.name!r}: translate must be None, 'L2U' or 'U2L'")
        if self.translate is not None and self.segments != self.translate[-1]:
            raise ValueError(f"strategy {self.name!r}: translating {self.translate} gives {self.translate[-1]} "
                             f"images, not {self.segments}")
        if self.intensity is not None and self.translate is not None:
            raise ValueError(f"strategy {self.name!r}: an intensity transform is for no-translation baselines")
        if (self.model is None) != bool(self.pooled_from):
            raise ValueError(f"strategy {self.name!r}: give a model, or the strategies it pools (not both)")

    @property
    def selectable(self) -> bool:
        """True when ``--strategy`` may name it (pooled strategies are written, not asked for)."""
        return not self.pooled_from

    @property
    def segments_target(self) -> bool:
        """True when its model segments U images directly: a plain AxonDeepSeg model for U."""
        return self.segments == "U" and self.translate is None and self.model is not None

    @property
    def on_translation_grid(self) -> bool:
        """An L model reading untranslated U images: the U image is read on the translation model's grid
        (U's working pixel size read as L's), exactly the adaptation path minus the translation."""
        return self.segments == "L" and self.translate is None

    @property
    def trains_on_target(self) -> bool:
        """Its model learns from other strategies' pseudo labels (self-training)."""
        return bool(self.teachers)


_STRATEGIES: dict = {}


def register_strategy(strategy, replace=False):
    """Register ``strategy`` (a :class:`Strategy`); registering a name twice is an error unless ``replace``."""
    if not isinstance(strategy, Strategy):
        raise TypeError(f"register_strategy takes a Strategy, not {type(strategy).__name__}")
    if strategy.name in _STRATEGIES and not replace:
        raise ValueError(f"strategy {strategy.name!r} is already registered")
    for other in strategy.teachers + strategy.pooled_from:
        if other not in _STRATEGIES:
            raise ValueError(f"strategy {strategy.name!r}: register {other!r} first")
    _STRATEGIES[strategy.name] = strategy
    return strategy


def unregister_strategy(name):
    """Remove a registered strategy (tests, plugins)."""
    _STRATEGIES.pop(name, None)


def list_strategies(*, selectable=None, shippable=None) -> list:
    """Registered strategies in table order, optionally only the selectable / shippable ones."""
    out = sorted(_STRATEGIES.values(), key=lambda s: (s.order, s.name))
    if selectable is not None:
        out = [s for s in out if s.selectable == selectable]
    if shippable is not None:
        out = [s for s in out if s.shippable == shippable]
    return out


def strategy_names(**filters) -> tuple:
    """Names of :func:`list_strategies` (same filters)."""
    return tuple(s.name for s in list_strategies(**filters))


def get_strategy(name, what="--strategy", **filters) -> Strategy:
    """The registered strategy ``name``; InputError naming the choices (``what``: the option) when unknown."""
    choices = strategy_names(**filters) if filters else strategy_names(selectable=True)
    if name not in _STRATEGIES or name not in choices:
        raise InputError(f"{what} {name!r}: choose one of {', '.join(choices)}.")
    return _STRATEGIES[name]


def titles() -> dict:
    """``{name: title}`` of every registered strategy."""
    return {s.name: s.title for s in list_strategies()}


def parse_strategies(strategies) -> list:
    """``--strategy`` values -> ordered unique strategy names.

    ``all`` means the strategies with ``in_all``; a strategy with ``teachers`` adds them and runs after every
    strategy without teachers.
    """
    if isinstance(strategies, str):
        strategies = [strategies]
    out = []
    for value in strategies:
        names = [s.name for s in list_strategies() if s.in_all] if value == "all" else [value]
        for name in names:
            made_by = get_strategy(name).made_by
            if made_by:
                raise InputError(f"--strategy {name}: its model is made by `{made_by}`, not by this command; "
                                 f"run {made_by}, then axondeepseg --pseudo {name}.")
            if name not in out:
                out.append(name)
    if not out:
        raise InputError(f"--strategy: give one of {', '.join(strategy_names(selectable=True))} or all.")
    first = [n for n in out if not _STRATEGIES[n].teachers]
    later = [n for n in out if _STRATEGIES[n].teachers]
    for name in later:
        first += [t for t in _STRATEGIES[name].teachers if t not in first]
    return first + later


def pooled_strategies(names) -> list:
    """Registered pooled strategies whose sources are all in ``names``."""
    return [s for s in list_strategies() if s.pooled_from and all(p in names for p in s.pooled_from)]


def invert(image, reference=None):
    """:func:`ads_synth.data.intensity.invert`, imported when used (this module stays standard-library only)."""
    from ads_synth.data import intensity

    return intensity.invert(image, reference)


def histogram_match(image, reference):
    """:func:`ads_synth.data.intensity.histogram_match`, imported when used."""
    from ads_synth.data import intensity

    return intensity.histogram_match(image, reference)


def _builtins():
    for s in (
        Strategy("tutor", "Tutorship (L->U)", segments="U", model="tutor", shippable=True, in_all=True, order=10),
        Strategy("adapt", "Adaptation (U->L)", segments="L", model="L", translate="U2L", shippable=True,
                 in_all=True, order=20),
        Strategy("combined", "Tutorship + adaptation", segments="U", model=None, pooled_from=("tutor", "adapt"),
                 order=30),
        Strategy("proxy", "Proxy (self-trained on U)", segments="U", model="proxy", teachers=("tutor", "adapt"),
                 shippable=True, order=40),
        Strategy("refined", "Refined with corrected images", segments="U", model="refined", shippable=True,
                 order=45, made_by="ads-synth refine"),
        Strategy("direct", "L model applied directly", segments="L", model="L", in_all=True, shippable=True,
                 order=50),
        Strategy("invert", "L model on inverted U", segments="L", model="L", intensity=invert, shippable=True,
                 order=60),
        Strategy("histmatch", "L model on U histogram-matched to L", segments="L", model="L",
                 intensity=histogram_match, needs_reference=True, shippable=True, order=70),
    ):
        register_strategy(s)


_builtins()
#: The floor of the evaluation (dashed line in figures).
FLOOR = "direct"
