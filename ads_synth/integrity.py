"""Checks that models are what they claim to be before and while they run.

* :func:`require_verified_card`: every file of a model card against its sha256 before pseudo-labelling, so that
  damaged weights (a flipped block in a checkpoint keeps its size) stop with one line instead of giving empty masks
  or a black image. Hashing is cached by path, size and modification time in a small JSON file
  (:func:`cache_file`), so a card is hashed once, and again only when one of its files changes.
* :func:`require_finite`: network outputs (nnU-Net logits, translated tiles) must be finite; NaN or infinity means
  damaged or diverged weights, and the run stops (:class:`~ads_synth.errors.NonFiniteError`, exit 2) instead of
  writing masks or images computed from NaN.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ads_synth.errors import InputError, NonFiniteError

#: Environment variable naming the cache folder (default ``$XDG_CACHE_HOME/ads-synth`` or ``~/.cache/ads-synth``).
CACHE_ENV = "ADS_SYNTH_CACHE"
CACHE_NAME = "verified_files.json"


def cache_file() -> Path:
    """The JSON file of verified file checksums."""
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "ads-synth")
    return Path(folder) / CACHE_NAME


def _load_cache(path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(path, data):
    from ads_synth.atomic import atomic_write_text

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=0, sort_keys=True))
    except OSError:
        pass  # a read-only home: verify every time


def verify_files(expected, sha256=None) -> list:
    """Check files against their sha256, with the cache; return the problems (empty when all is well).

    Parameters
    ----------
    expected : dict
        Path -> sha256 hex digest.
    sha256 : callable, optional
        ``sha256(path) -> hex``; default :func:`ads_synth.checksums.sha256_file`.

    Returns
    -------
    list of str
        ``"<path>: missing"`` / ``"<path>: checksum mismatch"``.
    """
    if sha256 is None:
        from ads_synth.checksums import sha256_file as sha256
    path = cache_file()
    cache = _load_cache(path)
    changed = False
    problems = []
    for file, digest in expected.items():
        file = Path(file)
        try:
            st = file.stat()
        except OSError:
            problems.append(f"{file}: missing")
            continue
        key = str(file.resolve())
        stamp = [st.st_size, st.st_mtime_ns]
        entry = cache.get(key)
        if isinstance(entry, dict) and entry.get("stat") == stamp and entry.get("sha256") == digest:
            continue
        actual = sha256(file)
        if actual != digest:
            problems.append(f"{file}: checksum mismatch")
            if key in cache:
                del cache[key]
                changed = True
            continue
        cache[key] = {"stat": stamp, "sha256": digest}
        changed = True
    if changed:
        _save_cache(path, cache)
    return problems


def require_verified_card(card, under=None):
    """Return ``card`` when its files (those below the folder ``under``, default all) match their sha256.

    InputError naming the first damaged or missing file otherwise (reinstalling the card fixes it).
    """
    files = {card.file_path(rel): digest for rel, digest in card.files.items()}
    if under is not None:
        under = Path(under).resolve()
        files = {p: d for p, d in files.items() if under in p.resolve().parents}
    problems = verify_files(files)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{card.path}: model card {card.name} failed verification: {problems[0]}{more}; the file "
                         f"is damaged: reinstall the card with `ads-synth models install --archive FILE.zip`.")
    return card


def require_finite(values, what, hint):
    """NonFiniteError (``"<what> ... <hint>"``) when the tensor or array ``values`` holds NaN or infinity."""
    if type(values).__module__.startswith("torch"):
        import torch

        finite = bool(torch.isfinite(values).all())
    else:
        import numpy as np

        finite = bool(np.isfinite(values).all())
    if not finite:
        raise NonFiniteError(f"{what}: non-finite values (NaN or infinity); {hint}")
    return values
