"""Atomic file writes, in one place: write a temporary file beside the target, then ``os.replace`` it over the
target, so that a crash (or a full disk) leaves the previous file whole and no partial file behind.

Writes of several image files that must succeed or fail together live in :mod:`ads_synth.data.writers`.
"""

import os
import tempfile
from pathlib import Path


def atomic_write(path, write):
    """Write ``path`` by calling ``write(tmp_path)`` on a temporary file in the same folder, then renaming it.

    Returns the path. The file gets the permissions a plain ``open(path, "w")`` would give it (``mkstemp`` makes
    its files private). On any error the temporary file is removed and the error raised; ``path`` is unchanged.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_torch_save(obj, path):
    """``torch.save(obj, path)`` atomically; return the path."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
