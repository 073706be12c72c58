"""Installing cards offline: unpack a card archive into a card folder after verifying every file
(:func:`install_archive`), and :func:`install_card` for a card whose files are already on disk (nothing is ever
downloaded). Installing a card's nnU-Net folder among AxonDeepSeg's own models is
:mod:`ads_synth.integration.ads_models`.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

from ads_synth.cards.lookup import default_install_dir
from ads_synth.cards.schema import ModelCard, load_card
from ads_synth.cards.verify import require_verified, verify_card
from ads_synth.checksums import sha256_file
from ads_synth.errors import InputError


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
    """Install the cards of a zip archive (made by :func:`ads_synth.cards.create.pack_card`) into ``dest``, offline.

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
