"""File names and format tags of translation models and training runs (no torch: cheap to import).

A *model folder* (``save_pretrained``) holds ``config.json`` + ``weights.pt``. A *training run folder*
(``ads-synth translation train``) holds its own ``config.json`` whose ``format`` is :data:`RUN_FORMAT`,
``checkpoint.pt`` (resumable state), scores, and the model folders ``best/`` and ``last/``. Inference
(:mod:`ads_synth.translation.translate`) reads these names from here, never from the trainer.
"""

from __future__ import annotations

import json
from pathlib import Path

#: A model folder's (and a run folder's) JSON file.
CONFIG_NAME = "config.json"
#: A model folder's weights.
WEIGHTS_NAME = "weights.pt"
#: A training run's resumable state.
CHECKPOINT_NAME = "checkpoint.pt"
#: ``format`` of a training run folder's ``config.json``.
RUN_FORMAT = "ads-synth-syndiff-run/1"
#: Model folders inside a run, in the order inference prefers them.
RUN_MODEL_DIRS = ("best", "last")
#: A run's folder of per-scoring model folders (``step_XXXXXX/``, with ``keep_snapshots``).
SNAPSHOTS = "snapshots"


def run_snapshots(path) -> list:
    """The snapshot model folders of the run ``path`` (``snapshots/step_XXXXXX/`` holding a model), by step."""
    folder = Path(path) / SNAPSHOTS
    if not folder.is_dir():
        return []
    return sorted(d for d in folder.iterdir()
                  if d.is_dir() and d.name.startswith("step_") and (d / CONFIG_NAME).is_file())


def is_run_dir(path) -> bool:
    """True when ``path`` is a translation training run folder (its ``config.json`` names :data:`RUN_FORMAT`)."""
    config = Path(path) / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") == RUN_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def run_model_dir(path, warn=None):
    """The model folder inference uses in the run folder ``path``: ``best/``; else, with one warning line,
    ``best.old/`` (a swap of ``best/`` was interrupted), ``last/`` (no scored checkpoint yet) or ``last.old/``.
    None when the run has saved no model yet."""
    import sys

    path = Path(path)
    if (path / "best").is_dir():
        return path / "best"
    reasons = {
        "best.old": "best/ is missing (the run was stopped while replacing it); using the previous best, best.old/",
        "last": "the run has no best/ (it scores no checkpoints, or none yet); using the last checkpoint's model, "
                "last/",
        "last.old": "the run has no best/ and last/ is missing (it was stopped while replacing it); using last.old/",
    }
    warn = warn or (lambda msg: print(f"ads-synth: warning: {msg}", file=sys.stderr))
    for sub, reason in reasons.items():
        if (path / sub).is_dir():
            warn(f"{path}: {reason}.")
            return path / sub
    return None
