"""Model card names on the command line: the command layer turns them into folders.

The translation code never reads model cards (``ads_synth.translation`` imports neither ``ads_synth.cards`` nor
``ads_synth_models``): ``--model`` / ``--translation`` values that are not paths are looked up here, as card names.
"""

from __future__ import annotations

from pathlib import Path

from ads_synth.errors import InputError


def resolve_translation(value):
    """``value`` unchanged when it is a path that exists (or not a string); else the translation folder of the
    model card named ``value`` when there is one; else ``value`` (the loader then names what is missing)."""
    if not isinstance(value, (str, Path)) or Path(value).exists():
        return value
    try:
        from ads_synth.cards.lookup import get_card, require_files
    except ImportError:  # PyYAML missing: paths only
        return value
    try:
        card = get_card(str(value))
    except InputError:
        return value
    from ads_synth.integrity import require_verified_card

    # sha256 of the card's translation files (cached by size and mtime): damaged weights stop here
    card = require_verified_card(require_files(card), under=card.translation)
    return Path(card.translation)
