"""Translator types: the interface every translation model offers, their registry, and the loader.

A translation model folder holds ``config.json`` + ``weights.pt`` (:mod:`ads_synth.translation.formats`).
``config.json`` names the model's class in ``"_class_name"`` (as diffusers does); the loader looks the class up in
this registry and calls its ``from_pretrained``. Folders written before the field existed (the shipped
``TEM2SEM/translation`` and ``TEM2BF/translation``) have no ``_class_name`` and load as :data:`DEFAULT_CLASS`.

Adding a translator type is one class with the :class:`Translator` interface, decorated with
:func:`register_translator`, in its own module listed in :data:`_MODULES` (imported when a folder names it)::

    @register_translator("MyTranslator")
    class MyTranslator(TranslatorMixin, nn.Module):
        ...

Built-in types: ``SynDiff`` (:mod:`ads_synth.translation.model`, the diffusive generators) and
``ResnetTranslator`` (:mod:`ads_synth.translation.nondiffusive`, SynDiff's non-diffusive CycleGAN generators,
exported from a training run with ``ads-synth translation export --non-diffusive``).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from ads_synth.errors import InputError
from ads_synth.translation.formats import CONFIG_NAME

#: ``config.json`` key naming the translator class.
CLASS_KEY = "_class_name"
#: Class of folders whose ``config.json`` names none (written before :data:`CLASS_KEY` existed).
DEFAULT_CLASS = "SynDiff"
#: Normalisation percentiles (low, high) of models that store none (:func:`ads_synth.data.normalize.normalize`).
DEFAULT_NORMALIZATION = (0.5, 99.5)
#: Module of each built-in type (imported on first use: torch loads only then).
_MODULES = {"SynDiff": "ads_synth.translation.model", "ResnetTranslator": "ads_synth.translation.nondiffusive"}
_TRANSLATORS: dict = {}


class PixelSizes(NamedTuple):
    """Working pixel sizes of the two domains, micrometres per pixel."""

    L: float
    U: float


@runtime_checkable
class Translator(Protocol):
    """What the translation consumers (:func:`~ads_synth.translation.translate.translate_image`, the tutorship
    training set, the adaptation path, the cards) rely on.

    Attributes
    ----------
    extra : dict
        JSON metadata saved with the weights; ``extra["pixel_size"] = {"L": p_L, "U": p_U}`` (required for
        translation), ``extra["normalization"] = {"low": 0.5, "high": 99.5}`` (optional).
    pixel_sizes : PixelSizes
        The working pixel sizes from ``extra`` (InputError when absent).
    size_multiple : int
        Tile sides passed to :meth:`translate` must be multiples of it.
    tile_size : int
        Default tile side for whole-image translation (the training tile, rounded up to ``size_multiple``).
    normalization : tuple of float
        Percentiles (low, high) an image is clipped to before it is mapped to [-1, 1].
    """

    extra: dict

    @property
    def pixel_sizes(self) -> PixelSizes: ...

    @property
    def size_multiple(self) -> int: ...

    @property
    def tile_size(self) -> int: ...

    @property
    def normalization(self) -> tuple: ...

    def translate(self, x, direction, seed=None):
        """``(B, 1, H, W)`` float tensor in [-1, 1] of the source domain of ``direction`` (``"L2U"`` / ``"U2L"``)
        -> the same shape in [-1, 1], the target domain; ``seed`` (an int for tile 0, tile ``b`` taking
        ``seed + b``, or one int per tile) makes stochastic translators repeatable."""

    def save_pretrained(self, directory, **kwargs):
        """Write ``config.json`` (with :data:`CLASS_KEY`) and ``weights.pt`` into ``directory``."""

    @classmethod
    def from_pretrained(cls, path, map_location="cpu"):
        """Rebuild the model from a folder written by :meth:`save_pretrained`."""


class TranslatorMixin:
    """The :class:`Translator` properties that read ``extra`` and ``config`` (shared by the built-in types)."""

    @property
    def pixel_sizes(self) -> PixelSizes:
        sizes = (getattr(self, "extra", None) or {}).get("pixel_size")
        if not isinstance(sizes, dict) or not all(k in sizes for k in PixelSizes._fields):
            raise InputError("the translation model carries no working pixel sizes (extra['pixel_size']); use a "
                             "model trained with 'ads-synth translation train'.")
        return PixelSizes(float(sizes["L"]), float(sizes["U"]))

    @property
    def tile_size(self) -> int:
        size, m = int(self.config.image_size), int(self.size_multiple)
        return -(-size // m) * m

    def check_tiles(self, x, direction):
        """ValueError unless ``x`` is a ``(B, C, H, W)`` batch of this model's channels with sides that are
        multiples of :attr:`size_multiple`, and ``direction`` is ``"L2U"`` or ``"U2L"``."""
        if direction not in ("L2U", "U2L"):
            raise ValueError(f"direction must be one of ('L2U', 'U2L'), got {direction!r}")
        if x.ndim != 4 or x.shape[1] != self.config.num_channels:
            raise ValueError(f"translate expects (B, {self.config.num_channels}, H, W), got {tuple(x.shape)}")
        m = self.size_multiple
        if x.shape[2] % m or x.shape[3] % m:
            raise ValueError(f"tile sides must be multiples of {m}, got {tuple(x.shape[2:])}")

    @property
    def normalization(self) -> tuple:
        norm = (getattr(self, "extra", None) or {}).get("normalization")
        if isinstance(norm, dict) and "low" in norm and "high" in norm:
            return float(norm["low"]), float(norm["high"])
        return DEFAULT_NORMALIZATION


def register_translator(name):
    """Class decorator registering a translator type under ``name`` (the ``_class_name`` of its folders)."""

    def decorator(cls):
        if name in _TRANSLATORS and _TRANSLATORS[name] is not cls:
            raise ValueError(f"translator {name!r} is already registered")
        cls.class_name = name
        _TRANSLATORS[name] = cls
        return cls

    return decorator


def list_translators() -> list:
    """Names of the known translator types (built-in and registered), sorted."""
    return sorted(set(_MODULES) | set(_TRANSLATORS))


def get_translator_class(name):
    """The registered class ``name`` (its built-in module imported first); InputError when unknown."""
    if name not in _TRANSLATORS and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _TRANSLATORS:
        raise InputError(f"translator type {name!r} is unknown; known: {', '.join(list_translators())} (a newer "
                         "ads-synth may be needed).")
    return _TRANSLATORS[name]


def class_name_of(directory) -> str:
    """The translator class named by ``directory/config.json`` (:data:`DEFAULT_CLASS` when it names none)."""
    config = Path(directory) / CONFIG_NAME
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputError(f"{config}: cannot read it ({err}); restore the file from the checkpoint") from None
    if not isinstance(data, dict):
        raise InputError(f"{config}: not a translation model config (a JSON object); restore the file.")
    return str(data.get(CLASS_KEY) or DEFAULT_CLASS)


def load_translator(path, map_location="cpu"):
    """Load the model folder ``path`` (or a file in it) with the class its ``config.json`` names."""
    path = Path(path)
    directory = path.parent if path.is_file() else path
    if not (directory / CONFIG_NAME).is_file():
        raise InputError(f"{directory} is not a translation model folder: it needs {CONFIG_NAME} and weights "
                         "(give the folder written by training)")
    return get_translator_class(class_name_of(directory)).from_pretrained(directory, map_location=map_location)
