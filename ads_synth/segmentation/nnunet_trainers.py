"""nnU-Net trainer subclasses (this module imports nnU-Net: load it through :func:`trainer.trainer_class`).

nnU-Net 2.2.1 looks trainer classes up by name inside ``nnunetv2/training/nnUNetTrainer`` only (there is no
``nnUNet_extTrainer`` in this version), so these classes are instantiated directly from Python, never through
``nnUNetv2_train``. They build exactly the network the plans describe, and every checkpoint they save names
``'nnUNetTrainer'`` as its trainer: ``nnUNetPredictor.initialize_from_trained_model_folder`` and AxonDeepSeg
5.5.0's own loader then rebuild the network from the plans, without ads-synth installed.

* :class:`AdsSynthTrainer`: nnU-Net's ``nnUNetTrainer`` (its schedule: 1000 epochs x 250 iterations) with the
  fixes needed here: a no-op ``_finish`` on the single-threaded augmenters (batchgenerators 0.25.5 lacks it and
  ``on_train_end`` calls it when ``nnUNet_n_proc_DA=0``), in-process unpacking of the preprocessed data, output
  into a chosen model folder, the trainer name in checkpoints, console output only when asked, an optional
  tqdm bar over iterations, and nnU-Net's ``progress.png`` redrawn at most every :data:`PROGRESS_PLOT_SECONDS`
  (and after the last epoch) instead of after every epoch: nnU-Net draws a 3000 x 5400 px figure, 1.2-1.8 s
  on a 2-core CPU, as long as a whole epoch of a small CPU run; and an optional time limit (``time_limit_s``):
  after :data:`CALIBRATION_EPOCHS` timed epochs the epoch count (and the poly learning-rate schedule with it)
  is set from the measured seconds per epoch (:mod:`ads_synth.calibration`) and stored in every checkpoint, so a
  resumed fold keeps it.
* :class:`CompactTrainer`: the same with a CPU-sized schedule (fewer epochs and iterations), set as class
  attributes; the constructor signature is nnUNetTrainer's (nnU-Net introspects it).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.dataloading.utils import _convert_to_npy
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from ads_synth.atomic import atomic_torch_save, atomic_write_text, temp_prefix
from ads_synth.calibration import fitted_count
from ads_synth.errors import NonFiniteError
from ads_synth.segmentation.checkpoints import LATEST, keep_previous

#: The trainer name written into checkpoints (the network comes from the plans).
CHECKPOINT_TRAINER_NAME = "nnUNetTrainer"
#: Least seconds between two redraws of ``progress.png`` (always drawn after the last epoch of a run).
PROGRESS_PLOT_SECONDS = 60.0
#: Epochs timed (after the first, which pays for start-up) before a fold with a time limit sets its length.
CALIBRATION_EPOCHS = 2
#: Checkpoint key of the calibrated schedule.
SCHEDULE_KEY = "ads_synth_schedule"
#: The clock a time limit is measured on (tests replace it).
_clock = time.monotonic


def _no_finish():
    return None


class AdsSynthTrainer(nnUNetTrainer):
    """nnU-Net's trainer and schedule, usable from Python on a CPU (see the module docstring)."""

    #: print nnU-Net's log lines on the console too
    console = False
    #: tqdm bar over training iterations
    progress = False
    #: seconds the fold's training may take (None: the epochs as set); see the module docstring
    time_limit_s = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, unpack_dataset: bool = True,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device)
        self._bar = None
        self._plot_now = self.logger.plot_progress_png
        self.logger.plot_progress_png = self._plot_progress  # what nnU-Net's on_epoch_end calls
        self._plotted_at = time.monotonic()
        self._unplotted = False
        self.schedule = None  # the calibrated schedule, once measured or loaded
        self._timing = None

    # -- where things go ----------------------------------------------------------------------------------------
    def use_output_folder(self, folder):
        """Train into ``folder/fold_<k>`` (plans.json and dataset.json into ``folder``), not nnUNet_results."""
        folder = Path(folder)
        old_fold_dir = Path(self.output_folder)
        self.output_folder_base = str(folder)
        self.output_folder = str(folder / f"fold_{self.fold}")
        Path(self.output_folder).mkdir(parents=True, exist_ok=True)
        old_log = Path(self.log_file)
        self.log_file = str(Path(self.output_folder) / old_log.name)
        if old_log.is_file() and old_log != Path(self.log_file):
            shutil.move(str(old_log), self.log_file)
        for empty in (old_fold_dir, old_fold_dir.parent):
            try:
                empty.rmdir()
            except OSError:
                pass

    def print_to_log_file(self, *args, also_print_to_console=True, add_timestamp=True):
        super().print_to_log_file(*args, also_print_to_console=also_print_to_console and self.console,
                                  add_timestamp=add_timestamp)

    # -- fixes -------------------------------------------------------------------------------------------------
    def get_dataloaders(self):
        train, val = super().get_dataloaders()
        for loader in (train, val):
            if not hasattr(loader, "_finish"):
                loader._finish = _no_finish
        return train, val

    def on_train_start(self):
        if self.unpack_dataset and self.local_rank == 0:
            # nnU-Net unpacks through a spawned process pool; in-process is faster for a few hundred cases
            for npz in sorted(Path(self.preprocessed_dataset_folder).glob("*.npz")):
                _convert_to_npy(str(npz), True, False)
        unpack, self.unpack_dataset = self.unpack_dataset, False
        try:
            super().on_train_start()
        finally:
            self.unpack_dataset = unpack
        self._write_model_dataset_json()
        self._session_start = _clock()
        if self.progress:
            from tqdm.auto import tqdm

            total = self.num_epochs * self.num_iterations_per_epoch
            self._bar = tqdm(total=total, initial=self.current_epoch * self.num_iterations_per_epoch,
                             desc=f"train fold {self.fold}", unit="it")

    def _write_model_dataset_json(self):
        """The model folder's ``dataset.json`` (nnU-Net copies it there) without the ``ignore`` label.

        The ignore label only masks the training loss; the network predicts background, myelin and axon either way
        (nnU-Net gives the ignore label no output). AxonDeepSeg would read ``ignore`` as a fourth class, write a
        ``_seg-ignore.png`` and no ``_seg-axonmyelin.png``.
        """
        labels = {k: v for k, v in self.dataset_json["labels"].items() if k != "ignore"}
        if self.local_rank == 0 and labels != self.dataset_json["labels"]:
            atomic_write_text(Path(self.output_folder_base) / "dataset.json",
                              json.dumps({**self.dataset_json, "labels": labels}, indent=4))

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, written atomically, with the trainer name of :data:`CHECKPOINT_TRAINER_NAME`.

        nnU-Net writes the file in place; here it writes a temporary file beside it, which is then renamed over
        ``filename`` (a killed run leaves the previous checkpoint whole). The checkpoint ``checkpoint_latest.pth``
        replaces keeps its previous version as ``checkpoint_latest.pth.prev`` (for resuming when the latest is
        unreadable). Weights that are not finite are never written (NonFiniteError).
        """
        if self.local_rank != 0 or self.disable_checkpointing:
            return super().save_checkpoint(filename)
        filename = Path(filename)
        tmp = filename.with_name(f"{temp_prefix(filename)}nnunet.tmp")
        try:
            super().save_checkpoint(str(tmp))
            checkpoint = torch.load(tmp, map_location="cpu")
        finally:
            if tmp.exists():
                tmp.unlink()
        for name, tensor in checkpoint["network_weights"].items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise NonFiniteError(f"{filename.parent}: the network's weights became non-finite (NaN or "
                                     f"infinity, e.g. {name}) at epoch {self.current_epoch}; the checkpoint was "
                                     "not written. Lower the learning rate or check the training images.")
        checkpoint["trainer_name"] = CHECKPOINT_TRAINER_NAME
        checkpoint[SCHEDULE_KEY] = self.schedule
        if filename.name == LATEST and filename.is_file():
            keep_previous(filename)
        atomic_torch_save(checkpoint, filename)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        if self.time_limit_s is not None and isinstance(filename_or_checkpoint, (str, Path)):
            schedule = torch.load(filename_or_checkpoint, map_location="cpu").get(SCHEDULE_KEY)
            if schedule:
                self._apply_schedule(schedule)

    # -- the length of the run -----------------------------------------------------------------------------------
    def run_training(self):
        """nnU-Net's loop, reading the epoch count at every epoch (a time limit may change it)."""
        self.on_train_start()
        while self.current_epoch < self.num_epochs:
            self.on_epoch_start()
            self.on_train_epoch_start()
            outputs = [self.train_step(next(self.dataloader_train)) for _ in range(self.num_iterations_per_epoch)]
            self.on_train_epoch_end(outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                outputs = [self.validation_step(next(self.dataloader_val))
                           for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(outputs)
            self.on_epoch_end()
        self.on_train_end()

    def _apply_schedule(self, schedule):
        self.schedule = dict(schedule)
        self.num_epochs = int(schedule["epochs"])
        if getattr(self, "lr_scheduler", None) is not None:
            self.lr_scheduler.max_steps = self.num_epochs
        if self._bar is not None:
            self._bar.total = self.num_epochs * self.num_iterations_per_epoch
            self._bar.refresh()

    def _calibrate(self):
        """After the first epoch of this session and :data:`CALIBRATION_EPOCHS` more, fit the epochs in
        ``time_limit_s`` (counted from this session's start; a stored schedule is kept instead)."""
        if self.time_limit_s is None or self.schedule is not None:
            return
        now = _clock()
        if self._timing is None:
            self._timing = {"epoch": self.current_epoch, "t": now}
            return
        timed = self.current_epoch - self._timing["epoch"]
        if timed >= CALIBRATION_EPOCHS:
            rate = (now - self._timing["t"]) / timed
            epochs = fitted_count(self.current_epoch, now - self._session_start, rate, self.time_limit_s,
                                  self.num_epochs)
            self._apply_schedule({"epochs": epochs, "seconds_per_epoch": rate, "planned": self.num_epochs})

    # -- progress ----------------------------------------------------------------------------------------------
    def _plot_progress(self, output_folder, force=False):
        """nnU-Net's ``progress.png`` after the last epoch, or when :data:`PROGRESS_PLOT_SECONDS` have passed."""
        last = self.current_epoch >= self.num_epochs - 1
        if force or last or time.monotonic() - self._plotted_at >= PROGRESS_PLOT_SECONDS:
            self._plot_now(output_folder)
            self._plotted_at, self._unplotted = time.monotonic(), False
        else:
            self._unplotted = True

    def train_step(self, batch: dict) -> dict:
        out = super().train_step(batch)
        if not np.all(np.isfinite(out["loss"])):
            raise NonFiniteError(
                f"{self.output_folder}: the training loss became {float(np.mean(out['loss']))} at epoch "
                f"{self.current_epoch}; training stopped, the last good checkpoint is kept. Lower the learning rate "
                "or check the training images, then run again (it resumes from that checkpoint).")
        if self._bar is not None:
            self._bar.update(1)
        return out

    def on_epoch_end(self):
        super().on_epoch_end()
        self._calibrate()
        if self._bar is not None:
            log = self.logger.my_fantastic_logging
            dice = log["dice_per_class_or_region"][-1] if log["dice_per_class_or_region"] else []
            self._bar.set_postfix(loss=f"{log['train_losses'][-1]:.3f}",
                                  dice=" ".join(f"{d:.2f}" for d in np.atleast_1d(dice)))

    def on_train_end(self):
        if self._unplotted and self.local_rank == 0:  # stopped before its last epoch
            self._plot_progress(self.output_folder, force=True)
        try:
            super().on_train_end()
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None


class CompactTrainer(AdsSynthTrainer):
    """:class:`AdsSynthTrainer` with a CPU-sized schedule (the epochs and iterations below, overridable)."""

    compact_epochs = 14
    compact_iterations_per_epoch = 25
    compact_val_iterations_per_epoch = 5

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, unpack_dataset: bool = True,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, unpack_dataset, device)
        self.num_epochs = self.compact_epochs
        self.num_iterations_per_epoch = self.compact_iterations_per_epoch
        self.num_val_iterations_per_epoch = self.compact_val_iterations_per_epoch
        self.save_every = 1  # checkpoint_latest after every epoch: a stopped CPU run loses one epoch at most
