"""The nnU-Net side on real data: model folders, checkpoints, nnU-Net's and AxonDeepSeg's loaders, resuming."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from tiny_models import run_ads_axon_segmentation, tiny_pipeline


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.getbasetemp() / "tiny_pipeline")


@pytest.fixture(scope="session")
def l_model(pipeline):
    return pipeline.result["models"]["L"]


def test_model_folder_has_ads_layout_and_description(l_model, pipeline):
    from ads_synth.segmentation.predict import read_model_info

    for name in ("dataset.json", "plans.json", "ads_synth.json"):
        assert (l_model / name).is_file()
    info = read_model_info(l_model)
    assert info["domain"] == "L" and info["strategy"] == "labeled" and info["pixel_size"] == 0.02
    assert info["configuration"] == "2d_compact" and info["trainer"] == "compact"
    plans = json.loads((l_model / "plans.json").read_text())
    compact = plans["configurations"]["2d_compact"]
    assert compact["inherits_from"] == "2d" and compact["patch_size"] == [64, 64]
    for fold in pipeline.folds:
        fold_dir = l_model / f"fold_{fold}"
        assert (fold_dir / "checkpoint_final.pth").is_file()
        assert not (fold_dir / "checkpoint_best.pth").exists()
        assert not (fold_dir / "checkpoint_latest.pth").exists()
        checkpoint = torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu")
        assert checkpoint["trainer_name"] == "nnUNetTrainer"
        assert checkpoint["init_args"]["configuration"] == "2d_compact"


def test_compact_network_size_matches_the_measured_plan(l_model):
    from ads_synth.segmentation.nnunet_env import import_nnunet
    from ads_synth.segmentation.plans import CompactPlan

    import_nnunet()
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads((l_model / "plans.json").read_text())
    plans["configurations"]["2d_compact"] = CompactPlan().configuration()  # 256 px, batch 4, 5 stages
    manager = PlansManager(plans)
    dataset_json = json.loads((l_model / "dataset.json").read_text())
    net = get_network_from_plans(manager, dataset_json, manager.get_configuration("2d_compact"), 1)
    n = sum(p.numel() for p in net.parameters())
    assert 1.90e6 < n < 1.98e6  # 1.94M measured for this configuration (docs: environment notes)


def test_nnunet_predictor_agrees_with_per_fold_prediction(l_model, pipeline):
    from ads_synth.data.datasets import find_samples
    from ads_synth.data.images import read_image
    from ads_synth.data.resample import rescale, scale_factor
    from ads_synth.segmentation.confidence import label_and_confidence
    from ads_synth.segmentation.predict import SegmentationModel

    sample = find_samples(pipeline.labeled)[-1]
    model = SegmentationModel(l_model, folds=[0], device="cpu", precision="float32")  # nnU-Net runs float32
    image = rescale(read_image(sample.image), scale_factor(sample.pixel_size, model.pixel_size))
    stats, fold_labels = model.predict(image, per_fold=True)
    ours, conf = label_and_confidence(stats)
    assert np.array_equal(ours, fold_labels[0])

    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(use_mirroring=False, perform_everything_on_gpu=False,
                                device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(l_model), (0,), "checkpoint_final.pth")
    theirs = predictor.predict_single_npy_array(image.astype(np.float32)[None, None], {"spacing": [999, 1, 1]})
    # labels 0 bg / 1 myelin / 2 axon in both; ours accumulates the tiles in float32 (streamed), nnU-Net in
    # float16: a few pixels on a decision boundary may differ
    assert np.mean(theirs[0] != ours) < 1e-3
    assert conf.min() >= 0 and conf.max() <= 1


def test_axondeepseg_loads_and_runs_the_model_folder(l_model, pipeline, tmp_path):
    image = tmp_path / "tile.png"
    from PIL import Image

    from ads_synth.data.datasets import find_samples
    from ads_synth.data.images import read_image

    sample = find_samples(pipeline.labeled)[0]
    Image.fromarray(read_image(sample.image)[:160, :160]).save(image)
    outputs = run_ads_axon_segmentation(image, l_model)
    assert sorted(outputs) == ["tile_seg-axon.png", "tile_seg-axonmyelin.png", "tile_seg-myelin.png"]
    for out in outputs.values():
        assert out.shape == (160, 160)


def test_training_skips_finished_folds_and_continues_interrupted_ones(l_model, pipeline, tmp_path):
    from ads_synth.segmentation.nnunet_env import use_folders
    from ads_synth.segmentation.predict import read_model_info
    from ads_synth.segmentation.trainer import train_fold

    folders = use_folders(pipeline.out / "work" / "nnunet")
    name = read_model_info(l_model)["nnunet_dataset"]
    final = l_model / "fold_0" / "checkpoint_final.pth"
    stamp = os.stat(final).st_mtime_ns
    assert train_fold(folders, name, l_model, 0, epochs=2, iterations=2, device="cpu", progress=False) == final
    assert os.stat(final).st_mtime_ns == stamp  # done: skipped, even with another schedule

    copy = tmp_path / "model"
    shutil.copytree(l_model, copy, ignore=shutil.ignore_patterns("fold_1"))
    first = torch.load(final, map_location="cpu")
    assert first["current_epoch"] == 1
    os.replace(copy / "fold_0" / "checkpoint_final.pth", copy / "fold_0" / "checkpoint_latest.pth")
    train_fold(folders, name, copy, 0, epochs=2, iterations=2, val_iterations=1, device="cpu", progress=False)
    resumed = torch.load(copy / "fold_0" / "checkpoint_final.pth", map_location="cpu")
    assert resumed["current_epoch"] == 2 and resumed["trainer_name"] == "nnUNetTrainer"
    assert len(resumed["logging"]["train_losses"]) == 2  # epoch 0 from the first run, epoch 1 from this one
    assert resumed["logging"]["train_losses"][0] == first["logging"]["train_losses"][0]
    assert not (copy / "fold_0" / "checkpoint_latest.pth").exists()


def test_progress_png_is_drawn_after_the_last_epoch_not_after_each(l_model, pipeline, tmp_path, monkeypatch):
    """nnU-Net redraws its 3000 x 5400 px progress.png after every epoch (1-2 s on this CPU, an epoch's worth in a
    small run); the trainer draws it after the last epoch, and in between at most every PROGRESS_PLOT_SECONDS."""
    from nnunetv2.training.logging.nnunet_logger import nnUNetLogger

    from ads_synth.segmentation import nnunet_trainers
    from ads_synth.segmentation.nnunet_env import use_folders
    from ads_synth.segmentation.predict import read_model_info
    from ads_synth.segmentation.trainer import train_fold

    drawn = []
    real = nnUNetLogger.plot_progress_png
    monkeypatch.setattr(nnUNetLogger, "plot_progress_png",
                        lambda self, folder: drawn.append(len(self.my_fantastic_logging["train_losses"]))
                        or real(self, folder))
    folders = use_folders(pipeline.out / "work" / "nnunet")
    name = read_model_info(l_model)["nnunet_dataset"]
    model = tmp_path / "model"
    shutil.copytree(l_model, model, ignore=shutil.ignore_patterns("fold_*"))
    train_fold(folders, name, model, 0, epochs=3, iterations=1, val_iterations=1, device="cpu", progress=False)
    assert drawn == [3] and (model / "fold_0" / "progress.png").stat().st_size > 10_000
    monkeypatch.setattr(nnunet_trainers, "PROGRESS_PLOT_SECONDS", 0.0)
    shutil.rmtree(model / "fold_0")
    train_fold(folders, name, model, 0, epochs=2, iterations=1, val_iterations=1, device="cpu", progress=False)
    assert drawn == [3, 1, 2]  # no time left between epochs: every epoch, as nnU-Net does


def test_segmentation_train_command_with_fold_all(tmp_path, capsys):
    """``ads-synth segmentation train --folds all``: one model on every image (AxonDeepSeg's 'light' layout), on the
    tem-nyu image of the bundled labeled set."""
    from ads_synth.cli import main
    from ads_synth.data.bundled import labeled_set
    from ads_synth.segmentation.predict import read_model_info
    from tiny_models import copy_bids_subject

    nyu = copy_bids_subject(labeled_set("TEM"), tmp_path / "tem-nyu", subject="sub-nyuMouse26")

    model = tmp_path / "tem_model"
    code = main(["segmentation", "train", "--data", str(nyu), "--out", str(model),
                 "--folds", "all", "--epochs", "1", "--iterations", "2", "--patch", "64", "--batch-size", "2",
                 "--pixel-size", "0.02", "--device", "cpu", "--processes", "1", "--no-progress"])
    assert code == 0
    assert "pixel size 0.02 um, folds all" in capsys.readouterr().out
    assert (model / "fold_all" / "checkpoint_final.pth").is_file()
    info = read_model_info(model)
    assert info["folds"] == ["all"] and info["trained_on"]["n_images"] == 1
    raw = tmp_path / "tem_model_work" / "raw"
    images = list(raw.rglob("imagesTr/*_0000.png"))
    assert len(images) == 1
    from PIL import Image

    factor = 0.00236 / 0.02  # tem-nyu: 2000 x 1998 px at 0.00236 um, resampled to 0.02 um
    assert Image.open(images[0]).size == (round(2000 * factor), round(1998 * factor))
    # too few images for five folds: refused before anything is written
    assert main(["segmentation", "train", "--data", str(nyu), "--out",
                 str(tmp_path / "other"), "--device", "cpu"]) == 2
    assert "too few" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_time_limit_fits_the_epochs_and_a_resumed_fold_keeps_them(l_model, pipeline, tmp_path, monkeypatch):
    """Each epoch costs 1 s of a fake clock: 3 planned epochs with a 5.5 s limit become 5 (timed over epochs 2-3),
    with the poly learning rate over 5; killed in epoch 5 and resumed on a clock 10x faster, the fold keeps 5
    epochs (recalibrating from scratch would have stopped it at once, at 4)."""
    from ads_synth.segmentation import nnunet_trainers
    from ads_synth.segmentation.nnunet_env import use_folders
    from ads_synth.segmentation.predict import read_model_info
    from ads_synth.segmentation.trainer import train_fold

    clock = {"now": 0.0, "cost": 1.0, "kill_at": None}
    step = nnunet_trainers.AdsSynthTrainer.train_step

    def timed_step(self, batch):
        if self.current_epoch == clock["kill_at"]:
            raise KeyboardInterrupt("killed")
        clock["now"] += clock["cost"]
        return step(self, batch)

    monkeypatch.setattr(nnunet_trainers, "_clock", lambda: clock["now"])
    monkeypatch.setattr(nnunet_trainers.AdsSynthTrainer, "train_step", timed_step)
    folders = use_folders(pipeline.out / "work" / "nnunet")
    name = read_model_info(l_model)["nnunet_dataset"]
    kw = dict(epochs=3, iterations=1, val_iterations=1, device="cpu", progress=False, time_limit_s=5.5)
    model = tmp_path / "model"
    shutil.copytree(l_model, model, ignore=shutil.ignore_patterns("fold_*"))
    final = torch.load(train_fold(folders, name, model, 0, **kw), map_location="cpu")
    assert final["current_epoch"] == 5 and final[nnunet_trainers.SCHEDULE_KEY]["epochs"] == 5
    lrs = final["logging"]["lrs"]
    assert lrs[4] == pytest.approx(1e-2 * (1 - 4 / 5) ** 0.9)

    killed = tmp_path / "killed"
    shutil.copytree(l_model, killed, ignore=shutil.ignore_patterns("fold_*"))
    clock.update(now=0.0, kill_at=4)
    with pytest.raises(KeyboardInterrupt):
        train_fold(folders, name, killed, 0, **kw)
    clock.update(cost=0.1, kill_at=None)
    resumed = torch.load(train_fold(folders, name, killed, 0, **kw), map_location="cpu")
    assert resumed["current_epoch"] == 5 and resumed["logging"]["lrs"] == pytest.approx(lrs)
    no_limit = tmp_path / "fixed"
    shutil.copytree(l_model, no_limit, ignore=shutil.ignore_patterns("fold_*"))
    assert torch.load(train_fold(folders, name, no_limit, 0, **{**kw, "time_limit_s": None}),
                      map_location="cpu")["current_epoch"] == 3
