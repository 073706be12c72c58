"""Writing AxonDeepSeg outputs, images, float maps and pixel sizes (ads_synth.data.writers)."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from ads_synth.data import writers
from ads_synth.data.images import read_image, read_label, read_pixel_size
from ads_synth.data.writers import (
    check_targets,
    segmentation_paths,
    write_ads_segmentation,
    write_float_tiff,
    write_image,
    write_pixel_size,
)
from ads_synth.errors import InputError


def snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*")}


@pytest.fixture
def label_map():
    rng = np.random.default_rng(0)
    return rng.integers(0, 3, (40, 60)).astype(np.uint8)


def test_ads_names_and_values(tmp_path, label_map):
    image = tmp_path / "sub-01_sample-a_SEM.png"
    Image.fromarray(np.zeros((40, 60), np.uint8)).save(image)
    paths = write_ads_segmentation(label_map, image)
    assert [p.name for p in paths] == ["sub-01_sample-a_SEM_seg-axon.png", "sub-01_sample-a_SEM_seg-myelin.png",
                                       "sub-01_sample-a_SEM_seg-axonmyelin.png"]
    axon, myelin, am = (np.asarray(Image.open(p)) for p in paths)
    assert all(Image.open(p).mode == "L" for p in paths)
    assert np.array_equal(axon, np.where(label_map == 2, 255, 0))
    assert np.array_equal(myelin, np.where(label_map == 1, 255, 0))
    assert np.array_equal(am, np.choose(label_map, [0, 127, 255]))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_matches_axondeepseg_conventions(tmp_path, label_map):
    """Suffixes from AxonDeepSeg.params; the axonmyelin file equals what ADS's merge_masks writes."""
    params = pytest.importorskip("AxonDeepSeg.params")
    assert writers.AXON_SUFFIX == str(params.axon_suffix)
    assert writers.MYELIN_SUFFIX == str(params.myelin_suffix)
    assert writers.AXONMYELIN_SUFFIX == str(params.axonmyelin_suffix)
    assert writers.MYELIN_VALUE == params.intensity["myelin"] and writers.AXON_VALUE == params.intensity["axon"]
    merge_masks = pytest.importorskip("AxonDeepSeg.visualization.merge_masks")
    paths = write_ads_segmentation(label_map, tmp_path / "img.png")
    both = merge_masks.merge_masks(paths[0], paths[1])  # writes img_seg-axonmyelin.png again, ADS's way
    assert np.array_equal(both.astype(np.uint8), np.asarray(Image.open(paths[2])))


def test_out_dir_and_stem(tmp_path, label_map):
    out = write_ads_segmentation(label_map, tmp_path / "in" / "x.ome.tif", out_dir=tmp_path / "new" / "folder")
    assert [p.parent for p in out] == [tmp_path / "new" / "folder"] * 3
    assert out[0].name == "x.ome_seg-axon.png"  # Path.stem, as AxonDeepSeg's morphometrics looks it up
    assert segmentation_paths("a/b.png")["axonmyelin"] == Path("a/b_seg-axonmyelin.png")


def test_never_over_existing_files(tmp_path, label_map):
    image = tmp_path / "img.png"
    targets = segmentation_paths(image)
    targets["myelin"].write_bytes(b"keep me")
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as info:
        write_ads_segmentation(label_map, image)
    msg = str(info.value)
    assert "img_seg-myelin.png" in msg and "--overwrite" in msg and "\n" not in msg
    assert snapshot(tmp_path) == before  # all targets checked first: nothing written
    write_ads_segmentation(label_map, image, overwrite=True)
    assert np.array_equal(read_label(targets["myelin"]), np.where(label_map == 1, 255, 0))


def test_atomic_on_failure(tmp_path, label_map, monkeypatch):
    calls = {"n": 0}
    real = writers._save_png

    def failing(arr, tmp):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real(arr, tmp)

    monkeypatch.setattr(writers, "_save_png", failing)
    with pytest.raises(OSError):
        write_ads_segmentation(label_map, tmp_path / "img.png")
    assert list(tmp_path.iterdir()) == []  # neither targets nor temporary files


def test_bad_label_map(tmp_path):
    with pytest.raises(ValueError):
        write_ads_segmentation(np.full((5, 5), 3, np.uint8), tmp_path / "a.png")
    with pytest.raises(ValueError):
        write_ads_segmentation(np.zeros((2, 5, 5), np.uint8), tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_write_image(tmp_path):
    img = (np.arange(50 * 70).reshape(50, 70) % 251).astype(np.uint8)
    for name in ("a.png", "a.tif", "a.tiff"):
        path = write_image(tmp_path / name, img)
        assert np.array_equal(read_image(path), img)
    g16 = img.astype(np.uint16) * 261
    assert np.array_equal(read_image(write_image(tmp_path / "b.png", g16)), g16)
    assert np.array_equal(read_image(write_image(tmp_path / "b.tif", g16, pixel_size=0.0125)), g16)
    assert read_pixel_size(tmp_path / "b.tif") == pytest.approx(0.0125)
    assert np.array_equal(read_image(write_image(tmp_path / "m.png", img > 100)), np.where(img > 100, 255, 0))
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="a.png"):
        write_image(tmp_path / "a.png", img)
    with pytest.raises(InputError, match="a.jpg"):
        write_image(tmp_path / "a.jpg", img)
    with pytest.raises(ValueError):
        write_image(tmp_path / "f.png", img.astype(np.float32))
    assert snapshot(tmp_path) == before
    write_image(tmp_path / "a.png", 255 - img, overwrite=True)
    assert np.array_equal(read_image(tmp_path / "a.png"), 255 - img)


def test_write_float_tiff(tmp_path):
    rng = np.random.default_rng(0)
    conf = rng.random((30, 40)).astype(np.float32)
    path = write_float_tiff(tmp_path / "conf.tif", conf, pixel_size=0.1)
    assert np.array_equal(tifffile.imread(path), conf)
    assert read_pixel_size(path) == pytest.approx(0.1)
    probs = rng.random((3, 30, 40))
    out = tifffile.imread(write_float_tiff(tmp_path / "p.tif", probs, dtype=np.float16))
    assert out.shape == (3, 30, 40) and out.dtype == np.float16
    with pytest.raises(InputError, match="conf.tif"):
        write_float_tiff(tmp_path / "conf.tif", conf)
    with pytest.raises(InputError, match="x.png"):
        write_float_tiff(tmp_path / "x.png", conf)


def test_write_pixel_size(tmp_path):
    path = write_pixel_size(tmp_path, 0.00493)
    assert path.name == "pixel_size_in_micrometer.txt"
    assert float(path.read_text()) == 0.00493  # AxonDeepSeg reads float(file.read())
    before = snapshot(tmp_path)
    assert write_pixel_size(tmp_path, "0.00493") == path  # same value: left as is
    assert snapshot(tmp_path) == before
    with pytest.raises(InputError, match="--overwrite"):
        write_pixel_size(tmp_path, 0.1)
    for bad in (0, -1, "abc", float("nan")):
        with pytest.raises(InputError):
            write_pixel_size(tmp_path, bad, overwrite=True)
    assert snapshot(tmp_path) == before
    write_pixel_size(tmp_path, 0.1, overwrite=True)
    assert float(path.read_text()) == 0.1
    write_pixel_size(tmp_path / "new", 0.2)
    assert float((tmp_path / "new" / "pixel_size_in_micrometer.txt").read_text()) == 0.2


def test_check_targets(tmp_path):
    (tmp_path / "exists.png").write_bytes(b"x")
    (tmp_path / "adir").mkdir()
    check_targets([tmp_path / "new.png", tmp_path / "sub" / "new.png"])
    with pytest.raises(InputError, match="exists.png"):
        check_targets([tmp_path / "new.png", tmp_path / "exists.png"])
    check_targets([tmp_path / "exists.png"], overwrite=True)
    with pytest.raises(InputError, match="adir"):
        check_targets([tmp_path / "adir"], overwrite=True)
    (tmp_path / "afile").write_bytes(b"x")
    with pytest.raises(InputError, match="afile"):
        check_targets([tmp_path / "afile" / "x.png"])


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path):
    from ads_synth.atomic import atomic_write_text

    old = os.umask(0o022)
    try:
        (tmp_path / "plain.txt").write_text("x")
        atomic_write_text(tmp_path / "atomic.txt", "x")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(tmp_path / "atomic.txt") == mode(tmp_path / "plain.txt") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.txt", "plain.txt"]
