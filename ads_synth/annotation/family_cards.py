"""Which cards of a model family the annotation loop uses (no torch, no nnU-Net: the napari widget imports it)."""

from __future__ import annotations

from ads_synth.errors import InputError


def family_cards(pair) -> dict:
    """``{strategy: card}`` of the installed family ``pair`` (e.g. ``TEM2SEM``; its ``auto`` and ``refined`` cards
    left out); InputError naming the families found when there is none."""
    from ads_synth.cards.lookup import list_cards

    cards = list_cards()
    found = {}
    for card in cards:
        if card.pair.lower() == str(pair).lower() and card.auto is None and card.strategy != "refined" \
                and card.is_installed():
            found.setdefault(card.strategy, card)
    if not found:
        pairs = sorted({c.pair for c in cards})
        raise InputError(f"--family {pair}: no installed model family of that name; choose one of "
                         f"{', '.join(pairs) or 'none'} (ads-synth models list).")
    return found


def base_card(cards):
    """The card whose model segments the target and is refined: proxy, else tutor, else None."""
    for strategy in ("proxy", "tutor"):
        if strategy in cards:
            return cards[strategy]
    return next((c for c in cards.values() if c.segments_target), None)


def teacher_card(cards):
    """The card whose pseudo labels teach: :func:`base_card`, else the adaptation card."""
    return base_card(cards) or cards.get("adapt") or next(iter(cards.values()))
