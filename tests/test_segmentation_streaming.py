"""Band-by-band (streamed) sliding-window prediction: nnU-Net's whole-image result in bounded memory."""

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTOR = ROOT / "ads_synth_models" / "TEM2SEM" / "nnunet_tutor"
DEMO = ROOT / "docs" / "demo" / "sub-rat8_sample-V915_SEM.png"


class _Counter:
    def __init__(self):
        self.n = 0
        self.total = None

    def update(self, k):
        self.n += k


def test_streaming_identity_network_reproduces_the_image_in_bands():
    """With the identity as the network, the Gaussian-weighted mean of the tiles is the image itself; every row
    is handed over exactly once, in bands no taller than a patch (the memory bound)."""
    import torch

    from ads_synth.segmentation.sliding_window import n_tiles, stream_logits

    rng = np.random.default_rng(0)
    data = torch.from_numpy(rng.normal(size=(1, 700, 301)).astype(np.float32))
    out = torch.full((1, 700, 301), float("nan"))
    bands = []

    def emit(y0, y1, logits):
        assert torch.isnan(out[:, y0:y1]).all()  # each row once
        out[:, y0:y1] = logits[0]
        bands.append(y1 - y0)

    progress = _Counter()
    stream_logits([torch.nn.Identity(), torch.nn.Identity()], data, (64, 96), 0.5, emit, batch_size=3,
                  progress=progress)
    assert torch.allclose(out, data, atol=1e-5)
    assert max(bands) <= 64 and len(bands) > 10
    assert progress.n == 2 * n_tiles((700, 301), (64, 96), 0.5)

    # an image smaller than a patch is zero-padded (centred) as nnU-Net does, and cropped back
    small = data[:, :40, :50]
    got = []
    stream_logits([torch.nn.Identity()], small, (64, 96), 0.5, lambda a, b, lg: got.append((a, b, lg[0])))
    assert [(a, b) for a, b, _ in got] == [(0, 40)]
    assert torch.allclose(got[0][2], small, atol=1e-5)


class _PixelNet:
    """A per-pixel "network" that counts the tiles it sees: background logit 0, myelin -5, axon 3x the pixel
    value; so flat glass at -1 is background and a flat axon inside at +1 is axon."""

    def __init__(self):
        self.tiles = 0

    def __call__(self, x):
        import torch

        self.tiles += int(x.shape[0])
        return torch.cat([torch.zeros_like(x), torch.full_like(x, -5.), 3 * x], 1)


def _glass_image():
    """Glass (flat, -1) left of column 300, tissue (noise) right of it, with a flat axon inside (+1) in it."""
    import torch

    rng = np.random.default_rng(0)
    data = rng.normal(size=(1, 520, 700)).astype(np.float32)
    data[:, :, :300] = -1 + 0.01 * rng.normal(size=(1, 520, 300))
    data[:, 100:420, 350:670] = 1 + 0.01 * rng.normal(size=(1, 320, 320))
    return torch.from_numpy(data)


def test_glass_is_left_out_and_the_inside_of_an_axon_is_not():
    """Flat glass regions the networks call background are not run and come out background; a flat region the
    networks call axon (the inside of a large axon) is run as usual; elsewhere the logits are unchanged."""
    import torch

    from ads_synth.data.glass import GLASS_SAMPLE
    from ads_synth.segmentation.sliding_window import band_plan, stream_logits

    data, patch = _glass_image(), (64, 64)
    ys, xs, _ = band_plan(data.shape[1:], patch, 0.5)
    out, nets = {}, {}
    for flat_std in (None, 0.1):
        nets[flat_std] = [_PixelNet(), _PixelNet()]
        full = torch.full((3,) + tuple(data.shape[1:]), float("nan"))

        def emit(y0, y1, logits, full=full):
            full[:, y0:y1] = logits[0]
        left_out = stream_logits(nets[flat_std], data, patch, 0.5, emit, batch_size=5, flat_std=flat_std)
        out[flat_std] = full, left_out
    (every, none_left), (skipped, left_out) = out[None], out[0.1]
    glass_cols = [x for x in xs if x + patch[1] <= 300]
    assert none_left == 0 and left_out == len(ys) * len(glass_cols)
    for net in nets[0.1]:  # the glass tiles did not run; each flat region's sample did
        assert net.tiles == len(ys) * len(xs) - left_out + 2 * GLASS_SAMPLE
    assert torch.equal(every.argmax(0), skipped.argmax(0))
    assert (skipped.argmax(0)[:, :300] == 0).all() and (skipped.argmax(0)[110:410, 360:660] == 2).all()
    touched = np.zeros(data.shape[1:], bool)
    for y in ys:
        for x in glass_cols:
            touched[y:y + patch[0], x:x + patch[1]] = True
    assert torch.allclose(every[:, ~touched], skipped[:, ~touched], atol=1e-5)
    assert not torch.allclose(every[:, touched], skipped[:, touched], atol=1e-3)  # the stand-in logits


def test_glass_rule_follows_the_environment(monkeypatch):
    """``$ADS_SYNTH_GLASS``: skip by default, run turns it off, an explicit choice wins, a bad value is one clear
    error."""
    from ads_synth.data.glass import GLASS_ENV, skip_glass
    from ads_synth.errors import InputError

    monkeypatch.delenv(GLASS_ENV, raising=False)
    assert skip_glass() is True
    monkeypatch.setenv(GLASS_ENV, "run")
    assert skip_glass() is False and skip_glass(True) is True
    monkeypatch.setenv(GLASS_ENV, "maybe")
    with pytest.raises(InputError, match=GLASS_ENV):
        skip_glass()


@pytest.mark.parametrize("shape, mirroring", [((300, 260), False), ((100, 90), True)])
def test_streamed_prediction_matches_nnunet_whole_image(shape, mirroring):
    """The shipped TEM2SEM tutorship model on a demo crop with a zero border (nnU-Net crops it): the streamed
    fold statistics equal nnU-Net's whole-image prediction up to nnU-Net's float16 accumulation."""
    from ads_synth.data.images import read_image
    from ads_synth.segmentation.predict import SegmentationModel

    image = read_image(DEMO)[:shape[0], :shape[1]].astype(np.float32)
    image[:7] = 0
    results = {}
    for streaming in (False, True):
        model = SegmentationModel(TUTOR, device="cpu", streaming=streaming, use_mirroring=mirroring,
                                  precision="float32")
        progress = _Counter()
        stats, fold_labels = model.predict(image, per_fold=True, progress=progress)
        cropped = (shape[0] - 7, shape[1])  # nnU-Net crops the zero rows: one bar step per tile of the rest
        assert progress.n == model.tiles_per_fold(cropped) * model.n_folds
        results[streaming] = stats, fold_labels
    (whole, whole_folds), (streamed, streamed_folds) = results[False], results[True]
    assert streamed.n_members == whole.n_members == 2
    assert np.abs(streamed.prob_sum - whole.prob_sum).max() < 0.02
    assert np.mean(streamed.votes != whole.votes) < 1e-3
    for a, b in zip(whole_folds, streamed_folds):
        assert np.mean(a != b) < 1e-3
    # the cropped zero border is background with certainty, in both
    assert np.all(streamed.prob_sum[0, :7] == 2) and np.all(streamed.votes[0, :7] == 2)


def test_bfloat16_networks_give_the_float32_labels():
    """The shipped tutorship model in bfloat16 (the ``auto`` precision on a CPU with AMX / AVX512-BF16) labels a
    demo crop as float32 does, but for a few boundary pixels; its probabilities stay within 0.15 of float32's."""
    import torch

    from ads_synth.data.images import read_image
    from ads_synth.segmentation.confidence import label_and_confidence
    from ads_synth.segmentation.predict import SegmentationModel

    image = read_image(DEMO)[:260, :300]
    out = {}
    for precision in ("float32", "bfloat16"):
        model = SegmentationModel(TUTOR, device="cpu", precision=precision)
        assert model.dtype == getattr(torch, precision)
        assert all(p.dtype == model.dtype for net in model._networks() for p in net.parameters())
        stats, _ = model.predict(image)
        out[precision] = stats, label_and_confidence(stats)[0]
    (s32, l32), (s16, l16) = out["float32"], out["bfloat16"]
    assert 0 < np.mean(l32 != l16) < 0.01  # not the same computation, nearly the same labels
    assert np.abs(s32.prob_sum - s16.prob_sum).max() < 0.15 * s32.n_members
    assert {1, 2} <= set(np.unique(l16).tolist())


def test_inference_precision_rule(monkeypatch, tmp_path):
    """``auto`` is bfloat16 only where the CPU computes it (its flags), ``$ADS_SYNTH_PRECISION`` and an explicit
    precision win, and a bad name is one clear error."""
    import torch

    from ads_synth import device as dev
    from ads_synth.errors import InputError

    with_amx, without = tmp_path / "amx", tmp_path / "avx2"
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert dev.cpu_has_native_bf16(str(with_amx)) and not dev.cpu_has_native_bf16(str(without))
    assert not dev.cpu_has_native_bf16(str(tmp_path / "missing"))
    monkeypatch.delenv(dev.PRECISION_ENV, raising=False)
    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda native=native: native)
        assert dev.inference_dtype(cpu) == (torch.bfloat16 if native else torch.float32)
        assert dev.inference_dtype(cpu, "float32") == torch.float32
        assert dev.inference_dtype(cpu, "bfloat16") == torch.bfloat16
    monkeypatch.setenv(dev.PRECISION_ENV, "float32")
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: True)
    assert dev.inference_dtype(cpu) == torch.float32
    monkeypatch.setenv(dev.PRECISION_ENV, "half")
    with pytest.raises(InputError, match="ADS_SYNTH_PRECISION"):
        dev.inference_dtype(cpu)


def test_label_and_confidence_row_blocks_give_the_same_maps(monkeypatch):
    from ads_synth.segmentation import confidence

    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=(3, 37, 29)).transpose(0, 3, 1, 2).astype(np.float32)
    stats = confidence.EnsembleStats.from_probabilities(probs)
    label, conf = confidence.label_and_confidence(stats)
    monkeypatch.setattr(confidence, "_CHUNK_PIXELS", 29 * 5)  # 5 rows per block, a ragged last block
    label_b, conf_b = confidence.label_and_confidence(stats)
    assert np.array_equal(label, label_b) and np.array_equal(conf, conf_b)
    mean = probs.mean(axis=0)
    assert np.array_equal(label, np.argmax(mean, axis=0))


def test_loading_a_shipped_model_does_not_import_nnunet_training():
    """Start-up: a model whose checkpoints name the default trainer is built from its plans, without importing
    nnU-Net's trainer module (seconds of imports), and predicts what nnU-Net's loader builds."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from ads_synth.segmentation.predict import SegmentationModel; "
            f"m = SegmentationModel({str(TUTOR)!r}, device='cpu'); m.predict(np.zeros((40, 40), np.float32)); "
            "print('nnunetv2.training.nnUNetTrainer.nnUNetTrainer' in sys.modules, type(m._predictor.network).__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["False", "PlainConvUNet"]
