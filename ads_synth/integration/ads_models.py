"""Pseudo-label models among AxonDeepSeg's own models (``AxonDeepSeg/models``).

AxonDeepSeg 5.5.0 lists its models with ``ads_utils.get_existing_models_list()`` (the sub-folders of
``AxonDeepSeg/models`` in the installed package) and, in ``segment.segment_images``, tries to download any model
whose folder name is not in that list. A tutorship or proxy card's nnU-Net folder is a plain AxonDeepSeg model for
the target modality (trained on translated source images, the proxy also on target images with their pseudo
labels; applied to real target images), so installing it there as ``model_seg_pseudo_<pair>_<strategy>`` lets
``axondeepseg -m <that folder>`` and the ADS napari widget use it unchanged. An adaptation card's nnU-Net is a
*source*-modality model that needs the target images translated first: it is not installed there (use
``axondeepseg -t <target> --pseudo adapt``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ads_synth.errors import InputError

#: Marker file written into a model folder that ads-synth installed into AxonDeepSeg/models.
ADS_MARKER = ".ads_synth_card"


def ads_models_dir() -> Path:
    """``AxonDeepSeg/models`` of the installed AxonDeepSeg (where its model list and loader look)."""
    import AxonDeepSeg

    return Path(AxonDeepSeg.__file__).resolve().parent / "models"


def ads_model_path(card, models_dir=None) -> Path:
    """The folder of ``card``'s model among AxonDeepSeg's models (whether or not it exists)."""
    return Path(models_dir if models_dir is not None else ads_models_dir()) / card.full_name


def is_registered(card, models_dir=None) -> bool:
    """True when ``card``'s model folder is among AxonDeepSeg's models."""
    return ads_model_path(card, models_dir).is_dir()


def _owned(folder) -> bool:
    return (folder / ADS_MARKER).is_file()


def register_in_ads(card, models_dir=None, overwrite=False) -> Path:
    """Copy the nnU-Net folder of a tutorship ``card`` into AxonDeepSeg's models as ``card.full_name``.

    The copy holds the card's nnU-Net files and a marker file naming the card. An existing folder that ads-synth
    put there is replaced; any other folder of that name only with ``overwrite``. Returns the model folder.
    InputError for an adaptation card or a card whose files are missing.
    """
    from ads_synth.cards.lookup import require_files

    if not card.segments_target:
        raise InputError(
            f"{card.path}: model card {card.name} is an adaptation model (its nnU-Net segments {card.source} "
            f"images, after {card.target} images are translated); AxonDeepSeg cannot run it alone: use "
            f"`axondeepseg -t {card.target} -s {card.source} --pseudo adapt -i IMAGE`."
        )
    require_files(card)
    models_dir = Path(models_dir if models_dir is not None else ads_models_dir())
    target = models_dir / card.full_name
    if target.exists() and not _owned(target) and not overwrite:
        raise InputError(
            f"{target}: an AxonDeepSeg model of this name exists that ads-synth did not install; remove it or use "
            f"--overwrite."
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = models_dir / f".{card.full_name}.installing"
    if tmp.exists():
        shutil.rmtree(tmp)
    prefix = card.nnunet.relative_to(card.root).as_posix() + "/"
    for rel in card.files:
        if rel.startswith(prefix):
            dst = tmp / rel[len(prefix):]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(card.file_path(rel), dst)
    (tmp / ADS_MARKER).write_text(f"{card.name}\n{card.path}\n", encoding="utf-8")
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def unregister_from_ads(card, models_dir=None) -> bool:
    """Remove ``card``'s model folder from AxonDeepSeg's models if ads-synth installed it; True if removed."""
    target = ads_model_path(card, models_dir)
    if target.is_dir() and _owned(target):
        shutil.rmtree(target)
        return True
    return False
