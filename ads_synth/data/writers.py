"""Writing results the AxonDeepSeg way, atomically and never over an existing file without ``overwrite``.

* :func:`write_ads_segmentation`: ``<stem>_seg-axon.png`` (axon 255 / 0), ``<stem>_seg-myelin.png``
  (myelin 255 / 0) and ``<stem>_seg-axonmyelin.png`` (0 background / 127 myelin / 255 axon), the names and
  values of ``AxonDeepSeg/params.py`` and ``AxonDeepSeg/apply_model.py`` / ``visualization/merge_masks.py``;
  ``<stem>`` is ``Path(image).stem`` as in AxonDeepSeg's morphometrics. Written beside the image or into
  ``out_dir``.
* :func:`write_image`: an 8-bit (or 16-bit) PNG / TIFF.
* :func:`write_float_tiff`: a float32 / float16 TIFF (confidence or probability maps).
* :func:`write_pixel_size`: ``pixel_size_in_micrometer.txt``.

Every writer checks all its targets before writing anything (:func:`check_targets`; a dangling symlink counts as
an existing file), writes each file to a temporary name in the same folder, fsyncs it and moves it into place
with ``os.replace``; a set of files written together (:func:`_write_all`) is all-or-nothing.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np

from ads_synth.atomic import fsync_dir, fsync_file, remove_stale_temps, temp_prefix
from ads_synth.data.images import PIXEL_SIZE_FILE, check_pixel_size
from ads_synth.errors import InputError

#: AxonDeepSeg's output suffixes (``AxonDeepSeg.params``) and the values written.
AXON_SUFFIX = "_seg-axon.png"
MYELIN_SUFFIX = "_seg-myelin.png"
AXONMYELIN_SUFFIX = "_seg-axonmyelin.png"
AXON_VALUE = 255
MYELIN_VALUE = 127  # np.iinfo(np.uint8).max // 2 in AxonDeepSeg.params.intensity
BINARY_VALUE = 255

_PNG = (".png",)
_TIFF = (".tif", ".tiff")


def check_targets(paths, overwrite=False):
    """InputError when any of ``paths`` exists (and ``overwrite`` is False) or its folder cannot be used.

    Checks all paths before anything is written, so that a refused run changes nothing.
    """
    paths = [Path(p) for p in paths]
    for p in paths:
        if p.is_dir():
            raise InputError(f"{p}: is a folder, cannot write a file there; remove it or choose another output.")
        if os.path.lexists(p) and not overwrite:  # a dangling symlink counts as existing
            raise InputError(
                f"{p}: already exists; pass --overwrite to replace it, or choose another output folder."
            )
        parent = p.parent
        probe = parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise InputError(f"{parent}: cannot create the output folder ({probe} is not a folder).")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise InputError(f"{probe}: the folder is not writable; choose another output folder.")
    return paths


def _tmp_name(path):
    """A fresh hidden name beside ``path`` (created by the writer itself, so the umask applies as usual)."""
    return path.parent / f"{temp_prefix(path)}{secrets.token_hex(4)}.tmp"


def _save_png(arr, tmp):
    from PIL import Image

    Image.fromarray(arr).save(tmp, format="PNG")  # uint8 or uint16


def _save_tiff(arr, tmp, pixel_size=None, compression=None):
    import tifffile

    kwargs = {}
    if pixel_size is not None:
        per_cm = 1e4 / float(pixel_size)
        kwargs.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    photometric = "minisblack" if arr.ndim == 2 else "rgb"
    tifffile.imwrite(tmp, arr, photometric=photometric, compression=compression, metadata=None, **kwargs)


def _write_all(items, overwrite):
    """``items``: list of ``(path, writer)`` where ``writer(tmp_path)`` writes the file. All or nothing.

    Every file is first written (and fsynced) under a temporary name; only then are they renamed into place. When
    anything fails, the temporary files are removed and the files already renamed are taken back (a file they
    replaced is restored from a hard link kept until the end), so the set is either all new or all as before.
    Stale temporary files of killed runs for these names are removed first (:func:`remove_stale_temps`).
    """
    paths = check_targets([p for p, _ in items], overwrite)
    for p in {p.parent for p in paths}:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"{p}: cannot create the output folder ({err}).") from None
        remove_stale_temps(p, names=[q.name for q in paths if q.parent == p])
    temps, backups, done = [], {}, []
    try:
        for path, writer in items:
            tmp = _tmp_name(Path(path))
            temps.append((tmp, Path(path)))
            writer(tmp)
            fsync_file(tmp)
        for tmp, path in temps:
            if os.path.lexists(path) and len(temps) > 1:
                backup = _tmp_name(path)
                try:
                    os.link(path, backup, follow_symlinks=False)
                    backups[path] = backup
                except OSError:  # no hard links here: the old file cannot be restored, only removed
                    pass
        for tmp, path in temps:
            os.replace(tmp, path)
            done.append(path)
        for folder in {p.parent for p in paths}:
            fsync_dir(folder)
    except BaseException:
        for path in reversed(done):
            try:
                if path in backups:
                    os.replace(backups.pop(path), path)
                else:
                    os.unlink(path)
            except OSError:
                pass
        for tmp, _ in temps:
            try:
                tmp.unlink()
            except OSError:
                pass
        raise
    finally:
        for backup in backups.values():
            try:
                backup.unlink()
            except OSError:
                pass
    return paths


def _as_image_array(array, path):
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"write_image({path}): expected a uint8 or uint16 array, got {arr.dtype} (convert it first, e.g. with "
            f"ads_synth.data.normalize.denormalize)"
        )
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8:
        return arr
    if arr.ndim != 2:
        raise ValueError(f"write_image({path}): expected a 2-D (or RGB / RGBA) array, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def image_writer(path, array, pixel_size=None):
    """``writer(tmp)`` that saves a uint8 (or uint16) 2-D image as PNG or TIFF (from the ending of ``path``)."""
    path = Path(path)
    arr = _as_image_array(array, path)
    ext = path.suffix.lower()
    if ext in _PNG:
        return lambda tmp: _save_png(arr, tmp)
    if ext in _TIFF:
        if pixel_size is not None:
            pixel_size = check_pixel_size(pixel_size, "pixel size")
        return lambda tmp: _save_tiff(arr, tmp, pixel_size)
    raise InputError(f"{path}: unsupported output type; use a .png, .tif or .tiff file name.")


def write_image(path, array, overwrite=False, pixel_size=None) -> Path:
    """Write a uint8 (or uint16) 2-D image as PNG or TIFF (from the file ending), atomically.

    ``pixel_size`` (micrometres per pixel) is stored in the TIFF resolution tags; PNGs carry none (use
    :func:`write_pixel_size`). InputError if the file exists and ``overwrite`` is False.
    """
    path = Path(path)
    return _write_all([(path, image_writer(path, array, pixel_size))], overwrite)[0]


def float_tiff_writer(path, array, pixel_size=None, dtype=np.float32):
    """``writer(tmp)`` that saves a float map ``(H, W)`` or ``(C, H, W)`` as a float TIFF."""
    path = Path(path)
    if path.suffix.lower() not in _TIFF:
        raise InputError(f"{path}: float maps are written as TIFF; use a .tif or .tiff file name.")
    arr = np.asarray(array)
    if arr.ndim not in (2, 3):
        raise ValueError(f"write_float_tiff({path}): expected (H, W) or (C, H, W), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if pixel_size is not None:
        pixel_size = check_pixel_size(pixel_size, "pixel size")

    def writer(tmp):
        import tifffile

        kwargs = {}
        if pixel_size is not None:
            per_cm = 1e4 / float(pixel_size)
            kwargs.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
        tifffile.imwrite(tmp, arr, photometric="minisblack", metadata=None,
                         planarconfig="separate" if arr.ndim == 3 else None, **kwargs)

    return writer


def write_float_tiff(path, array, overwrite=False, pixel_size=None, dtype=np.float32) -> Path:
    """Write a float map ``(H, W)`` or ``(C, H, W)`` (e.g. confidence / probabilities) as a float TIFF, atomically."""
    path = Path(path)
    return _write_all([(path, float_tiff_writer(path, array, pixel_size, dtype))], overwrite)[0]


def write_files(items, overwrite=False) -> list[Path]:
    """Write a set of files all-or-nothing: ``items`` is a list of ``(path, writer)`` (e.g. from
    :func:`image_writer`, :func:`float_tiff_writer`, :func:`segmentation_items`); see :func:`_write_all`."""
    return _write_all([(Path(p), w) for p, w in items], overwrite)


def write_pixel_size(folder, value, overwrite=False) -> Path:
    """Write ``pixel_size_in_micrometer.txt`` into ``folder`` (AxonDeepSeg's convention), atomically.

    An existing file with the same value is left as is; one with another value raises InputError unless
    ``overwrite``.
    """
    value = check_pixel_size(value, "pixel size")
    path = Path(folder) / PIXEL_SIZE_FILE
    if path.is_file():
        try:
            existing = float(path.read_text(encoding="utf-8").split()[0])
        except (OSError, ValueError, IndexError):
            existing = None
        if existing is not None and abs(existing - value) <= 1e-9 * max(abs(value), 1e-12):
            return path
        if not overwrite:
            raise InputError(
                f"{path}: already exists with pixel size {existing if existing is not None else 'unreadable'} "
                f"(not {value:g}); pass --overwrite to replace it, or choose another output folder."
            )
    text = f"{value!r}\n"
    return _write_all([(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))], True)[0]


def segmentation_paths(image_path, out_dir=None) -> dict:
    """``{'axon', 'myelin', 'axonmyelin'} -> Path`` of AxonDeepSeg's output files for ``image_path``."""
    image_path = Path(image_path)
    folder = Path(out_dir) if out_dir is not None else image_path.parent
    stem = image_path.stem
    return {
        "axon": folder / f"{stem}{AXON_SUFFIX}",
        "myelin": folder / f"{stem}{MYELIN_SUFFIX}",
        "axonmyelin": folder / f"{stem}{AXONMYELIN_SUFFIX}",
    }


def segmentation_images(label_map) -> dict:
    """The three uint8 AxonDeepSeg masks of a label map (0 background, 1 myelin, 2 axon)."""
    lm = np.asarray(label_map)
    if lm.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {lm.shape}")
    if lm.size and (lm.min() < 0 or lm.max() > 2):
        raise ValueError(f"label map values must be 0 (background), 1 (myelin) or 2 (axon); got max {lm.max()}")
    axon = lm == 2
    myelin = lm == 1
    axonmyelin = np.zeros(lm.shape, dtype=np.uint8)
    axonmyelin[myelin] = MYELIN_VALUE
    axonmyelin[axon] = AXON_VALUE
    return {
        "axon": axon.astype(np.uint8) * np.uint8(BINARY_VALUE),
        "myelin": myelin.astype(np.uint8) * np.uint8(BINARY_VALUE),
        "axonmyelin": axonmyelin,
    }


def segmentation_items(label_map, image_path, out_dir=None) -> list:
    """``(path, writer)`` of AxonDeepSeg's three mask files for ``label_map`` (for :func:`write_files`)."""
    masks = segmentation_images(label_map)
    paths = segmentation_paths(image_path, out_dir)
    return [(paths[k], (lambda tmp, m=masks[k]: _save_png(m, tmp))) for k in ("axon", "myelin", "axonmyelin")]


def write_ads_segmentation(label_map, image_path, out_dir=None, overwrite=False) -> list[Path]:
    """Write ``<stem>_seg-axon.png``, ``<stem>_seg-myelin.png``, ``<stem>_seg-axonmyelin.png`` atomically.

    Beside the image by default, or into ``out_dir``. All three targets are checked first: InputError naming the
    first existing one (suggesting ``--overwrite``) and nothing written. Returns the paths in that order.
    """
    return _write_all(segmentation_items(label_map, image_path, out_dir), overwrite)
