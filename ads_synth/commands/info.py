"""``ads-synth info``: versions, the device in use and the model cards found."""

import importlib.metadata
import platform


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def collect_info():
    """Return a list of ``(key, value)`` pairs describing the installation."""
    from ads_synth import __version__

    rows = [
        ("ads-synth", __version__),
        ("python", platform.python_version()),
        ("axondeepseg", _version("axondeepseg")),
        ("nnunetv2", _version("nnunetv2")),
        ("torch", _version("torch")),
        ("numpy", _version("numpy")),
    ]
    try:
        import torch

        if torch.cuda.is_available():
            device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} visible)"
        else:
            device = f"cpu ({torch.get_num_threads()} threads)"
    except ImportError:
        device = "torch missing"
    rows.append(("device", device))
    try:
        from ads_synth.cards.lookup import list_cards

        cards = list_cards()
        rows.append(("model cards", ", ".join(c.name for c in cards) if cards else "none"))
    except ImportError:
        rows.append(("model cards", "none"))
    return rows


def run(args):
    for key, value in collect_info():
        print(f"{key:<12} {value}")
    return 0


def register(subparsers):
    parser = subparsers.add_parser("info", help="show versions, the device in use and the model cards found")
    parser.set_defaults(func=run)
