"""Planning and preprocessing with nnU-Net's own API, plus the compact 2-D configuration for CPUs.

nnU-Net 2.2.1 plans a 2-D PlainConvUNet for these images with a 448 x 576 patch, 7 stages and 33.5M parameters:
~15-21 s per step on a 2-core CPU (measured, see the project's environment notes). :class:`CompactPlan` adds a
configuration to the same plans (``"inherits_from": "2d"``, so spacing, normalisation and the preprocessed data
are the 2-D ones): patch 256 x 256, batch 4, 5 stages, 16 -> 256 features, 1.94M parameters, ~1.7 s per step on
that CPU. Both configurations stay in ``plans.json``; ``--trainer default`` trains nnU-Net's own ``2d``.

Fingerprint extraction, planning and preprocessing run in-process through
:mod:`nnunetv2.experiment_planning.plan_and_preprocess_api`. nnU-Net spawns a pool of worker processes for the
fingerprint, for preprocessing and for the dataset check, each of which imports torch again (seconds on a small CPU); with
``num_processes=1`` (what ``ads-synth family train`` and the tests use) :func:`inline_pools` runs those cases in this
process instead, one after the other, with the same results.

The fingerprint samples :data:`FINGERPRINT_SAMPLES` foreground pixels instead of nnU-Net's 10e7: nnU-Net takes
percentiles of 10e7 sampled values whatever the dataset's size (~7 s per build on a 2-core CPU, measured), and
those statistics only normalise CT; an ads-synth image channel is z-scored per image, so they are only recorded.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ads_synth.errors import InputError

PLANS_IDENTIFIER = "nnUNetPlans"
DEFAULT_CONFIGURATION = "2d"
COMPACT_CONFIGURATION = "2d_compact"
#: Foreground pixels sampled over the whole dataset for the fingerprint's intensity statistics (nnU-Net: 10e7).
FINGERPRINT_SAMPLES = 10**6


@dataclass(frozen=True)
class CompactPlan:
    """The compact 2-D configuration.

    Attributes
    ----------
    patch_size : int
        Square patch side; a multiple of ``2 ** (n_stages - 1)``.
    batch_size : int
    n_stages : int
        Resolution stages of the U-Net (``n_stages - 1`` poolings).
    base_features : int
        Features of the first stage, doubled per stage up to ``max_features``.
    max_features : int
    """

    patch_size: int = 256
    batch_size: int = 4
    n_stages: int = 5
    base_features: int = 16
    max_features: int = 256

    def __post_init__(self):
        multiple = 2 ** (self.n_stages - 1)
        if self.n_stages < 2:
            raise InputError(f"compact plan: n_stages must be at least 2, got {self.n_stages}.")
        if self.patch_size < multiple or self.patch_size % multiple:
            raise InputError(
                f"--patch {self.patch_size}: must be a positive multiple of {multiple} "
                f"({self.n_stages} stages); e.g. 128 or 256."
            )
        if self.batch_size < 1 or self.base_features < 1 or self.max_features < self.base_features:
            raise InputError("compact plan: batch size and feature counts must be positive "
                             "(max_features >= base_features).")

    def configuration(self) -> dict:
        """The plans entry: overrides of the ``2d`` configuration."""
        n = self.n_stages
        return {
            "inherits_from": DEFAULT_CONFIGURATION,
            "patch_size": [self.patch_size, self.patch_size],
            "batch_size": self.batch_size,
            "UNet_class_name": "PlainConvUNet",
            "UNet_base_num_features": self.base_features,
            "unet_max_num_features": self.max_features,
            "n_conv_per_stage_encoder": [2] * n,
            "n_conv_per_stage_decoder": [2] * (n - 1),
            "num_pool_per_axis": [n - 1, n - 1],
            "pool_op_kernel_sizes": [[1, 1]] + [[2, 2]] * (n - 1),
            "conv_kernel_sizes": [[3, 3]] * n,
        }

    def to_dict(self) -> dict:
        return asdict(self)


def plans_file(folders, name) -> Path:
    """``<preprocessed>/<dataset name>/nnUNetPlans.json``."""
    return Path(folders.preprocessed) / name / f"{PLANS_IDENTIFIER}.json"


def add_configuration(path, name, configuration) -> dict:
    """Add (or replace) configuration ``name`` in the plans file ``path``; return the plans."""
    path = Path(path)
    plans = json.loads(path.read_text(encoding="utf-8"))
    plans["configurations"][name] = configuration
    path.write_text(json.dumps(plans, indent=2), encoding="utf-8")
    return plans


def _preprocessed_complete(folders, name, configuration) -> bool:
    """True when the plans hold ``configuration`` and its preprocessed data has every training case."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    path = plans_file(folders, name)
    if not path.is_file():
        return False
    manager = PlansManager(str(path))
    if configuration not in manager.available_configurations:
        return False
    raw_json = Path(folders.raw) / name / "dataset.json"
    n = json.loads(raw_json.read_text(encoding="utf-8"))["numTraining"]
    data = Path(folders.preprocessed) / name / manager.get_configuration(configuration).data_identifier
    return data.is_dir() and len(list(data.glob("*.npz"))) == n


class _DoneResult:
    """What ``Pool.starmap_async`` returns, for work already done."""

    def __init__(self, value):
        self._value = value

    def ready(self) -> bool:
        return True

    def get(self, timeout=None):
        return self._value


class _InlinePool:
    """The part of ``multiprocessing.Pool`` nnU-Net 2.2.1's fingerprint extractor, preprocessor and dataset check
    use (``starmap_async``, ``starmap``, ``_pool``), run in this process."""

    def __init__(self, processes=None):
        self._pool = []  # no worker to watch

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def starmap_async(self, func, iterable):
        return _DoneResult([func(*args) for args in iterable])

    def starmap(self, func, iterable):
        return [func(*args) for args in iterable]


class _InlineMultiprocessing:
    """``multiprocessing`` as nnU-Net's modules see it inside :func:`inline_pools`: ``get_context(...).Pool``
    is :class:`_InlinePool`; everything else is the real module."""

    def __init__(self, real):
        self._real = real

    def get_context(self, method=None):
        return self

    @property
    def Pool(self):  # noqa: N802 (multiprocessing's name)
        return _InlinePool

    def __getattr__(self, name):
        return getattr(self._real, name)


def fingerprint_extractor_class():
    """nnU-Net's ``DatasetFingerprintExtractor`` sampling :data:`FINGERPRINT_SAMPLES` foreground pixels."""
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor

    class SampledFingerprintExtractor(DatasetFingerprintExtractor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.num_foreground_voxels_for_intensitystats = FINGERPRINT_SAMPLES

    return SampledFingerprintExtractor


@contextlib.contextmanager
def inline_pools():
    """Run nnU-Net's fingerprint extraction, preprocessing and dataset-check pools in this process (see the module
    docstring; the check, ``verify_dataset_integrity``, spawns its pool even for one process)."""
    import multiprocessing

    from nnunetv2.experiment_planning import verify_dataset_integrity
    from nnunetv2.experiment_planning.dataset_fingerprint import fingerprint_extractor
    from nnunetv2.preprocessing.preprocessors import default_preprocessor

    modules = (fingerprint_extractor, default_preprocessor, verify_dataset_integrity)
    saved = [m.multiprocessing for m in modules]
    for m in modules:
        m.multiprocessing = _InlineMultiprocessing(multiprocessing)
    try:
        yield
    finally:
        for m, real in zip(modules, saved):
            m.multiprocessing = real


def plan_and_preprocess(folders, dataset_id, configuration=COMPACT_CONFIGURATION, compact=None, num_processes=2,
                        log_file=None, verbose=False, progress=True) -> dict:
    """Fingerprint, plan and preprocess raw dataset ``dataset_id`` with nnU-Net's API; skip what is done.

    Parameters
    ----------
    folders : NnunetFolders
        From :func:`ads_synth.segmentation.nnunet_env.use_folders` (already applied).
    dataset_id : int
    configuration : str
        The configuration to preprocess (``"2d_compact"`` or ``"2d"``).
    compact : CompactPlan, optional
        Compact configuration added to the plans (default :class:`CompactPlan()`); replaced when it changed.
    num_processes : int
        nnU-Net's worker processes; 1 (or less): none, the cases run in this process (:func:`inline_pools`).
    log_file : Path, optional
        Receives nnU-Net's printed output.
    verbose : bool
        Print nnU-Net's output instead.
    progress : bool
        Show nnU-Net's progress bars (fingerprint, preprocessing); False sends them to ``log_file`` too.

    Returns
    -------
    dict
        The plans.
    """
    from ads_synth.segmentation.nnunet_env import quiet

    compact = compact or CompactPlan()
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    name = convert_id_to_dataset_name(dataset_id)
    path = plans_file(folders, name)
    pools = inline_pools() if num_processes <= 1 else contextlib.nullcontext()
    with quiet(log_file, enabled=not verbose, stderr=not progress), pools:  # nnU-Net's bars are on stderr
        if path.is_file():
            plans = json.loads(path.read_text(encoding="utf-8"))
        else:
            extract_fingerprint_dataset(dataset_id, fingerprint_extractor_class(), num_processes=num_processes,
                                        check_dataset_integrity=False,
                                        clean=True, verbose=verbose)
            plans = plan_experiment_dataset(dataset_id)
            plans = json.loads(path.read_text(encoding="utf-8"))
        if plans["configurations"].get(COMPACT_CONFIGURATION) != compact.configuration():
            plans = add_configuration(path, COMPACT_CONFIGURATION, compact.configuration())
        if not _preprocessed_complete(folders, name, configuration):
            preprocess_dataset(dataset_id, PLANS_IDENTIFIER, [configuration], [max(1, num_processes)],
                               verbose=verbose)
    return plans
