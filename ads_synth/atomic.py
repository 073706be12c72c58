"""Atomic file writes, in one place: write a temporary file beside the target, flush it to disk, then
``os.replace`` it over the target and flush the folder, so that a crash, a power cut or a full disk leaves the
previous file whole (or the new one whole) and never an empty or partial file under the final name.

Temporary files are hidden and name the process that writes them: ``.<name>.<pid>.<random>.tmp``. A run killed
while writing leaves such a file behind; :func:`remove_stale_temps` removes those of processes that are gone
(every command calls it for the files it is about to write).

Writes of several image files that must succeed or fail together live in :mod:`ads_synth.data.writers`.
"""

import os
import re
import tempfile
from pathlib import Path

#: ``.<name>.<pid>.<random>.tmp`` (this module and the writers) or ``.<name>.<random>.tmp`` (older versions).
_TEMP = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?(?P<rand>[A-Za-z0-9_]+)\.tmp$")


def temp_prefix(path) -> str:
    """The hidden prefix of this process's temporary files for ``path``: ``.<name>.<pid>.``."""
    return f".{Path(path).name}.{os.getpid()}."


def fsync_file(path):
    """Flush the contents of the file ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder):
    """Flush the entries of ``folder`` (a rename into it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def atomic_write(path, write):
    """Write ``path`` by calling ``write(tmp_path)`` on a temporary file in the same folder, then renaming it.

    The temporary file is fsynced before the rename and the folder after it. Returns the path. The file gets the
    permissions a plain ``open(path, "w")`` would give it (``mkstemp`` makes its files private). On any error the
    temporary file is removed and the error raised; ``path`` is unchanged.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_torch_save(obj, path):
    """``torch.save(obj, path)`` atomically; return the path."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def pid_alive(pid) -> bool:
    """True when a process ``pid`` runs on this machine (this process included)."""
    pid = int(pid)
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:  # e.g. Windows: signal 0 unsupported; assume alive (never remove a live writer's file)
        return True
    return True


def remove_stale_temps(folder, names=None, prefix=None) -> list:
    """Remove the hidden temporary files that killed runs left in ``folder``; return the paths removed.

    A temporary file is stale when the process named in it is gone (files of older versions name none and are
    always stale). Only temporary files of the given target file ``names``, or of targets whose name starts with
    ``prefix``, are considered; files of live processes are kept.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = None if names is None else {Path(n).name for n in names}
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        name, pid = m.group("name"), m.group("pid")
        if names is not None and name not in names:
            continue
        if prefix is not None and not name.startswith(prefix):
            continue
        if pid is not None and pid_alive(int(pid)):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
