"""Corrected segmentations: finding a user's edited AxonDeepSeg files and checking them before any work.

A *correction* is an image plus the masks a user edited, in AxonDeepSeg's format, found as

* ``<stem>_seg-axonmyelin.png`` (0 background, 127 myelin, 255 axon), or ``<stem>_seg-axon.png`` +
  ``<stem>_seg-myelin.png`` (binary), beside ``<stem>.png`` (the files ``axondeepseg`` and the napari widget
  write), the image named directly, one of its mask files named, or a folder of such images;
* manual label files ``<stem>_seg-{axon,myelin,axonmyelin}-manual.png`` beside the image or, in a BIDS dataset, in
  ``derivatives/labels/...`` (:func:`ads_synth.data.datasets.find_labels`, the one BIDS walk).

Manual files win over ADS outputs; axon + myelin files win over the axonmyelin file (as
:func:`ads_synth.data.datasets.load_label_map`). :func:`check_correction` reads the masks **without ever writing
them** and applies the rules below; every refusal is one line naming the file and the fix.

========================== =============================================================================
problem                    rule
========================== =============================================================================
mask size                  a mask of another size than its image: refused
stray values               axonmyelin values other than 0 / 127 / 128 / 255 (binary masks: other than 0 and
                           the maximum), reported with each value and its count, then read as ADS does (the
                           nearest of 0 / 127 / 255; binary masks thresholded at half their range)
bare axons                 an axon region (4-connected) none of whose 8 neighbouring pixels is myelin lies
                           outside every myelin ring: refused with the number of regions and pixels, unless
                           ``drop_bare_axons`` (then they become background, with a warning); regions under
                           :data:`SPECK_PX` pixels are specks (manual labels have some) and always become
                           background, with a warning
pixel size / modality      no pixel size, a pixel size more than 2x outside the family's range, or a BIDS
                           suffix naming another modality than the family's target: refused
nothing found              no image with corrected masks among the paths: refused
========================== =============================================================================
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ads_synth.data.datasets import AXON, MYELIN, Sample, find_labels, is_candidate_image
from ads_synth.data.images import image_shape, is_image_file, read_label, read_pixel_size
from ads_synth.errors import InputError

#: AxonDeepSeg's output names (``AxonDeepSeg/params.py``), kind -> file-name part.
ADS_KINDS = {"axonmyelin": "_seg-axonmyelin", "axon": "_seg-axon", "myelin": "_seg-myelin"}
#: Values of an axonmyelin mask that are not stray (128: some datasets' myelin value).
AXONMYELIN_VALUES = (0, 127, 128, 255)
#: Bare axon regions smaller than this are specks, read as background (``label_free.MIN_AXON_PX``).
SPECK_PX = 16
_MASK_NAME = re.compile(r"^(?P<stem>.+)_seg-(?P<kind>axonmyelin|axon|myelin)(?P<manual>-manual)?\.[A-Za-z.]+$")
#: BIDS suffixes read as modalities (a suffix outside this list is not checked).
MODALITIES = ("TEM", "SEM", "BF", "CARS", "OCT", "TPM", "CONF", "DF", "FLUO", "PC", "DIC", "NLO", "SPIM", "SR",
              "EM", "uCT")


@dataclass
class Correction:
    """One corrected image: its sample (image, pixel size, mask files) and the label map read from the masks.

    ``label_map``: uint8 (H, W), 0 background, 1 myelin, 2 axon. ``warnings``: lines about what was tolerated
    (stray values, dropped bare axons).
    """

    sample: Sample
    label_map: np.ndarray
    warnings: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.sample.name


def _image_beside(folder, stem):
    """The image ``<stem>.<ext>`` in ``folder`` (None when there is none)."""
    for p in sorted(Path(folder).glob(f"{glob.escape(stem)}.*")):
        if p.is_file() and is_candidate_image(p):
            return p
    return None


def mask_files(image) -> dict:
    """The corrected mask files of ``image``: manual label files (beside it or in BIDS derivatives) if complete,
    else AxonDeepSeg's output files beside it; ``{kind: Path}``, empty when there are none."""
    image = Path(image)
    manual = find_labels(image)
    if ("axon" in manual and "myelin" in manual) or "axonmyelin" in manual:
        return manual
    found = {}
    for kind, part in ADS_KINDS.items():
        for ext in (".png", ".tif", ".tiff"):
            candidate = image.parent / f"{image.stem}{part}{ext}"
            if candidate.is_file():
                found[kind] = candidate
                break
    if "axonmyelin" in found or ("axon" in found and "myelin" in found):
        return found
    return {}


def _images_of(path):
    """Images a ``--corrected`` path names: an image, a mask file's image, a folder or a BIDS dataset."""
    from ads_synth.data.datasets import find_samples

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the --corrected path.")
    if path.is_file():
        match = _MASK_NAME.match(path.name)
        if match:
            image = _image_beside(path.parent, match["stem"])
            if image is None and match["manual"]:  # a BIDS label: its image is in the dataset's sub-* folders
                root = next((p for p in path.parents if p.name == "derivatives"), None)
                if root is not None:
                    rel = path.parent.relative_to(root / "labels")
                    image = _image_beside(root.parent / rel, match["stem"])
            if image is None:
                raise InputError(f"{path}: no image {match['stem']}.png (or .tif) beside this mask; put the "
                                 "corrected masks next to their image.")
            return [image]
        if not is_image_file(path):
            raise InputError(f"{path}: not an image or an AxonDeepSeg mask file; give the image, its "
                             "_seg-axonmyelin.png, or their folder.")
        return [path]
    return [s.image for s in find_samples(path)]


def find_corrections(paths, pixel_size=None) -> tuple:
    """The corrected images among ``paths`` and the images found there without corrections.

    Parameters
    ----------
    paths : list of str or Path
        ``--corrected`` values (images, mask files, folders, BIDS datasets).
    pixel_size : float, optional
        Micrometres per pixel of images that carry none.

    Returns
    -------
    (list of Sample, list of Path)
        Samples with ``labels`` = their mask files (``{kind: Path}``), and the uncorrected images of the same
        folders (candidates for ``--unlabeled``). InputError when no corrected image is found.
    """
    samples, uncorrected, seen = [], [], set()
    for path in paths:
        for image in _images_of(path):
            key = Path(image).resolve()
            if key in seen:
                continue
            seen.add(key)
            masks = mask_files(image)
            if not masks:
                uncorrected.append(Path(image))
                continue
            px = read_pixel_size(image)
            samples.append(Sample(name=Path(image).stem, image=Path(image),
                                  pixel_size=px if px is not None else pixel_size, labels=masks))
    if not samples:
        listed = " ".join(str(p) for p in paths)
        raise InputError(f"--corrected {listed}: no corrected image found (an image with <stem>_seg-axonmyelin.png, "
                         "or _seg-axon.png + _seg-myelin.png, beside it, or BIDS derivatives/labels/*_seg-*-manual."
                         "png); save your corrections in AxonDeepSeg's format first.")
    names = {}
    for s in samples:
        if s.name in names:
            raise InputError(f"{s.image}: two corrected images share the name {s.name!r} ({names[s.name]}); rename "
                             "one.")
        names[s.name] = s.image
    return samples, uncorrected


def _read_mask(path, shape, image):
    arr = read_label(path)
    if arr.shape != tuple(shape):
        raise InputError(f"{path}: mask is {arr.shape[1]} x {arr.shape[0]} px but its image {Path(image).name} is "
                         f"{shape[1]} x {shape[0]} px; save the masks at the image's size.")
    return arr


def _stray(arr, allowed):
    values, counts = np.unique(arr, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts) if int(v) not in allowed}


def _describe_stray(stray, limit=5):
    items = sorted(stray.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{v}: {c} px" for v, c in items[:limit])
    return text + (f" and {len(items) - limit} more values" if len(items) > limit else "")


def _binary_mask(path, shape, image, warnings):
    arr = _read_mask(path, shape, image)
    top = int(arr.max(initial=0))
    allowed = {0, top} if top <= 1 else {0, top, int(np.iinfo(arr.dtype).max) if arr.dtype.kind == "u" else top}
    stray = _stray(arr, allowed)
    if stray:
        warnings.append(f"{path}: {sum(stray.values())} px of stray values ({_describe_stray(stray)}) in a binary "
                        "mask; read as ADS does (on above half the range).")
    if top <= 1:
        return arr > 0
    half = (np.iinfo(arr.dtype).max // 2) if arr.dtype.kind in "ui" else 0.5
    return arr > half


def read_correction_map(sample) -> tuple:
    """``(label map, warnings)`` of a corrected sample's masks (sizes and stray values checked; module table)."""
    from ads_synth.data.datasets import _nearest_axonmyelin

    shape = image_shape(sample.image)
    warnings = []
    masks = sample.labels
    if "axon" in masks and "myelin" in masks:
        axon = _binary_mask(masks["axon"], shape, sample.image, warnings)
        myelin = _binary_mask(masks["myelin"], shape, sample.image, warnings)
        out = np.zeros(shape, dtype=np.uint8)
        out[myelin] = MYELIN
        out[axon] = AXON
        return out, warnings
    arr = _read_mask(masks["axonmyelin"], shape, sample.image)
    stray = _stray(arr, AXONMYELIN_VALUES)
    if stray:
        warnings.append(f"{masks['axonmyelin']}: {sum(stray.values())} px of stray values ({_describe_stray(stray)});"
                        " read as ADS does, as the nearest of 0 (background), 127 (myelin) and 255 (axon).")
    return _nearest_axonmyelin(arr), warnings


def bare_axons(label_map) -> tuple:
    """``(mask, n regions)`` of the axon pixels outside every myelin ring: the axon components (as
    :func:`ads_synth.segmentation.postprocess.axon_enclosure` finds them) with no myelin pixel on their border."""
    from ads_synth.segmentation.postprocess import axon_enclosure

    labels, fraction = axon_enclosure(label_map)
    bare_ids = np.flatnonzero(~(fraction > 0))  # 0 and NaN (no border in the image): not enclosed at all
    bare_ids = bare_ids[bare_ids > 0]
    return np.isin(labels, bare_ids), int(bare_ids.size)


def image_modality(image) -> str | None:
    """The modality a BIDS file name states (its suffix, e.g. ``SEM``), when it is a known one."""
    from ads_synth.data.images import _bids_entities

    _, suffix = _bids_entities(Path(image).stem)
    if suffix is None:
        return None
    return next((m for m in MODALITIES if m.lower() == suffix.lower()), None)


def check_correction(sample, card=None, drop_bare_axons=False) -> Correction:
    """Read and check one corrected sample (module table); InputError naming the file and the fix.

    Parameters
    ----------
    sample : Sample
        From :func:`find_corrections`.
    card : ModelCard, optional
        The family's card: its target modality and pixel-size range are checked.
    drop_bare_axons : bool
        Read axons outside every myelin ring as background (warning) instead of refusing.
    """
    if sample.pixel_size is None:
        raise InputError(f"{sample.image}: no pixel size found; give --pixel-size (micrometres per pixel) or write "
                         f"it into {Path(sample.image).parent / 'pixel_size_in_micrometer.txt'}.")
    if card is not None:
        modality = image_modality(sample.image)
        if modality is not None and modality.lower() != card.target.lower():
            raise InputError(f"{sample.image}: a {modality} image (BIDS suffix) but the {card.pair} family segments "
                             f"{card.target}; correct {card.target} images, or refine the family of {modality}.")
        if card.pixel_size_outside(sample.pixel_size):
            low, high = card.pixel_size
            raise InputError(f"{sample.image}: pixel size {sample.pixel_size:g} um is more than 2x outside the "
                             f"{card.pair} family's range {low:g}-{high:g} um; check the pixel size, or correct "
                             f"images of the family's modality.")
    from scipy import ndimage

    label_map, warnings = read_correction_map(sample)
    bare, _ = bare_axons(label_map)
    where = sample.labels.get("axonmyelin") or sample.labels.get("axon")
    regions, count = ndimage.label(bare)
    sizes = np.bincount(regions.ravel(), minlength=count + 1)
    speck = (sizes < SPECK_PX)[regions] & bare
    if speck.any():
        n_specks = int(((sizes < SPECK_PX) & (sizes > 0))[1:].sum())
        label_map = label_map.copy()
        label_map[speck] = 0
        warnings.append(f"{where}: {n_specks} axon speck(s) under {SPECK_PX} px ({int(speck.sum())} px) outside every "
                        "myelin ring read as background.")
        bare = bare & ~speck
    n = int(((sizes >= SPECK_PX) & (sizes > 0))[1:].sum())
    if n:
        if not drop_bare_axons:
            raise InputError(f"{where}: {n} axon region(s) ({int(bare.sum())} px) lie outside every myelin ring "
                             "(no myelin pixel touches them); draw their myelin or delete them, or pass "
                             "--drop-bare-axons to read them as background.")
        label_map = label_map.copy()
        label_map[bare] = 0
        warnings.append(f"{where}: {n} axon region(s) ({int(bare.sum())} px) outside every myelin ring read as "
                        "background (--drop-bare-axons).")
    return Correction(sample, label_map, warnings)
