"""Finding images, pixel sizes and labels in what microscopists have on disk.

:func:`find_samples` accepts

* a single image file (labels ``<stem>_seg-axon-manual.png`` ... beside it, if any);
* a folder of images (not recursive; label files and AxonDeepSeg outputs in it are not taken as images);
* a BIDS microscopy dataset: images in ``sub-*/[ses-*/]micr/``, pixel size from the JSON sidecars (BIDS
  inheritance: ``<image>.json`` or e.g. ``sub-373C_TEM.json``), labels in
  ``derivatives/labels/<same sub-folders>/<image stem>_seg-{axon,myelin,axonmyelin}-manual.png``;
* an nnU-Net v2 raw dataset: ``dataset.json`` + ``imagesTr/<case>_0000<ending>`` + ``labelsTr/<case><ending>``,
  labels as class indices named in ``dataset.json`` (pixel size only from a ``pixel_size_in_micrometer.txt``
  in the dataset root).

:func:`load_label_map` turns a sample's label files into one uint8 class map: 0 background, 1 myelin, 2 axon.
Axon + myelin binary files are preferred; else the axonmyelin file (0 / 127 or 128 / 255, each value mapped to
the nearest of those three). Unmyelinated-axon labels (``seg-uaxon``) are never read: they count as background.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ads_synth.data.images import (
    PIXEL_SIZE_FILE,
    check_pixel_size,
    image_extension,
    image_shape,
    is_image_file,
    read_label,
    read_pixel_size,
    read_pixel_size_file,
)
from ads_synth.errors import InputError

BACKGROUND, MYELIN, AXON = 0, 1, 2
#: Class values of the label map.
CLASSES = {"background": BACKGROUND, "myelin": MYELIN, "axon": AXON}
#: Label classes read from label files, and their file-name part.
LABEL_KINDS = ("axon", "myelin", "axonmyelin")
LABEL_SUFFIX = "-manual"
LABEL_EXTENSIONS = (".png", ".tif", ".tiff")

# File names that are outputs or labels, never input images (AxonDeepSeg's params.generated_file_suffixes, the
# manual label names, and temporary files).
_NOT_AN_IMAGE = re.compile(
    r"(_seg-[A-Za-z0-9]+(-manual)?"
    r"|_index|_axonmyelin_index|_uaxon_index|_nerve_index|_diameter_overlay|_colorized|_instance-map"
    r"|_confidence|_probabilities)\.[A-Za-z.]+$"
)


@dataclass
class Sample:
    """One image and what belongs to it.

    ``name``: the image stem (the case id for nnU-Net datasets). ``image``: the image file. ``pixel_size``:
    micrometres per pixel or None. ``labels``: any of ``'axon'``, ``'myelin'``, ``'axonmyelin'`` -> label file
    (empty when unlabeled). ``label_values``: class name -> pixel value for an ``'axonmyelin'`` file holding class
    indices (nnU-Net ``labelsTr``); None for AxonDeepSeg's 0 / 127 / 255 convention.
    """

    name: str
    image: Path
    pixel_size: float | None = None
    labels: dict = field(default_factory=dict)
    label_values: dict | None = None

    @property
    def has_labels(self) -> bool:
        """True when the labels give both axon and myelin (axon + myelin files, or an axonmyelin file)."""
        return _complete(self.labels)


def _complete(labels):
    return ("axon" in labels and "myelin" in labels) or "axonmyelin" in labels


def is_candidate_image(path) -> bool:
    """True for an image file that is not a label, an AxonDeepSeg output or a hidden/temporary file."""
    path = Path(path)
    if path.name.startswith(".") or not is_image_file(path):
        return False
    return _NOT_AN_IMAGE.search(path.name) is None


# ----------------------------------------------------------------------------------------------------------------
# labels
# ----------------------------------------------------------------------------------------------------------------
def _bids_root(path):
    """The BIDS dataset root above ``path`` (:func:`ads_synth.data.images.bids_folders`), or None outside BIDS."""
    from ads_synth.data.images import bids_folders

    folders = bids_folders(path)
    return folders[-1] if len(folders) > 1 else None


def find_labels(image) -> dict:
    """Manual label files of ``image``: beside it, or in ``<BIDS root>/derivatives/labels/<sub-folders>/``."""
    image = Path(image)
    stem = image.stem
    folders = [image.parent]
    root = _bids_root(image)
    if root is not None:
        rel = image.parent.relative_to(root)
        folders.insert(0, root / "derivatives" / "labels" / rel)
    labels = {}
    for kind in LABEL_KINDS:
        for folder in folders:
            hit = None
            for ext in LABEL_EXTENSIONS:
                candidate = folder / f"{stem}_seg-{kind}{LABEL_SUFFIX}{ext}"
                if candidate.is_file():
                    hit = candidate
                    break
            if hit is not None:
                labels[kind] = hit
                break
    return labels


def _nearest_axonmyelin(arr):
    """0 / 127 / 255 (nearest, so 128 and stray values too) -> 0 background / 1 myelin / 2 axon."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8) if arr.max() > 255 else arr.astype(np.uint8)
    lut = np.zeros(256, dtype=np.uint8)
    values = np.arange(256)
    centers = np.array([0, 127, 255])
    lut[:] = np.argmin(np.abs(values[:, None] - centers[None, :]), axis=1).astype(np.uint8)
    return lut[arr]


def _binary(arr):
    arr = np.asarray(arr)
    if arr.max(initial=0) <= 1:
        return arr > 0
    return arr > (np.iinfo(arr.dtype).max // 2 if np.issubdtype(arr.dtype, np.integer) else 0.5)


def _read_label(path, shape, sample):
    arr = read_label(path)
    if arr.shape != shape:
        raise InputError(
            f"{path}: label is {arr.shape[1]} x {arr.shape[0]} px but its image {sample.image.name} is "
            f"{shape[1]} x {shape[0]} px; labels must match their image."
        )
    return arr


def load_label_map(sample) -> np.ndarray:
    """Return the sample's labels as one uint8 map: 0 background, 1 myelin, 2 axon.

    Prefers the axon + myelin binary files (axon wins where they overlap); else the axonmyelin file. InputError
    when the sample has no complete labels or a label does not match its image's size.
    """
    labels = sample.labels or {}
    if not _complete(labels):
        have = ", ".join(sorted(labels)) or "none"
        raise InputError(
            f"{sample.image}: no complete labels (found: {have}); add <stem>_seg-axon-manual.png and "
            f"<stem>_seg-myelin-manual.png, or <stem>_seg-axonmyelin-manual.png."
        )
    shape = image_shape(sample.image)
    if "axon" in labels and "myelin" in labels:
        axon = _binary(_read_label(labels["axon"], shape, sample))
        myelin = _binary(_read_label(labels["myelin"], shape, sample))
        out = np.zeros(shape, dtype=np.uint8)
        out[myelin] = MYELIN
        out[axon] = AXON
        return out
    arr = _read_label(labels["axonmyelin"], shape, sample)
    if sample.label_values is None:
        return _nearest_axonmyelin(arr)
    out = np.zeros(shape, dtype=np.uint8)
    out[arr == sample.label_values["myelin"]] = MYELIN
    out[arr == sample.label_values["axon"]] = AXON
    return out


# ----------------------------------------------------------------------------------------------------------------
# finding samples
# ----------------------------------------------------------------------------------------------------------------
def _sample_for(image):
    image = Path(image)
    return Sample(name=image.stem, image=image, pixel_size=read_pixel_size(image), labels=find_labels(image))


def _is_bids(folder):
    return (folder / "dataset_description.json").is_file() or any(
        p.is_dir() for p in folder.glob("sub-*")
    )


def _bids_images(folder):
    images = []
    for pattern in ("sub-*/micr/*", "sub-*/ses-*/micr/*"):
        images.extend(p for p in folder.glob(pattern) if p.is_file() and is_candidate_image(p))
    return sorted(images)


def _nnunet_samples(folder):
    ds_file = folder / "dataset.json"
    try:
        meta = json.loads(ds_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{ds_file}: cannot read the nnU-Net dataset.json ({err}); fix the file.") from None
    ending = str(meta.get("file_ending", ".png"))
    channels = meta.get("channel_names") or meta.get("modality") or {"0": "image"}
    if len(channels) != 1:
        raise InputError(
            f"{ds_file}: the dataset has {len(channels)} input channels; ads-synth reads single-channel "
            f"(grayscale) nnU-Net datasets."
        )
    raw_labels = meta.get("labels") or {}
    try:
        values = {str(k): int(v) for k, v in raw_labels.items()}
    except (TypeError, ValueError):
        raise InputError(
            f"{ds_file}: labels must map names to single integer values (region labels are not supported)."
        ) from None
    if "axon" not in values or "myelin" not in values:
        raise InputError(
            f"{ds_file}: labels must name 'axon' and 'myelin' (e.g. background 0, myelin 1, axon 2); "
            f"found {sorted(values)}."
        )
    root_txt = folder / PIXEL_SIZE_FILE
    pixel_size = read_pixel_size_file(root_txt) if root_txt.is_file() else None
    samples = []
    for image in sorted((folder / "imagesTr").glob(f"*_0000{ending}")):
        case = image.name[: -len(f"_0000{ending}")]
        label = folder / "labelsTr" / f"{case}{ending}"
        labels = {"axonmyelin": label} if label.is_file() else {}
        samples.append(Sample(case, image, pixel_size, labels, label_values=values))
    return samples


def find_samples(path, require_labels=False, require_pixel_size=False) -> list[Sample]:
    """List the samples in ``path``: an image file, a folder of images, a BIDS dataset or an nnU-Net raw dataset.

    InputError when the path does not exist, holds no images, or (with ``require_labels``) an image has no
    complete labels, or (with ``require_pixel_size``) an image has no pixel size.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path.")
    if path.is_file():
        if not is_image_file(path):
            raise InputError(
                f"{path}: not an image; give a PNG, JPEG, TIFF or OME-TIFF file, or a folder of images."
            )
        samples = [_sample_for(path)]
        kind = "image"
    elif (path / "dataset.json").is_file() and (path / "imagesTr").is_dir():
        samples = _nnunet_samples(path)
        kind = "nnU-Net raw dataset (imagesTr/<case>_0000<ending>)"
    elif _is_bids(path):
        samples = [_sample_for(p) for p in _bids_images(path)]
        kind = "BIDS dataset (sub-*/micr/)"
    else:
        try:
            entries = sorted(p for p in path.iterdir() if p.is_file() and is_candidate_image(p))
        except OSError as err:
            raise InputError(f"{path}: cannot list the folder ({err}); check its permissions.") from None
        samples = [_sample_for(p) for p in entries]
        kind = "folder"
    if not samples:
        raise InputError(
            f"{path}: no images found in this {kind}; give a folder with PNG, JPEG or TIFF images, a BIDS "
            f"dataset (sub-*/micr/) or an nnU-Net raw dataset."
        )
    names = {}
    for s in samples:
        if s.name in names:
            raise InputError(
                f"{s.image}: two images share the name {s.name!r} ({names[s.name].name}); rename one."
            )
        names[s.name] = s.image
    if require_labels:
        for s in samples:
            if not s.has_labels:
                have = ", ".join(sorted(s.labels)) or "none"
                where = (
                    "labelsTr/<case><ending>"
                    if s.label_values is not None
                    else f"{s.name}_seg-axon-manual.png and {s.name}_seg-myelin-manual.png (or "
                    f"{s.name}_seg-axonmyelin-manual.png) beside it or in derivatives/labels/"
                )
                raise InputError(f"{s.image}: no complete labels (found: {have}); add {where}.")
    if require_pixel_size:
        for s in samples:
            if s.pixel_size is None:
                folder = s.image.parent.parent if s.label_values is not None else s.image.parent
                raise InputError(
                    f"{s.image}: no pixel size found; give it with --pixel-size (micrometres per pixel) or "
                    f"write it into {folder / PIXEL_SIZE_FILE}."
                )
    return samples


__all__ = [
    "AXON",
    "BACKGROUND",
    "CLASSES",
    "MYELIN",
    "Sample",
    "find_labels",
    "find_samples",
    "is_candidate_image",
    "load_label_map",
    "image_extension",
]


def sample_pixel_sizes(samples, fallback=None, option="--pixel-size"):
    """Pixel size of each sample, the ``fallback`` for those that have none: the one meaning of ``--pixel-size``
    (as AxonDeepSeg's ``-s``: used only for images that carry no pixel size of their own).

    Parameters
    ----------
    samples : list of ads_synth.data.datasets.Sample
    fallback : float or None
        Micrometres per pixel for images without a pixel size of their own.
    option : str
        The command-line option that gives ``fallback`` (named in the error).

    Returns
    -------
    list of float

    Raises
    ------
    InputError
        An image has no pixel size and no fallback is given.
    """
    if fallback is not None:
        fallback = check_pixel_size(fallback, option)
    sizes = []
    for sample in samples:
        if sample.pixel_size is not None:
            sizes.append(check_pixel_size(sample.pixel_size, sample.image))
        elif fallback is not None:
            sizes.append(fallback)
        else:
            raise InputError(
                f"{sample.image}: no pixel size found; give it with {option} (micrometres per pixel), a BIDS "
                "sidecar or pixel_size_in_micrometer.txt beside the image."
            )
    return sizes


def dataset_name(image) -> str:
    """The name of the dataset an image belongs to: its BIDS dataset root's folder name, else its own folder's
    (recorded instead of absolute paths, e.g. ``tem-srf``)."""
    from ads_synth.data.images import bids_folders

    return bids_folders(image)[-1].name
