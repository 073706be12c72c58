"""End to end on real data with tiny models: ``ads-synth pseudo --strategy all --per-fold`` then ``evaluate``.

L = 5 tem-srf images, U = sem-dev sub-rat4 (its labels only for evaluation), a random tiny translation model,
compact nnU-Nets trained for a few iterations (2 folds). The Dice values are low and meaningless; the tests check
that the pipeline ran, what it wrote, that the scores are computed correctly, and that U's labels never reach
training.
"""

import csv
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ads_synth.errors import InputError
from tiny_models import copy_bids_subject, tiny_pipeline

STRATEGIES = ("tutor", "adapt", "direct", "combined")


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.getbasetemp() / "tiny_pipeline")


def _image(pipeline):
    return next((pipeline.unlabeled / "sub-rat4" / "micr").glob("*_SEM.png"))


def _read(path):
    return np.array(Image.open(path))


def test_pipeline_writes_ads_files_and_confidence_maps(pipeline):
    image = _image(pipeline)
    shape = _read(image).shape[:2]
    stem = image.stem
    records = pipeline.result["records"]
    assert sorted(r["strategy"] for r in records) == sorted(STRATEGIES)
    for strategy in STRATEGIES:
        folder = pipeline.out / "pseudo_labels" / strategy
        axon = _read(folder / f"{stem}_seg-axon.png")
        myelin = _read(folder / f"{stem}_seg-myelin.png")
        both = _read(folder / f"{stem}_seg-axonmyelin.png")
        conf = _read(folder / f"{stem}_seg-confidence.png")
        conf_tif = __import__("tifffile").imread(folder / f"{stem}_seg-confidence.tif")
        for arr in (axon, myelin, both, conf):
            assert arr.shape == shape and arr.dtype == np.uint8
        assert set(np.unique(axon)) <= {0, 255} and set(np.unique(myelin)) <= {0, 255}
        assert set(np.unique(both)) <= {0, 127, 255}
        assert np.array_equal(both == 255, axon == 255) and np.array_equal(both == 127, myelin == 255)
        assert conf_tif.dtype == np.float32 and 0 <= conf_tif.min() and conf_tif.max() <= 1
        assert np.array_equal(conf, np.rint(conf_tif * 255).astype(np.uint8))
        if strategy != "combined":
            for fold in pipeline.folds:
                assert _read(folder / f"fold_{fold}" / f"{stem}_seg-axonmyelin.png").shape == shape
    models = pipeline.result["models"]
    assert set(models) == {"tutor", "L"}
    info = __import__("json").loads((models["tutor"] / "ads_synth.json").read_text())
    assert info["domain"] == "U" and info["strategy"] == "tutor" and info["pixel_size"] == 0.2


def test_unlabeled_labels_are_never_read(pipeline):
    u_labels = {p.resolve() for p in (pipeline.unlabeled / "derivatives").rglob("*.png")}
    l_labels = {p.resolve() for kind in ("axon", "myelin") for p in pipeline.labeled.glob(f"*_seg-{kind}-manual.png")}
    assert u_labels and l_labels
    assert not (pipeline.opened & u_labels)
    assert l_labels <= pipeline.opened  # the spy saw the labeled domain's labels being read
    # nnU-Net's training sets hold the five L cases and nothing of U
    raw = pipeline.out / "work" / "nnunet" / "raw"
    for dataset in raw.iterdir():
        cases = sorted(p.name for p in (dataset / "labelsTr").glob("*.png"))
        assert len(cases) == 5 and not any("rat" in c for c in cases)


def test_same_pseudo_labels_without_the_unlabeled_labels(pipeline, tmp_path):
    from ads_synth.segmentation.pseudo import pseudo_label_images

    bare = copy_bids_subject(pipeline.unlabeled, tmp_path / "bare", with_labels=False)
    assert not (bare / "derivatives").exists()
    for strategy, model in (("tutor", "tutor"), ("adapt", "L")):
        out = tmp_path / strategy
        records = pseudo_label_images(bare, translation=pipeline.translation,
                                      segmentation=pipeline.result["models"][model], strategy=strategy,
                                      out_dir=out, progress=False, folds=list(pipeline.folds))
        assert len(records) == 1
        for name in ("axonmyelin", "confidence"):
            ref = next((pipeline.out / "pseudo_labels" / strategy).glob(f"*_seg-{name}.png"))
            assert np.array_equal(_read(out / ref.name), _read(ref))


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_evaluate_command_prints_table_with_independently_recomputed_dice(pipeline, tmp_path, capsys):
    from ads_synth.cli import main

    truth = pipeline.unlabeled
    label = _read(next((truth / "derivatives").rglob("*_seg-axonmyelin-manual.png")))
    truth_axon, truth_myelin = label > 191, (label > 63) & (label <= 191)
    code = main(["evaluate", "--pred", str(pipeline.out / "pseudo_labels"), "--truth", str(truth),
                 "-o", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    with open(tmp_path / "evaluation_table.csv") as f:
        table = {row["strategy"]: row for row in csv.DictReader(f)}
    assert set(table) == set(STRATEGIES)
    stem = _image(pipeline).stem
    for strategy in ("tutor", "adapt", "direct"):
        per_fold = {"axon": [], "myelin": []}
        for fold in pipeline.folds:
            pred = _read(pipeline.out / "pseudo_labels" / strategy / f"fold_{fold}" / f"{stem}_seg-axonmyelin.png")
            per_fold["axon"].append(_dice(pred == 255, truth_axon))
            per_fold["myelin"].append(_dice(pred == 127, truth_myelin))
        for cls in ("axon", "myelin"):
            mean, std = np.mean(per_fold[cls]), np.std(per_fold[cls], ddof=1)
            assert float(table[strategy][f"{cls}_dice_mean"]) == pytest.approx(mean, abs=1e-9)
            assert float(table[strategy][f"{cls}_dice_std"]) == pytest.approx(std, abs=1e-9)
            assert f"{mean:.3f} ± {std:.3f}" in printed
    assert table["combined"]["over"] == "images"
    assert "Tutorship (L->U)" in printed and "L model applied directly" in printed
    assert (tmp_path / "evaluation_dice.png").stat().st_size > 1000


def test_rerun_resumes_without_training_or_rewriting(pipeline):
    from ads_synth.segmentation.pseudo import OutputOptions
    from ads_synth.segmentation.pseudo_training import run_pseudo
    from tiny_models import tiny_settings

    checkpoints = sorted((pipeline.out / "models").rglob("checkpoint_final.pth"))
    assert len(checkpoints) == 2 * len(pipeline.folds)
    outputs = sorted((pipeline.out / "pseudo_labels").rglob("*.png"))
    before = {p: os.stat(p).st_mtime_ns for p in checkpoints + outputs}
    result = run_pseudo("all", pipeline.labeled, pipeline.unlabeled, pipeline.translation, pipeline.out,
                        settings=tiny_settings(pipeline.folds), options=OutputOptions(per_fold=True,
                                                                                      confidence_tiff=True,
                                                                                      skip_existing=True),
                        progress=False)
    assert result["records"] == []
    assert {p: os.stat(p).st_mtime_ns for p in before} == before


def test_existing_outputs_refused_before_anything_is_written(pipeline, tmp_path):
    from ads_synth.segmentation.pseudo import pseudo_label_images

    image = _image(pipeline)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{image.stem}_seg-confidence.png").write_bytes(b"mine")
    with pytest.raises(InputError, match="already exists"):
        pseudo_label_images([image], translation=None, segmentation=pipeline.result["models"]["tutor"],
                            strategy="tutor", out_dir=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [f"{image.stem}_seg-confidence.png"]

    no_px = tmp_path / "no_px"
    no_px.mkdir()
    shutil.copy2(image, no_px / image.name)
    with pytest.raises(InputError, match="no pixel size"):
        pseudo_label_images([no_px / image.name], translation=None,
                            segmentation=pipeline.result["models"]["tutor"], strategy="tutor", progress=False)
    assert sorted(p.name for p in no_px.iterdir()) == [image.name]


def test_segmentation_predict_command_matches_the_pipeline_floor(pipeline, tmp_path, capsys):
    from ads_synth.cli import main

    image = _image(pipeline)
    code = main(["segmentation", "predict", "-i", str(image), "-m", str(pipeline.result["models"]["L"]),
                 "-o", str(tmp_path), "--folds", "0", "--translation", str(pipeline.translation), "--no-progress"])
    assert code == 0
    assert "mean confidence" in capsys.readouterr().out
    ref = pipeline.out / "pseudo_labels" / "direct" / "fold_0" / f"{image.stem}_seg-axonmyelin.png"
    assert np.array_equal(_read(tmp_path / ref.name), _read(ref))  # one fold's ensemble is that fold


def test_pseudo_command_refuses_bad_input_before_training(pipeline, tmp_path, capsys):
    from ads_synth.cli import main

    out = tmp_path / "OUT"
    base = ["pseudo", "--strategy", "tutor", "--labeled", str(pipeline.labeled), "--unlabeled",
            str(pipeline.unlabeled), "-o", str(out), "--no-progress"]
    assert main(base + ["--translation", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(base + ["--translation", str(pipeline.translation), "--folds", "7"]) == 2
    assert main(base + ["--translation", str(pipeline.translation), "--patch", "100"]) == 2
    unlabeled_without_px = tmp_path / "u"
    unlabeled_without_px.mkdir()
    shutil.copy2(_image(pipeline), unlabeled_without_px)
    assert main(base[:6] + [str(unlabeled_without_px), "-o", str(out), "--translation",
                            str(pipeline.translation)]) == 2
    assert "pixel size" in capsys.readouterr().err
    assert not out.exists()


def test_proxy_trains_on_confident_pseudo_labels_and_segments_u(pipeline, tmp_path):
    """``--strategy proxy``: U image + combined pseudo labels (unsure pixels ignored) + the tutorship cases.

    The pipeline's teachers and their pseudo labels are reused (a resumed run: neither retrained nor relabelled);
    the proxy trains one fold."""
    import json

    from ads_synth.data.datasets import _nearest_axonmyelin
    from ads_synth.data.resample import resize_to
    from ads_synth.segmentation.pseudo import OutputOptions
    from ads_synth.segmentation.pseudo_training import run_pseudo
    from tiny_models import record_opened_files, run_ads_axon_segmentation, tiny_settings

    out = tmp_path / "OUT"
    shutil.copytree(pipeline.out / "models", out / "models")  # tutor and L reused, not retrained
    for teacher in ("tutor", "adapt", "combined"):  # and their pseudo labels, not made again
        shutil.copytree(pipeline.out / "pseudo_labels" / teacher, out / "pseudo_labels" / teacher)
    teachers = {p: p.stat().st_mtime_ns for p in (out / "pseudo_labels").rglob("*.png")}
    with record_opened_files() as opened:
        result = run_pseudo("proxy", pipeline.labeled, pipeline.unlabeled, pipeline.translation, out,
                            settings=tiny_settings((0,)), options=OutputOptions(skip_existing=True),
                            progress=False, min_confidence=0.25)
    u_labels = {p.resolve() for p in (pipeline.unlabeled / "derivatives").rglob("*.png")}
    assert u_labels and not (set(opened) & u_labels)
    assert [r["strategy"] for r in result["records"]] == ["proxy"]
    assert {p: p.stat().st_mtime_ns for p in teachers} == teachers

    info = json.loads((result["models"]["proxy"] / "ads_synth.json").read_text())
    assert info["strategy"] == "proxy" and info["domain"] == "U" and info["pixel_size"] == 0.2
    assert info["trained_on"]["min_confidence"] == 0.25 and info["trained_on"]["n_images"] == 5
    assert info["folds"] == [0]  # the folds actually trained
    raw = out / "work" / "nnunet" / "raw" / "Dataset503_proxy"
    assert json.loads((raw / "dataset.json").read_text())["labels"]["ignore"] == 3
    cases = sorted(p.name for p in (raw / "labelsTr").glob("*.png"))
    assert len(cases) == 6 and sum("rat4" in c for c in cases) == 1

    # the U case: the combined pseudo labels at U's working grid, 3 (ignore) exactly where confidence < 0.25 (the
    # tiny teachers are unsure: their median confidence is ~0.2)
    stem = _image(pipeline).stem
    case = _read(next((raw / "labelsTr").glob("*rat4*.png")))
    combined = out / "pseudo_labels" / "combined"
    teacher = resize_to(_nearest_axonmyelin(_read(combined / f"{stem}_seg-axonmyelin.png")), case.shape, order=0)
    confidence = resize_to(_read(combined / f"{stem}_seg-confidence.png").astype(np.float32) / 255, case.shape)
    assert np.array_equal(case == 3, confidence < 0.25)
    assert 0.05 < np.mean(case == 3) < 0.95
    assert np.array_equal(case[case != 3], teacher[case != 3])

    # the trained model folder is a plain 3-class model: AxonDeepSeg's own loader writes its usual three files
    assert "ignore" not in json.loads((result["models"]["proxy"] / "dataset.json").read_text())["labels"]
    tile = tmp_path / "ads" / "tile.png"
    tile.parent.mkdir()
    Image.fromarray(_read(_image(pipeline))[:160, :160]).save(tile)
    written = run_ads_axon_segmentation(tile, result["models"]["proxy"])
    assert sorted(written) == ["tile_seg-axon.png", "tile_seg-axonmyelin.png", "tile_seg-myelin.png"]

    folder = out / "pseudo_labels" / "proxy"
    both = _read(folder / f"{stem}_seg-axonmyelin.png")
    assert both.shape == _read(_image(pipeline)).shape[:2] and set(np.unique(both)) <= {0, 127, 255}
    assert (folder / f"{stem}_seg-confidence.png").is_file()


def test_proxy_leaves_out_images_without_a_confident_pixel(pipeline):
    from ads_synth.segmentation.model_building import pseudo_labeled_cases
    from ads_synth.segmentation.pseudo import _samples

    combined = pipeline.out / "pseudo_labels" / "combined"
    items = [(s, px, combined / f"{s.name}_seg-axonmyelin.png", combined / f"{s.name}_seg-confidence.png")
             for s, px in _samples(pipeline.unlabeled, None)]
    assert len(items) == 1
    ((case, image, labels),) = pseudo_labeled_cases(items, 0.2, min_confidence=0.25)
    assert "rat4" in case and labels.shape == image.shape and {0, 3} <= set(np.unique(labels)) <= {0, 1, 2, 3}
    with pytest.warns(UserWarning, match="no pseudo-label pixel reaches confidence 0.99"), \
            pytest.raises(InputError, match="lower --min-confidence"):
        list(pseudo_labeled_cases(items, 0.2, min_confidence=0.99))


def test_proxy_strategy_brings_its_teachers():
    from ads_synth.segmentation.pseudo_training import parse_strategies

    assert parse_strategies("proxy") == ["tutor", "adapt", "proxy"]
    assert parse_strategies(["proxy", "direct"]) == ["direct", "tutor", "adapt", "proxy"]
    assert parse_strategies("all") == ["tutor", "adapt", "direct"]
    with pytest.raises(InputError, match="proxy"):
        parse_strategies("self")


def test_intensity_baselines_are_the_l_model_on_transformed_u(pipeline, tmp_path, capsys):
    """``ads-synth pseudo --strategy invert histmatch`` (the L model reused): each equals ``direct`` on a U image
    transformed by hand, and histmatch's reference is the labeled set's quantiles, stored beside the run's models."""
    from ads_synth.cli import main
    from ads_synth.data.images import read_image
    from ads_synth.data.intensity import REFERENCE_FILE, histogram_match, intensity_quantiles, load_reference
    from ads_synth.data.datasets import find_samples
    from ads_synth.segmentation.pseudo import pseudo_label_images

    out = tmp_path / "OUT"
    l_model = pipeline.result["models"]["L"]
    code = main(["pseudo", "--strategy", "invert", "histmatch", "--labeled", str(pipeline.labeled), "--unlabeled",
                 str(pipeline.unlabeled), "--translation", str(pipeline.translation), "-o", str(out),
                 "--l-model", str(l_model), "--folds", *map(str, pipeline.folds), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "invert" in printed and "histmatch" in printed
    assert not (out / "models" / "L").exists()  # the given L model, not a new one
    reference = load_reference(out / "models" / "L_reference" / REFERENCE_FILE)
    labeled = [read_image(s.image) for s in find_samples(pipeline.labeled)]
    assert np.allclose(reference, intensity_quantiles(labeled))

    image = _image(pipeline)
    px = find_samples(image)[0].pixel_size
    u = read_image(image)
    for name, transformed in (("invert", 255 - u), ("histmatch", histogram_match(u, reference))):
        assert not np.array_equal(transformed, u)
        by_hand = tmp_path / name / image.name
        by_hand.parent.mkdir()
        Image.fromarray(transformed).save(by_hand)
        pseudo_label_images([by_hand], translation=pipeline.translation, segmentation=l_model, strategy="direct",
                            out_dir=tmp_path / name / "direct", progress=False, pixel_size=px,
                            folds=list(pipeline.folds))
        for kind in ("axonmyelin", "confidence"):
            got = _read(out / "pseudo_labels" / name / f"{image.stem}_seg-{kind}.png")
            assert np.array_equal(got, _read(tmp_path / name / "direct" / f"{image.stem}_seg-{kind}.png"))
    # through the inference API, histmatch finds the reference beside the L model, or says where to put it
    with pytest.raises(InputError, match=REFERENCE_FILE):
        pseudo_label_images([image], translation=None, segmentation=l_model, strategy="histmatch",
                            out_dir=tmp_path / "none", progress=False)
    assert not (tmp_path / "none").exists()
    records = pseudo_label_images([image], translation=pipeline.translation, segmentation=l_model,
                                  strategy="histmatch", out_dir=tmp_path / "api", progress=False,
                                  folds=list(pipeline.folds),
                                  intensity_reference=out / "models" / "L_reference" / REFERENCE_FILE)
    assert records[0]["strategy"] == "histmatch"
    assert np.array_equal(_read(tmp_path / "api" / f"{image.stem}_seg-axonmyelin.png"),
                          _read(out / "pseudo_labels" / "histmatch" / f"{image.stem}_seg-axonmyelin.png"))
