"""Reading microscopy images and their pixel size.

:func:`read_image` returns a 2-D grayscale array (uint8, or uint16 for 16-bit sources) from PNG, JPEG, 8/16-bit
TIFF and OME-TIFF files. Colour images become gray the way AxonDeepSeg's ``ads_utils.imread`` does it: RGB and
RGBA use the luminance weights 0.299 / 0.587 / 0.114 (alpha dropped) followed by imageio's ``image_as_uint``
min-max stretch to the full range; gray + alpha keeps the gray channel. Images over PIL's decompression-bomb
limit (``PIL.Image.MAX_IMAGE_PIXELS``) are refused unless ``allow_large=True`` (AxonDeepSeg's
``--allow-large-images`` idea).

:func:`read_pixel_size` finds micrometres per pixel in, in this order: a BIDS sidecar (``<image>.json``, then an
inherited sidecar such as ``sub-373C_TEM.json`` in the same or a parent folder of the BIDS tree), a
``pixel_size_in_micrometer.txt`` beside the image (the AxonDeepSeg convention), the TIFF resolution tags
(XResolution + ResolutionUnit centimeter/inch, ImageJ's ``unit=micron``) or OME-XML ``PhysicalSizeX``.

Only numpy, PIL and tifffile are used here; AxonDeepSeg is never imported.
"""

from __future__ import annotations

import json
import math
import re
import threading
import warnings
from pathlib import Path

import numpy as np

from ads_synth.errors import InputError

#: File endings read as images (AxonDeepSeg's ``params.valid_extensions``), longest first.
IMAGE_EXTENSIONS = (
    ".ome.tiff",
    ".ome.tif",
    ".ome.tf2",
    ".ome.tf8",
    ".ome.btf",
    ".tiff",
    ".tif",
    ".png",
    ".jpeg",
    ".jpg",
)
TIFF_EXTENSIONS = (".ome.tiff", ".ome.tif", ".ome.tf2", ".ome.tf8", ".ome.btf", ".tiff", ".tif")

#: AxonDeepSeg's file name for the pixel size of the images in a folder.
PIXEL_SIZE_FILE = "pixel_size_in_micrometer.txt"

#: Smallest accepted image side in pixels.
MIN_SIDE = 8

# Micrometres per unit.
_UNIT_UM = {
    "m": 1e6,
    "cm": 1e4,
    "mm": 1e3,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "pm": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
}
# Resolutions that image software writes by default (dots per inch): not a microscope's pixel size.
_DEFAULT_DPI = {72, 96, 100, 150, 200, 240, 300, 600, 1200, 2400}

_PIL_LOCK = threading.Lock()


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------
def image_extension(path) -> str | None:
    """Return the image file ending of ``path`` (e.g. ``'.ome.tif'``), lower case, or None if not an image."""
    name = Path(path).name.lower()
    for ext in IMAGE_EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    return None


def is_image_file(path) -> bool:
    """True for a file name with an image ending (PNG, JPEG, TIFF, OME-TIFF)."""
    return image_extension(path) is not None


def _is_tiff(path) -> bool:
    ext = image_extension(path)
    return ext in TIFF_EXTENSIONS


def _bomb_limit():
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def _check_size(path, height, width, allow_large):
    if height < MIN_SIDE or width < MIN_SIDE:
        raise InputError(
            f"{path}: the image is {width} x {height} px, too small to process; "
            f"give an image at least {MIN_SIDE} px wide and high."
        )
    limit = _bomb_limit()
    if not allow_large and limit is not None and height * width > limit:
        raise InputError(
            f"{path}: the image has {height * width:,} pixels, more than the {int(limit):,} that PIL accepts "
            f"by default (decompression-bomb limit); if you trust the file, allow it with --allow-large-images."
        )


# ----------------------------------------------------------------------------------------------------------------
# conversion to gray, as AxonDeepSeg's imread does it
# ----------------------------------------------------------------------------------------------------------------
def _luminance_rows(img, rows):
    chunk = img[rows].astype(np.float64)
    return chunk[..., 0] * 0.299 + chunk[..., 1] * 0.587 + chunk[..., 2] * 0.114


def _rgb_to_gray(img, dtype):
    """Luminance (alpha ignored), then imageio's ``image_as_uint`` stretch, computed in row chunks.

    Equal to ``image_as_uint(np.sum(img * (.299, .587, .114[, 0]), axis=-1), bitdepth)`` as AxonDeepSeg
    computes it, without its full-size float64 temporaries.
    """
    height = img.shape[0]
    step = max(1, (1 << 22) // max(1, img.shape[1]))
    chunks = [slice(y, min(height, y + step)) for y in range(0, height, step)]
    lo, hi = np.inf, -np.inf
    for rows in chunks:
        g = _luminance_rows(img, rows)
        lo = min(lo, float(np.nanmin(g)))
        hi = max(hi, float(np.nanmax(g)))
    out = np.empty(img.shape[:2], dtype=dtype)
    maxval = float(np.iinfo(dtype).max)
    for rows in chunks:
        g = _luminance_rows(img, rows)
        if hi == lo:
            out[rows] = g.astype(dtype)
        elif lo >= 0 and hi <= 1:
            out[rows] = (g * maxval + 0.499999999).astype(dtype)
        else:
            out[rows] = ((g - lo) / (hi - lo) * maxval + 0.499999999).astype(dtype)
    return out


def _gray_to_uint(img):
    """Single-channel array of any dtype -> uint8 / uint16, keeping values where they fit."""
    if img.dtype == np.uint8 or img.dtype == np.uint16:
        return img
    if img.dtype == bool:
        return img.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(img.dtype, np.integer):
        lo, hi = int(img.min()), int(img.max())
        if lo >= 0 and hi <= 255:
            return img.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return img.astype(np.uint16)
        if hi == lo:
            return np.zeros(img.shape, np.uint16)
        return ((img.astype(np.float64) - lo) / (hi - lo) * 65535 + 0.499999999).astype(np.uint16)
    # floating point: imageio's image_as_uint rule, at 16 bits to keep the precision
    img = img.astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(img)))
    if bad:  # NaN / inf would be cast to arbitrary integers (numpy's RuntimeWarning): refuse them
        raise ValueError(f"{bad:,} of its {img.size:,} pixels are not finite numbers (NaN or infinity); replace "
                         "them (e.g. with the background value)")
    lo, hi = float(img.min()), float(img.max())
    if hi == lo:
        return np.full(img.shape, min(max(lo, 0), 65535), np.uint16)
    if lo >= 0 and hi <= 1:
        return (img * 65535 + 0.499999999).astype(np.uint16)
    return ((img - lo) / (hi - lo) * 65535 + 0.499999999).astype(np.uint16)


def to_gray(img) -> np.ndarray:
    """Convert an (H, W), (H, W, 2), (H, W, 3) or (H, W, 4) array to 2-D uint8/uint16 gray, as ADS does."""
    img = np.asarray(img)
    if img.ndim == 2:
        return _gray_to_uint(img)
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"unsupported image shape {img.shape}")
    channels = img.shape[2]
    if channels in (1, 2):  # gray, gray + alpha
        return _gray_to_uint(np.ascontiguousarray(img[:, :, 0]))
    if img.dtype == np.uint8:
        return _rgb_to_gray(img, np.uint8)
    if img.dtype == np.uint16:
        return _rgb_to_gray(img, np.uint16)
    # other colour dtypes: luminance then the gray rule
    return _gray_to_uint(_luminance_rows(img, slice(None)))


# ----------------------------------------------------------------------------------------------------------------
# readers
# ----------------------------------------------------------------------------------------------------------------
def _pil_open(path, allow_large):
    """Open with PIL with the bomb check lifted (we check the size ourselves); returns the loaded image."""
    from PIL import Image

    with _PIL_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                Image.MAX_IMAGE_PIXELS = None
                im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    width, height = im.size
    _check_size(path, height, width, allow_large)
    im.load()
    return im


def _pil_to_array(im):
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    arr = np.asarray(im)
    if mode.startswith("I;16") and arr.dtype != np.uint16:
        arr = arr.astype(np.uint16)
    return arr


def _read_pil(path, allow_large):
    from PIL import Image, UnidentifiedImageError

    try:
        im = _pil_open(path, allow_large)
        arr = _pil_to_array(im)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise InputError(
            f"{path}: cannot read the image ({_short(err)}); the file is corrupt or not an image, "
            f"replace it with a valid PNG, JPEG or TIFF file."
        ) from None
    return arr


def _short(err):
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:160]


def _tiff_array(path, allow_large):
    """Read the first image of a TIFF / OME-TIFF with tifffile as (H, W) or (H, W, channels)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        if getattr(series, "levels", None):
            series = series.levels[0]
        shape, axes = list(series.shape), series.axes
        # drop singleton axes
        keep = [i for i, n in enumerate(shape) if n != 1 or axes[i] in "YX"]
        sizes = {axes[i]: shape[i] for i in keep}
        extra = [a for a in sizes if a not in "YXSC"]
        if extra:
            planes = int(np.prod([sizes[a] for a in extra]))
            raise InputError(
                f"{path}: the TIFF holds a stack of {planes} images (axes {axes}), not one 2-D image; save "
                f"the plane to process as its own file."
            )
        if "Y" not in sizes or "X" not in sizes:
            raise InputError(f"{path}: the TIFF has no 2-D image (axes {axes}); save it as a 2-D image.")
        channels = sizes.get("S", 1) * sizes.get("C", 1)
        if channels not in (1, 2, 3, 4) or ("S" in sizes and "C" in sizes):
            raise InputError(
                f"{path}: the image has {channels} channels; ads-synth reads gray, gray+alpha, RGB or RGBA "
                f"images: save one channel (or an RGB image) as its own file."
            )
        _check_size(path, sizes["Y"], sizes["X"], allow_large)
        arr = series.asarray()
    arr = np.squeeze(arr)
    sq_axes = "".join(a for a, n in zip(axes, shape) if n != 1 or a in "YX")
    order = [sq_axes.index("Y"), sq_axes.index("X")] + [i for i, a in enumerate(sq_axes) if a not in "YX"]
    arr = np.transpose(arr, order)
    return arr


def _read_tiff(path, allow_large):
    try:
        arr = _tiff_array(path, allow_large)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - tifffile raises many types; fall back to PIL, then report
        try:
            return _read_pil(path, allow_large)
        except InputError as pil_err:
            if "cannot read" not in str(pil_err):  # a size problem found by PIL: report that one
                raise
            raise InputError(
                f"{path}: cannot read the TIFF image ({_short(err)}); the file is corrupt or uses an "
                f"unsupported encoding, save it again as an uncompressed 8- or 16-bit TIFF or PNG."
            ) from None
    return arr


def read_image(path, allow_large=False) -> np.ndarray:
    """Read an image file as a 2-D grayscale array (uint8, or uint16 for 16-bit sources).

    RGB / RGBA images are converted as AxonDeepSeg does (luminance, alpha dropped, stretch to the full range);
    gray + alpha keeps the gray channel. Raises :class:`InputError` for a missing, unreadable, corrupt, too
    small (< 8 px a side) or too large (over ``PIL.Image.MAX_IMAGE_PIXELS`` unless ``allow_large``) image.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path.")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image file (PNG, JPEG or TIFF).")
    if not is_image_file(path):
        raise InputError(
            f"{path}: unsupported file type; give a PNG, JPEG, TIFF or OME-TIFF image "
            f"({', '.join(IMAGE_EXTENSIONS)})."
        )
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise InputError(f"{path}: cannot open the file ({_short(err)}); check its permissions.") from None
    arr = _read_tiff(path, allow_large) if _is_tiff(path) else _read_pil(path, allow_large)
    try:
        gray = to_gray(arr)
    except ValueError as err:
        raise InputError(f"{path}: {err}; save it as an 8- or 16-bit gray or RGB image.") from None
    _check_size(path, gray.shape[0], gray.shape[1], True)
    return np.ascontiguousarray(gray)


def check_images(paths, allow_large=False) -> list:
    """Read every image once, so that a missing, corrupt or truncated one fails before anything is written.

    Returns the ``(height, width)`` of each image, in order. One image is held in memory at a time.
    """
    shapes = []
    for path in paths:
        shapes.append(tuple(read_image(path, allow_large=allow_large).shape))
    return shapes


def read_label(path) -> np.ndarray:
    """Read a label image as a 2-D array of its stored values (no contrast stretch, unlike :func:`read_image`).

    Gray(+alpha) keeps the gray channel; RGB(A) labels use the luminance weights (which keep gray values
    unchanged), rounded. Size limits as :func:`read_image` with ``allow_large=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such label file; check the path.")
    arr = _read_tiff(path, True) if _is_tiff(path) else _read_pil(path, True)
    if arr.ndim == 3:
        if arr.shape[2] in (1, 2):
            arr = arr[:, :, 0]
        else:
            gray = np.rint(_luminance_rows(arr, slice(None)))
            arr = gray.astype(arr.dtype if arr.dtype in (np.uint8, np.uint16) else np.uint16)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * np.uint8(255)
    return np.ascontiguousarray(arr)


def image_shape(path, allow_large=True) -> tuple[int, int]:
    """Return ``(height, width)`` of an image file from its header (no pixel decoding where possible)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path.")
    if _is_tiff(path):
        try:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                return int(series.shape[series.axes.index("Y")]), int(series.shape[series.axes.index("X")])
        except Exception:  # noqa: BLE001 - fall back to PIL
            pass
    from PIL import Image, UnidentifiedImageError

    with _PIL_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        try:
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(path) as im:
                width, height = im.size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise InputError(
                f"{path}: cannot read the image ({_short(err)}); the file is corrupt or not an image."
            ) from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    return height, width


# ----------------------------------------------------------------------------------------------------------------
# pixel size
# ----------------------------------------------------------------------------------------------------------------
def check_pixel_size(value, source) -> float:
    """Return ``value`` as a float in micrometres per pixel; InputError for zero, negative, NaN, non-numeric.

    ``source`` names where the value came from (a file, or an option such as ``--pixel-size``).
    """
    if isinstance(value, bool):
        value_f = math.nan
    else:
        try:
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            value_f = float(value.strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            shown = str(value).strip()
            hint = " (use a dot as decimal separator)" if re.fullmatch(r"\d+,\d+", shown) else ""
            raise InputError(
                f"{source}: pixel size {shown[:40]!r} is not a number{hint}; give the pixel size in "
                f"micrometres per pixel, e.g. 0.1."
            ) from None
    if not math.isfinite(value_f):
        raise InputError(
            f"{source}: pixel size {value!r} is not a finite number; give the pixel size in micrometres per "
            f"pixel, e.g. 0.1."
        )
    if value_f <= 0:
        raise InputError(
            f"{source}: pixel size {value_f:g} must be positive; give the pixel size in micrometres per pixel, "
            f"e.g. 0.1."
        )
    return value_f


def _unit_factor(unit, source):
    if unit is None:
        return 1.0
    key = str(unit).strip().lower().replace("micrometers", "micrometer").replace("micrometres", "micrometre")
    if key in ("", "um", "µm", "μm"):
        return 1.0
    if key in _UNIT_UM:
        return _UNIT_UM[key]
    raise InputError(f"{source}: unknown pixel size unit {unit!r}; use um, nm or mm.")


def read_pixel_size_file(path) -> float:
    """Read ``pixel_size_in_micrometer.txt`` (one number, micrometres per pixel) and check it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as err:
        raise InputError(f"{path}: cannot read the pixel size file ({_short(err)}).") from None
    if not text:
        raise InputError(f"{path}: the pixel size file is empty; write the pixel size in micrometres, e.g. 0.1.")
    return check_pixel_size(text.splitlines()[0].strip(), path)


def _bids_entities(stem):
    """Split a BIDS file stem into ({key: value}, suffix); suffix None when not BIDS-like."""
    parts = stem.split("_")
    if len(parts) < 2 or "-" in parts[-1]:
        return None, None
    entities = {}
    for part in parts[:-1]:
        if "-" not in part:
            return None, None
        key, _, value = part.partition("-")
        entities[key] = value
    return entities, parts[-1]


#: BIDS folder levels between an image and its dataset root: ``sub-*/[ses-*/]micr/``.
BIDS_DEPTH = 3


def bids_folders(path) -> list:
    """The folders from an image's own up to its BIDS dataset root (``micr``, ``ses-*``, ``sub-*`` climbed, at
    most :data:`BIDS_DEPTH`): ``[image folder]`` alone when the image is not inside a BIDS tree. The one BIDS walk
    of the package (sidecar inheritance here, label folders in :mod:`ads_synth.data.datasets`)."""
    folder = Path(path).parent
    folders = [folder]
    for _ in range(BIDS_DEPTH):
        if folder.name == "micr" or folder.name.startswith(("sub-", "ses-")):
            folder = folder.parent
            folders.append(folder)
        else:
            break
    return folders


def _sidecar_pixel_size(path):
    """Pixel size from ``<stem>.json`` or an inherited BIDS sidecar, or None."""
    return _sidecar_pixel_size_and_file(path)[0]


def _sidecar_pixel_size_and_file(path):
    """``(pixel size, sidecar file)`` from ``<stem>.json`` or an inherited BIDS sidecar, or ``(None, None)``."""
    path = Path(path)
    stem = _stem(path)
    candidates = [path.parent / f"{stem}.json"]
    entities, suffix = _bids_entities(stem)
    if entities is not None and "sub" in entities:
        for folder in bids_folders(path):
            found = []
            try:
                jsons = sorted(folder.glob(f"*{suffix}.json"))
            except OSError:
                jsons = []
            for js in jsons:
                js_entities, js_suffix = _bids_entities(js.name[: -len(".json")])
                if js_suffix is None and js.name == f"{suffix}.json":
                    js_entities, js_suffix = {}, suffix
                if js_suffix != suffix or js_entities is None:
                    continue
                if all(entities.get(k) == v for k, v in js_entities.items()):
                    found.append((len(js_entities), js))
            candidates.extend(js for _, js in sorted(found, key=lambda t: -t[0]))
    seen = set()
    for js in candidates:
        if js in seen or not js.is_file():
            continue
        seen.add(js)
        try:
            meta = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"{js}: cannot read the JSON sidecar ({_short(err)}); fix or remove it.") from None
        if not isinstance(meta, dict) or "PixelSize" not in meta:
            continue
        value = meta["PixelSize"]
        if isinstance(value, (list, tuple)):
            if not value:
                raise InputError(f"{js}: PixelSize is empty; write it as [x, y] in micrometres.")
            value = value[0]
        factor = _unit_factor(meta.get("PixelSizeUnits", "um"), js)
        return check_pixel_size(value, js) * factor, js
    return None, None


def _tiff_pixel_size(path):
    """Pixel size from OME-XML PhysicalSizeX or the TIFF resolution tags, or None."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            ome = tif.ome_metadata if tif.is_ome else None
            page = tif.pages[0]
            tags = page.tags
            xres = tags.get("XResolution")
            unit = tags.get("ResolutionUnit")
            xres = xres.value if xres is not None else None
            unit = int(unit.value) if unit is not None else 2  # TIFF default: inch
            ij_unit = None
            if tif.is_imagej and tif.imagej_metadata:
                ij_unit = tif.imagej_metadata.get("unit")
    except Exception:  # noqa: BLE001 - an unreadable TIFF is reported by read_image
        return None
    if ome:
        m = re.search(r"<Pixels\b[^>]*>", ome)
        if m:
            tag = m.group(0)
            size = re.search(r'PhysicalSizeX="([^"]+)"', tag)
            if size:
                unit_m = re.search(r'PhysicalSizeXUnit="([^"]+)"', tag)
                source = f"{path} (OME PhysicalSizeX)"
                factor = _unit_factor(unit_m.group(1) if unit_m else "µm", source)
                return check_pixel_size(size.group(1), source) * factor
    if xres is None:
        return None
    try:
        num, den = xres if isinstance(xres, tuple) else (float(xres), 1)
        per_unit = float(num) / float(den)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(per_unit) or per_unit <= 0:
        return None
    if ij_unit:
        try:
            factor = _unit_factor(ij_unit, path)
        except InputError:
            return None
        return factor / per_unit
    if unit == 3:  # centimeter
        return 1e4 / per_unit
    if unit == 2:  # inch
        if per_unit in _DEFAULT_DPI:
            return None  # a screen/print default, not a measurement
        return 25400.0 / per_unit
    return None


def _stem(path):
    """AxonDeepSeg's image stem: the name without its last suffix (``Path.stem``)."""
    return Path(path).stem


def read_pixel_size(path) -> float | None:
    """Micrometres per pixel for the image at ``path``, or None when no source gives it.

    Sources, in order: BIDS sidecar (``<image>.json``, then inherited ``sub-*_<suffix>.json`` up the BIDS tree),
    ``pixel_size_in_micrometer.txt`` beside the image, TIFF / OME-TIFF resolution tags. A source with an invalid
    value (zero, negative, not a number) raises :class:`InputError`.
    """
    return find_pixel_size(path)[0]


def find_pixel_size(path) -> tuple:
    """``(micrometres per pixel, where it was read)`` for the image at ``path``, or ``(None, None)``.

    The same sources and order as :func:`read_pixel_size`; the second item names the file (a BIDS sidecar,
    ``pixel_size_in_micrometer.txt``) or ``'<image> (TIFF tags)'``, for messages that say where a value came from.
    """
    path = Path(path)
    value, sidecar = _sidecar_pixel_size_and_file(path)
    if value is not None:
        return value, str(sidecar)
    txt = path.parent / PIXEL_SIZE_FILE
    if txt.is_file():
        return read_pixel_size_file(txt), str(txt)
    if _is_tiff(path) and path.is_file():
        value = _tiff_pixel_size(path)
        if value is not None:
            return value, f"{path} (TIFF tags)"
    return None, None


def pixel_size_source(path, given=None) -> str:
    """Where the pixel size of the image at ``path`` comes from: its own file or tags, else ``given``'s option.

    ``given`` names the option that supplies a pixel size for images without one (e.g. ``'--pixel-size'``).
    """
    try:
        source = find_pixel_size(path)[1]
    except InputError:
        source = None
    return source or given or "--pixel-size"


def require_pixel_size(path, value=None) -> float:
    """Return ``value`` (checked) if given, else :func:`read_pixel_size`; InputError when there is none."""
    if value is not None:
        return check_pixel_size(value, "--pixel-size")
    found = read_pixel_size(path)
    if found is None:
        raise InputError(
            f"{path}: no pixel size found; give it with --pixel-size (micrometres per pixel) or write it into "
            f"{Path(path).parent / PIXEL_SIZE_FILE}."
        )
    return found
