"""nnU-Net training checkpoints that survive a killed run: the previous copy and the choice of where to resume.

:class:`~ads_synth.segmentation.nnunet_trainers.AdsSynthTrainer` writes every checkpoint atomically and keeps the
``checkpoint_latest.pth`` it replaces as ``checkpoint_latest.pth.prev`` (:func:`keep_previous`). On resume,
:func:`resume_checkpoint` takes the first readable one of ``checkpoint_latest.pth``, its ``.prev`` and
``checkpoint_best.pth``, with one warning line when it had to skip an unreadable one (a file truncated by a crash
of an older version, a damaged disk). Only torch and the standard library are used (no nnU-Net import).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ads_synth.atomic import temp_prefix

LATEST = "checkpoint_latest.pth"
PREVIOUS = LATEST + ".prev"
BEST = "checkpoint_best.pth"


def keep_previous(latest):
    """Keep ``latest`` (about to be replaced) as ``<latest>.prev``: a hard link where possible, else a copy."""
    latest = Path(latest)
    prev = latest.with_name(latest.name + ".prev")
    tmp = latest.with_name(f"{temp_prefix(prev)}prev.tmp")
    try:
        os.link(latest, tmp)
    except OSError:
        shutil.copy2(latest, tmp)
    os.replace(tmp, prev)
    return prev


def readable(path):
    """``(checkpoint dict, None)`` when ``path`` loads, else ``(None, reason)``."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - truncated zip, bad pickle, EOF...: all mean "unreadable"
        return None, (str(err).splitlines()[0] if str(err) else type(err).__name__)
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        return None, "not an nnU-Net checkpoint"
    return checkpoint, None


def resume_checkpoint(fold_dir, warn=None):
    """The checkpoint to resume the fold in ``fold_dir`` from, or None to start anew.

    Tries ``checkpoint_latest.pth``, ``checkpoint_latest.pth.prev``, ``checkpoint_best.pth`` in turn. An
    unreadable latest checkpoint is removed (so that it never becomes the next ``.prev``); ``warn`` (default: a
    line on stderr) receives one line when a fallback was needed.
    """
    fold_dir = Path(fold_dir)
    warn = warn or (lambda msg: print(f"ads-synth: warning: {msg}", file=sys.stderr))
    bad = []
    for name in (LATEST, PREVIOUS, BEST):
        path = fold_dir / name
        if not path.is_file():
            continue
        checkpoint, reason = readable(path)
        if checkpoint is None:
            bad.append((path, reason))
            continue
        if bad:
            _drop(bad)
            warn(f"{bad[0][0]}: unreadable ({bad[0][1]}); resuming from {path.name} (epoch "
                 f"{checkpoint.get('current_epoch', '?')}) instead.")
        return path
    if bad:
        _drop(bad)
        warn(f"{bad[0][0]}: unreadable ({bad[0][1]}) and no earlier checkpoint is readable; training the fold "
             "from the start.")
    return None


def _drop(bad):
    for path, _ in bad:
        if path.name == LATEST:
            try:
                path.unlink()
            except OSError:
                pass


def remove_previous(fold_dir):
    """Remove ``checkpoint_latest.pth.prev`` (after the fold's final checkpoint is written)."""
    path = Path(fold_dir) / PREVIOUS
    if path.is_file():
        path.unlink()
