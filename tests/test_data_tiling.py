"""Overlapping tiles with cosine blending (ads_synth.data.tiling)."""

import numpy as np
import pytest

from ads_synth.data.tiling import apply_tiled, axis_windows, tile_positions


def identity(batch):
    return batch


COMBOS = [
    # (height, width, tile, overlap)
    (600, 600, 256, 32),
    (1000, 1000, 512, 64),
    (513, 1025, 512, 64),  # one pixel more than a tile / two tiles
    (100, 37, 64, 16),  # narrower than a tile
    (5, 300, 64, 8),  # lower than a tile
    (20, 30, 64, 16),  # smaller than a tile both ways
    (64, 64, 64, 16),  # exactly one tile
    (1001, 517, 128, 0),  # no overlap asked
    (300, 200, 32, 31),  # overlap nearly a tile
    (257, 391, (64, 96), (8, 24)),  # rectangular tiles
]


@pytest.mark.parametrize("h, w, tile, overlap", COMBOS)
def test_identity_reproduces_image(h, w, tile, overlap):
    rng = np.random.default_rng(h * 7 + w)
    img = (rng.random((h, w)) * 255).astype(np.float32)
    out = apply_tiled(img, identity, tile, overlap, batch_size=3, progress=False)
    assert out.shape == (h, w) and out.dtype == np.float32
    # float32 precision: a few ulp; sums over up to 32 x 32 tiles (overlap 31 of 32) round a little more
    rtol = 1e-5 if overlap == 31 else 1e-6
    np.testing.assert_allclose(out, img, rtol=rtol, atol=rtol * 255)
    as_uint8 = apply_tiled(img.round().astype(np.uint8), identity, tile, overlap, progress=False,
                           out_dtype=np.uint8)
    assert as_uint8.dtype == np.uint8 and np.array_equal(as_uint8, img.round().astype(np.uint8))


def test_tile_positions():
    assert tile_positions(100, 128, 16) == [0]
    assert tile_positions(128, 128, 16) == [0]
    for length, tile, overlap in ((1000, 512, 64), (10000, 512, 64), (129, 128, 16), (777, 100, 10)):
        starts = tile_positions(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] == length - tile
        gaps = np.diff(starts)
        assert np.all(gaps > 0) and np.all(tile - gaps >= overlap)  # at least `overlap` pixels shared
        assert gaps.max() - gaps.min() <= 1  # spread evenly
    corners = tile_positions((300, 500), 256, 32)
    assert corners[0] == (0, 0) and corners[-1] == (300 - 256, 500 - 256)
    assert len(corners) == len(tile_positions(300, 256, 32)) * len(tile_positions(500, 256, 32))
    with pytest.raises(ValueError):
        tile_positions(100, 32, 32)
    with pytest.raises(ValueError):
        tile_positions(100, 32, -1)


def test_windows_positive_and_complementary():
    starts = tile_positions(1000, 256, 64)
    windows = axis_windows(starts, 256)
    total = np.zeros(1000)
    for s, w in zip(starts, windows):
        assert np.all(w > 0) and np.all(w <= 1)
        total[s:s + 256] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)  # neighbours' ramps add up to 1
    assert windows[0][0] == 1 and windows[-1][-1] == 1  # no taper at the image border


@pytest.mark.parametrize("h, w, tile, overlap", [(600, 600, 256, 32), (1000, 700, 512, 64), (300, 200, 32, 31),
                                                 (40, 50, 64, 8)])
def test_blending_weights_sum_to_one(h, w, tile, overlap):
    """fn adds its tile's index: the output is a convex combination of the indices, smooth across seams."""
    img = np.random.default_rng(0).random((h, w)).astype(np.float32) * 10
    counter = {"n": 0}

    def plus_index(batch):
        out = batch.copy()
        for k in range(len(batch)):
            out[k] += counter["n"]
            counter["n"] += 1
        return out

    out = apply_tiled(img, plus_index, tile, overlap, batch_size=2, progress=False)
    n_tiles = counter["n"]
    assert n_tiles == len(tile_positions((h, w), tile, overlap))
    added = out.astype(np.float64) - img
    assert added.min() >= -1e-4 and added.max() <= n_tiles - 1 + 1e-4
    ones = apply_tiled(img, lambda b: np.ones_like(b), tile, overlap, progress=False)
    np.testing.assert_allclose(ones, 1.0, atol=1e-6)  # normalised weights sum to exactly 1
    # no seam: the blended offset changes smoothly (bounded slope of the sin^2 ramps)
    ys, xs = tile_positions(max(h, tile), tile, overlap), tile_positions(max(w, tile), tile, overlap)
    min_overlap = min([tile - g for g in np.diff(ys)] + [tile - g for g in np.diff(xs)] + [tile])
    max_step = n_tiles * np.pi / (2 * min(min_overlap, tile // 2))
    assert np.abs(np.diff(added, axis=0)).max() <= max_step
    assert np.abs(np.diff(added, axis=1)).max() <= max_step


def test_channels_batches_and_postprocess():
    rng = np.random.default_rng(1)
    img = rng.random((300, 410)).astype(np.float32)
    sizes = []

    def three_channels(batch):
        sizes.append(len(batch))
        assert batch.dtype == np.float32 and batch.shape[1:] == (128, 128)
        return np.stack([batch, 1 - batch, batch * 2], axis=1)

    out = apply_tiled(img, three_channels, 128, 16, batch_size=3, progress=False)
    assert out.shape == (3, 300, 410)
    np.testing.assert_allclose(out[0], img, atol=1e-6)
    np.testing.assert_allclose(out[1], 1 - img, atol=1e-6)
    assert max(sizes) <= 3 and sum(sizes) == len(tile_positions((300, 410), 128, 16))
    # postprocess per finished band: argmax to a uint8 label map
    labels = apply_tiled(img, three_channels, 128, 16, progress=False,
                         postprocess=lambda block: np.argmax(block, axis=0).astype(np.uint8))
    assert labels.dtype == np.uint8 and labels.shape == (300, 410)
    assert np.array_equal(labels, np.argmax(np.stack([img, 1 - img, img * 2]), axis=0))
    # float16 output
    half = apply_tiled(img, identity, 128, 16, progress=False, out_dtype=np.float16)
    assert half.dtype == np.float16 and np.allclose(half, img, atol=1e-3)


def test_uint8_image_into_memmap(tmp_path):
    img = np.random.default_rng(2).integers(0, 256, (700, 900), dtype=np.uint8)
    src = np.lib.format.open_memmap(tmp_path / "in.npy", mode="w+", dtype=np.uint8, shape=img.shape)
    src[:] = img
    out = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.uint8, shape=img.shape)
    result = apply_tiled(src, identity, 256, 32, out=out, progress=False)
    assert result is out
    out.flush()
    assert np.array_equal(np.load(tmp_path / "out.npy"), img)
    # values outside the output dtype's range are clipped, not wrapped
    clipped = apply_tiled(img, lambda b: b * 2 - 100, 256, 32, progress=False, out_dtype=np.uint8)
    assert np.array_equal(clipped, np.clip(img.astype(int) * 2 - 100, 0, 255))
    with pytest.raises(ValueError):
        apply_tiled(img, identity, 256, 32, out=np.zeros((10, 10), np.uint8), progress=False)


def test_progress_bar_and_errors(capsys):
    img = np.zeros((100, 100), np.float32)
    apply_tiled(img, identity, 64, 8, progress=True, desc="testing")
    assert "testing" in capsys.readouterr().err
    apply_tiled(img, identity, 64, 8, progress=False)
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError):
        apply_tiled(img, lambda b: b[:, :10], 64, 8, progress=False)
    with pytest.raises(ValueError):
        apply_tiled(img, identity, 64, 64, progress=False)
    with pytest.raises(ValueError):
        apply_tiled(np.zeros((3, 10, 10)), identity, 64, 8, progress=False)


def test_memory_bounded_by_one_band():
    """The float32 accumulators cover one band of rows, not the image: peak traced memory stays near the output."""
    import tracemalloc

    img = np.zeros((4000, 2000), np.uint8)
    tracemalloc.start()
    apply_tiled(img, identity, 256, 32, progress=False, out_dtype=np.uint8)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    band = 256 * 2000 * 4  # one float32 band
    assert peak < img.nbytes + 8 * band, peak  # a float32 copy of the image alone would be 4 x img.nbytes
