"""The model card: its fields (:class:`ModelCard`), reading and validating a card file, and writing one.

A card is a YAML file ``<name>.yaml`` holding one entry in the form of AxonDeepSeg's ``model_cards.yaml``
(``full_name``, ``task``, ``n_classes``, ``model-info``, ``training-data``, ``weights``) plus what a pseudo-label
model needs::

    TEM2SEM_tutor:
      full_name: model_seg_pseudo_TEM2SEM_tutor    # folder name in AxonDeepSeg/models once installed there
      task: myelinated-axon-segmentation
      n_classes: 2
      model-info: ...
      training-data: ...
      weights: {ensemble: https://.../TEM2SEM_tutor.zip, single_fold: ~}   # archive of this card and its files
                                  # (ensemble: several folds; single_fold: one, as in ADS's cards)
      source: TEM                 # labeled modality L
      target: SEM                 # unlabeled modality U
      strategy: tutor             # tutor (nnU-Net trained on translated L), adapt (U translated to L first) or
                                  # proxy (nnU-Net self-trained on U's pseudo labels + translated L)
      pixel_size: {min: 0.07, max: 0.18}        # micrometres per pixel of the U images it was trained on
      translation: TEM2SEM/translation          # SynDiff model folder (config.json + weights.pt)
      nnunet: TEM2SEM/nnunet_tutor              # nnU-Net v2 trained model folder (dataset.json, plans.json, fold_*)
      folds: [all]                # nnU-Net folds used; ~ for every fold_* folder
      training: {...}             # how it was trained (free form)
      scores: {...}               # how well it does (free form)
      files:                      # sha256 of every file of the card, paths relative to the card's folder
        TEM2SEM/translation/config.json: 3f5a...

Only PyYAML, the standard library, the foundation and the strategy registry are used here (no torch).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from ads_synth.atomic import atomic_write_text
from ads_synth.errors import InputError
from ads_synth.segmentation.strategies import get_strategy, strategy_names

#: Prefix of a card's folder name among AxonDeepSeg's models.
ADS_PREFIX = "model_seg_pseudo_"
#: ``--pseudo auto``: the card of a pair that records a label-free choice of its path (:attr:`ModelCard.auto`).
AUTO = "auto"

#: What a card name (and ``full_name``) may hold.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_MODALITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REQUIRED = ("source", "target", "strategy", "pixel_size", "translation", "nnunet", "files")


@dataclass(frozen=True)
class ModelCard:
    """One pseudo-label model of the family, as read from its card.

    Attributes
    ----------
    name : str
        Card name (the YAML file's stem), e.g. ``'TEM2SEM_tutor'``.
    path : Path
        The card file.
    source, target : str
        Labeled (L) and unlabeled (U) modality.
    strategy : str
        A shippable registered strategy (:mod:`ads_synth.segmentation.strategies`): ``'tutor'``, ``'adapt'``,
        ``'proxy'``.
    pixel_size : tuple of float
        ``(min, max)`` micrometres per pixel of the U images the model was trained on.
    translation, nnunet : Path
        Absolute paths of the SynDiff model folder and of the nnU-Net trained model folder.
    folds : tuple of str or None
        nnU-Net folds to use (``('all',)``, ``('0', '1')``...); None for every ``fold_*`` folder.
    files : dict
        Path relative to the card's folder -> sha256 hex digest.
    full_name : str
        Folder name of the model among AxonDeepSeg's models.
    url : str or None
        Where the archive of the card and its files can be downloaded (``weights.ensemble`` for a several-fold
        model, ``weights.single_fold`` for a one-fold one, as in AxonDeepSeg's cards).
    entry : dict
        The card's whole entry as read (``model-info``, ``training-data``, ``training``, ``scores``...).
    """

    name: str
    path: Path
    source: str
    target: str
    strategy: str
    pixel_size: tuple
    translation: Path
    nnunet: Path
    folds: tuple | None
    files: dict
    full_name: str
    url: str | None = None
    entry: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def root(self) -> Path:
        """The folder of the card file; the card's file paths are relative to it."""
        return self.path.parent

    @property
    def pair(self) -> str:
        """The modality pair, e.g. ``'TEM2SEM'``."""
        return f"{self.source}2{self.target}"

    @property
    def segments_target(self) -> bool:
        """True when the nnU-Net segments target images directly (tutor, proxy): AxonDeepSeg can run it alone."""
        return get_strategy(self.strategy, shippable=True).segments_target

    @property
    def auto(self) -> dict | None:
        """The label-free choice a card made by ``ads-synth family train`` records (``<PAIR>_auto``): which path
        was chosen and the scores that chose it; None for the cards of one path."""
        value = self.entry.get(AUTO)
        return value if isinstance(value, dict) else None

    def working_pixel_size(self, domain="U"):
        """The translation's working pixel size of ``domain`` (``"L"`` or ``"U"``) from its ``config.json``, read
        without loading the model; None when the file or the value is missing."""
        import json

        try:
            config = json.loads((Path(self.translation) / "config.json").read_text(encoding="utf-8"))
            return float(config["extra"]["pixel_size"][domain])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def myelin_boundary(self) -> bool:
        """Whether this card's pseudo labels have their myelin boundary placed at half-way intensity
        (``postprocess: {myelin_boundary: true}``; ``ads-synth refine`` decides it from the user's corrections)."""
        value = self.entry.get("postprocess")
        return bool(value.get("myelin_boundary")) if isinstance(value, dict) else False

    @property
    def description(self) -> str:
        """A short description: ``'TEM -> SEM, tutor'``."""
        return f"{self.source} -> {self.target}, {self.strategy}"

    def file_path(self, relative) -> Path:
        """Absolute path of one of the card's files."""
        return self.root / PurePosixPath(relative)

    def missing_files(self) -> list:
        """Relative paths of the card's files that are not on disk."""
        return [rel for rel in self.files if not self.file_path(rel).is_file()]

    def is_installed(self) -> bool:
        """True when every file of the card is on disk (:func:`ads_synth.cards.verify.verify_card` checks sums)."""
        return not self.missing_files()

    def pixel_size_outside(self, pixel_size, factor=2.0) -> bool:
        """True when ``pixel_size`` is more than ``factor`` times outside the card's pixel size range."""
        low, high = self.pixel_size
        return pixel_size < low / factor or pixel_size > high * factor


def _relative(path, value, what):
    """Check a card path (relative, forward slashes, inside the card folder) and return it normalised."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{path}: {what} must be a path relative to the card's folder; fix the card.")
    rel = PurePosixPath(value.strip().replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or str(rel) in ("", "."):
        raise InputError(f"{path}: {what} {value!r} must stay inside the card's folder (no '..', not absolute).")
    return str(rel)


def _pixel_range(path, value):
    if isinstance(value, dict):
        low, high = value.get("min"), value.get("max")
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = value
    else:
        low = high = value
    try:
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        raise InputError(
            f"{path}: pixel_size must be {{min: <um/px>, max: <um/px>}} (the target images' range); fix the card."
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high < low:
        raise InputError(f"{path}: pixel_size range {low}..{high} is not a positive range; fix the card.")
    return (low, high)


def card_from_entry(path, name, entry) -> ModelCard:
    """Build a :class:`ModelCard` from a card entry (a dict) read from ``path``; InputError when invalid."""
    path = Path(path)
    if not isinstance(entry, dict):
        raise InputError(f"{path}: the entry {name!r} is not a mapping of fields; fix the card.")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise InputError(f"{path}: the card lacks {', '.join(missing)}; add them (see ads_synth_models/README.md).")
    source, target = str(entry["source"]), str(entry["target"])
    for what, value in (("source", source), ("target", target)):
        if not _MODALITY.match(value):
            raise InputError(f"{path}: {what} {value!r} must be a modality name such as TEM or SEM; fix the card.")
    strategy = str(entry["strategy"])
    if strategy not in strategy_names(shippable=True):
        raise InputError(f"{path}: strategy {strategy!r} must be one of {', '.join(strategy_names(shippable=True))}; "
                         "fix the card.")
    files = entry["files"]
    if not isinstance(files, dict) or not files:
        raise InputError(f"{path}: files must map every file of the card to its sha256; fix the card.")
    checked = {}
    for rel, digest in files.items():
        rel = _relative(path, rel, "file")
        digest = str(digest).lower()
        if not _SHA256.match(digest):
            raise InputError(f"{path}: the sha256 of {rel} is not 64 hex digits; fix the card.")
        checked[rel] = digest
    folds = entry.get("folds")
    if folds is not None:
        folds = tuple(str(f) for f in (folds if isinstance(folds, (list, tuple)) else [folds]))
    full_name = str(entry.get("full_name") or ADS_PREFIX + name)
    if not NAME_PATTERN.match(full_name):
        raise InputError(f"{path}: full_name {full_name!r} may hold letters, digits, '_' and '-' only; fix the card.")
    weights = entry.get("weights") or {}
    url = weights.get("single_fold") or weights.get("ensemble") if isinstance(weights, dict) else None
    return ModelCard(
        name=name,
        path=path,
        source=source,
        target=target,
        strategy=strategy,
        pixel_size=_pixel_range(path, entry["pixel_size"]),
        translation=path.parent / _relative(path, entry["translation"], "translation"),
        nnunet=path.parent / _relative(path, entry["nnunet"], "nnunet"),
        folds=folds,
        files=checked,
        full_name=full_name,
        url=str(url) if url else None,
        entry=dict(entry),
    )


def load_card(path) -> ModelCard:
    """Read the card file ``path`` (one entry, named as the file's stem); InputError when invalid."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"{path}: cannot read the model card ({err.strerror or err}).") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise InputError(f"{path}: the model card is not valid YAML{line}; fix the card.") from None
    if not isinstance(data, dict) or len(data) != 1:
        raise InputError(f"{path}: a model card holds exactly one entry named like the file ({path.stem}); fix it.")
    (name, entry), = data.items()
    if str(name) != path.stem or not NAME_PATTERN.match(path.stem):
        raise InputError(
            f"{path}: the card's entry is named {name!r} but the file is {path.name}; name the entry {path.stem!r} "
            f"(letters, digits, '_' and '-')."
        )
    return card_from_entry(path, str(name), entry)


def card_entry(
    *,
    source,
    target,
    strategy,
    pixel_size,
    translation,
    nnunet,
    files,
    name,
    folds=None,
    model_info=None,
    training_data=None,
    training=None,
    scores=None,
    url=None,
    n_folds=None,
    postprocess=None,
) -> dict:
    """The card entry (a dict in ADS's model card form) for the given fields.

    ``postprocess``, when given, records how the card's pseudo labels are post-processed beyond the default
    (:attr:`ModelCard.myelin_boundary`) and what chose it.

    ``url`` goes to ``weights.single_fold`` for a one-fold model and to ``weights.ensemble`` otherwise (``n_folds``:
    how many folds the model has; default ``len(folds)``, several when unknown)."""
    low, high = pixel_size if isinstance(pixel_size, (list, tuple)) else (pixel_size, pixel_size)
    # in ADS's cards, single_fold is a one-fold model and ensemble a several-fold one
    n_folds = n_folds if n_folds is not None else (len(list(folds)) if folds is not None else None)
    one_fold = n_folds == 1
    weights = {"ensemble": None if one_fold else url, "single_fold": url if one_fold else None}
    return {
        "full_name": ADS_PREFIX + name,
        "task": "myelinated-axon-segmentation",
        "n_classes": 2,
        "model-info": model_info
        or f"Pseudo-label model for {target} images from labeled {source} images by unpaired image translation "
        f"(SynDiff) and nnU-Net v2, {strategy} strategy.",
        "training-data": training_data or f"Labeled {source} images and unlabeled {target} images.",
        "weights": weights,
        "source": source,
        "target": target,
        "strategy": strategy,
        "pixel_size": {"min": float(low), "max": float(high)},
        "translation": translation,
        "nnunet": nnunet,
        "folds": list(folds) if folds is not None else None,
        "training": training or {},
        "scores": scores or {},
        **({"postprocess": dict(postprocess)} if postprocess else {}),
        "files": files,
    }


def write_card(path, name, entry) -> Path:
    """Write a card file (one entry) atomically; return its path."""
    path = Path(path)
    text = (
        "# ads-synth model card (AxonDeepSeg model_cards.yaml form); see ads_synth_models/README.md\n"
        + yaml.safe_dump({name: entry}, sort_keys=False, default_flow_style=False, width=120)
    )
    return atomic_write_text(path, text)

