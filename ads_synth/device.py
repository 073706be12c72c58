"""The torch device to run on: one rule for every command."""

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
