"""Model cards of the ads-synth model family: find, read, verify, create, pack and install them.

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

Cards are looked up in the folders of the environment variable ``ADS_SYNTH_MODELS`` (``os.pathsep``-separated;
the first one is where archives are installed by default) and then in this package's folder; a card in an earlier
folder hides one of the same name in a later folder. Only PyYAML and the standard library are used here.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from ads_synth.atomic import atomic_write_text
from ads_synth.checksums import sha256_file  # noqa: F401 (re-exported: cards.sha256_file)
from ads_synth.errors import InputError
from ads_synth.segmentation.strategies import get_strategy, strategy_names
from ads_synth.translation.formats import is_run_dir, run_model_dir

#: Environment variable naming user folders of model cards.
ENV_VAR = "ADS_SYNTH_MODELS"
#: The package's own card folder.
PACKAGE_DIR = Path(__file__).resolve().parent
#: Prefix of a card's folder name among AxonDeepSeg's models.
ADS_PREFIX = "model_seg_pseudo_"
#: ``--pseudo auto``: the card of a pair that records a label-free choice of its path (:attr:`ModelCard.auto`).
AUTO = "auto"
#: Marker file written into a model folder that ads-synth installed into AxonDeepSeg/models.
ADS_MARKER = ".ads_synth_card"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
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
        """True when every file of the card is on disk (checksums are checked by :func:`verify_card`)."""
        return not self.missing_files()

    def pixel_size_outside(self, pixel_size, factor=2.0) -> bool:
        """True when ``pixel_size`` is more than ``factor`` times outside the card's pixel size range."""
        low, high = self.pixel_size
        return pixel_size < low / factor or pixel_size > high * factor


# ----------------------------------------------------------------------------------------------------------------
# where cards are
# ----------------------------------------------------------------------------------------------------------------
def user_dirs() -> list:
    """The folders named by ``$ADS_SYNTH_MODELS``, in order (empty when unset)."""
    value = os.environ.get(ENV_VAR, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def model_dirs() -> list:
    """Folders searched for cards: ``$ADS_SYNTH_MODELS`` folders first, then the package's folder."""
    dirs = []
    for d in user_dirs() + [PACKAGE_DIR]:
        if d not in dirs:
            dirs.append(d)
    return dirs


def default_install_dir() -> Path:
    """Where archives are installed: the first ``$ADS_SYNTH_MODELS`` folder, else the package's folder."""
    dirs = user_dirs()
    return dirs[0] if dirs else PACKAGE_DIR


# ----------------------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------------------
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
    if not _NAME.match(full_name):
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
    if str(name) != path.stem or not _NAME.match(path.stem):
        raise InputError(
            f"{path}: the card's entry is named {name!r} but the file is {path.name}; name the entry {path.stem!r} "
            f"(letters, digits, '_' and '-')."
        )
    return card_from_entry(path, str(name), entry)


#: Card files skipped by the last :func:`list_cards` (card name -> the one-line reason), and those warned about.
_BROKEN = {}
_WARNED = set()


def _warn_broken(path, message):
    """One warning line on stderr per broken card file (and version of it) in a process."""
    import sys

    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        key = (str(path), None)
    if key not in _WARNED:
        _WARNED.add(key)
        print(f"warning: {message} (card skipped; the other cards are still used)", file=sys.stderr)


def list_cards(dirs=None, warn=True) -> list:
    """All cards in ``dirs`` (default :func:`model_dirs`); a card hides later ones of the same name.

    Returns the cards sorted by name. A card file that cannot be read is skipped with one warning line naming it
    (so one broken file does not block the valid cards; ``warn=False``: no warning); :func:`get_card` reports it
    when asked for by name.
    """
    found = {}
    _BROKEN.clear()
    for folder in dirs if dirs is not None else model_dirs():
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.yaml")):
            if path.stem not in found:
                try:
                    found[path.stem] = load_card(path)
                except InputError as err:
                    _BROKEN.setdefault(path.stem, str(err))
                    if warn:
                        _warn_broken(path, err)
    return [found[name] for name in sorted(found)]


def _describe(cards):
    return "; ".join(f"{c.name} ({c.description})" for c in cards) or "none"


def get_card(name, dirs=None) -> ModelCard:
    """The card called ``name``; InputError listing the cards found when there is none."""
    cards = list_cards(dirs, warn=False)
    for card in cards:
        if card.name == name:
            return card
    if name in _BROKEN:
        raise InputError(_BROKEN[name])
    raise InputError(
        f"no model card named {name!r}; available: {_describe(cards)} (see `ads-synth models list`)."
    )


def find_card(source, target, strategy, dirs=None) -> ModelCard:
    """The card for ``source -> target`` with ``strategy`` (case-insensitive modality names).

    InputError naming the available pairs when there is none.
    """
    cards = list_cards(dirs)
    auto = str(strategy) == AUTO
    for card in cards:
        if (card.source.lower(), card.target.lower()) != (str(source).lower(), str(target).lower()):
            continue
        if (card.auto is not None) == auto and (auto or card.strategy == str(strategy)):
            return card
    raise InputError(
        f"no pseudo-label model for {source} -> {target} ({strategy}); available: {_describe(cards)}; "
        f"install one with `ads-synth models install --archive FILE.zip` or add a card to ${ENV_VAR}."
    )


def require_files(card) -> ModelCard:
    """Return ``card`` if all its files are on disk; else InputError saying how to install them."""
    missing = card.missing_files()
    if missing:
        raise InputError(
            f"{card.path}: model card {card.name} points at {len(missing)} missing file(s) (e.g. "
            f"{card.file_path(missing[0])}); install them with `ads-synth models install {card.name}` "
            f"(or `--archive FILE.zip`)."
        )
    for what, folder in (("translation", card.translation), ("nnunet", card.nnunet)):
        if not folder.is_dir():
            raise InputError(
                f"{card.path}: the {what} folder {folder} of model card {card.name} does not exist; "
                f"fix the card or reinstall it with `ads-synth models install {card.name}`."
            )
    return card


# ----------------------------------------------------------------------------------------------------------------
# checksums
# ----------------------------------------------------------------------------------------------------------------
def verify_card(card) -> list:
    """Check every file of ``card`` against its sha256; return the problems (empty when all is well)."""
    problems = []
    for rel, expected in card.files.items():
        path = card.file_path(rel)
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(path) != expected:
            problems.append(f"{rel}: checksum mismatch")
    for what, folder in (("translation", card.translation), ("nnunet", card.nnunet)):
        if not folder.is_dir():
            problems.append(f"{what} folder {folder.relative_to(card.root)}: missing")
    return problems


#: Relative difference allowed between pixel sizes that the card, ``ads_synth.json`` and the translation config
#: each state (cards round them to 3 significant digits).
PIXEL_SIZE_RTOL = 0.01


def _close(a, b, rtol=PIXEL_SIZE_RTOL):
    return abs(float(a) - float(b)) <= rtol * max(abs(float(a)), abs(float(b)))


def pixel_size_problems(card) -> list:
    """Cross-check the pixel sizes a card states in three places; return the disagreements (empty when none).

    * the translation config's working pixel sizes (``extra.pixel_size``: ``L``, ``U``) exist;
    * the nnU-Net folder's ``ads_synth.json`` names the domain its strategy segments, and a model of U
      (``tutor`` / ``proxy``) works at U's working pixel size; an L model (``adapt``, ``invert``) may work at a
      pixel size of its own (a shipped L model reused by ``family train``): the engine rescales the translation's
      L grid to it;
    * the card's ``pixel_size`` range (the U images it was trained on) holds U's working pixel size;
    * ``training.translation.working_pixel_size_um`` (if the card records it) matches the translation config.
    Files that are missing are left to :func:`verify_card`.
    """
    import json

    problems = []
    config = card.translation / "config.json"
    if not config.is_file():
        return problems
    try:
        work = json.loads(config.read_text(encoding="utf-8"))["extra"]["pixel_size"]
        work = {"L": float(work["L"]), "U": float(work["U"])}
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{config.relative_to(card.root)}: no working pixel sizes (extra.pixel_size L and U)"]
    segments = get_strategy(card.strategy, shippable=True).segments
    info_path = card.nnunet / "ads_synth.json"
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
        rel = info_path.relative_to(card.root)
        if "pixel_size" not in info:
            problems.append(f"{rel}: no pixel_size")
        elif segments == "U" and not _close(info["pixel_size"], work[segments]):
            problems.append(f"{rel}: pixel_size {info['pixel_size']:g} um differs from the translation's working "
                            f"pixel size of {segments} ({work[segments]:g} um) that a {card.strategy} model "
                            "segments at")
        if info.get("domain") not in (None, segments):
            problems.append(f"{rel}: domain {info['domain']!r}, but a {card.strategy} model segments {segments}")
    low, high = card.pixel_size
    if not (low * (1 - PIXEL_SIZE_RTOL) <= work["U"] <= high * (1 + PIXEL_SIZE_RTOL)):
        problems.append(f"card pixel_size {low:g}-{high:g} um does not hold the translation's U working pixel size "
                        f"{work['U']:g} um (the median of the U images it was trained on)")
    stated = ((card.entry.get("training") or {}).get("translation") or {})
    stated = stated.get("working_pixel_size_um") if isinstance(stated, dict) else None
    if isinstance(stated, dict):
        for modality, domain in ((card.source, "L"), (card.target, "U")):
            if modality in stated and not _close(stated[modality], work[domain]):
                problems.append(f"card training.translation.working_pixel_size_um {modality} {stated[modality]} "
                                f"differs from the translation config ({work[domain]:g})")
    return problems


def require_verified(card) -> ModelCard:
    """Return ``card`` if :func:`verify_card` finds no problem; else InputError naming the first one."""
    problems = verify_card(card)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(
            f"{card.path}: model card {card.name} failed verification: {problems[0]}{more}; reinstall it with "
            f"`ads-synth models install {card.name}` (or `--archive FILE.zip`)."
        )
    return card


# ----------------------------------------------------------------------------------------------------------------
# creating and packing cards
# ----------------------------------------------------------------------------------------------------------------
def _translation_files(folder):
    """The files of a SynDiff model folder worth shipping: its top-level files."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _nnunet_files(folder):
    """The files of an nnU-Net trained model folder that prediction needs.

    Top-level JSON files (``dataset.json``, ``plans.json``...) and, per ``fold_*`` folder, the checkpoints
    ``checkpoint_best.pth`` / ``checkpoint_final.pth`` (``checkpoint_latest.pth`` only when neither exists).
    """
    files = sorted(p for p in folder.glob("*.json") if p.is_file())
    for fold in sorted(p for p in folder.glob("fold_*") if p.is_dir()):
        chosen = [fold / n for n in ("checkpoint_best.pth", "checkpoint_final.pth") if (fold / n).is_file()]
        if not chosen:
            chosen = sorted(fold.glob("*.pth"))[-1:]
        files.extend(chosen)
    return files


def _copy_tree_files(files, src_root, dst_root):
    out = []
    for f in files:
        target = dst_root / f.relative_to(src_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and os.path.samefile(f, target):
            pass
        elif f.suffix == ".pth":
            from ads_synth.segmentation.predict import export_inference_checkpoint

            export_inference_checkpoint(f, target)
        else:
            shutil.copy2(f, target)
        out.append(target)
    return out


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
) -> dict:
    """The card entry (a dict in ADS's model card form) for the given fields.

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


def create_card(
    dest,
    *,
    source,
    target,
    strategy,
    translation,
    nnunet,
    pixel_size,
    folds=None,
    name=None,
    model_info=None,
    training_data=None,
    training=None,
    scores=None,
    url=None,
    overwrite=False,
) -> ModelCard:
    """Copy a translation model folder and an nnU-Net model folder into ``dest`` and write their card.

    Files go to ``dest/<source>2<target>/translation/`` and ``dest/<source>2<target>/nnunet_<strategy>/`` (see
    :func:`_nnunet_files` for what is copied of the nnU-Net folder); the card ``dest/<name>.yaml`` (default name
    ``<source>2<target>_<strategy>``) lists the sha256 of every copied file. InputError for bad arguments or an
    existing card without ``overwrite``.
    """
    dest = Path(dest)
    name = name or f"{source}2{target}_{strategy}"
    if not _NAME.match(name):
        raise InputError(f"card name {name!r} may hold letters, digits, '_' and '-' only; choose another name.")
    if strategy not in strategy_names(shippable=True):
        raise InputError(f"strategy {strategy!r} must be one of {', '.join(strategy_names(shippable=True))}.")
    translation, nnunet = Path(translation), Path(nnunet)
    if is_run_dir(translation):  # the folder ads-synth pseudo --translation accepts: ship its best/ (or last/)
        shipped = run_model_dir(translation)
        if shipped is None:
            raise InputError(f"{translation}: this training run has saved no model yet (best/ or last/); wait for "
                             "its first scoring or checkpoint.")
        translation = shipped
    if not translation.is_dir() or not _translation_files(translation):
        raise InputError(f"{translation}: not a translation model folder (config.json + weights); check the path.")
    if not nnunet.is_dir() or not (nnunet / "dataset.json").is_file() or not list(nnunet.glob("fold_*")):
        raise InputError(
            f"{nnunet}: not an nnU-Net trained model folder (dataset.json, plans.json, fold_*); check the path."
        )
    card_path = dest / f"{name}.yaml"
    if card_path.exists() and not overwrite:
        raise InputError(f"{card_path}: a card of this name exists; choose another name or use --overwrite.")
    pair = f"{source}2{target}"
    rel_translation, rel_nnunet = f"{pair}/translation", f"{pair}/nnunet_{strategy}"
    dest.mkdir(parents=True, exist_ok=True)
    copied = _copy_tree_files(_translation_files(translation), translation, dest / rel_translation)
    copied += _copy_tree_files(_nnunet_files(nnunet), nnunet, dest / rel_nnunet)
    files = {p.relative_to(dest).as_posix(): sha256_file(p) for p in copied}
    entry = card_entry(
        source=source,
        target=target,
        strategy=strategy,
        pixel_size=pixel_size,
        translation=rel_translation,
        nnunet=rel_nnunet,
        files=files,
        name=name,
        folds=folds,
        model_info=model_info,
        training_data=training_data,
        training=training,
        scores=scores,
        url=url,
        n_folds=len(folds) if folds is not None else len([p for p in nnunet.glob("fold_*") if p.is_dir()]),
    )
    card_from_entry(card_path, name, entry)  # validate before writing
    write_card(card_path, name, entry)
    return load_card(card_path)


def pack_card(card, archive, overwrite=False) -> Path:
    """Write ``card`` and all its files into the zip ``archive`` (card at the top, files at their paths)."""
    archive = Path(archive)
    if archive.exists() and not overwrite:
        raise InputError(f"{archive}: exists; choose another file name or use --overwrite.")
    require_verified(card)
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(card.path, card.path.name)
        for rel in card.files:
            zf.write(card.file_path(rel), rel)
    os.replace(tmp, archive)
    return archive


# ----------------------------------------------------------------------------------------------------------------
# installing archives
# ----------------------------------------------------------------------------------------------------------------
def _safe_extract(zf, archive, folder):
    folder = folder.resolve()
    for member in zf.infolist():
        target = (folder / member.filename).resolve()
        if target != folder and folder not in target.parents:
            raise InputError(f"{archive}: the archive holds a path outside its folder ({member.filename}); "
                             f"it is unsafe, get the archive from the model's release page.")
    zf.extractall(folder)


def _card_root(archive, folder):
    if list(folder.glob("*.yaml")):
        return folder
    subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))]
    if len(subs) == 1 and list(subs[0].glob("*.yaml")):
        return subs[0]
    raise InputError(f"{archive}: no model card (*.yaml) at the top of the archive; it is not an ads-synth model "
                     f"archive.")


def _same_files(card_path, card) -> bool:
    """True when the card file ``card_path`` lists the same files and checksums as ``card``."""
    try:
        return load_card(card_path).files == card.files
    except InputError:
        return False


def install_archive(archive, dest=None, overwrite=False) -> list:
    """Install the cards of a zip archive (made by :func:`pack_card`) into ``dest``, offline.

    ``dest`` defaults to :func:`default_install_dir`. The archive is unpacked beside ``dest``, every card is
    verified (sha256 of every file) and only then moved in; a damaged archive leaves ``dest`` unchanged. A file
    already in ``dest`` with other content is replaced only with ``overwrite``; a card file already there that
    lists the same files and checksums is kept (it may name the archive's URL).
    Returns the installed cards (read from ``dest``).
    """
    archive = Path(archive)
    if not archive.is_file():
        raise InputError(f"{archive}: no such file; give the path of a downloaded model archive (.zip).")
    if not zipfile.is_zipfile(archive):
        raise InputError(f"{archive}: not a zip archive; download the model archive again.")
    dest = Path(dest) if dest is not None else default_install_dir()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".install-", dir=dest) as tmp:
        try:
            with zipfile.ZipFile(archive) as zf:
                _safe_extract(zf, archive, Path(tmp))
        except (zipfile.BadZipFile, OSError) as err:
            raise InputError(f"{archive}: cannot unpack the archive ({err}); download it again.") from None
        root = _card_root(archive, Path(tmp))
        cards = [load_card(p) for p in sorted(root.glob("*.yaml"))]
        moves = []
        for card in cards:
            problems = verify_card(card)
            if problems:
                raise InputError(
                    f"{archive}: model card {card.name} in the archive failed verification ({problems[0]}); the "
                    f"archive is damaged, download it again."
                )
            existing = dest / card.path.name
            if existing.is_file() and not overwrite and _same_files(existing, card):
                pass  # keep the installed card file (it may name the archive's URL); the files are the same
            else:
                moves.append((card.path, existing))
            moves.extend((card.file_path(rel), dest / rel) for rel in card.files)
        moves = list(dict((target, (src, target)) for src, target in moves).values())  # cards may share files
        for src, target in moves:
            if target.exists() and not overwrite and sha256_file(target) != sha256_file(src):
                raise InputError(
                    f"{target}: exists with other content; use --overwrite to replace the installed model."
                )
        for src, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, target)
    return [load_card(dest / f"{card.name}.yaml") for card in cards]


def install_card(card, dest=None, overwrite=False) -> ModelCard:
    """Return ``card`` verified when its files are on disk; never downloads anything.

    ads-synth fetches nothing at run time: a card whose files are missing names where its archive is published
    (``weights.single_fold``), and the user installs that archive with ``ads-synth models install --archive``.
    ``dest`` and ``overwrite`` are accepted for symmetry with :func:`install_archive`. InputError when files are
    missing or verification fails.
    """
    if card.is_installed():
        return require_verified(card)
    where = f" (published at {card.url})" if card.url else ""
    raise InputError(
        f"{card.path}: the files of model card {card.name} are missing; get its archive{where} and run "
        f"`ads-synth models install --archive FILE.zip` (nothing is downloaded at run time)."
    )
