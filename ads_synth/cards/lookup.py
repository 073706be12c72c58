"""Where model cards are and finding one: ``$ADS_SYNTH_MODELS`` folders, then the model package's folder.

Cards are looked up in the folders of the environment variable ``ADS_SYNTH_MODELS`` (``os.pathsep``-separated;
the first one is where archives are installed by default) and then in the ``ads_synth_models`` package's folder; a
card in an earlier folder hides one of the same name in a later folder. A broken card file is skipped with one
warning (:func:`list_cards`) and reported when asked for by name (:func:`get_card`).
"""

from __future__ import annotations

import os
from pathlib import Path

import ads_synth_models
from ads_synth.cards.schema import AUTO, ModelCard, load_card
from ads_synth.errors import InputError

#: Environment variable naming user folders of model cards.
ENV_VAR = "ADS_SYNTH_MODELS"
#: The model package's own card folder (``ads_synth_models/``: cards and their files, no code).
PACKAGE_DIR = Path(ads_synth_models.__file__).resolve().parent


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

