"""Reading images and pixel sizes, resampling and normalisation (ads_synth.data.images / resample / normalize)."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from ads_synth.data.images import (
    check_pixel_size,
    image_shape,
    read_image,
    read_label,
    read_pixel_size,
    require_pixel_size,
    to_gray,
)
from ads_synth.data.normalize import NormParams, apply_normalization, denormalize, normalization_params, normalize
from ads_synth.data.resample import rescale, rescale_to_pixel_size, rescaled_shape, resize_to, scale_factor
from ads_synth.data.writers import write_image
from ads_synth.errors import InputError


def snapshot(folder):
    """Names, sizes and modification times of everything under ``folder``."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


def ads_gray(rgb):
    """AxonDeepSeg's RGB(A) -> gray: luminance, then imageio's image_as_uint min-max stretch to uint8."""
    g = np.sum(rgb[..., :3] * (0.299, 0.587, 0.114), axis=-1)
    lo, hi = g.min(), g.max()
    return ((g - lo) / (hi - lo) * 255 + 0.499999999).astype(np.uint8)


@pytest.fixture
def gradient():
    y, x = np.mgrid[0:48, 0:64]
    return ((x * 3 + y * 2) % 256).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# real data
# ----------------------------------------------------------------------------------------------------------------
REAL_IMAGES = [
    ("tem-srf/sub-373C/micr/sub-373C_sample-0002_acq-roi_TEM.png", (600, 600), 0.00493),
    ("tem-srf/sub-366A/micr/sub-366A_sample-0001_acq-roi_TEM.png", (600, 600), 0.00493),
    ("tem-nyu/image.png", (1998, 2000), 0.00236),
    ("sem-dev/sub-rat1/micr/sub-rat1_sample-data1_SEM.png", (924, 1278), 0.18),
    ("sem-dev/sub-rat2/micr/sub-rat2_sample-data5_SEM.png", (954, 1280), 0.093),
    ("sem-dev/sub-rat8/micr/sub-rat8_sample-V915_SEM.png", (1096, 1541), 0.07),
    ("bf-unlabeled/BF1_preview.png", (567, 567), None),
    ("bf-unlabeled/ROI_test_BF_0.226um.tif", (6272, 6336), 0.226),
]


@pytest.mark.parametrize("rel, shape, pixel_size", REAL_IMAGES, ids=[r[0].split("/")[0] + ":" + Path(r[0]).name
                                                                     for r in REAL_IMAGES])
def test_real_images_read_and_round_trip(shared_data, tmp_path, rel, shape, pixel_size):
    path = shared_data / rel
    img = read_image(path)
    assert img.shape == shape and img.dtype == np.uint8 and img.ndim == 2
    assert image_shape(path) == shape
    assert img.std() > 5  # a real picture, not a constant
    px = read_pixel_size(path)
    if pixel_size is None:
        assert px is None
    else:
        assert px == pytest.approx(pixel_size, rel=0.01)
    part = img[:1500, :1500]  # keeps the large TIFF's round trip quick
    for ext in (".png", ".tif"):
        out = write_image(tmp_path / f"copy{ext}", part, pixel_size=px if ext == ".tif" else None)
        assert np.array_equal(read_image(out), part)
    if px is not None:
        assert read_pixel_size(tmp_path / "copy.tif") == pytest.approx(px, rel=1e-6)


def test_real_bf_tiff_tags(shared_data):
    """The real RGB TIFF (Hamamatsu NDP, JPEG/YCbCr) gives its pixel size through XResolution in centimetres."""
    path = shared_data / "bf-unlabeled" / "ROI_test_BF_0.226um.tif"
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.samplesperpixel == 3
        assert int(page.tags["ResolutionUnit"].value) == 3  # centimeter
        xres = page.tags["XResolution"].value
    assert read_pixel_size(path) == pytest.approx(1e4 * xres[1] / xres[0])
    assert read_pixel_size(path) == pytest.approx(0.226, abs=0.001)


def test_matches_axondeepseg_imread(shared_data):
    """Gray conversion equals AxonDeepSeg's own imread on 8-bit gray, RGBA and RGB (TIFF) files."""
    ads_utils = pytest.importorskip("AxonDeepSeg.ads_utils")
    for rel in ("bf-unlabeled/BF1_preview.png", "bf-unlabeled/BF2_preview.png",
                "sem-dev/sub-rat4/micr/sub-rat4_sample-data12_SEM.png", "tem-nyu/image.png",
                "bf-unlabeled/ROI_test_BF_0.226um.tif"):
        assert np.array_equal(read_image(shared_data / rel), ads_utils.imread(shared_data / rel)), rel


def test_bids_sidecar_inheritance_real(shared_data):
    """tem-srf has one sidecar per subject (sub-373C/micr/sub-373C_TEM.json); sem-dev one per image."""
    tem = shared_data / "tem-srf" / "sub-373C" / "micr"
    assert not (tem / "sub-373C_sample-0002_acq-roi_TEM.json").exists()
    assert read_pixel_size(tem / "sub-373C_sample-0002_acq-roi_TEM.png") == pytest.approx(0.00493)
    sem = shared_data / "sem-dev" / "sub-rat4" / "micr" / "sub-rat4_sample-data12_SEM.png"
    assert sem.with_suffix(".json").exists()
    assert read_pixel_size(sem) == pytest.approx(0.1)


# ----------------------------------------------------------------------------------------------------------------
# generated files, every format
# ----------------------------------------------------------------------------------------------------------------
def test_png_8_and_16_bit(tmp_path, gradient):
    Image.fromarray(gradient).save(tmp_path / "g8.png")
    assert np.array_equal(read_image(tmp_path / "g8.png"), gradient)
    g16 = gradient.astype(np.uint16) * 257 + 3
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.uint16 and np.array_equal(out, g16)


def test_tiff_16_bit_with_resolution(tmp_path, gradient):
    g16 = gradient.astype(np.uint16) * 250
    tifffile.imwrite(tmp_path / "a.tif", g16, resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
    out = read_image(tmp_path / "a.tif")
    assert out.dtype == np.uint16 and np.array_equal(out, g16)
    assert read_pixel_size(tmp_path / "a.tif") == pytest.approx(0.25)
    tifffile.imwrite(tmp_path / "b.tiff", g16, resolution=(25400 / 0.5, 25400 / 0.5), resolutionunit="INCH")
    assert read_pixel_size(tmp_path / "b.tiff") == pytest.approx(0.5)
    # a screen default (72 dpi) is not a microscope pixel size
    tifffile.imwrite(tmp_path / "c.tif", g16, resolution=(72, 72), resolutionunit="INCH")
    assert read_pixel_size(tmp_path / "c.tif") is None
    tifffile.imwrite(tmp_path / "d.tif", g16)
    assert read_pixel_size(tmp_path / "d.tif") is None
    # ImageJ: pixels per micron with unit=micron
    tifffile.imwrite(tmp_path / "ij.tif", gradient, imagej=True, resolution=(1 / 0.3, 1 / 0.3),
                     metadata={"unit": "micron"})
    assert read_pixel_size(tmp_path / "ij.tif") == pytest.approx(0.3)


def test_ome_tiff_physical_size(tmp_path, gradient):
    tifffile.imwrite(tmp_path / "a.ome.tif", gradient,
                     metadata={"axes": "YX", "PhysicalSizeX": 50, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 50})
    assert np.array_equal(read_image(tmp_path / "a.ome.tif"), gradient)
    assert read_pixel_size(tmp_path / "a.ome.tif") == pytest.approx(0.05)
    g16 = gradient.astype(np.uint16) * 100
    tifffile.imwrite(tmp_path / "b.ome.tiff", g16, metadata={"axes": "YX", "PhysicalSizeX": 0.12})
    out = read_image(tmp_path / "b.ome.tiff")
    assert out.dtype == np.uint16 and np.array_equal(out, g16)
    assert read_pixel_size(tmp_path / "b.ome.tiff") == pytest.approx(0.12)  # default unit: micrometre
    # planar RGB OME-TIFF (channels first)
    rgb = np.random.default_rng(0).integers(0, 256, (3, 40, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.ome.tif", rgb, photometric="rgb", planarconfig="separate",
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.2})
    assert np.array_equal(read_image(tmp_path / "c.ome.tif"), ads_gray(np.moveaxis(rgb, 0, -1)))


def test_rgb_rgba_la_as_axondeepseg(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert np.array_equal(read_image(tmp_path / "rgba.png"), ads_gray(rgba))  # alpha dropped
    Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb.png")
    assert np.array_equal(read_image(tmp_path / "rgb.png"), ads_gray(rgba))
    tifffile.imwrite(tmp_path / "rgb.tif", rgba[..., :3], photometric="rgb")
    assert np.array_equal(read_image(tmp_path / "rgb.tif"), ads_gray(rgba))
    la = rgba[..., :2]
    Image.merge("LA", [Image.fromarray(la[..., 0]), Image.fromarray(la[..., 1])]).save(tmp_path / "la.png")
    assert Image.open(tmp_path / "la.png").mode == "LA"
    assert np.array_equal(read_image(tmp_path / "la.png"), la[..., 0])  # gray channel kept as is
    rgb16 = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    out = to_gray(rgb16)
    assert out.dtype == np.uint16 and out.min() == 0 and out.max() == 65535


def test_jpeg(tmp_path, gradient):
    Image.fromarray(gradient).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(np.stack([gradient] * 3, -1)).save(tmp_path / "b.jpeg", quality=95)
    a = read_image(tmp_path / "a.jpg")
    assert a.dtype == np.uint8 and a.shape == gradient.shape
    assert np.abs(a.astype(int) - np.asarray(Image.open(tmp_path / "a.jpg"))).max() == 0
    assert np.abs(a.astype(int) - gradient).mean() < 3
    b = read_image(tmp_path / "b.jpeg")
    assert b.shape == gradient.shape and np.abs(b.astype(int) - gradient).mean() < 4


def test_read_label_keeps_values(tmp_path):
    lab = np.zeros((20, 20), np.uint8)
    lab[5:10] = 127  # no axon: read_image would stretch 127 to 255, read_label must not
    Image.fromarray(np.stack([lab] * 3, -1)).save(tmp_path / "rgb_label.png")
    assert np.array_equal(read_label(tmp_path / "rgb_label.png"), lab)


def test_pixel_size_sources_and_order(tmp_path, gradient):
    """BIDS sidecar > inherited sidecar > pixel_size_in_micrometer.txt > TIFF tags."""
    micr = tmp_path / "ds" / "sub-01" / "micr"
    micr.mkdir(parents=True)
    (tmp_path / "ds" / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.7.0"}')
    img = micr / "sub-01_sample-a_SEM.png"
    Image.fromarray(gradient).save(img)
    assert read_pixel_size(img) is None
    (tmp_path / "ds" / "SEM.json").write_text(json.dumps({"PixelSize": [0.3, 0.3], "PixelSizeUnits": "um"}))
    assert read_pixel_size(img) == pytest.approx(0.3)  # top-level inherited sidecar
    (micr / "sub-01_SEM.json").write_text(json.dumps({"PixelSize": [20, 20], "PixelSizeUnits": "nm"}))
    assert read_pixel_size(img) == pytest.approx(0.02)  # subject sidecar, nm converted
    (micr / "sub-02_SEM.json").write_text(json.dumps({"PixelSize": [9, 9]}))  # another subject: ignored
    assert read_pixel_size(img) == pytest.approx(0.02)
    (micr / "sub-01_sample-a_SEM.json").write_text(json.dumps({"PixelSize": [0.1, 0.1]}))
    assert read_pixel_size(img) == pytest.approx(0.1)  # the image's own sidecar wins
    # plain folder: the txt file, then TIFF tags
    plain = tmp_path / "plain"
    plain.mkdir()
    tifffile.imwrite(plain / "a.tif", gradient, resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
    assert read_pixel_size(plain / "a.tif") == pytest.approx(0.25)
    (plain / "pixel_size_in_micrometer.txt").write_text("0.07\n")
    assert read_pixel_size(plain / "a.tif") == pytest.approx(0.07)
    assert require_pixel_size(plain / "a.tif") == pytest.approx(0.07)
    assert require_pixel_size(plain / "a.tif", value="0.5") == 0.5


# ----------------------------------------------------------------------------------------------------------------
# bad input: one-line InputError naming the file, nothing written or changed
# ----------------------------------------------------------------------------------------------------------------
def _assert_input_error(func, *args, match=None, **kwargs):
    with pytest.raises(InputError) as info:
        func(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400
    if match:
        assert match in msg, msg
    return msg


def test_bad_images(tmp_path, gradient, monkeypatch):
    Image.fromarray(gradient).save(tmp_path / "good.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20)
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupt.tif").write_bytes(b"II*\x00" + b"\x00" * 50)
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "one.png")
    Image.fromarray(np.zeros((5, 100), np.uint8)).save(tmp_path / "thin.png")
    (tmp_path / "notes.txt").write_text("hello")
    before = snapshot(tmp_path)

    _assert_input_error(read_image, tmp_path / "missing.png", match="missing.png")
    for name in ("corrupt.png", "truncated.png", "corrupt.tif"):
        _assert_input_error(read_image, tmp_path / name, match=name)
    msg = _assert_input_error(read_image, tmp_path / "one.png", match="one.png")
    assert "1 x 1" in msg
    _assert_input_error(read_image, tmp_path / "thin.png", match="thin.png")
    _assert_input_error(read_image, tmp_path / "notes.txt", match="notes.txt")
    _assert_input_error(read_image, tmp_path, match=str(tmp_path))

    # larger than PIL's bomb limit: refused unless allow_large
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    msg = _assert_input_error(read_image, tmp_path / "good.png", match="good.png")
    assert "--allow-large-images" in msg
    assert read_image(tmp_path / "good.png", allow_large=True).shape == gradient.shape
    tifffile.imwrite(tmp_path / "big.tif", gradient)
    before["big.tif"] = snapshot(tmp_path)["big.tif"]
    _assert_input_error(read_image, tmp_path / "big.tif", match="big.tif")
    assert read_image(tmp_path / "big.tif", allow_large=True).shape == gradient.shape
    assert Image.MAX_IMAGE_PIXELS == 1000  # the global limit is left as it was

    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("value", [0, -0.1, "0", "-3", "abc", "", "nan", float("nan"), float("inf"), "0,1", None,
                                   True])
def test_check_pixel_size_rejects(value):
    _assert_input_error(check_pixel_size, value, "my_source.txt", match="my_source.txt")


def test_check_pixel_size_accepts():
    assert check_pixel_size("0.1\n", "x") == 0.1
    assert check_pixel_size(5, "x") == 5.0
    assert check_pixel_size(np.float32(0.25), "x") == 0.25


@pytest.mark.parametrize("content", ["0", "-0.5", "abc", "", "nan", "0,07"])
def test_bad_pixel_size_file(tmp_path, gradient, content):
    Image.fromarray(gradient).save(tmp_path / "a.png")
    (tmp_path / "pixel_size_in_micrometer.txt").write_text(content)
    before = snapshot(tmp_path)
    _assert_input_error(read_pixel_size, tmp_path / "a.png", match="pixel_size_in_micrometer.txt")
    assert snapshot(tmp_path) == before


def test_bad_sidecar(tmp_path, gradient):
    micr = tmp_path / "sub-01" / "micr"
    micr.mkdir(parents=True)
    Image.fromarray(gradient).save(micr / "sub-01_TEM.png")
    (micr / "sub-01_TEM.json").write_text('{"PixelSize": [0, 0]}')
    _assert_input_error(read_pixel_size, micr / "sub-01_TEM.png", match="sub-01_TEM.json")
    (micr / "sub-01_TEM.json").write_text('{"PixelSize": ')
    _assert_input_error(read_pixel_size, micr / "sub-01_TEM.png", match="sub-01_TEM.json")


def test_missing_pixel_size_when_required(tmp_path, gradient):
    Image.fromarray(gradient).save(tmp_path / "a.png")
    before = snapshot(tmp_path)
    msg = _assert_input_error(require_pixel_size, tmp_path / "a.png", match="a.png")
    assert "--pixel-size" in msg and "pixel_size_in_micrometer.txt" in msg
    _assert_input_error(require_pixel_size, tmp_path / "a.png", value=-1, match="--pixel-size")
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------------------------------------------
# resampling
# ----------------------------------------------------------------------------------------------------------------
def test_rescale_shapes_and_dtypes(gradient):
    for factor in (0.5, 0.37, 1.0, 1.5, 2.0, (0.5, 2.0)):
        out = rescale(gradient, factor)
        assert out.shape == rescaled_shape(gradient.shape, factor)
        assert out.dtype == np.uint8
    assert rescale(gradient, 0.37).shape == (round(48 * 0.37), round(64 * 0.37))
    g16 = gradient.astype(np.uint16) * 257
    out = rescale(g16, 0.5)
    assert out.dtype == np.uint16 and out.max() <= 65535 and out.max() > 50000
    f = gradient.astype(np.float32) / 255
    assert rescale(f, 2).dtype == np.float32
    assert np.array_equal(rescale(gradient, 1.0), gradient)


def test_rescale_keeps_values_and_means():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    small = rescale(img, 0.25)  # anti-aliased: noise averaged out
    assert abs(float(small.mean()) - float(img.mean())) < 1.5
    assert small.std() < img.std() / 2
    labels = rng.integers(0, 3, (50, 70)).astype(np.uint8)
    for factor in (0.3, 1.7, 3):
        lab = rescale(labels, factor, order=0)
        assert set(np.unique(lab)) <= {0, 1, 2}
        assert lab.dtype == np.uint8
    up = rescale(labels, 3, order=0)
    assert np.array_equal(up[1::3, 1::3], labels)  # nearest: exact replication


def test_resize_back_and_pixel_size(gradient):
    img = np.random.default_rng(0).integers(0, 256, (123, 77), dtype=np.uint8)
    down = rescale(img, 0.61)
    back = resize_to(down, img.shape)
    assert back.shape == img.shape and back.dtype == img.dtype
    probs = np.random.default_rng(0).random((3, 40, 30)).astype(np.float32)
    assert resize_to(probs, (55, 41)).shape == (3, 55, 41)
    assert scale_factor(0.1, 0.2) == pytest.approx(0.5)
    assert rescale_to_pixel_size(img, 0.1, 0.05).shape == (246, 154)
    with pytest.raises(InputError):
        scale_factor(0, 0.1)
    with pytest.raises(InputError):
        rescale_to_pixel_size(img, None, 0.1)


# ----------------------------------------------------------------------------------------------------------------
# normalisation
# ----------------------------------------------------------------------------------------------------------------
def test_normalize_range_and_percentiles():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 200), dtype=np.uint8)
    x, params = normalize(img)
    assert x.dtype == np.float32 and x.min() == -1 and x.max() == 1
    lo, hi = np.percentile(img, (0.5, 99.5))
    assert params.low == pytest.approx(lo) and params.high == pytest.approx(hi)
    g16 = rng.integers(1000, 60000, (100, 100)).astype(np.uint16)
    p16 = normalization_params(g16, 1, 99)
    assert (p16.low, p16.high) == pytest.approx(tuple(np.percentile(g16, (1, 99))))
    f = rng.normal(size=(50, 50)).astype(np.float32)
    assert normalization_params(f).low == pytest.approx(np.percentile(f, 0.5), rel=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_denormalize_inverts(dtype):
    rng = np.random.default_rng(0)
    info_max = 255 if dtype == np.uint8 else 60000
    img = rng.integers(10, info_max, (64, 64)).astype(dtype)
    x, params = normalize(img, 0, 100)  # no clipping: exact inverse
    back = denormalize(x, params)
    assert back.dtype == img.dtype
    if np.issubdtype(dtype, np.integer):
        assert np.array_equal(back, img)
    else:
        assert np.allclose(back, img, rtol=0, atol=1e-6 * (params.high - params.low))  # float32 precision
    # clipped values map to the clip range; out-of-range inputs are clipped
    x, params = normalize(img)
    back = denormalize(x * 1.5, params)
    assert back.min() >= math.floor(params.low) and back.max() <= math.ceil(params.high)
    assert denormalize(x, params.to_dict()).dtype == img.dtype
    assert NormParams.from_dict(params.to_dict()) == params


def test_apply_normalization_per_tile_equals_whole():
    img = np.random.default_rng(0).integers(0, 256, (100, 100), dtype=np.uint8)
    x, params = normalize(img)
    assert np.array_equal(apply_normalization(img[10:40, 20:60], params), x[10:40, 20:60])
    const = np.full((20, 20), 7, np.uint8)
    xc, pc = normalize(const)
    assert np.all(xc == -1) and np.all(denormalize(xc, pc) == 7)
