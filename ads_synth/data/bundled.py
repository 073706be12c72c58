"""Labeled data sets installed with the package (``ads_synth_models/datasets/<NAME>/``).

``TEM``: 22 mouse CNS TEM images with manual axon and myelin labels (21 tiles of data_axondeepseg_srf_testing at
0.00493 um/px and one nyuMouse26 image at 0.00236 um/px, MIT; see the folder's ``README.md``), a BIDS dataset that
:func:`ads_synth.data.datasets.find_samples` reads with ``require_labels=True``. It is the labeled modality L when a
user brings only unlabeled images.
"""

from __future__ import annotations

from pathlib import Path

from ads_synth.errors import InputError

#: Names of the bundled labeled sets.
LABELED_SETS = ("TEM",)


def _datasets_folder() -> Path:
    import ads_synth_models

    return Path(ads_synth_models.__file__).resolve().parent / "datasets"


def labeled_set(name="TEM") -> Path:
    """Folder of the bundled labeled set ``name`` (a BIDS dataset with manual labels and pixel sizes).

    Parameters
    ----------
    name : str
        One of :data:`LABELED_SETS` (case-insensitive).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InputError
        Unknown name, or the set is missing from the installation.
    """
    key = str(name).upper()
    if key not in LABELED_SETS:
        raise InputError(f"labeled set {name!r}: unknown; choose one of {', '.join(LABELED_SETS)}.")
    folder = _datasets_folder() / key
    if not (folder / "dataset_description.json").is_file():
        raise InputError(f"{folder}: the bundled labeled set {key} is missing from this installation; reinstall "
                         "ads-synth, or give a labeled data set of your own.")
    return folder


__all__ = ["LABELED_SETS", "labeled_set"]
