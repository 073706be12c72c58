"""The torch device to run on: one rule for every command."""

import functools

import torch

from ads_synth.errors import InputError


def resolve_device(name=None):
    """``torch.device`` for ``name`` (``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``); default (None,
    ``"auto"``) CUDA when available.

    Raises
    ------
    InputError
        An unknown device name, or CUDA asked for where there is none.
    """
    if name is None or (isinstance(name, str) and name in ("", "auto")):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = name if isinstance(name, torch.device) else torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"--device {name!r}: not a device; use cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available here; use --device cpu.")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"--device {name}: only cpu and cuda are supported.")
    return device


#: Environment variable that overrides the inference precision (``float32``, ``bfloat16`` or ``auto``).
PRECISION_ENV = "ADS_SYNTH_PRECISION"
PRECISIONS = ("auto", "float32", "bfloat16")


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16(cpuinfo="/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 in hardware (x86 ``amx_bf16`` or ``avx512_bf16``).

    Elsewhere oneDNN emulates bfloat16, which is slower than float32, so ``auto`` precision stays float32.
    """
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def inference_dtype(device, precision=None):
    """The dtype that segmentation networks run in on ``device``.

    Parameters
    ----------
    device : torch.device
    precision : {"auto", "float32", "bfloat16"}, optional
        Default: ``$ADS_SYNTH_PRECISION``, else ``auto``: bfloat16 on a CPU that computes it in hardware (2-2.5x
        faster networks there) and on a CUDA device that supports it, float32 elsewhere.

    Raises
    ------
    InputError
        An unknown precision name.
    """
    import os

    precision = precision or os.environ.get(PRECISION_ENV, "").strip().lower() or "auto"
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} (or ${PRECISION_ENV}): use one of {', '.join(PRECISIONS)}.")
    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        return torch.bfloat16
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
