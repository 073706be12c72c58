"""The L model of a family run: a shipped one when it was trained on exactly the labeled images of the run.

Every shipped family of a labeled modality ships an nnU-Net trained on that modality's labeled images (the model of
its ``adapt`` card). When ``ads-synth family train`` runs on the same images (the bundled labeled TEM set, or the
same files given with ``--labeled``), training a weaker copy of that model inside the time budget only loses
quality and time: the run copies the shipped model instead, and gives the teachers' share of the budget to the
tutorship model alone.

"The same images" is checked, not assumed: the model's ``ads_synth.json`` records a digest of the contents of the
images it was trained on (``images_contents_sha256``, :func:`ads_synth.segmentation.model_building.data_record`),
and it must equal that of the run's labeled images; the model must also have every fold the run asks for.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ads_synth.errors import InputError


def _info(folder):
    try:
        return json.loads((Path(folder) / "ads_synth.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def trained_l_models(samples, folds, cards=None) -> list:
    """Shipped L models trained on exactly ``samples``' images, with every fold of ``folds``.

    Parameters
    ----------
    samples : list of Sample
        The run's labeled images.
    folds : list of int
        Folds the run trains.
    cards : list of ModelCard, optional
        Cards to search; default every installed card (:func:`ads_synth.cards.lookup.list_cards`).

    Returns
    -------
    list of (ModelCard, Path)
        Each matching model once (cards sharing a model folder count once): a card that ships it, its folder.
    """
    from ads_synth.checksums import contents_digest
    from ads_synth.segmentation.strategies import get_strategy

    if cards is None:
        from ads_synth.cards.lookup import list_cards

        cards = list_cards(warn=False)
    digest = contents_digest(s.image for s in samples)
    wanted = {f"fold_{f}" for f in folds}
    found, seen = [], set()
    for card in cards:
        if card.auto is not None or get_strategy(card.strategy, shippable=True).model != "L":
            continue
        folder = Path(card.nnunet)
        if folder in seen or card.missing_files():
            continue
        seen.add(folder)
        info = _info(folder)
        trained = info.get("trained_on") or {}
        if info.get("domain") != "L" or trained.get("images_contents_sha256") != digest:
            continue
        if wanted <= {p.name for p in folder.glob("fold_*") if (p / "checkpoint_final.pth").is_file()}:
            found.append((card, folder))
    return found


def closest(models, pixel_size):
    """The model of ``models`` (from :func:`trained_l_models`) working nearest ``pixel_size`` (the run's L working
    pixel size), on a log scale: the one its images are rescaled least for."""
    import math

    def distance(item):
        px = _info(item[1]).get("pixel_size")
        return abs(math.log(float(px) / pixel_size)) if px else math.inf

    return min(models, key=distance)


def copy_l_model(folder, dest) -> Path:
    """Copy the nnU-Net model ``folder`` to ``dest`` (whole or not at all); return ``dest``.

    ``dest`` is the run's own L model folder, so that the run adds its files (L's intensity reference) there and
    never into an installed model."""
    dest = Path(dest)
    if (dest / "ads_synth.json").is_file():
        return dest
    tmp = dest.with_name(dest.name + ".copying")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(folder, tmp)
        tmp.replace(dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"{dest}: cannot copy the shipped L model {folder} ({exc.strerror or exc}); free disk "
                         "space and rerun the same command.") from None
    return dest


def describe(card, folder) -> dict:
    """What the run records about a reused L model (card name, epochs, folds; no absolute path)."""
    info = _info(folder)
    return {"card": card.name, "epochs": info.get("epochs"), "folds": info.get("folds"),
            "iterations_per_epoch": info.get("iterations_per_epoch"), "pixel_size": info.get("pixel_size"),
            "trained_on": info.get("trained_on")}
