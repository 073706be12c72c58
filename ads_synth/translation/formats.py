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


def is_run_dir(path) -> bool:
    """True when ``path`` is a translation training run folder (its ``config.json`` names :data:`RUN_FORMAT`)."""
    config = Path(path) / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") == RUN_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def run_model_dir(path):
    """The model folder inference uses in the run folder ``path`` (``best/``, else ``last/``); None if neither."""
    for sub in RUN_MODEL_DIRS:
        if (Path(path) / sub).is_dir():
            return Path(path) / sub
    return None
