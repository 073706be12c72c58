"""Pseudo-label images with a card of the model family: the one function the CLI and the GUIs call.

:func:`run_pseudo_labels` validates everything first (image paths, the card and its files, the GPU id, the pixel
sizes) and only then calls :func:`ads_synth.segmentation.pseudo.pseudo_label_images`, which writes AxonDeepSeg's
files ``<stem>_seg-axon.png``, ``<stem>_seg-myelin.png`` and ``<stem>_seg-axonmyelin.png`` beside each image.
:func:`pseudo_label_file` is the GUI flavour for one image (returns the output paths and the warnings);
:func:`read_masks` reads the axon and myelin masks back as boolean arrays, as AxonDeepSeg's napari widget does.

No Qt, wx, napari or FSLeyes here: the GUIs wrap these functions.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ads_synth.data.datasets import is_candidate_image
from ads_synth.data.images import check_pixel_size, image_extension, read_pixel_size
from ads_synth.data.writers import segmentation_paths
from ads_synth.errors import InputError
from ads_synth.integrity import require_verified_card
from ads_synth.cards.lookup import find_card, get_card, require_files
from ads_synth.cards.schema import ModelCard

#: How far outside a card's pixel size range an image may be before a warning: more than 2x (ADS issue #987).
PIXEL_SIZE_TOLERANCE = 2.0


class ExtensionError(InputError):
    """An input file whose extension is not an image extension (AxonDeepSeg exits with 1 for it)."""


def warn_stderr(message):
    """Print ``message`` as one warning line on stderr (the CLI's warning channel)."""
    print(f"warning: {message}", file=sys.stderr)


def images_from_paths(paths) -> list:
    """Expand the ``-i`` arguments into image files, the way AxonDeepSeg's CLI does.

    A file must have an image extension (:class:`ExtensionError` otherwise) and exist; a folder gives its image
    files that are not AxonDeepSeg outputs or labels (AxonDeepSeg's ``segment_folder`` rule). InputError when a
    path does not exist or nothing is left.
    """
    images = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_candidate_image(p))
            if not found:
                raise InputError(f"{path}: no images found in this folder; give PNG, JPEG or TIFF images.")
            images.extend(found)
            continue
        if image_extension(path) is None:
            raise ExtensionError(
                f"{path}: invalid extension; give a .png, .tif, .tiff, .jpg or .jpeg image (or a folder)."
            )
        if not path.is_file():
            raise InputError(f"{path}: no such file; check the path.")
        images.append(path)
    if not images:
        raise InputError("no input images; give one or more images or folders with -i.")
    seen = {}
    for image in images:
        key = image.resolve()
        if key in seen:
            raise InputError(f"{image}: given twice; give each image once.")
        seen[key] = image
    return images


def select_card(target=None, strategy=None, source="TEM", name=None) -> ModelCard:
    """The card named ``name``, or the card for ``source -> target`` with ``strategy``; its files must exist."""
    card = get_card(name) if name else find_card(source, target, strategy)
    return require_files(card)


def device_for_gpu(gpu_id, warn=warn_stderr) -> str:
    """``'cpu'`` for a negative ``gpu_id`` (AxonDeepSeg's -1 default), else ``'cuda:<id>'``.

    As AxonDeepSeg: warns and uses the CPU when no GPU is visible; InputError for an id that is not available.
    """
    if gpu_id is None or int(gpu_id) < 0:
        return "cpu"
    import torch

    n = torch.cuda.device_count()
    if n == 0:
        warn("no GPU available, using the CPU.")
        return "cpu"
    if int(gpu_id) >= n:
        raise InputError(f"--gpu-id {gpu_id}: GPU not available; the available GPU IDs are {list(range(n))}.")
    return f"cuda:{int(gpu_id)}"


def pixel_size_warnings(card, images, pixel_size=None) -> list:
    """One warning per image whose pixel size is more than 2x outside ``card``'s range (none when unknown).

    An image's pixel size is the one found beside it (:func:`read_pixel_size`), else ``pixel_size``.
    """
    low, high = card.pixel_size
    messages = []
    for image in images:
        value = read_pixel_size(image)
        value = value if value is not None else pixel_size
        if value is not None and card.pixel_size_outside(value, PIXEL_SIZE_TOLERANCE):
            messages.append(
                f"{image}: pixel size {value:g} um/px is more than {PIXEL_SIZE_TOLERANCE:g}x outside the "
                f"{low:g}-{high:g} um/px that model {card.name} was trained on; the pseudo labels may be poor "
                f"(resample the image or use a model trained at this scale)."
            )
    return messages


def check_inputs(card, images, pixel_size=None, allow_large=False):
    """Read every image once and check it against the pixel budget on the card's U grid, before any warning or work.

    Every path of a card first rescales a U image to the translation model's U working pixel size (the tutorship and
    proxy models work there too), so one check covers them. InputError (one line) for a corrupt image or one that
    would exceed the budget (:func:`ads_synth.data.resample.check_working_size`).
    """
    from ads_synth.data.images import check_images, pixel_size_source
    from ads_synth.data.resample import check_working_size

    shapes = check_images(images, allow_large=allow_large)
    work_u = card.working_pixel_size("U")
    if work_u is None:
        return  # reported when the model loads
    for image, shape in zip(images, shapes):
        value = read_pixel_size(image)
        value = value if value is not None else pixel_size
        if value is not None:
            check_working_size(shape, value, work_u, what=str(image), source=pixel_size_source(image),
                               grid=f"model {card.name}")


def run_pseudo_labels(
    paths,
    *,
    target=None,
    strategy=None,
    source="TEM",
    card=None,
    gpu_id=-1,
    overwrite=False,
    out_dir=None,
    pixel_size=None,
    progress=True,
    warn=warn_stderr,
    allow_large=False,
    myelin_boundary=False,
) -> list:
    """Pseudo-label images or folders with the family's model for ``source -> target`` and ``strategy``.

    Parameters
    ----------
    paths : list of str or Path
        Images and/or folders (as AxonDeepSeg's ``-i``).
    target, strategy, source : str
        Select the card (``strategy``: ``'tutor'``, ``'adapt'`` or ``'proxy'``); ignored when ``card`` is given.
    card : ModelCard or str, optional
        A card or a card name to use instead.
    gpu_id : int
        -1 for the CPU, else the CUDA device index (AxonDeepSeg's ``--gpu-id``).
    overwrite : bool
        Replace existing output files; without it an existing output is an InputError and nothing is written.
    out_dir : Path, optional
        Where to write instead of beside each image.
    pixel_size : float, optional
        Micrometres per pixel of the images that carry none (``pixel_size_in_micrometer.txt``, a BIDS sidecar or
        TIFF tags beside or in the image); an image without either is an InputError.
    progress : bool
        Show progress bars.
    warn : callable
        Receives each warning line (pixel size far outside the model's range, no GPU).
    allow_large : bool
        Read images over PIL's decompression-bomb limit (``--allow-large-images``).
    myelin_boundary : bool
        Also place each myelin boundary at half-way intensity (``--myelin-boundary``; on too when the card says
        so, :attr:`~ads_synth.cards.schema.ModelCard.myelin_boundary`).

    Returns
    -------
    list of dict
        What :func:`ads_synth.segmentation.pseudo.pseudo_label_images` returns, one dict per image.
    """
    images = images_from_paths(paths)
    if isinstance(card, str):
        card = select_card(name=card)
    elif card is None:
        card = select_card(target, strategy, source)
    else:
        require_files(card)
    require_verified_card(card)  # sha256 of every file (cached by size and mtime): damaged weights stop here
    if pixel_size is not None:
        pixel_size = check_pixel_size(pixel_size, "--pixel-size")
    check_inputs(card, images, pixel_size, allow_large)
    device = device_for_gpu(gpu_id, warn)
    for message in pixel_size_warnings(card, images, pixel_size):
        warn(message)
    from ads_synth.segmentation.pseudo import pseudo_label_images

    return pseudo_label_images(
        images,
        translation=card.translation,
        segmentation=card.nnunet,
        strategy=card.strategy,
        out_dir=out_dir,
        overwrite=overwrite,
        folds=list(card.folds) if card.folds is not None else None,
        device=device,
        progress=progress,
        pixel_size=pixel_size,
        allow_large=allow_large,
        myelin_boundary=myelin_boundary or card.myelin_boundary,
    )


@dataclass
class PseudoLabelResult:
    """What :func:`pseudo_label_file` wrote for one image, and the warnings it gave."""

    image: Path
    card: str
    axon: Path
    myelin: Path
    axonmyelin: Path
    warnings: list = field(default_factory=list)

    @property
    def stem(self) -> str:
        """The image's stem: AxonDeepSeg's layer and file name base."""
        return self.image.stem


def pseudo_label_file(image, card_name, *, gpu_id=-1, overwrite=False, pixel_size=None, out_dir=None,
                      progress=False) -> PseudoLabelResult:
    """Pseudo-label one image file with the card ``card_name``; the GUIs' action.

    Raises InputError (nothing written) for a bad image, card or existing outputs without ``overwrite``.
    """
    if image is None or not str(image):
        raise InputError("no image file: open the image from a file (the layer must have a file path).")
    image = Path(image)
    warnings = []
    run_pseudo_labels(
        [image],
        card=card_name,
        gpu_id=gpu_id,
        overwrite=overwrite,
        out_dir=out_dir,
        pixel_size=pixel_size,
        progress=progress,
        warn=warnings.append,
    )
    paths = segmentation_paths(image, out_dir)
    for path in paths.values():
        if not path.is_file():
            raise RuntimeError(f"{path} was not written by the pseudo-labelling")
    return PseudoLabelResult(image, card_name, paths["axon"], paths["myelin"], paths["axonmyelin"], warnings)


def read_masks(result) -> dict:
    """``{'axon': bool array, 'myelin': bool array}`` of a :class:`PseudoLabelResult` (as ADS's widget reads)."""
    from ads_synth.data.images import read_label

    return {"axon": read_label(result.axon) > 0, "myelin": read_label(result.myelin) > 0}


def installed_cards() -> list:
    """Cards whose files are all on disk (the choices the GUIs offer)."""
    from ads_synth.cards.lookup import list_cards

    return [c for c in list_cards() if c.is_installed()]
