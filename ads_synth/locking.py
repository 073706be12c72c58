"""One run at a time per image: lock files beside an image's outputs.

Two runs that write the same image's outputs at once (two ``axondeepseg --pseudo`` on one image, or tutor and
adapt at once) would both pass the "nothing exists yet" check and then mix their files. Before it checks or
writes anything, a run therefore takes a lock per image and output folder: the hidden file
``<folder>/.<stem>.ads-synth.lock`` holding the process id. A second run finds it held and stops with one line
(:class:`~ads_synth.errors.InputError`, exit 2).

The lock is an ``fcntl.flock`` on that file where the platform has one: the kernel releases it when its process
dies, so the lock file of a killed run never blocks (its pid is only reported). Without ``fcntl`` (Windows) the
file is created with ``O_EXCL`` and a lock whose pid is no longer running is taken over. Taking a lock also
removes the stale temporary files (:func:`ads_synth.atomic.remove_stale_temps`) that killed runs left for that
image.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

from ads_synth.atomic import pid_alive, remove_stale_temps
from ads_synth.errors import InputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_SUFFIX = ".ads-synth.lock"


def lock_path(folder, stem) -> Path:
    """The lock file of the outputs of image ``stem`` in ``folder``."""
    return Path(folder) / f".{stem}{LOCK_SUFFIX}"


def _read_pid(path):
    try:
        return int(Path(path).read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _busy(path, image, pid):
    who = f"pid {pid}" if pid else "another process"
    return InputError(f"{image}: another ads-synth run ({who}) is writing this image's outputs into "
                      f"{Path(path).parent} right now; wait until it has finished, or write elsewhere "
                      f"(remove {path} only if no such run exists).")


class OutputLock:
    """The lock of one image's outputs in one folder (see the module docstring).

    Parameters
    ----------
    folder : Path
        Output folder (created when missing, and removed again on release when it is still empty).
    stem : str
        The image's stem (its outputs are ``<stem>_seg-*``).
    image : Path, optional
        The image, for messages.
    """

    def __init__(self, folder, stem, image=None):
        self.folder = Path(folder)
        self.stem = stem
        self.image = image or self.folder / stem
        self.path = lock_path(self.folder, stem)
        self._fd = None
        self._created = []
        #: pid of a killed run whose lock file was found (its outputs may be incomplete), else None
        self.stale_pid = None

    def acquire(self):
        probe = self.folder
        while not probe.exists() and probe != probe.parent:
            self._created.append(probe)
            probe = probe.parent
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"{self.folder}: cannot create the output folder ({err}).") from None
        try:
            if fcntl is not None:
                self._acquire_flock()
            else:
                self._acquire_exclusive()
        except BaseException:
            self._remove_created()
            raise
        if self.stale_pid is not None:
            print(f"ads-synth: warning: {self.image}: an earlier run (pid {self.stale_pid}) was stopped while "
                  f"writing its outputs into {self.folder}; they may be incomplete (pass --overwrite to redo them).",
                  file=sys.stderr)
        remove_stale_temps(self.folder, prefix=f"{self.stem}_seg-")
        return self

    def _acquire_flock(self):
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise _busy(self.path, self.image, _read_pid(self.path)) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file between our open and our lock: take the new one
                os.close(fd)
                continue
            old = os.read(fd, 64).split()
            if old and old[0].isdigit() and int(old[0]) != os.getpid():
                self.stale_pid = int(old[0])
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return
        raise _busy(self.path, self.image, _read_pid(self.path))

    def _acquire_exclusive(self):
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid = _read_pid(self.path)
                if pid is not None and pid_alive(pid):
                    raise _busy(self.path, self.image, pid) from None
                self.stale_pid = pid
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                continue
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return
        raise _busy(self.path, self.image, _read_pid(self.path))

    def release(self):
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still holding it: a waiting run then creates a new file
        os.close(self._fd)
        self._fd = None
        self._remove_created()

    def _remove_created(self):
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:
                break
        self._created = []

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


@contextlib.contextmanager
def output_locks(keys):
    """Hold the locks of several ``(folder, stem, image)`` outputs (each once) for the duration."""
    stack = contextlib.ExitStack()
    seen = set()
    with stack:
        for folder, stem, image in keys:
            key = (str(Path(folder).resolve()), stem)
            if key not in seen:
                seen.add(key)
                stack.enter_context(OutputLock(folder, stem, image))
        yield


def locked_jobs(fn):
    """Decorate ``fn(jobs, ...)`` to hold the output locks of every job while it runs.

    A job has ``sample.image`` (the image) and ``out_dirs`` (name -> output folder, None for beside the image),
    as :class:`ads_synth.segmentation.pseudo._Job`.
    """

    @functools.wraps(fn)
    def wrapper(jobs, *args, **kwargs):
        keys = []
        for job in jobs:
            image = Path(job.sample.image)
            for folder in job.out_dirs.values():
                keys.append((Path(folder) if folder is not None else image.parent, image.stem, image))
        with output_locks(keys):
            return fn(jobs, *args, **kwargs)

    return wrapper
