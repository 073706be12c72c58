"""Unit tests of the segmentation part: metrics, confidence, post-processing, export, evaluation, inputs."""

import csv
import math
import shutil

import numpy as np
import pytest

from ads_synth.errors import InputError


# ---------------------------------------------------------------------------------------------------------------
# metrics (AxonDeepSeg's Metrics_calculator), hand-computed cases
# ---------------------------------------------------------------------------------------------------------------
def test_binary_metrics_match_hand_counts():
    from ads_synth.segmentation.metrics import binary_metrics

    # TP 1, FP 1, FN 1, TN 1
    m = binary_metrics(np.array([[1, 1, 0, 0]]), np.array([[1, 0, 1, 0]]))
    assert m == pytest.approx({"dice": 0.5, "sensitivity": 0.5, "specificity": 0.5})
    # TP 2, FP 0, FN 1, TN 6
    pred = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]])
    truth = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]])
    m = binary_metrics(pred, truth)
    assert m == pytest.approx({"dice": 0.8, "sensitivity": 2 / 3, "specificity": 1.0})


def test_label_map_metrics_per_class():
    from ads_synth.segmentation.metrics import label_map_metrics

    truth = np.array([[2, 2, 1, 0], [0, 1, 1, 0]])
    pred = np.array([[2, 1, 1, 0], [0, 0, 1, 2]])
    m = label_map_metrics(pred, truth)
    # axon: TP 1 (0,0), FP 1 (1,3), FN 1 (0,1), TN 5
    assert m["axon"] == pytest.approx({"dice": 0.5, "sensitivity": 0.5, "specificity": 5 / 6})
    # myelin: TP 2, FP 1 (0,1), FN 1 (1,1), TN 4
    assert m["myelin"] == pytest.approx({"dice": 4 / 6, "sensitivity": 2 / 3, "specificity": 4 / 5})


def test_metrics_undefined_cases_are_nan_and_shapes_checked():
    from ads_synth.segmentation.metrics import binary_metrics

    m = binary_metrics(np.zeros((4, 4)), np.zeros((4, 4)))
    assert math.isnan(m["dice"]) and math.isnan(m["sensitivity"]) and m["specificity"] == 1.0
    with pytest.raises(ValueError):
        binary_metrics(np.zeros((4, 4)), np.zeros((4, 5)))


# ---------------------------------------------------------------------------------------------------------------
# confidence
# ---------------------------------------------------------------------------------------------------------------
def _one_hot(labels, n=3):
    return np.eye(n, dtype=np.float32)[labels].transpose(2, 0, 1)


def test_confidence_is_one_where_folds_agree_and_lower_where_they_differ():
    from ads_synth.segmentation.confidence import confidence_to_uint8, fold_agreement

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(16, 16))
    agree = np.stack([_one_hot(labels)] * 5)
    label, conf = fold_agreement(agree)
    assert np.array_equal(label, labels)
    assert np.all(conf == 1.0)
    assert np.all(confidence_to_uint8(conf) == 255)

    other = labels.copy()
    other[:8] = (other[:8] + 1) % 3  # one fold of five votes differently in the top half
    differ = np.stack([_one_hot(labels)] * 4 + [_one_hot(other)])
    label, conf = fold_agreement(differ)
    assert np.array_equal(label, labels)
    assert np.allclose(conf[:8], 0.8 * 0.8) and np.all(conf[8:] == 1.0)
    assert np.all(confidence_to_uint8(conf[:8]) < 255)


def test_confidence_hand_computed_soft_probabilities():
    from ads_synth.segmentation.confidence import fold_agreement

    p1 = np.array([0.2, 0.7, 0.1], np.float32)
    p2 = np.array([0.6, 0.3, 0.1], np.float32)
    p3 = np.array([0.1, 0.2, 0.7], np.float32)
    probs = np.zeros((2, 3, 1, 2), np.float32)
    probs[0, :, 0, 0], probs[1, :, 0, 0] = p1, p2  # mean (0.4, 0.5, 0.1): class 1, one vote of two
    probs[0, :, 0, 1], probs[1, :, 0, 1] = p3, p3  # agree on class 2 with probability 0.7
    label, conf = fold_agreement(probs)
    assert label.tolist() == [[1, 2]]
    assert conf[0, 0] == pytest.approx(0.5 * 0.5)
    assert conf[0, 1] == pytest.approx(0.7)


def test_ensemble_statistics_pool_and_resize():
    from ads_synth.segmentation.confidence import EnsembleStats, label_and_confidence

    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=(4, 10, 12)).transpose(0, 3, 1, 2).astype(np.float32)
    whole = EnsembleStats.from_probabilities(probs)
    pooled = EnsembleStats.from_probabilities(probs[:2]).pooled(EnsembleStats.from_probabilities(probs[2:]))
    assert pooled.n_members == 4
    for a, b in zip(label_and_confidence(whole), label_and_confidence(pooled)):
        assert np.allclose(a, b)
    assert np.allclose(whole.mean_probabilities(), probs.mean(0), atol=1e-6)
    big = whole.resized((20, 24))
    assert big.prob_sum.shape == (3, 20, 24) and big.votes.shape == (3, 20, 24)
    assert np.array_equal(big.votes[:, ::2, ::2], whole.votes)


# ---------------------------------------------------------------------------------------------------------------
# post-processing
# ---------------------------------------------------------------------------------------------------------------
def test_postprocess_fills_axons_inside_myelin_and_removes_specks():
    from ads_synth.segmentation.postprocess import min_area_pixels, postprocess_label_map

    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    lm = np.zeros((64, 64), np.uint8)
    lm[(r >= 8) & (r < 14)] = 1  # a myelin ring with background inside
    lm[2:4, 2:3] = 2  # a 2-px axon speck
    lm[60, 60] = 1  # a 1-px myelin speck
    out = postprocess_label_map(lm, pixel_size=None)
    assert np.all(out[r < 8] == 2)
    assert out[2, 2] == 0 and out[3, 2] == 0 and out[60, 60] == 0
    assert np.array_equal(out == 1, (r >= 8) & (r < 14))
    assert np.array_equal(postprocess_label_map(lm, fill=False)[r < 8], np.zeros(int((r < 8).sum()), np.uint8))
    assert min_area_pixels(None) == 4 and min_area_pixels(0.01) == 100 and min_area_pixels(0.2) == 4


# ---------------------------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------------------------
def test_folds_strategies_and_compact_plan_validation():
    from ads_synth.segmentation.plans import CompactPlan
    from ads_synth.segmentation.pseudo_training import parse_strategies
    from ads_synth.segmentation.trainer import parse_folds

    assert parse_folds(None) == [0, 1, 2, 3, 4]
    assert parse_folds(["3", "1", "3"]) == [1, 3]
    assert parse_folds(["all"]) == ["all"]
    for bad in (["5"], ["all", "1"], ["x"]):
        with pytest.raises(InputError):
            parse_folds(bad)
    assert parse_strategies(["adapt", "all"]) == ["adapt", "tutor", "direct"]
    with pytest.raises(InputError):
        parse_strategies(["both"])
    config = CompactPlan(patch_size=128).configuration()
    assert config["inherits_from"] == "2d" and config["patch_size"] == [128, 128]
    assert len(config["pool_op_kernel_sizes"]) == len(config["conv_kernel_sizes"]) == 5
    with pytest.raises(InputError):
        CompactPlan(patch_size=100)


def test_model_folder_checks_name_the_problem(tmp_path):
    from ads_synth.segmentation.predict import check_model_folder

    with pytest.raises(InputError, match="no such segmentation model folder"):
        check_model_folder(tmp_path / "missing")
    (tmp_path / "m").mkdir()
    with pytest.raises(InputError, match="no dataset.json"):
        check_model_folder(tmp_path / "m")
    (tmp_path / "m" / "dataset.json").write_text("{}")
    (tmp_path / "m" / "plans.json").write_text("{}")
    with pytest.raises(InputError, match="no trained fold"):
        check_model_folder(tmp_path / "m")
    (tmp_path / "m" / "fold_0").mkdir()
    (tmp_path / "m" / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    assert check_model_folder(tmp_path / "m") == [0]
    with pytest.raises(InputError, match="fold.* 3 not trained"):
        check_model_folder(tmp_path / "m", [0, 3])


# ---------------------------------------------------------------------------------------------------------------
# nnU-Net raw dataset export (nnU-Net's own integrity check), on real data (the bundled labeled TEM set)
# ---------------------------------------------------------------------------------------------------------------
def test_exported_dataset_passes_nnunet_integrity_check(tmp_path):
    from PIL import Image

    from ads_synth.data.bundled import labeled_set
    from ads_synth.data.datasets import find_samples
    from ads_synth.segmentation.dataset_export import (
        LABELS,
        dataset_name,
        export_raw_dataset,
        verify_raw_dataset,
    )
    from ads_synth.segmentation.model_building import labeled_cases

    samples = [s for s in find_samples(labeled_set("TEM"), require_labels=True) if s.pixel_size == 0.00493][:3]
    folder = tmp_path / dataset_name(7, "tem")
    export_raw_dataset(labeled_cases(samples, 0.02), folder, channel_name="TEM", progress=False)
    verify_raw_dataset(folder)  # raises on any problem
    ds = __import__("json").loads((folder / "dataset.json").read_text())
    assert ds == {"channel_names": {"0": "TEM"}, "labels": LABELS, "numTraining": 3, "file_ending": ".png"}
    label = np.array(Image.open(next((folder / "labelsTr").glob("*.png"))))
    image = np.array(Image.open(next((folder / "imagesTr").glob("*_0000.png"))))
    assert label.shape == image.shape == (148, 148)  # 600 px at 0.00493 um -> 0.02 um
    assert set(np.unique(label)) <= {0, 1, 2} and {1, 2} <= set(np.unique(label))

    # the check can fail: a label value nnU-Net does not know
    broken = tmp_path / dataset_name(8, "broken")
    shutil.copytree(folder, broken)
    first = next((broken / "labelsTr").glob("*.png"))
    bad = np.array(Image.open(first))
    bad[0, 0] = 3
    Image.fromarray(bad).save(first)
    with pytest.raises((AssertionError, RuntimeError)):
        verify_raw_dataset(broken)
    with pytest.raises(InputError, match="exists"):
        export_raw_dataset(labeled_cases(samples, 0.02), folder, progress=False)


# ---------------------------------------------------------------------------------------------------------------
# evaluation: grouping by fold, Table 2, reports (real labels as truth: the bundled sem-dev subject)
# ---------------------------------------------------------------------------------------------------------------
def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_evaluation_groups_folds_and_recomputes_dice(tmp_path):
    from scipy import ndimage

    from ads_synth.data.datasets import find_samples, load_label_map
    from ads_synth.data.writers import write_ads_segmentation
    from ads_synth.segmentation.evaluate import evaluate, format_table, markdown_table, summarize, write_reports
    from tiny_models import TEST_SEM

    truth_dir = tmp_path / "truth"
    shutil.copytree(TEST_SEM, truth_dir)
    sample = find_samples(truth_dir, require_labels=True)[0]
    truth = load_label_map(sample)
    eroded = truth.copy()
    eroded[~ndimage.binary_erosion(truth > 0, iterations=2)] = 0
    shifted = np.roll(truth, 5, axis=1)
    pred = tmp_path / "pred"
    write_ads_segmentation(truth, sample.image, pred / "tutor" / "fold_0")
    write_ads_segmentation(eroded, sample.image, pred / "tutor" / "fold_1")
    write_ads_segmentation(shifted, sample.image, pred / "tutor")
    write_ads_segmentation(shifted, sample.image, pred / "direct")

    ev = evaluate(pred, truth_dir)
    table = {e["strategy"]: e for e in summarize(ev)}
    d1 = {c: _dice(eroded == v, truth == v) for c, v in (("axon", 2), ("myelin", 1))}
    for c in ("axon", "myelin"):
        values = [1.0, d1[c]]
        assert table["tutor"][f"{c}_dice_mean"] == pytest.approx(np.mean(values))
        assert table["tutor"][f"{c}_dice_std"] == pytest.approx(np.std(values, ddof=1))
    assert table["tutor"]["over"] == "folds" and table["tutor"]["n"] == 2
    assert table["direct"]["over"] == "images"
    v = 2
    assert table["direct"]["axon_dice_mean"] == pytest.approx(_dice(shifted == v, truth == v))
    text = format_table(summarize(ev))
    assert "Tutorship (L->U)" in text and f"{np.mean([1.0, d1['axon']]):.3f} ±" in text
    assert markdown_table(summarize(ev)).startswith("| Strategy |")
    paths = write_reports(ev, tmp_path / "reports")
    with open(paths["images_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert {(r["strategy"], r["fold"]) for r in rows} == {("tutor", "fold_0"), ("tutor", "fold_1"),
                                                           ("tutor", "ensemble"), ("direct", "ensemble")}
    assert paths["figure"].stat().st_size > 1000
    with pytest.raises(InputError, match="no predictions found"):
        evaluate(tmp_path / "reports", truth_dir)


def test_model_folder_trained_with_other_settings_is_not_continued(tmp_path):
    from ads_synth.segmentation.model_building import TrainSettings, build_segmentation_model
    from ads_synth.segmentation.plans import CompactPlan
    from ads_synth.segmentation.predict import write_model_info

    data = {"pixel_size": 0.02, "domain": "L", "strategy": "labeled", "trained_on": {"data": ["x"], "n_images": 5}}
    write_model_info(tmp_path / "m", {**data, "configuration": "2d_compact",
                                      "compact_plan": CompactPlan(patch_size=128).to_dict()})
    with pytest.raises(InputError, match="compact_plan.*--overwrite"):
        build_segmentation_model(tmp_path / "m", tmp_path / "work", dataset_id=502, dataset_label="x",
                                 cases=lambda: iter(()), n_cases=5, info=data,
                                 settings=TrainSettings(patch_size=256, progress=False))
    assert not (tmp_path / "work").exists()


def test_plan_and_preprocess_with_one_process_spawns_no_worker(tmp_path, monkeypatch):
    """``num_processes=1``: nnU-Net's fingerprint and preprocessing cases run in this process (no spawned worker
    importing torch again), and the dataset is planned and preprocessed all the same."""
    import json
    import multiprocessing

    from ads_synth.segmentation import plans
    from ads_synth.segmentation.dataset_export import export_raw_dataset
    from ads_synth.segmentation.nnunet_env import use_folders

    def no_spawn(*args, **kwargs):
        raise AssertionError("a worker process was started")

    folders = use_folders(tmp_path / "nnunet")
    rng = np.random.default_rng(0)
    cases = []
    for i in range(5):
        label = np.zeros((48, 64), np.uint8)
        label[8:40, 8 + i:40 + i] = 1
        label[16:32, 16 + i:32 + i] = 2
        cases.append((f"case{i}", (rng.random((48, 64)) * 60 + label * 80).astype(np.uint8), label))
    export_raw_dataset(cases, folders.raw / "Dataset951_inline", progress=False)
    calls = []
    real = plans._InlinePool.starmap_async
    monkeypatch.setattr(plans._InlinePool, "starmap_async", lambda self, f, it: calls.append(f) or real(self, f, it))
    monkeypatch.setattr(multiprocessing.get_context("spawn"), "Pool", no_spawn)
    # nnU-Net's dataset check too (it spawns a pool even for one process): in this process, and it still checks
    from ads_synth.segmentation.dataset_export import verify_raw_dataset

    verify_raw_dataset(folders.raw / "Dataset951_inline", num_processes=1)
    bad = folders.raw / "Dataset952_bad"
    export_raw_dataset(cases, bad, progress=False)
    from PIL import Image

    Image.fromarray(np.full((48, 64), 7, np.uint8)).save(next((bad / "labelsTr").glob("*.png")))
    with pytest.raises(RuntimeError):
        verify_raw_dataset(bad, num_processes=1)
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor

    sampled = []
    collect = DatasetFingerprintExtractor.collect_foreground_intensities
    monkeypatch.setattr(DatasetFingerprintExtractor, "collect_foreground_intensities", staticmethod(
        lambda seg, images, seed=1234, num_samples=10000: sampled.append(num_samples) or collect(
            seg, images, seed, num_samples)))
    result = plans.plan_and_preprocess(folders, 951, compact=plans.CompactPlan(patch_size=32, n_stages=3),
                                       num_processes=1, log_file=tmp_path / "log.txt", progress=False)
    assert len(calls) == 10  # five fingerprint cases, five preprocessed cases, all in this process
    fingerprint = json.loads((folders.preprocessed / "Dataset951_inline" / "dataset_fingerprint.json").read_text())
    assert len(fingerprint["shapes_after_crop"]) == 5
    # intensity statistics from FINGERPRINT_SAMPLES pixels (nnU-Net's 10e7 cost seconds a build), still right
    assert sampled == [plans.FINGERPRINT_SAMPLES // 5] * 5
    foreground = np.concatenate([image[label > 0] for _, image, label in cases]).astype(float)
    stats = fingerprint["foreground_intensity_properties_per_channel"]["0"]
    assert abs(stats["mean"] - foreground.mean()) < 1 and abs(stats["median"] - np.median(foreground)) <= 2
    assert plans.COMPACT_CONFIGURATION in result["configurations"]
    data = folders.preprocessed / "Dataset951_inline" / result["configurations"]["2d"]["data_identifier"]
    assert sorted(p.name for p in data.glob("*.npz")) == [f"case{i}.npz" for i in range(5)]
    from nnunetv2.experiment_planning.dataset_fingerprint import fingerprint_extractor

    assert fingerprint_extractor.multiprocessing is multiprocessing  # put back
