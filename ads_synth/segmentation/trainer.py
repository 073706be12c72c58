"""Training nnU-Net v2 2-D models fold by fold, resumably, into an AxonDeepSeg-style model folder.

``train_folds`` instantiates nnU-Net's trainer directly (see :mod:`ads_synth.segmentation.nnunet_trainers`: nnU-Net
2.2.1 has no ``nnUNet_extTrainer``, so a trainer outside its package cannot be named on its command line) and
trains each requested fold into ``<model folder>/fold_<k>/``:

* a fold with ``checkpoint_final.pth`` is done and skipped;
* a fold with ``checkpoint_latest.pth`` continues from it (nnU-Net's ``--c``); when that file is unreadable, from
  its previous copy or ``checkpoint_best.pth``, with one warning line (:mod:`~ads_synth.segmentation.checkpoints`);
* checkpoints are written atomically, and training stops at the first non-finite loss
  (:class:`~ads_synth.errors.NonFiniteError`, exit 2) keeping the last good checkpoint;
* after training, ``checkpoint_best.pth`` is removed so that nnU-Net (final) and AxonDeepSeg (which prefers
  best) segment with the same weights.

Trainers (``--trainer``): ``compact`` trains the compact configuration (:class:`~ads_synth.segmentation.plans.
CompactPlan`) with a short CPU schedule; ``default`` trains nnU-Net's own ``2d`` configuration with its schedule
(1000 epochs x 250 iterations), for GPUs. nnU-Net's final validation pass (``perform_actual_validation``) is not
run: ads-synth scores with ``ads-synth evaluate``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ads_synth.errors import InputError
from ads_synth.segmentation.folds import ALL_FOLDS, parse_folds  # noqa: F401 (re-exported)

#: ``--trainer`` name -> (trainer class in nnunet_trainers, configuration).
TRAINERS = {"compact": ("CompactTrainer", "2d_compact"), "default": ("AdsSynthTrainer", "2d")}


def configuration_for(trainer) -> str:
    """The nnU-Net configuration trained by ``trainer``."""
    if trainer not in TRAINERS:
        raise InputError(f"--trainer {trainer!r}: choose compact (CPU) or default (nnU-Net's, GPU).")
    return TRAINERS[trainer][1]


def trainer_class(trainer):
    """The nnU-Net trainer class for ``--trainer`` (imports nnU-Net; call after ``nnunet_env.use_folders``)."""
    configuration_for(trainer)
    from ads_synth.segmentation import nnunet_trainers

    return getattr(nnunet_trainers, TRAINERS[trainer][0])


def _load_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


#: Fewest training cases nnU-Net's five-fold split takes (fold ``all`` takes any number).
MIN_CASES_FOR_FOLDS = 5


def _seed(fold):
    """Seed Python's, NumPy's and torch's global generators for ``fold``, so a fold trains the same every time
    (on one device, with nnU-Net's single-process data loading)."""
    import random

    import numpy as np
    import torch

    seed = 1234 + (0 if fold == "all" else int(fold))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_fold(folders, dataset_name, model_dir, fold, trainer="compact", epochs=None, iterations=None,
               val_iterations=None, device=None, progress=True, verbose=False, init_weights=None,
               initial_lr=None, time_limit_s=None) -> Path:
    """Train one fold into ``model_dir/fold_<fold>`` (resume / skip as in the module docstring).

    Parameters
    ----------
    folders : NnunetFolders
        nnU-Net's folders, already applied (:func:`ads_synth.segmentation.nnunet_env.use_folders`).
    dataset_name : str
        ``DatasetXXX_<name>``, planned and preprocessed.
    model_dir : Path
    fold : int or "all"
    trainer : {"compact", "default"}
    epochs, iterations, val_iterations : int, optional
        Override the trainer's epochs, training and validation iterations per epoch.
    device : str or torch.device, optional
    progress : bool
        tqdm bar over iterations.
    verbose : bool
        Print nnU-Net's log on the console.
    init_weights : path-like, optional
        Fine-tuning: a checkpoint of the same network (e.g. a shipped ``checkpoint_final.pth``) whose weights
        start a new fold (ignored when the fold resumes from its own checkpoint).
    initial_lr : float, optional
        nnU-Net's initial learning rate (default its 1e-2; lower for fine-tuning).
    time_limit_s : float, optional
        Fit the fold's training in about this many seconds: ``epochs`` is then the planned count, and the count
        is set from the measured seconds per epoch (:class:`~ads_synth.segmentation.nnunet_trainers.AdsSynthTrainer`).

    Returns
    -------
    Path
        The fold's ``checkpoint_final.pth``.
    """
    from ads_synth.atomic import remove_stale_temps
    from ads_synth.device import resolve_device
    from ads_synth.segmentation.checkpoints import remove_previous, resume_checkpoint
    from ads_synth.segmentation.nnunet_env import quiet
    from ads_synth.segmentation.predict import CHECKPOINT_FINAL

    fold_dir = Path(model_dir) / f"fold_{fold}"
    final = fold_dir / CHECKPOINT_FINAL
    if final.is_file():
        return final
    device = resolve_device(device)
    configuration = configuration_for(trainer)
    base = Path(folders.preprocessed) / dataset_name
    plans = _load_json(base / "nnUNetPlans.json")
    dataset_json = _load_json(base / "dataset.json")
    if fold != "all" and dataset_json["numTraining"] < MIN_CASES_FOR_FOLDS:
        raise InputError(f"{dataset_name}: {dataset_json['numTraining']} training images are too few for "
                         f"five-fold cross-validation (at least {MIN_CASES_FOR_FOLDS}); use --folds all.")
    cls = trainer_class(trainer)
    _seed(fold)  # nnU-Net seeds nothing: its patch sampling and augmentation draw from the global generators
    remove_stale_temps(fold_dir, prefix="checkpoint_")  # left by a killed run
    resume = resume_checkpoint(fold_dir)  # latest, else its previous copy or best (one warning line)
    with quiet(fold_dir / "nnunet_console.txt", enabled=not verbose), warnings.catch_warnings():
        # nnU-Net 2.2.1's PolyLRScheduler passes an argument torch 2.3 deprecates
        warnings.filterwarnings("ignore", message="The verbose parameter is deprecated", category=UserWarning)
        t = cls(plans=plans, configuration=configuration, fold=fold, dataset_json=dataset_json,
                unpack_dataset=True, device=device)
        t.use_output_folder(model_dir)
        if epochs is not None:
            t.num_epochs = int(epochs)
        if iterations is not None:
            t.num_iterations_per_epoch = int(iterations)
        if val_iterations is not None:
            t.num_val_iterations_per_epoch = int(val_iterations)
        t.progress = progress
        t.console = verbose
        t.time_limit_s = time_limit_s
        if initial_lr is not None:
            t.initial_lr = float(initial_lr)
        if resume is not None:
            t.load_checkpoint(str(resume))
        elif init_weights is not None:
            load_network_weights(t, init_weights)
        t.run_training()
    best = fold_dir / "checkpoint_best.pth"
    if final.is_file() and best.is_file():
        best.unlink()
    if final.is_file():
        remove_previous(fold_dir)
    if not final.is_file():
        raise RuntimeError(f"{fold_dir}: nnU-Net training ended without {CHECKPOINT_FINAL}")
    return final


def load_network_weights(trainer, checkpoint):
    """Initialise ``trainer``'s network (built from its plans) with the weights of ``checkpoint``; InputError
    naming the file when they do not fit (another network)."""
    import torch

    if not trainer.was_initialized:
        trainer.initialize()
    weights = torch.load(str(checkpoint), map_location="cpu")["network_weights"]
    weights = {k[len("module."):] if k.startswith("module.") else k: v for k, v in weights.items()}
    network = trainer.network._orig_mod if hasattr(trainer.network, "_orig_mod") else trainer.network
    try:
        network.load_state_dict(weights)
    except RuntimeError as err:
        raise InputError(f"{checkpoint}: its network does not match the model being trained "
                         f"({str(err).splitlines()[0]}); fine-tune with the same --patch and plan.") from None


def train_folds(folders, dataset_name, model_dir, folds=None, **kwargs) -> list:
    """Train each of ``folds`` (:func:`parse_folds`) with :func:`train_fold`; return the final checkpoints."""
    return [train_fold(folders, dataset_name, model_dir, fold, **kwargs) for fold in parse_folds(folds)]
