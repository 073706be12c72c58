"""Whole-image translation with a trained SynDiff model: pixel-size rescale, overlapping tiles, cosine blending.

Pixel-size rule. A model stores the working pixel size of each domain (``model.extra["pixel_size"]``, micrometres
per pixel, see :mod:`ads_synth.translation.tiles`). An image of the source domain ``S`` at ``pixel_size`` is
rescaled to ``S``'s working pixel size, normalised to [-1, 1], cut into overlapping tiles, translated in batches
(:meth:`SynDiff.translate`, only the diffusive generator of the direction), blended with cosine windows
(:func:`ads_synth.data.tiling.apply_tiled`, memory bounded by one band of tiles) and mapped from [-1, 1] to the full
8-bit range. On that working grid the result depicts the target domain ``T`` at ``T``'s working pixel size: a pixel
of ``S``'s grid becomes a pixel of ``T``'s grid.

* ``output_grid="input"``: the result is resized back to the input's shape; its effective pixel size is
  ``pixel_size * work_T / work_S`` (the input's field of view, at the target's scale).
* ``output_grid="model"``: the result stays on the working grid; its effective pixel size is ``work_T``. The
  nnU-Net tutorship pipeline uses this and rescales labels to match.

The *effective* pixel size is the target domain's scale (what a model of ``T`` should read the image as). The
files :func:`translate_files` writes beside an output give its *physical* pixel size (``pixel_size`` on the input
grid, ``work_S`` on the model grid: the field of view is the input's), which is what morphometrics need; the
effective one is kept in the sidecar as ``DomainPixelSize``.

Glass: tiles in a flat region (empty glass around a section, :mod:`ads_synth.data.glass`) are not translated; the
region's mean translation over a few of its tiles (seeds ``seed * 1_000_003 + 10**9 + r`` for region ``r``) fills
them, so glass comes out flat and the segmentation leaves it out too (``$ADS_SYNTH_GLASS=run``: every tile).

Seeds: tile ``k`` (in reading order) has seed ``seed * 1_000_003 + k`` (its own generator,
:meth:`ads_synth.translation.model.SynDiff.translate`), so a result depends only on ``seed`` and the tiling, not on
how many tiles go through the network at once. Batches hold :data:`BATCH_PIXELS` pixels (16 tiles of 128): on a
2-core CPU 1.7-2x faster than 4 tiles a call, the networks' many small operations costing less per tile.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ads_synth.data.glass import flat_regions, flat_tiles, skip_glass
from ads_synth.data.images import PIXEL_SIZE_FILE, check_pixel_size, read_image, read_pixel_size_file
from ads_synth.data.normalize import apply_normalization, normalization_params, to_uint8
from ads_synth.data.resample import check_working_size, rescale_to_pixel_size, rescaled_shape, resize_to, scale_factor
from ads_synth.data.tiling import apply_tiled, tile_positions
from ads_synth.errors import InputError
from ads_synth.atomic import atomic_write_text
from ads_synth.device import resolve_device
from ads_synth.integrity import require_finite
from ads_synth.translation.formats import is_run_dir, run_model_dir

DIRECTIONS = ("L2U", "U2L")
#: Pixels of the tiles translated in one network call by default (:func:`default_batch_size`).
BATCH_PIXELS = 16 * 128 * 128
OUTPUT_GRIDS = ("input", "model")


def _domains(direction):
    if direction not in DIRECTIONS:
        raise InputError(f"--direction {direction!r}: choose L2U (labeled to unlabeled) or U2L.")
    return direction[0], direction[-1]


def working_pixel_sizes(model, source="model"):
    """``{"L": p_L, "U": p_U}`` from ``model.extra``; InputError when the model has none."""
    extra = getattr(model, "extra", None) or {}
    sizes = extra.get("pixel_size") if isinstance(extra, dict) else None
    if not isinstance(sizes, dict) or not all(k in sizes for k in ("L", "U")):
        raise InputError(f"{source}: the model carries no working pixel sizes (extra['pixel_size']); use a model "
                         "trained with 'ads-synth translation train'.")
    return {k: check_pixel_size(sizes[k], f"{source} working pixel size {k}") for k in ("L", "U")}


def default_tile(model):
    """Tile side for translation: the model's ``tile_size`` (the training tile, rounded up to its size multiple)."""
    if hasattr(type(model), "tile_size"):
        return int(model.tile_size)
    size, m = int(model.config.image_size), int(getattr(model, "size_multiple", 1))
    return -(-size // m) * m


def default_batch_size(tile) -> int:
    """Tiles per network call for tiles of side ``tile``: :data:`BATCH_PIXELS` worth, at least one."""
    return max(1, BATCH_PIXELS // (int(tile) * int(tile)))


def translate_image(model, image, pixel_size, direction, *, output_grid="input", tile=None, overlap=None,
                    batch_size=None, seed=0, progress=True, glass=None):
    """Translate one whole 2-D image.

    Parameters
    ----------
    model : Translator
        Translation model with working pixel sizes in ``model.extra`` (:func:`load_translation_model`).
    image : numpy.ndarray
        2-D grayscale image of the source domain (any real dtype; normalised per image).
    pixel_size : float
        Micrometres per pixel of ``image``.
    direction : {"L2U", "U2L"}
    output_grid : {"input", "model"}
        Return the result on the input's grid or on the target's working grid (see the module docstring).
    tile : int, optional
        Tile side (a multiple of ``model.size_multiple``); default the training tile size.
    overlap : int, optional
        Minimum overlap of neighbouring tiles; default an eighth of the tile (cosine blending across it).
    batch_size : int, optional
        Tiles per network call (default :func:`default_batch_size` of the tile); the output does not depend on it.
    seed : int
        Seed of the diffusion sampling (see the module docstring).
    progress : bool
        tqdm bar over tiles.
    glass : bool, optional
        Give each flat region (empty glass, :mod:`ads_synth.data.glass`) the region's mean translation over a few
        of its tiles instead of translating every tile, so that it comes out flat and the segmentation leaves it
        out too; default ``$ADS_SYNTH_GLASS`` or True.

    Returns
    -------
    (numpy.ndarray, float)
        uint8 image and its effective pixel size (micrometres per pixel).

    Raises
    ------
    InputError
        No or an invalid pixel size, a bad direction / grid, a model without working pixel sizes.
    """
    source, target = _domains(direction)
    if output_grid not in OUTPUT_GRIDS:
        raise InputError(f"output grid {output_grid!r}: choose 'input' or 'model'.")
    if pixel_size is None:
        raise InputError("the image has no pixel size; give it with --pixel-size (micrometres per pixel).")
    pixel_size = check_pixel_size(pixel_size, "pixel size")
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"expected a 2-D grayscale image, got shape {image.shape}.")
    work = working_pixel_sizes(model)
    tile = int(tile or default_tile(model))
    multiple = int(getattr(model, "size_multiple", 1))
    if tile < multiple or tile % multiple:
        raise InputError(f"--tile {tile}: must be a positive multiple of {multiple} for this model.")
    overlap = tile // 8 if overlap is None else int(overlap)
    if not 0 <= overlap < tile:
        raise InputError(f"--overlap {overlap}: must be at least 0 and smaller than the tile ({tile}).")
    batch_size = default_batch_size(tile) if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: give at least 1 tile per forward pass.")
    check_working_size(image.shape, pixel_size, work[source], grid=f"the translation model's {source} domain")

    # normalise tile by tile with the whole image's percentiles: no float copy of the whole image
    low, high = getattr(model, "normalization", (0.5, 99.5))
    params = normalization_params(image, low, high)
    x = rescale_to_pixel_size(image, pixel_size, work[source], order=1)
    device = next(model.parameters()).device
    done = [0]

    @torch.no_grad()
    def run(batch, seeds, what):
        batch = apply_normalization(batch, params)
        xb = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None].to(device)
        yb = model.translate(xb, direction, seed=seeds)
        require_finite(yb, f"translation {direction} of {what}",
                       "the translation model's weights are damaged or diverged: reinstall or retrain it.")
        return yb[:, 0].float().cpu().numpy()

    was_training = model.training
    model.eval()
    try:
        fill = _glass_fill(x, tile, overlap, run, seed) if skip_glass(glass) else None
        # each translated tile keeps its raster index's seed, whether or not glass tiles are left out before it
        index = None if fill is None else np.flatnonzero(np.isnan(fill).ravel())

        def fn(batch):  # an int seed (tile b: seed + b) unless glass tiles were left out before some of these
            first = seed * 1_000_003
            seeds = (first + done[0] if index is None
                     else [first + int(k) for k in index[done[0]:done[0] + len(batch)]])
            out = run(batch, seeds, f"tiles {done[0]}-{done[0] + len(batch) - 1}")
            done[0] += len(batch)
            return out

        out = apply_tiled(x, fn, tile, overlap, batch_size=batch_size, progress=progress,
                          postprocess=to_uint8, desc=f"translate {direction}", fill=fill)
    finally:
        model.train(was_training)
    if output_grid == "model":
        return out, work[target]
    del x
    return resize_to(out, image.shape, order=1), pixel_size * work[target] / work[source]


def _glass_fill(x, tile, overlap, run, seed):
    """The constant output of each tile of ``x`` in a flat region (:mod:`ads_synth.data.glass`): the region's mean
    translation over a few of its tiles, so that glass comes out flat; NaN elsewhere. None when no region."""
    if x.shape[0] < tile or x.shape[1] < tile:
        return None
    ys, xs = tile_positions(x.shape[0], tile, overlap), tile_positions(x.shape[1], tile, overlap)
    regions = flat_regions(flat_tiles(x, ys, xs, (tile, tile)))
    if not regions:
        return None
    fill = np.full((len(ys), len(xs)), np.nan, np.float32)
    for r, (where, pick) in enumerate(regions):
        batch = np.stack([x[ys[i]:ys[i] + tile, xs[j]:xs[j] + tile] for i, j in pick])
        fill[tuple(where.T)] = run(batch, seed * 1_000_003 + 10 ** 9 + r, f"flat region {r + 1}").mean()
    return fill


def count_tiles(model, shape, pixel_size, direction, tile=None, overlap=None) -> int:
    """Tiles :func:`translate_image` translates for an image of ``shape`` at ``pixel_size`` (for progress)."""
    source, _ = _domains(direction)
    work = working_pixel_sizes(model)
    tile = int(tile or default_tile(model))
    overlap = tile // 8 if overlap is None else int(overlap)
    return len(tile_positions(rescaled_shape(shape, scale_factor(pixel_size, work[source])), tile, overlap))


# ---------------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------------
def load_translation_model(path, device=None):
    """Load a translation model for inference.

    Parameters
    ----------
    path : str or Path
        A training run folder (its ``best/``, else with a warning ``best.old/`` or ``last/``, see
        :func:`ads_synth.translation.formats.run_model_dir`) or a folder written by ``save_pretrained``. Model
        card names are resolved by the command layer (:func:`ads_synth.commands._model_names.resolve_translation`).
    device : str or torch.device, optional
        Default CUDA when available.

    Returns
    -------
    Translator
        The type its ``config.json`` names (:mod:`ads_synth.translation.translators`; SynDiff when it names none),
        in eval mode on ``device``, with working pixel sizes in ``model.extra``.

    Raises
    ------
    InputError
        Not found, not a translation model, or a run without a saved model yet.
    """
    from ads_synth.translation.translators import load_translator

    device = resolve_device(device)
    given = str(path)
    path = Path(path)
    if not path.exists():
        raise InputError(f"{given}: no such model folder or model card; give a training run folder, a "
                         "folder saved by ads-synth translation train (best/ or last/) or a card name "
                         "(ads-synth models list).")
    if path.is_dir() and is_run_dir(path):
        found = run_model_dir(path)
        if found is None:
            raise InputError(f"{given}: this training run has saved no model yet (best/ or last/); wait for its "
                             "first scoring or checkpoint.")
        path = found
    try:
        model = load_translator(path, map_location=device)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to read means "not a translation model"
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{given}: not a translation model ({msg}); give a training run folder or its "
                         "best/ or last/ folder.") from None
    working_pixel_sizes(model, given)
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------------
def output_name(image_name, direction):
    """File name of a translated image: ``<stem>_<direction>.png``."""
    return f"{image_name}_{direction}.png"


def translate_files(model_dir, inputs, out_dir, direction, *, overwrite=False, device=None, pixel_size=None,
                    output_grid="input", tile=None, overlap=None, batch_size=None, seed=0, progress=True):
    """Translate image files and write ``<stem>_<direction>.png`` (8-bit) into ``out_dir``.

    Beside each image goes a sidecar ``<stem>_<direction>.json`` with its physical ``PixelSize`` (micrometres; the
    target domain's effective one as ``DomainPixelSize``, see the module docstring); when all written images share
    one pixel size, ``pixel_size_in_micrometer.txt`` (AxonDeepSeg's convention) is written too. Every input (read
    once to check it), pixel size, option and output file is checked before anything is written.

    Parameters
    ----------
    model_dir : str, Path or SynDiff
        What :func:`load_translation_model` accepts, or a loaded model.
    inputs : list of str or Path
        Image files, folders, BIDS or nnU-Net datasets (:func:`ads_synth.data.datasets.find_samples`).
    out_dir : str or Path
    direction : {"L2U", "U2L"}
    overwrite : bool
        Replace existing outputs.
    device : str, optional
    pixel_size : float, optional
        Micrometres per pixel of inputs that carry none (each image's own pixel size wins, as everywhere).
    output_grid, tile, overlap, batch_size, seed, progress
        As in :func:`translate_image`.

    Returns
    -------
    list of Path
        The images written.
    """
    from ads_synth.data.datasets import find_samples
    from ads_synth.data.datasets import sample_pixel_sizes
    from ads_synth.data.images import check_images, pixel_size_source
    from ads_synth.data.writers import check_targets, write_image, write_pixel_size

    _domains(direction)
    if output_grid not in OUTPUT_GRIDS:
        raise InputError(f"output grid {output_grid!r}: choose 'input' or 'model'.")
    if not inputs:
        raise InputError("no input images given; pass -i IMAGE_OR_FOLDER.")
    samples, names = [], {}
    for item in inputs:
        for s in find_samples(item):
            if s.name in names:
                if Path(names[s.name]).resolve() == Path(s.image).resolve():
                    continue
                raise InputError(f"{s.image}: same name as {names[s.name]}; both would write "
                                 f"{output_name(s.name, direction)}: translate them into different folders.")
            names[s.name] = s.image
            samples.append(s)
    sizes = sample_pixel_sizes(samples, pixel_size)
    if batch_size is not None and int(batch_size) < 1:
        raise InputError(f"--batch-size {batch_size}: give at least 1 tile per forward pass.")
    shapes = check_images([s.image for s in samples])  # a corrupt or truncated image fails before any output
    model = model_dir if isinstance(model_dir, torch.nn.Module) else load_translation_model(model_dir, device)
    work = working_pixel_sizes(model, str(model_dir) if not isinstance(model_dir, torch.nn.Module) else "model")
    source, target = _domains(direction)
    for s, px, shape in zip(samples, sizes, shapes):
        check_working_size(shape, px, work[source], what=str(s.image), source=pixel_size_source(s.image),
                           grid=f"the translation model's {source} domain")
    domain_px = [work[target] if output_grid == "model" else px * work[target] / work[source] for px in sizes]
    # the outputs' physical pixel size: the input's field of view on the output's grid
    effective = [work[source] if output_grid == "model" else px for px in sizes]

    out_dir = Path(out_dir)
    images = [out_dir / output_name(s.name, direction) for s in samples]
    sidecars = [p.with_suffix(".json") for p in images]
    check_targets(images + sidecars, overwrite)
    uniform = max(effective) - min(effective) <= 1e-9 * max(effective)
    txt = out_dir / PIXEL_SIZE_FILE
    if uniform and txt.is_file() and not overwrite:
        try:
            existing = read_pixel_size_file(txt)
        except InputError:
            existing = None
        if existing is None or abs(existing - effective[0]) > 1e-9 * effective[0]:
            raise InputError(f"{txt}: already exists with another pixel size than {effective[0]:g}; pass "
                             "--overwrite or choose another output folder.")

    written = []
    for k, (sample, px, eff, dom, out_path, sidecar) in enumerate(zip(samples, sizes, effective, domain_px, images,
                                                                    sidecars)):
        if progress:
            print(f"[{k + 1}/{len(samples)}] {sample.image} ({px:g} um/px) -> {out_path} ({eff:g} um/px)")
        result, _ = translate_image(model, read_image(sample.image), px, direction, output_grid=output_grid,
                                    tile=tile, overlap=overlap, batch_size=batch_size, seed=seed, progress=progress)
        write_image(out_path, result, overwrite=overwrite)
        atomic_write_text(sidecar, json.dumps({"PixelSize": [eff, eff], "PixelSizeUnits": "um",
                                               "DomainPixelSize": dom, "TranslatedFrom": str(sample.image),
                                               "Direction": direction}) + "\n")
        written.append(out_path)
    if uniform:
        write_pixel_size(out_dir, effective[0], overwrite=overwrite)
    return written
