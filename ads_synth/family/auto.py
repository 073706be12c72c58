"""``--pseudo auto``: the path of a family chosen without labels, and the card that records the choice.

* the candidates are scored on :func:`ads_synth.family.crops.scoring_crops` of the U images;
* :func:`auto_entry`: the ``<PAIR>_auto`` card entry: the chosen card's fields and files, plus an ``auto`` block
  with the label-free scores that chose it (``ads-synth models show`` prints them).
* :func:`choose_auto_card`: for a family made by hand (the shipped ones): pseudo-label the crops with each of its
  cards, score them (:mod:`ads_synth.segmentation.label_free`) and write ``<PAIR>_auto.yaml`` beside them
  (``ads-synth models auto``). ``ads-synth family train`` does the same inside its phases.
"""

from __future__ import annotations

from pathlib import Path

from ads_synth.errors import InputError

AUTO = "auto"
METHOD = ("label-free scores of each path's pseudo labels on centre crops of the unlabeled images "
          "(ads_synth.segmentation.label_free: paths at least half as fibre-like as the best first, then the share "
          "of the image's intensity variance their labels explain); the best shippable path")


def score_folders(folders, images, reference=None, unit_size=None) -> dict:
    """Label-free scores (``{name: {score: value}}``) of the candidates in ``folders`` ({name: folder}) on
    ``images`` (the scoring crops, with their pixel sizes)."""
    from ads_synth.data.images import read_pixel_size
    from ads_synth.segmentation.label_free import load_candidates, score_candidates

    pixel_sizes = [read_pixel_size(p) for p in images]
    scores = score_candidates(load_candidates(folders, images), pixel_size=pixel_sizes, reference=reference,
                              unit_size=unit_size)
    return {name: {k: float(v) for k, v in s.items() if isinstance(v, (int, float))} for name, s in scores.items()}


def auto_entry(chosen, name, scores, among) -> dict:
    """The card entry of ``name`` (``<PAIR>_auto``): ``chosen``'s (a ModelCard) with the ``auto`` block."""
    from ads_synth.cards.schema import ADS_PREFIX

    entry = dict(chosen.entry)
    entry["full_name"] = ADS_PREFIX + name
    entry["model-info"] = (f"The {chosen.source}->{chosen.target} path chosen without labels ({chosen.strategy}); "
                           + str(chosen.entry.get("model-info", "")))
    entry[AUTO] = {"chosen": chosen.strategy, "among": sorted(among), "method": METHOD,
                   "scores": {s: {k: round(v, 4) for k, v in sc.items()} for s, sc in scores.items()}}
    return entry


def choose_auto_card(pair, unlabeled, work, *, pixel_size=None, gpu_id=-1, overwrite=False, progress=True):
    """Write ``<pair>_auto.yaml`` beside the cards of ``pair`` from label-free scores on ``unlabeled`` images.

    Parameters
    ----------
    pair : str
        ``SOURCE2TARGET``, e.g. ``TEM2SEM``.
    unlabeled : list
        Unlabeled images of the target modality (files, folders, datasets; labels never read).
    work : str or Path
        Folder for the crops and the candidates' pseudo labels.
    pixel_size : float, optional
        Micrometres per pixel of images that carry none.
    gpu_id : int
    overwrite : bool
        Replace an existing ``<pair>_auto`` card (and redo the pseudo labels).
    progress : bool

    Returns
    -------
    (ModelCard, dict)
        The auto card and the scores.
    """
    from ads_synth.family.crops import scoring_crops
    from ads_synth.integration.pseudo_action import run_pseudo_labels
    from ads_synth.segmentation.label_free import choose_candidate
    from ads_synth.segmentation.pseudo import _samples
    from ads_synth.cards.lookup import list_cards
    from ads_synth.cards.schema import load_card, write_card

    from ads_synth.segmentation.strategies import get_strategy

    # the family's own paths: not auto, and not a card made from a user's corrections (refined): auto is label-free
    family = [c for c in list_cards() if c.pair.lower() == str(pair).lower() and c.auto is None
              and get_strategy(c.strategy, shippable=True).made_by is None]
    if not family:
        raise InputError(f"{pair}: no model cards of this pair; see `ads-synth models list`.")
    name = f"{family[0].pair}_{AUTO}"
    target = family[0].root / f"{name}.yaml"
    if target.exists() and not overwrite:
        raise InputError(f"{target}: exists; use --overwrite to choose again.")
    work = Path(work)
    images = scoring_crops(_samples(unlabeled, pixel_size), work / "scoring_images")
    folders = {}
    for card in family:
        folders[card.strategy] = work / "candidates" / card.strategy
        run_pseudo_labels(images, card=card, gpu_id=gpu_id, out_dir=folders[card.strategy], overwrite=True,
                          progress=progress)
    scores = score_folders(folders, images)
    chosen = {c.strategy: c for c in family}[choose_candidate(scores)]
    write_card(target, name, auto_entry(chosen, name, scores, folders))
    return load_card(target), scores
