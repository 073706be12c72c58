"""Whole-image translation: pixel-size grids, seeds, seamless blending, model loading, files and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ads_synth.cli import main as cli_main
from ads_synth.data.images import read_pixel_size
from ads_synth.data.tiling import tile_positions
from ads_synth.errors import InputError
from ads_synth.translation.config import get_preset
from ads_synth.translation.model import SynDiff
from ads_synth.translation.translate import load_translation_model, translate_files, translate_image

WORK = {"L": 0.05, "U": 0.1}


def _random_model(seed=0):
    """A tiny model whose generators give structured, input-dependent output (an untrained one is near constant)."""
    torch.manual_seed(seed)
    model = SynDiff(get_preset("tiny"))
    with torch.no_grad():
        for gen in model.generators().values():
            for p in gen.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny"
    _random_model().save_pretrained(folder, extra={"pixel_size": WORK, "step": 0}, generators_only=True)
    return folder


@pytest.fixture(scope="module")
def model(model_dir):
    return load_translation_model(model_dir, "cpu")


def _texture(shape, seed=0):
    from skimage.filters import gaussian

    rng = np.random.default_rng(seed)
    img = gaussian(rng.uniform(0, 1, shape), sigma=2.0)
    return (255 * (img - img.min()) / (img.max() - img.min())).astype(np.uint8)


def test_output_grids_shapes_and_pixel_sizes(model):
    img = _texture((70, 90))
    out, px = translate_image(model, img, 0.1, "L2U", progress=False)
    assert out.shape == (70, 90) and out.dtype == np.uint8 and px == pytest.approx(0.1 * 0.1 / 0.05)
    out, px = translate_image(model, img, 0.1, "L2U", output_grid="model", progress=False)
    assert out.shape == (140, 180) and px == pytest.approx(0.1)  # L at 0.1 um/px -> L grid 0.05 um/px
    out, px = translate_image(model, img, 0.1, "U2L", output_grid="model", progress=False)
    assert out.shape == (70, 90) and px == pytest.approx(0.05)
    out, px = translate_image(model, img, 0.2, "U2L", progress=False)
    assert out.shape == (70, 90) and px == pytest.approx(0.2 * 0.05 / 0.1)
    assert out.std() > 2  # not a constant image


def test_seed_determinism(model):
    img = _texture((64, 80), seed=1)
    a, _ = translate_image(model, img, 0.05, "L2U", seed=3, progress=False)
    b, _ = translate_image(model, img, 0.05, "L2U", seed=3, progress=False)
    c, _ = translate_image(model, img, 0.05, "L2U", seed=4, progress=False)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 0.1


def test_output_does_not_depend_on_the_batch_size(model):
    """Each tile draws its noise from its own seed: 1, 3 or the default number of tiles per call give the same
    image, up to rounding (before, the noise was drawn per batch, so the batch size changed the translation)."""
    img = _texture((150, 170), seed=2)
    outs = [translate_image(model, img, 0.05, "L2U", seed=5, batch_size=b, tile=32, progress=False)[0]
            for b in (1, 3, None)]
    assert len(tile_positions(img.shape, 32, 4)) > 3  # several batches of 3
    for other in outs[1:]:  # up to the rounding of convolutions over batches of other sizes
        diff = np.abs(outs[0].astype(int) - other.astype(int))
        assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3


def test_glass_comes_out_flat_without_being_translated(model, monkeypatch):
    """Tiles of a flat region (empty glass) are not translated: the region gets its mean translation over a few of
    its tiles and comes out flat. Every other tile keeps its own seed, so away from the glass the image is the one
    translated without the step."""
    from ads_synth.data.glass import GLASS_SAMPLE

    img = _texture((96, 320), seed=3)
    img[:, :160] = 128 + (np.random.default_rng(0).uniform(size=(96, 160)) < 0.02)  # glass, a speck here and there
    seen = []
    translate = model.translate

    def counting(x, direction, seed=None):
        seen.append(int(x.shape[0]))
        return translate(x, direction, seed=seed)

    monkeypatch.setattr(model, "translate", counting)
    out = {}
    for glass in (False, True):
        seen.clear()
        out[glass] = translate_image(model, img, 0.05, "L2U", seed=5, tile=32, progress=False, glass=glass)[0]
        out[glass, "tiles"] = sum(seen)
    ys, xs = tile_positions(96, 32, 4), tile_positions(320, 32, 4)
    glass_tiles = len(ys) * sum(x + 32 <= 160 for x in xs)
    assert out[False, "tiles"] == len(ys) * len(xs)
    assert out[True, "tiles"] == out[False, "tiles"] - glass_tiles + GLASS_SAMPLE
    inner = [x for x in xs if x + 32 <= 160][-2]  # a glass tile not blended with tissue
    assert np.ptp(out[True][:, :inner + 28]) <= 1 < np.ptp(out[False][:, :inner + 28])
    first_tissue = min(x for x in xs if x + 32 > 160)
    far = first_tissue + 32  # beyond every tile that touches the glass
    diff = np.abs(out[True][:, far:].astype(int) - out[False][:, far:].astype(int))
    assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3


def _seam_ratio(out, starts, tile):
    """Mean |horizontal step| at tile edges over the mean |step| elsewhere."""
    steps = np.abs(np.diff(out.astype(np.float64), axis=1)).mean(axis=0)  # step between column c and c + 1
    edges = sorted({s - 1 for s in starts[1:]} | {s + tile - 1 for s in starts[:-1]})
    inner = np.setdiff1d(np.arange(steps.size), edges)
    return steps[edges].mean() / steps[inner].mean()


def test_no_seams_at_tile_edges(model, monkeypatch):
    """Each tile gets its own random brightness offset, as independent diffusion samples do; blending must hide the
    tile edges that pasting shows."""

    def offset_per_tile(x, direction, seed=None):
        rng = torch.Generator().manual_seed(seed)
        return 0.5 * x + (torch.rand(x.shape[0], 1, 1, 1, generator=rng) - 0.5) * 0.6

    monkeypatch.setattr(model, "translate", offset_per_tile)
    img = _texture((96, 200), seed=2)
    tile = 32
    ratios = {}
    for overlap in (0, 12):
        out, _ = translate_image(model, img, 0.05, "L2U", output_grid="model", tile=tile, overlap=overlap,
                                 progress=False)
        ratios[overlap] = max(_seam_ratio(out, tile_positions(200, tile, overlap), tile),
                              _seam_ratio(out.T, tile_positions(96, tile, overlap), tile))
    assert ratios[0] > 2.0  # the measure sees the seams of tiles pasted side by side
    assert ratios[12] < 1.2


def test_bad_input_is_refused(model, model_dir, tmp_path):
    img = _texture((40, 40))
    with pytest.raises(InputError, match="pixel size"):
        translate_image(model, img, None, "L2U")
    with pytest.raises(InputError):
        translate_image(model, img, -1.0, "L2U")
    with pytest.raises(InputError, match="direction"):
        translate_image(model, img, 0.1, "L2X")
    with pytest.raises(InputError, match="multiple"):
        translate_image(model, img, 0.1, "L2U", tile=33)
    with pytest.raises(InputError, match="no such model"):
        load_translation_model(tmp_path / "missing", "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a translation model"):
        load_translation_model(tmp_path / "empty", "cpu")
    bare = tmp_path / "bare"
    _random_model().save_pretrained(bare, generators_only=True)
    with pytest.raises(InputError, match="working pixel sizes"):
        load_translation_model(bare, "cpu")


def test_translate_files_writes_images_and_pixel_sizes(model_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(_texture((50, 60), 1)).save(src / "a.png")
    Image.fromarray(_texture((40, 30), 2)).save(src / "b.png")
    (src / "pixel_size_in_micrometer.txt").write_text("0.1\n")
    out = tmp_path / "out"
    written = translate_files(model_dir, [src], out, "U2L", device="cpu", progress=False)
    assert [p.name for p in written] == ["a_U2L.png", "b_U2L.png"]
    assert np.asarray(Image.open(out / "b_U2L.png")).shape == (40, 30)
    # the physical pixel size (the input's grid and field of view); the target domain's scale in the sidecar
    assert read_pixel_size(out / "a_U2L.png") == pytest.approx(0.1)
    assert float((out / "pixel_size_in_micrometer.txt").read_text()) == pytest.approx(0.1)
    assert json.loads((out / "a_U2L.json").read_text())["DomainPixelSize"] == pytest.approx(0.05)
    before = (out / "a_U2L.png").read_bytes()
    with pytest.raises(InputError, match="already exists"):
        translate_files(model_dir, [src], out, "U2L", device="cpu", progress=False)
    assert translate_files(model_dir, [src / "a.png"], out, "U2L", device="cpu", progress=False, seed=5,
                           overwrite=True)
    assert (out / "a_U2L.png").read_bytes() != before
    # images of different pixel sizes: one sidecar each, no folder-wide pixel size file
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(_texture((30, 30), 3)).save(other / "c.png")
    (other / "c.json").write_text(json.dumps({"PixelSize": [0.2, 0.2]}))
    mixed = tmp_path / "mixed"
    translate_files(model_dir, [src / "a.png", other / "c.png"], mixed, "U2L", device="cpu", progress=False)
    assert not (mixed / "pixel_size_in_micrometer.txt").exists()
    assert read_pixel_size(mixed / "c_U2L.png") == pytest.approx(0.2)
    # missing pixel size: refused before anything is written
    nopx = tmp_path / "nopx"
    nopx.mkdir()
    Image.fromarray(_texture((30, 30), 4)).save(nopx / "d.png")
    with pytest.raises(InputError, match="--pixel-size"):
        translate_files(model_dir, [src / "a.png", nopx / "d.png"], tmp_path / "never", "U2L", device="cpu")
    assert not (tmp_path / "never").exists()
    given = translate_files(model_dir, [nopx / "d.png"], tmp_path / "given", "U2L", device="cpu", pixel_size=0.1,
                            progress=False)
    assert given == [tmp_path / "given" / "d_U2L.png"]
    out_d = np.asarray(Image.open(given[0]))
    assert out_d.shape == (30, 30) and out_d.dtype == np.uint8 and out_d.std() > 0
    assert read_pixel_size(given[0]) == pytest.approx(0.1)  # physical: the input's grid (issue 15 item 16)
    expected, px = translate_image(load_translation_model(model_dir, "cpu"), _texture((30, 30), 4), 0.1, "U2L",
                                   progress=False)
    assert px == pytest.approx(0.05) and np.array_equal(out_d, expected)
    # --pixel-size is the fallback for images that carry none (as AxonDeepSeg's -s), never an override
    both = translate_files(model_dir, [other / "c.png", nopx / "d.png"], tmp_path / "fallback", "U2L",
                           device="cpu", pixel_size=0.1, progress=False)
    assert read_pixel_size(both[0]) == pytest.approx(0.2)  # c's own 0.2 um/px kept
    assert read_pixel_size(both[1]) == pytest.approx(0.1)  # d's from --pixel-size


def test_cli_translate_exit_codes(model_dir, tmp_path, capsys):
    Image.fromarray(_texture((30, 40), 5)).save(tmp_path / "x.png")
    args = ["translate", "--model", str(model_dir), "--direction", "L2U", "-i", str(tmp_path / "x.png"), "-o",
            str(tmp_path / "o"), "--device", "cpu", "--no-progress"]
    assert cli_main(args) == 2
    assert "--pixel-size" in capsys.readouterr().err
    assert cli_main(args + ["--pixel-size", "0.05", "--output-grid", "model"]) == 0
    assert np.asarray(Image.open(tmp_path / "o" / "x_L2U.png")).shape == (30, 40)
    # on the model grid the output's pixels are L's working pixels (0.05 um); the U domain's scale is 0.1
    assert float((tmp_path / "o" / "pixel_size_in_micrometer.txt").read_text()) == pytest.approx(0.05)


def test_translate_cli_takes_a_model_card_name(tmp_path):
    """`--model TEM2SEM_tutor` names the shipped card: its translation model turns SEM into TEM's look (myelin dark)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    image = np.asarray(Image.open(repo / "docs" / "demo" / "sub-rat8_sample-V915_SEM.png").convert("L"))
    crop = tmp_path / "in" / "crop.png"
    crop.parent.mkdir()
    Image.fromarray(image[300:556, 500:756]).save(crop)
    (crop.parent / "pixel_size_in_micrometer.txt").write_text("0.07\n")
    r = subprocess.run([str(Path(sys.executable).parent / "ads-synth"), "translate", "--model", "TEM2SEM_tutor",
                        "--direction", "U2L", "-i", str(crop), "-o", str(tmp_path / "out"), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = np.asarray(Image.open(tmp_path / "out" / "crop_U2L.png"))
    assert out.shape == (256, 256) and out.dtype == np.uint8
    # SEM myelin is bright and axons dark; in TEM's look it is the other way round
    sem = image[300:556, 500:756].astype(float)
    assert np.corrcoef(sem.ravel(), out.astype(float).ravel())[0, 1] < -0.3
