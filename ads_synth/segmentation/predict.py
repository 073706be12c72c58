"""Segmenting with a trained nnU-Net v2 model folder through ``nnUNetPredictor``, in-process, fold by fold.

A model folder has the layout nnU-Net writes and AxonDeepSeg installs: ``dataset.json``, ``plans.json`` and
``fold_<k>/`` (or ``fold_all/``) with a checkpoint. Folders trained by ads-synth also carry ``ads_synth.json``
(:data:`INFO_FILE`) with at least ``{"pixel_size", "domain", "trained_on", "strategy"}``; for an AxonDeepSeg
folder the pixel size comes from the caller, or the image is segmented as it is (a warning, once per folder).

Each fold predicts alone (nnU-Net's preprocessing once, then its sliding-window inference with each fold's
weights), so that the per-fold softmax probabilities feed :class:`~ads_synth.segmentation.confidence.EnsembleStats`:
the ensemble is nnU-Net's (mean of the folds' probabilities), and the agreement of the folds gives the confidence.
Test-time mirroring is off by default (3x slower on a CPU); ``use_mirroring=True`` turns it on.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ads_synth.atomic import atomic_torch_save, atomic_write_text
from ads_synth.data.datasets import CLASSES
from ads_synth.errors import InputError
from ads_synth.integrity import require_finite

INFO_FILE = "ads_synth.json"
CHECKPOINT_FINAL = "checkpoint_final.pth"
#: Our class order (the channels of every probability array this module returns).
CLASS_NAMES = tuple(sorted(CLASSES, key=CLASSES.get))
_warned_no_pixel_size = set()


#: What nnU-Net's predictor (and so AxonDeepSeg's loader) reads of a checkpoint.
INFERENCE_KEYS = ("network_weights", "init_args", "trainer_name", "inference_allowed_mirroring_axes")


def export_inference_checkpoint(src, dst, dtype="float16"):
    """Write the part of an nnU-Net checkpoint that prediction needs, for shipping.

    Drops the optimiser state, the logs and the gradient scaler, and stores the network weights in ``dtype``
    (loading casts them back to the network's float32): about a quarter of the training checkpoint's size. The
    file is written atomically.

    Parameters
    ----------
    src, dst : path-like
        The training checkpoint (``checkpoint_final.pth``) and the file to write.
    dtype : str
        Storage type of floating-point weights (``"float16"`` or ``"float32"``).
    """
    import torch

    checkpoint = torch.load(src, map_location="cpu")
    missing = [k for k in ("network_weights", "init_args", "trainer_name") if k not in checkpoint]
    if missing:
        raise InputError(f"{src}: not an nnU-Net checkpoint (no {', '.join(missing)}); check the model folder.")
    slim = {k: checkpoint[k] for k in INFERENCE_KEYS if k in checkpoint}
    store = getattr(torch, dtype)
    converted = {}  # nnU-Net's state dict names one tensor several times: keep it stored once
    weights = {}
    for k, v in checkpoint["network_weights"].items():
        if v.is_floating_point():
            key = (v.data_ptr(), tuple(v.shape), v.stride())
            v = converted.setdefault(key, v.to(store))
        weights[k] = v
    slim["network_weights"] = weights
    return atomic_torch_save(slim, dst)


def read_model_info(folder) -> dict:
    """``ads_synth.json`` of a model folder, or ``{}`` (an AxonDeepSeg / plain nnU-Net folder)."""
    path = Path(folder) / INFO_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read the model description ({err}); fix or remove the file.") from None


def write_model_info(folder, info) -> Path:
    """Write ``ads_synth.json`` into ``folder`` (atomically)."""
    path = Path(folder) / INFO_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(info, indent=2))


def checkpoint_name(fold_dir) -> str | None:
    """The checkpoint of a fold, by AxonDeepSeg's rule (``apply_model.get_checkpoint_name``): best, final, else
    the last ``*.pth`` by name. None when the fold has none."""
    fold_dir = Path(fold_dir)
    for name in ("checkpoint_best.pth", CHECKPOINT_FINAL):
        if (fold_dir / name).is_file():
            return name
    found = sorted(fold_dir.glob("*.pth"))
    return found[-1].name if found else None


def available_folds(folder) -> list:
    """Folds of a model folder that hold a checkpoint: ints, or ``"all"``, in order."""
    folds = []
    for d in sorted(Path(folder).glob("fold_*")):
        key = d.name[len("fold_"):]
        if d.is_dir() and checkpoint_name(d) is not None and (key == "all" or key.isdigit()):
            folds.append("all" if key == "all" else int(key))
    return sorted(folds, key=lambda f: (f == "all", f if f != "all" else 0))


def finished_folds(folder) -> list:
    """Folds whose training finished (``checkpoint_final.pth``)."""
    return [f for f in available_folds(folder) if (Path(folder) / f"fold_{f}" / CHECKPOINT_FINAL).is_file()]


def trained_epochs(folder) -> int:
    """The most epochs any finished fold of ``folder`` trained (its final checkpoint's ``current_epoch``; a fold
    with a time limit fits its epochs to it); 0 when none finished."""
    import torch

    return max((int(torch.load(Path(folder) / f"fold_{f}" / CHECKPOINT_FINAL, map_location="cpu",
                               weights_only=False).get("current_epoch", 0)) for f in finished_folds(folder)),
               default=0)


def check_model_folder(folder, folds=None) -> list:
    """InputError unless ``folder`` is an nnU-Net model folder with the requested folds; return the folds."""
    folder = Path(folder)
    hint = ("give a folder written by 'ads-synth segmentation train' or 'ads-synth pseudo', or an AxonDeepSeg "
            "model folder (dataset.json, plans.json, fold_*/)")
    if not folder.is_dir():
        raise InputError(f"{folder}: no such segmentation model folder; {hint}.")
    for name in ("dataset.json", "plans.json"):
        if not (folder / name).is_file():
            raise InputError(f"{folder}: not an nnU-Net model folder (no {name}); {hint}.")
    have = available_folds(folder)
    if not have:
        raise InputError(f"{folder}: the model has no trained fold (fold_*/checkpoint_*.pth); train it first.")
    if folds is None:
        return have
    wanted = [f if f == "all" else int(f) for f in folds]
    missing = [f for f in wanted if f not in have]
    if missing:
        raise InputError(f"{folder}: fold(s) {', '.join(map(str, missing))} not trained; available: "
                         f"{', '.join(map(str, have))}.")
    return wanted


class SegmentationModel:
    """A loaded nnU-Net model folder that predicts per-fold probabilities.

    Parameters
    ----------
    folder : str or Path
        Model folder (see the module docstring).
    folds : sequence of int or "all", optional
        Folds to use; default all trained folds.
    device : str or torch.device, optional
        Default CUDA when available.
    use_mirroring : bool
        nnU-Net's test-time mirroring.
    pixel_size : float, optional
        Pixel size the model works at, for folders without ``ads_synth.json`` (ignored when the file gives one).
    tile_step_size : float
        nnU-Net's sliding-window step (fraction of the patch).
    batch_size : int
        Sliding-window tiles per network call.
    streaming : bool
        Predict band by band (:mod:`ads_synth.segmentation.sliding_window`: memory of one band of tiles, not of the
        image; nnU-Net's result to its float16 rounding); False: nnU-Net's whole-image prediction, fold by fold.
    precision : {"auto", "float32", "bfloat16"}, optional
        The networks' dtype in streamed prediction (:func:`ads_synth.device.inference_dtype`; default
        ``$ADS_SYNTH_PRECISION`` or ``auto``: bfloat16 where the hardware computes it). nnU-Net's whole-image
        prediction (``streaming=False``) always runs in float32.
    skip_glass : bool, optional
        In streamed prediction, label regions of empty glass background without running their tiles
        (:mod:`~ads_synth.segmentation.sliding_window`, *Glass*); default ``$ADS_SYNTH_GLASS`` or True.

    Attributes
    ----------
    folder : Path
    folds : list
    info : dict
        ``ads_synth.json`` (empty for AxonDeepSeg folders).
    pixel_size : float or None
        Micrometres per pixel the model segments at; None: images are segmented as they are.
    """

    def __init__(self, folder, folds=None, device=None, use_mirroring=False, pixel_size=None, tile_step_size=0.5,
                 batch_size=4, streaming=True, precision=None, skip_glass=None):
        import torch

        from ads_synth.data.glass import skip_glass as glass_rule
        from ads_synth.data.images import check_pixel_size
        from ads_synth.device import inference_dtype, resolve_device
        from ads_synth.segmentation.nnunet_env import import_nnunet, quiet

        self.folder = Path(folder)
        self.folds = check_model_folder(self.folder, folds)
        self.batch_size = int(batch_size)
        self.streaming = bool(streaming)
        self.skip_glass = glass_rule(skip_glass)
        self.glass_tiles = 0  # tiles of one fold not run as glass in the last prediction
        self._fold_networks = None
        self.info = read_model_info(self.folder)
        if self.info.get("pixel_size") is not None:
            self.pixel_size = check_pixel_size(self.info["pixel_size"], f"{self.folder / INFO_FILE} pixel_size")
        elif pixel_size is not None:
            self.pixel_size = check_pixel_size(pixel_size, "--segmentation-pixel-size")
        else:
            self.pixel_size = None
            key = str(self.folder.resolve())
            if key not in _warned_no_pixel_size:
                _warned_no_pixel_size.add(key)
                warnings.warn(f"{self.folder}: the model folder gives no pixel size ({INFO_FILE}) and none was "
                              "given (--segmentation-pixel-size); images are segmented without rescaling.",
                              stacklevel=2)
        self.device = resolve_device(device)
        # nnU-Net's own whole-image prediction runs its network in float32
        self.dtype = inference_dtype(self.device, precision) if self.streaming else torch.float32
        import_nnunet()
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        checkpoint = checkpoint_name(self.folder / f"fold_{self.folds[0]}")
        try:
            with quiet():
                self._predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_gaussian=True,
                                                  use_mirroring=use_mirroring,
                                                  perform_everything_on_gpu=self.device.type == "cuda",
                                                  device=self.device, verbose=False, verbose_preprocessing=False,
                                                  allow_tqdm=False)
                _initialize(self._predictor, self.folder, self.folds, checkpoint)
        except (KeyError, AttributeError, RuntimeError, FileNotFoundError) as err:
            raise InputError(f"{self.folder}: cannot load the nnU-Net model ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}); check that it is a complete "
                             "model folder.") from None
        self._fold_parameters = list(self._predictor.list_of_parameters)
        self._channels = self._class_channels()
        if len(self._predictor.dataset_json.get("channel_names", {})) != 1:
            raise InputError(f"{self.folder}: the model takes "
                             f"{len(self._predictor.dataset_json.get('channel_names', {}))} input channels; "
                             "ads-synth segments grayscale images (one channel).")

    def _class_channels(self):
        """Index of each of our classes (background, myelin, axon) among the model's probability channels."""
        labels = self._predictor.dataset_json.get("labels", {})
        lm = self._predictor.label_manager
        if lm.has_regions:
            raise InputError(f"{self.folder}: region-based models are not supported; use a model with the labels "
                             "background, myelin, axon.")
        order = [int(v) for v in lm.all_labels]
        channels = []
        for name in CLASS_NAMES:
            if name not in labels:
                raise InputError(f"{self.folder}/dataset.json: the model has no '{name}' label (labels: "
                                 f"{sorted(labels)}); use an axon + myelin segmentation model.")
            channels.append(order.index(int(labels[name])))
        return channels

    @property
    def n_folds(self) -> int:
        return len(self._fold_parameters)

    @property
    def patch_size(self):
        return tuple(self._predictor.configuration_manager.patch_size)

    def tiles_per_fold(self, shape) -> int:
        """Sliding-window tiles (network passes, mirroring aside) one fold takes for an image of ``shape``
        (``(H, W)`` on the model's grid): the unit that progress counts."""
        from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

        patch = [int(p) for p in self.patch_size]
        size = [max(int(n), p) for n, p in zip(tuple(shape)[-2:], patch)]
        steps = compute_steps_for_sliding_window(size, patch, self._predictor.tile_step_size)
        return int(np.prod([len(s) for s in steps]))

    def predict(self, image, per_fold=False, progress=None):
        """Per-fold softmax probabilities of ``image`` (on the model's grid already), as ensemble statistics.

        Parameters
        ----------
        image : numpy.ndarray
            2-D grayscale image at :attr:`pixel_size` (any real dtype; nnU-Net normalises it).
        per_fold : bool
            Also return each fold's own label map.
        progress : tqdm, optional
            Updated by one per sliding-window tile of each fold (:meth:`tiles_per_fold` per fold).

        Returns
        -------
        (EnsembleStats, list of numpy.ndarray or None)
            Statistics over the folds on the image's grid (classes: background, myelin, axon) and, with
            ``per_fold``, the folds' label maps (uint8, 0 / 1 / 2).
        """
        from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy

        from ads_synth.segmentation.confidence import EnsembleStats
        from ads_synth.segmentation.nnunet_env import quiet

        image = np.asarray(image)
        if image.ndim != 2:
            raise InputError(f"expected a 2-D grayscale image, got shape {image.shape}.")
        p = self._predictor
        data = image.astype(np.float32)[None, None]  # (channel, z, y, x), as nnU-Net's NaturalImage2DIO reads
        props = {"spacing": [999.0, 1.0, 1.0]}
        stats = EnsembleStats.empty(len(CLASS_NAMES), image.shape)
        fold_labels = [] if per_fold else None
        with quiet():
            adapter = PreprocessAdapterFromNpy([data], [None], [props], [None], p.plans_manager, p.dataset_json,
                                               p.configuration_manager, num_threads_in_multithreaded=1,
                                               verbose=False)
            item = next(adapter)
            run_tile = p._internal_maybe_mirror_and_predict
            if progress is not None:  # one update per tile (nnU-Net calls this once per sliding window)
                def counted(x):
                    out = run_tile(x)
                    progress.update(1)
                    return out

                p._internal_maybe_mirror_and_predict = counted
                shape = getattr(item["data"], "shape", image.shape)
                change = (self.tiles_per_fold(shape) - self.tiles_per_fold(image.shape)) * self.n_folds
                if change and getattr(progress, "total", None) is not None:
                    progress.total += change  # nnU-Net cropped the image's zero border: fewer tiles
            try:
                if self._streamable(item):
                    self._predict_streamed(item, stats, fold_labels, progress)
                else:
                    self._predict_folds(item, stats, fold_labels)
            finally:
                p.__dict__.pop("_internal_maybe_mirror_and_predict", None)
        p.list_of_parameters = self._fold_parameters
        return stats, fold_labels

    def _streamable(self, item) -> bool:
        """Whether nnU-Net's preprocessing left the image on its grid (2-D, no transpose, no resampling), so that
        :func:`~ads_synth.segmentation.sliding_window.stream_logits` can predict it band by band."""
        p = self._predictor
        props = item["data_properties"]
        data = item["data"]
        return (len(self.patch_size) == 2 and data.ndim == 4 and data.shape[1] == 1
                and list(p.plans_manager.transpose_forward) == [0, 1, 2]
                and tuple(data.shape[1:]) == tuple(props["shape_after_cropping_and_before_resampling"])
                and self.streaming)

    def _networks(self):
        """One network per fold, each with its weights (built once; nnU-Net swaps one network's weights)."""
        if getattr(self, "_fold_networks", None) is None:
            import copy

            p = self._predictor
            nets = []
            for params in self._fold_parameters:
                net = copy.deepcopy(p.network)
                net.load_state_dict(params)
                nets.append(net.to(self.device, self.dtype).eval())
            self._fold_networks = nets
        return self._fold_networks

    def _predict_streamed(self, item, stats, fold_labels, progress):
        """Every fold's probabilities of the preprocessed ``item``, band by band (bounded memory), into ``stats``.

        Rows outside nnU-Net's crop (the image's zero border) are background with probability 1, as nnU-Net's
        ``revert_cropping_on_probabilities`` makes them.
        """
        import torch

        from ads_synth.data.glass import FLAT_STD
        from ads_synth.segmentation.sliding_window import stream_logits

        p = self._predictor
        props = item["data_properties"]
        (_, _), (by0, by1), (bx0, bx1) = props["bbox_used_for_cropping"]
        n = len(self._fold_parameters)
        stats.prob_sum[0] = n  # our class 0 is background
        stats.votes[0] = n
        stats.n_members = n
        labels = None
        if fold_labels is not None:
            labels = [np.zeros(stats.shape, np.uint8) for _ in range(n)]
            fold_labels.extend(labels)
        channels = list(self._channels)
        folds = self.folds

        def emit(y0, y1, logits):
            rows = slice(by0 + y0, by0 + y1)
            cols = slice(bx0, bx1)
            stats.prob_sum[:, rows, cols] = 0
            stats.votes[:, rows, cols] = 0
            for k, lg in enumerate(logits):
                require_finite(lg, f"{self.folder}: the network's output (fold {folds[k]})",
                               "its weights are damaged or diverged: reinstall or retrain the model.")
                probs = torch.softmax(lg, dim=0).numpy()[channels]
                stats.prob_sum[:, rows, cols] += probs
                own = np.argmax(probs, axis=0)
                for c in range(stats.votes.shape[0]):
                    stats.votes[c, rows, cols] += own == c
                if labels is not None:
                    labels[k][rows, cols] = own
        mirror = p.allowed_mirroring_axes if p.use_mirroring else None
        self.glass_tiles = stream_logits(
            self._networks(), item["data"][:, 0], self.patch_size, p.tile_step_size, emit,
            batch_size=self.batch_size, mirror_axes=mirror, progress=progress, device=self.device, dtype=self.dtype,
            flat_std=FLAT_STD if self.skip_glass else None, background=channels[0])

    def _predict_folds(self, item, stats, fold_labels):
        """Each fold's probabilities of the preprocessed ``item`` into ``stats`` (and ``fold_labels``)."""
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        p = self._predictor
        for k, params in enumerate(self._fold_parameters):
            p.list_of_parameters = [params]
            try:
                logits = p.predict_logits_from_preprocessed_data(item["data"]).cpu()
            finally:
                p.list_of_parameters = self._fold_parameters
            require_finite(logits, f"{self.folder}: the network's output (fold {self.folds[k]})",
                           "its weights are damaged or diverged: reinstall or retrain the model.")
            _, probs = convert_predicted_logits_to_segmentation_with_correct_shape(
                logits, p.plans_manager, p.configuration_manager, p.label_manager, item["data_properties"],
                return_probabilities=True, num_threads_torch=1)
            del logits
            probs = np.asarray(probs, dtype=np.float32)[:, 0]  # (C, 1, H, W) -> (C, H, W)
            own = stats.add(probs[self._channels])
            if fold_labels is not None:
                fold_labels.append(own)


def _initialize(predictor, folder, folds, checkpoint):
    """``nnUNetPredictor.initialize_from_trained_model_folder``, without importing nnU-Net's trainer module when
    the checkpoints name the default trainer (``nnUNetTrainer``, as ads-synth writes them): its network is the one
    the plans describe (``get_network_from_plans``, which is all the default trainer's builder does), and importing
    ``nnunetv2.training`` costs seconds of start-up. Any other trainer name: nnU-Net's own loader."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(folder)
    checkpoints = [torch.load(folder / f"fold_{f}" / checkpoint, map_location="cpu") for f in folds]
    first = checkpoints[0]
    if first.get("trainer_name") != "nnUNetTrainer":
        del checkpoints
        return predictor.initialize_from_trained_model_folder(str(folder), folds, checkpoint)
    dataset_json = load_json(str(folder / "dataset.json"))
    plans_manager = PlansManager(load_json(str(folder / "plans.json")))
    configuration = plans_manager.get_configuration(first["init_args"]["configuration"])
    channels = determine_num_input_channels(plans_manager, configuration, dataset_json)
    network = get_network_from_plans(plans_manager, dataset_json, configuration, channels, deep_supervision=False)
    predictor.manual_initialization(network, plans_manager, configuration, [c["network_weights"] for c in checkpoints],
                                    dataset_json, first["trainer_name"], first.get("inference_allowed_mirroring_axes"))


def load_segmentation_model(folder, folds=None, device=None, use_mirroring=False, pixel_size=None):
    """Load a segmentation model folder (see :class:`SegmentationModel`)."""
    return SegmentationModel(folder, folds=folds, device=device, use_mirroring=use_mirroring, pixel_size=pixel_size)
