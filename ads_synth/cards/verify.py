"""Checking a card against what is on disk: every file's sha256, and the pixel sizes stated in three places.

:func:`verify_card` (run by ``ads-synth models verify``, before packing and when installing an archive) and
:func:`require_verified`; :func:`pixel_size_problems` cross-checks the card, ``ads_synth.json`` and the translation
config. Pseudo-labelling checks a card through :func:`ads_synth.integrity.require_verified_card` (cached hashes).
"""

from __future__ import annotations

from ads_synth.cards.schema import ModelCard
from ads_synth.checksums import sha256_file
from ads_synth.errors import InputError
from ads_synth.segmentation.strategies import get_strategy


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
    if get_strategy(card.strategy, shippable=True).needs_reference:
        from ads_synth.data.intensity import REFERENCE_FILE

        rel = (card.nnunet / REFERENCE_FILE).relative_to(card.root).as_posix()
        if rel not in card.files:
            problems.append(f"{rel}: not shipped, and {card.strategy} needs L's reference intensities")
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

