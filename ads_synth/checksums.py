"""sha256 checksums of files and of sets of files (standard library only).

Model cards list the sha256 of every file they ship; model folders record what they were trained on as a digest of
the training images' contents (:func:`files_digest`), never as the absolute paths of the machine they were trained
on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path) -> str:
    """The sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_digest(paths) -> str:
    """One sha256 for a set of files: of the sorted ``"<file name> <sha256>"`` lines (names, not folders, so the
    digest is the same wherever the files lie)."""
    lines = sorted(f"{Path(p).name} {sha256_file(p)}" for p in paths)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def contents_digest(paths) -> str:
    """One sha256 for the contents of a set of files, whatever their names: of their sorted sha256 (the same
    images renamed, e.g. copied into a BIDS dataset, give the same digest)."""
    lines = sorted(sha256_file(p) for p in paths)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
