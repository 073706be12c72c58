"""nnU-Net v2's environment, set in one place before nnU-Net is imported.

nnU-Net 2.2.1 reads its three folders (``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``) from the
environment *once*, when :mod:`nnunetv2.paths` is first imported, and many of its modules copy them with
``from nnunetv2.paths import ...``. Importing ``AxonDeepSeg.apply_model`` sets all three to ``UNDEFINED``. So every
ads-synth function that plans, preprocesses or trains calls :func:`use_folders` first: it sets the environment
(inherited by nnU-Net's spawned worker processes) and rewrites the copies in the nnU-Net modules already imported
in this process. It also sets ``nnUNet_n_proc_DA=0`` (single-threaded augmentation) and ``nnUNet_def_n_proc=2``
unless the user chose other values.

nnU-Net and AxonDeepSeg are imported inside functions only, after this module has done its work.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

#: The three folder variables of nnU-Net v2.
PATH_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
#: Worker settings for a small CPU machine; a user's own values win.
WORKER_DEFAULTS = {"nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "2"}


@dataclass(frozen=True)
class NnunetFolders:
    """The three nnU-Net folders under one work folder: ``raw/``, ``preprocessed/``, ``results/``."""

    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "preprocessed"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def as_environment(self) -> dict:
        """``{variable: path}`` for :data:`PATH_VARIABLES`."""
        return dict(zip(PATH_VARIABLES, (str(self.raw), str(self.preprocessed), str(self.results))))


def set_worker_defaults():
    """Set :data:`WORKER_DEFAULTS` where the environment has no value yet."""
    for key, value in WORKER_DEFAULTS.items():
        os.environ.setdefault(key, value)


def use_folders(root) -> NnunetFolders:
    """Point nnU-Net at ``root/{raw,preprocessed,results}`` (created), in this process and its children.

    Parameters
    ----------
    root : str or Path
        Work folder for nnU-Net's raw datasets, preprocessed data and training output.

    Returns
    -------
    NnunetFolders
    """
    folders = NnunetFolders(Path(root).resolve())
    for path in (folders.raw, folders.preprocessed, folders.results):
        path.mkdir(parents=True, exist_ok=True)
    set_worker_defaults()
    env = folders.as_environment()
    os.environ.update(env)
    # modules imported earlier hold copies of the old values (``from nnunetv2.paths import nnUNet_raw``)
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "nnunetv2" or name.startswith("nnunetv2.")):
            continue
        for key, value in env.items():
            if key in getattr(module, "__dict__", {}):
                setattr(module, key, value)
    return folders


def import_nnunet():
    """Import nnU-Net v2 with the worker defaults set (for inference, where the folders do not matter).

    Returns
    -------
    module
        :mod:`nnunetv2`.
    """
    set_worker_defaults()
    for key in PATH_VARIABLES:  # keeps nnU-Net from printing its "not defined" warnings
        os.environ.setdefault(key, "UNDEFINED")
    with quiet():
        import nnunetv2
        import nnunetv2.paths  # noqa: F401
    return nnunetv2


@contextlib.contextmanager
def quiet(log_file=None, enabled=True, stderr=False):
    """Send what nnU-Net prints on stdout to ``log_file`` (appended) or nowhere, for the duration.

    nnU-Net reports with ``print``; the command line shows tqdm progress bars on stderr instead.

    Parameters
    ----------
    log_file : str or Path, optional
        File that receives the output; discarded when None.
    enabled : bool
        False leaves stdout alone (verbose runs).
    stderr : bool
        Also send stderr there: nnU-Net's own tqdm bars (fingerprint, preprocessing), for runs without progress.
    """
    if not enabled:
        yield
        return
    if log_file is None:
        target = open(os.devnull, "w", encoding="utf-8")
    else:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        target = open(log_file, "a", encoding="utf-8")
    try:
        with contextlib.redirect_stdout(target), (contextlib.redirect_stderr(target) if stderr
                                                   else contextlib.nullcontext()):
            yield
    finally:
        target.close()
