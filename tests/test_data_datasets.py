"""Finding samples (single image, folder, BIDS, nnU-Net raw) and loading label maps (ads_synth.data.datasets)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ads_synth.data.datasets import AXON, BACKGROUND, MYELIN, Sample, find_labels, find_samples, load_label_map
from ads_synth.data.images import read_label
from ads_synth.errors import InputError



def snapshot(folder):
    """Names, sizes and modification times of everything under ``folder``."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*")}


def save(path, arr):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr)).save(path)
    return path


@pytest.fixture
def pattern():
    """A 40 x 50 image with a label map: background, a myelin ring, an axon inside it."""
    y, x = np.mgrid[0:40, 0:50]
    r = np.hypot(y - 20, x - 25)
    labels = np.zeros((40, 50), np.uint8)
    labels[r < 14] = MYELIN
    labels[r < 8] = AXON
    img = (100 + 60 * (labels == MYELIN) - 40 * (labels == AXON)).astype(np.uint8)
    return img, labels


def ads_masks(labels):
    axon = np.where(labels == AXON, 255, 0).astype(np.uint8)
    myelin = np.where(labels == MYELIN, 255, 0).astype(np.uint8)
    am = np.choose(labels, [0, 127, 255]).astype(np.uint8)
    return axon, myelin, am


# ----------------------------------------------------------------------------------------------------------------
# real data
# ----------------------------------------------------------------------------------------------------------------
def test_find_samples_real_sets(shared_data):
    tem = find_samples(shared_data / "tem-srf", require_labels=True, require_pixel_size=True)
    assert len(tem) == 21
    assert all(s.pixel_size == pytest.approx(0.00493) for s in tem)
    assert all(set(s.labels) == {"axon", "myelin", "axonmyelin"} for s in tem)  # uaxon is not a label
    s0 = tem[0]
    assert s0.name == s0.image.stem and s0.labels["axon"].name == f"{s0.name}_seg-axon-manual.png"
    assert "derivatives" in s0.labels["axon"].parts

    sem = find_samples(shared_data / "sem-dev", require_labels=True)
    assert [s.name for s in sem] == sorted(s.name for s in sem) and len(sem) == 6
    assert {round(s.pixel_size, 3) for s in sem} == {0.18, 0.093, 0.1, 0.13, 0.07}

    nyu = find_samples(shared_data / "tem-nyu", require_labels=True)  # labels beside, not taken as images
    assert [s.name for s in nyu] == ["image"] and nyu[0].pixel_size == pytest.approx(0.00236)
    assert find_samples(shared_data / "tem-nyu" / "image.png")[0].labels == nyu[0].labels

    bf = find_samples(shared_data / "bf-unlabeled")
    assert sorted(s.name for s in bf) == ["BF1_preview", "BF2_preview", "ROI_test_BF_0.226um"]
    assert all(not s.labels and not s.has_labels for s in bf)
    assert {s.name: s.pixel_size for s in bf}["ROI_test_BF_0.226um"] == pytest.approx(0.226, abs=0.001)
    with pytest.raises(InputError, match="BF1_preview"):
        find_samples(shared_data / "bf-unlabeled", require_pixel_size=True)
    with pytest.raises(InputError, match="no complete labels"):
        find_samples(shared_data / "bf-unlabeled", require_labels=True)

    # a subject folder inside a BIDS tree still finds its sidecar and derivatives labels
    sub = find_samples(shared_data / "tem-srf" / "sub-373C" / "micr", require_labels=True)
    assert len(sub) == 3 and sub[0].pixel_size == pytest.approx(0.00493)


@pytest.mark.parametrize("dataset, index", [("tem-srf", 0), ("tem-srf", 13), ("sem-dev", 0), ("sem-dev", 5)])
def test_label_map_real(shared_data, dataset, index):
    sample = find_samples(shared_data / dataset)[index]
    labels = load_label_map(sample)
    assert labels.dtype == np.uint8 and labels.shape == read_label(sample.image).shape
    frac = np.bincount(labels.ravel(), minlength=3) / labels.size
    assert set(np.unique(labels)) == {0, 1, 2} and len(frac) == 3
    assert all(0.05 < f < 0.9 for f in frac), frac  # plausible class fractions
    # the binary files and the axonmyelin file agree (up to a few stray pixels)
    fallback = load_label_map(Sample(sample.name, sample.image, sample.pixel_size,
                                     {"axonmyelin": sample.labels["axonmyelin"]}))
    assert np.mean(fallback == labels) > 0.9999


def test_uaxon_is_background_real(shared_data, tmp_path):
    """tem-srf's unmyelinated axons (seg-uaxon) are background: filling that file changes nothing."""
    sample = find_samples(shared_data / "tem-srf")[0]
    uaxon = read_label(str(sample.labels["axon"]).replace("_seg-axon-", "_seg-uaxon-")) > 127
    labels = load_label_map(sample)
    assert uaxon.sum() > 1000
    assert np.mean(labels[uaxon] == BACKGROUND) > 0.95  # (a few pixels touch a myelin sheath)
    # copy the sample, replace the uaxon file with "everything": the label map is the same
    root = tmp_path / "ds"
    rel_img = sample.image.relative_to(shared_data / "tem-srf")
    shutil.copy(sample.image, save(root / rel_img, np.zeros((2, 2), np.uint8)))
    for kind, path in sample.labels.items():
        dst = root / path.relative_to(shared_data / "tem-srf")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dst)
    save(root / "derivatives" / "labels" / rel_img.parent / f"{sample.name}_seg-uaxon-manual.png",
         np.full(labels.shape, 255, np.uint8))
    (copy,) = find_samples(root)
    assert set(copy.labels) == {"axon", "myelin", "axonmyelin"}
    assert np.array_equal(load_label_map(copy), labels)


def test_sub_rat2_stray_values(shared_data):
    """sub-rat2's axonmyelin file has 128 for myelin and 9 stray pixels (130, 233): nearest of {0, 127, 255}."""
    sample = [s for s in find_samples(shared_data / "sem-dev") if s.name.startswith("sub-rat2")][0]
    raw = read_label(sample.labels["axonmyelin"])
    assert set(np.unique(raw)) - {0, 127, 128, 255}
    only_am = Sample(sample.name, sample.image, None, {"axonmyelin": sample.labels["axonmyelin"]})
    labels = load_label_map(only_am)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert np.all(labels[raw == 128] == MYELIN) and np.all(labels[raw == 233] == AXON)
    assert np.all(labels[raw == 130] == MYELIN)


# ----------------------------------------------------------------------------------------------------------------
# generated layouts
# ----------------------------------------------------------------------------------------------------------------
def test_single_image_and_folder(tmp_path, pattern):
    img, labels = pattern
    axon, myelin, am = ads_masks(labels)
    save(tmp_path / "a.png", img)
    save(tmp_path / "a_seg-axon-manual.png", axon)
    save(tmp_path / "a_seg-myelin-manual.png", myelin)
    save(tmp_path / "b.tif", img)
    save(tmp_path / "b_seg-axonmyelin-manual.png", am)
    save(tmp_path / "c.jpg", img)
    # AxonDeepSeg outputs and other non-inputs are not images
    for name in ("a_seg-axon.png", "a_seg-myelin.png", "a_seg-axonmyelin.png", "a_seg-nnunet.png",
                 "a_axonmyelin_index.png", "a_index.png", ".hidden.png"):
        save(tmp_path / name, img)
    (tmp_path / "pixel_size_in_micrometer.txt").write_text("0.02")
    samples = find_samples(tmp_path)
    assert [s.name for s in samples] == ["a", "b", "c"]
    assert all(s.pixel_size == pytest.approx(0.02) for s in samples)
    a, b, c = samples
    assert set(a.labels) == {"axon", "myelin"} and set(b.labels) == {"axonmyelin"} and not c.labels
    assert np.array_equal(load_label_map(a), labels)
    assert np.array_equal(load_label_map(b), labels)
    with pytest.raises(InputError, match="c.jpg"):
        load_label_map(c)
    with pytest.raises(InputError, match="c.jpg"):
        find_samples(tmp_path, require_labels=True)
    single = find_samples(tmp_path / "a.png", require_labels=True)
    assert len(single) == 1 and single[0].labels == a.labels


def test_axonmyelin_128_and_preference(tmp_path, pattern):
    img, labels = pattern
    axon, myelin, am = ads_masks(labels)
    save(tmp_path / "x.png", img)
    am128 = np.where(am == 127, 128, am).astype(np.uint8)
    save(tmp_path / "x_seg-axonmyelin-manual.png", am128)
    (s,) = find_samples(tmp_path)
    assert np.array_equal(load_label_map(s), labels)
    # axon + myelin binary files are preferred over axonmyelin
    save(tmp_path / "x_seg-axon-manual.png", np.zeros_like(axon))
    save(tmp_path / "x_seg-myelin-manual.png", myelin)
    (s,) = find_samples(tmp_path)
    assert np.array_equal(load_label_map(s), np.where(labels == MYELIN, MYELIN, 0))
    # a lone axon file is not a complete label set, the axonmyelin file is used
    (tmp_path / "x_seg-myelin-manual.png").unlink()
    (s,) = find_samples(tmp_path)
    assert np.array_equal(load_label_map(s), labels)


def test_label_shape_mismatch(tmp_path, pattern):
    img, labels = pattern
    save(tmp_path / "x.png", img)
    save(tmp_path / "x_seg-axonmyelin-manual.png", ads_masks(labels)[2][:30])
    (s,) = find_samples(tmp_path)
    with pytest.raises(InputError, match="x_seg-axonmyelin-manual.png"):
        load_label_map(s)


def test_bids_layout(tmp_path, pattern):
    img, labels = pattern
    axon, myelin, am = ads_masks(labels)
    root = tmp_path / "bids"
    (root).mkdir()
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.7.0"}')
    for sub, px in (("sub-01", 0.1), ("sub-02", 0.2)):
        micr = root / sub / "micr"
        save(micr / f"{sub}_sample-1_SEM.png", img)
        save(micr / f"{sub}_sample-2_SEM.png", img)
        (micr / f"{sub}_SEM.json").write_text(json.dumps({"PixelSize": [px, px], "PixelSizeUnits": "um"}))
        lab = root / "derivatives" / "labels" / sub / "micr"
        save(lab / f"{sub}_sample-1_SEM_seg-axon-manual.png", axon)
        save(lab / f"{sub}_sample-1_SEM_seg-myelin-manual.png", myelin)
        save(lab / f"{sub}_sample-1_SEM_seg-uaxon-manual.png", axon)
    save(root / "sub-03" / "ses-a" / "micr" / "sub-03_ses-a_sample-1_SEM.png", img)
    (root / "sub-03" / "sub-03_SEM.json").write_text(json.dumps({"PixelSize": [50, 50], "PixelSizeUnits": "nm"}))
    samples = find_samples(root)
    names = [s.name for s in samples]
    assert names == ["sub-01_sample-1_SEM", "sub-01_sample-2_SEM", "sub-02_sample-1_SEM", "sub-02_sample-2_SEM",
                     "sub-03_ses-a_sample-1_SEM"]
    assert [s.pixel_size for s in samples] == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.05])
    assert [s.has_labels for s in samples] == [True, False, True, False, False]
    assert np.array_equal(load_label_map(samples[0]), labels)
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="sub-01_sample-2_SEM"):
        find_samples(root, require_labels=True)
    assert snapshot(tmp_path) == before


def _nnunet_dataset(root, img, labels, label_names=None):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    label_names = label_names or {"background": 0, "myelin": 1, "axon": 2}
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "rescale_to_0_1"}, "labels": label_names, "numTraining": 2, "file_ending": ".png",
    }))
    index = np.zeros_like(labels)
    index[labels == MYELIN] = label_names["myelin"]
    index[labels == AXON] = label_names["axon"]
    for case in ("case_001", "case_002"):
        save(root / "imagesTr" / f"{case}_0000.png", img)
        save(root / "labelsTr" / f"{case}.png", index)
    return root


def test_nnunet_raw_dataset(tmp_path, pattern):
    img, labels = pattern
    root = _nnunet_dataset(tmp_path / "Dataset001_X", img, labels)
    samples = find_samples(root, require_labels=True)
    assert [s.name for s in samples] == ["case_001", "case_002"]
    assert all(s.pixel_size is None for s in samples)
    assert np.array_equal(load_label_map(samples[0]), labels)
    with pytest.raises(InputError, match="pixel_size_in_micrometer.txt"):
        find_samples(root, require_pixel_size=True)
    (root / "imagesTr" / "pixel_size_in_micrometer.txt").write_text("0.3")  # not the dataset root: ignored
    assert find_samples(root)[0].pixel_size is None
    (root / "pixel_size_in_micrometer.txt").write_text("0.05")
    assert all(s.pixel_size == pytest.approx(0.05) for s in find_samples(root))
    # other class values named in dataset.json, and an extra class (uaxon) mapped to background
    names = {"background": 0, "axon": 1, "myelin": 2, "uaxon": 3}
    other = _nnunet_dataset(tmp_path / "Dataset002_Y", img, labels, names)
    lab = np.asarray(Image.open(other / "labelsTr" / "case_001.png")).copy()
    lab[:3, :3] = 3
    save(other / "labelsTr" / "case_001.png", lab)
    expected = labels.copy()
    expected[:3, :3] = BACKGROUND
    assert np.array_equal(load_label_map(find_samples(other)[0]), expected)
    (other / "labelsTr" / "case_002.png").unlink()
    with pytest.raises(InputError, match="case_002"):
        find_samples(other, require_labels=True)


def test_bad_dataset_inputs(tmp_path, pattern):
    img, _ = pattern
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images")
    save(empty / "x_seg-axon-manual.png", img)  # labels only: still no images
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="no images found") as info:
        find_samples(empty)
    assert str(empty) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError, match="missing"):
        find_samples(tmp_path / "missing")
    with pytest.raises(InputError, match="notes.txt"):
        find_samples(empty / "notes.txt")
    bad = tmp_path / "bad_nnunet"
    (bad / "imagesTr").mkdir(parents=True)
    (bad / "dataset.json").write_text("{not json")
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="dataset.json"):
        find_samples(bad)
    (bad / "dataset.json").write_text(json.dumps({"channel_names": {"0": "a"}, "labels": {"background": 0, "x": 1},
                                                  "file_ending": ".png"}))
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="axon"):
        find_samples(bad)
    assert snapshot(tmp_path) == before
    # a bad pixel size in a folder of images is reported when the samples are listed
    folder = tmp_path / "px"
    save(folder / "a.png", img)
    (folder / "pixel_size_in_micrometer.txt").write_text("-1")
    with pytest.raises(InputError, match="pixel_size_in_micrometer.txt"):
        find_samples(folder)


def test_find_labels_tiff_label(tmp_path, pattern):
    img, labels = pattern
    save(tmp_path / "a.png", img)
    save(tmp_path / "a_seg-axonmyelin-manual.tif", ads_masks(labels)[2])
    assert set(find_labels(tmp_path / "a.png")) == {"axonmyelin"}
