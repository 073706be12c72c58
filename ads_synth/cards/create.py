"""Making cards: copy a translation and an nnU-Net model folder beside a new card (:func:`create_card`), and pack
a card with its files into a zip archive (:func:`pack_card`; :func:`ads_synth.cards.install.install_archive`
installs it).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from ads_synth.cards.schema import NAME_PATTERN, ModelCard, card_entry, card_from_entry, load_card, write_card
from ads_synth.cards.verify import require_verified
from ads_synth.checksums import sha256_file
from ads_synth.errors import InputError
from ads_synth.segmentation.strategies import strategy_names
from ads_synth.translation.formats import is_run_dir, run_model_dir


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
    postprocess=None,
) -> ModelCard:
    """Copy a translation model folder and an nnU-Net model folder into ``dest`` and write their card.

    Files go to ``dest/<source>2<target>/translation/`` and ``dest/<source>2<target>/nnunet_<strategy>/`` (see
    :func:`_nnunet_files` for what is copied of the nnU-Net folder); the card ``dest/<name>.yaml`` (default name
    ``<source>2<target>_<strategy>``) lists the sha256 of every copied file. InputError for bad arguments or an
    existing card without ``overwrite``.
    """
    dest = Path(dest)
    name = name or f"{source}2{target}_{strategy}"
    if not NAME_PATTERN.match(name):
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
        postprocess=postprocess,
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

