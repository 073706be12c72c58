"""Sub-commands of ``ads-synth``: one module each, each with ``register(subparsers)``.

Every module in this package is a sub-command; :func:`command_modules` finds them, so adding a command is adding
a module. A module whose import fails breaks the whole CLI on purpose: every command must always be available.
"""

import pkgutil


def command_modules():
    """Return the names of the sub-command modules, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
