"""SynDiff networks, presets, diffusion process and checkpoint format (ads_synth.translation, model half)."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ads_synth.errors import InputError
from ads_synth.translation import config as config_module
from ads_synth.translation.config import (
    DEFAULT_PRESET,
    NCSNppConfig,
    PatchGANConfig,
    ResnetGenConfig,
    SynDiffConfig,
    TDiscConfig,
    get_preset,
    list_presets,
    register_preset,
)
from ads_synth.translation.diffusion import DiffusionProcess
from ads_synth.translation.layers import AdaptiveGroupNorm, downsample_2d, fir_kernel_2d, upfirdn2d, upsample_2d
from ads_synth.translation.model import DIRECTIONS, SynDiff

SMALL_PRESETS = [name for name in list_presets() if name != "paper"]


def _randomized(model, seed=0, scale=0.05):
    """Perturb every parameter so that outputs depend visibly on all of them (NCSN++ inits some near zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return _randomized(SynDiff(get_preset("tiny")))


def _inputs(cfg, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    side = max(cfg.training_size_multiple, 32)  # instance norm and PatchGAN need a few pixels at the bottom
    x = torch.rand(batch, 1, side, side, generator=gen) * 2 - 1
    t = torch.arange(batch) % cfg.num_timesteps
    z = torch.randn(batch, cfg.nz, generator=gen)
    return x, t, z


# ---------------------------------------------------------------------------------------------------------------
# config and presets
# ---------------------------------------------------------------------------------------------------------------
def test_presets_registered_and_json_roundtrip():
    assert {"tiny", "compact", "paper"} <= set(list_presets())
    for name in list_presets():
        cfg = get_preset(name)
        back = SynDiffConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg and isinstance(back.ncsnpp.ch_mult, tuple)
    with pytest.raises(InputError, match="compact"):
        get_preset("nope")
    with pytest.raises(ValueError):
        register_preset("tiny")(lambda: get_preset("tiny"))


def test_register_preset_decorator(monkeypatch):
    monkeypatch.setattr(config_module, "_PRESETS", dict(config_module._PRESETS))

    @register_preset("wide-tiny")
    def wide_tiny():
        cfg = get_preset("tiny")
        return dataclasses.replace(cfg, ncsnpp=dataclasses.replace(cfg.ncsnpp, ch=16))

    assert "wide-tiny" in list_presets() and get_preset("wide-tiny").ncsnpp.ch == 16


def test_config_is_frozen_validated_and_strict():
    cfg = get_preset("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.nz = 3
    with pytest.raises(ValueError, match="multiple"):
        dataclasses.replace(cfg, image_size=cfg.image_size + 2)
    data = cfg.to_dict()
    del data["ncsnpp"]["ch"]
    with pytest.raises(ValueError, match="ch"):
        SynDiffConfig.from_dict(data)
    data = cfg.to_dict()
    data["surprise"] = 1
    with pytest.raises(ValueError, match="surprise"):
        SynDiffConfig.from_dict(data)
    data = cfg.to_dict()
    data["nz"] = "8"
    with pytest.raises(ValueError, match="nz"):
        SynDiffConfig.from_dict(data)


def test_configs_written_before_a_field_existed_read_as_they_were_trained():
    assert get_preset("compact-cl").nd_condition_grad is False  # the non-diffusive half on its own losses
    data = get_preset("compact-cl").to_dict()
    del data["nd_condition_grad"]
    assert SynDiffConfig.from_dict(data).nd_condition_grad is True  # the shipped models' (the paper's) joint loss
    assert get_preset("compact").nd_condition_grad is True and DEFAULT_PRESET == "compact-cl"


# ---------------------------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------------------------
def test_fir_resampling_matches_upfirdn_reference():
    x = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    k = fir_kernel_2d((1, 3, 3, 1), gain=4).double()
    # StyleGAN2 upsample_2d: zero insertion, pad ((p + 1) // 2 + 1, p // 2) with p = 2, FIR
    assert torch.allclose(upsample_2d(x), upfirdn2d(x, k, up=2, pad=(2, 1)))
    # up-sampling keeps the mean of a constant image away from the zero-padded border
    const = upsample_2d(torch.ones(1, 1, 8, 8))
    assert const.shape == (1, 1, 16, 16) and torch.allclose(const[..., 1:-1, 1:-1], torch.ones(1, 1, 14, 14))
    # down-sampling: [1, 3, 3, 1] / 8 per axis around each pixel pair, zero padding of one
    y = downsample_2d(x)
    xp = F.pad(x, (1, 1, 1, 1))
    taps = np.array([1.0, 3.0, 3.0, 1.0]) / 8
    ref = sum(taps[a] * taps[b] * xp[..., a:a + 8:2, b:b + 10:2] for a in range(4) for b in range(4))
    assert y.shape == (2, 3, 4, 5) and torch.allclose(y, ref)


def test_adaptive_group_norm_is_group_norm_then_style_affine():
    torch.manual_seed(0)
    norm = AdaptiveGroupNorm(16, 8)
    x = torch.randn(3, 16, 5, 7) * 3 + 2
    style = torch.randn(3, 8)
    gamma, beta = norm.style(style).chunk(2, dim=1)
    ref = F.group_norm(x, norm.groups, eps=1e-6) * gamma[:, :, None, None] + beta[:, :, None, None]
    assert torch.allclose(norm(x, style), ref, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SMALL_PRESETS)
def test_output_shapes_of_all_eight_networks(name):
    torch.manual_seed(0)
    cfg = get_preset(name)
    model = SynDiff(cfg)
    x, t, z = _inputs(cfg)
    b, _, h, w = x.shape
    with torch.no_grad():
        for d in DIRECTIONS:
            out = model.gen_diff[d](torch.cat([x, x], dim=1), t, z)
            assert out.shape == (b, 1, h, w) and out.abs().max() <= 1
            out = model.gen_nd[d](x)
            assert out.shape == (b, 1, h, w) and out.abs().max() <= 1
        for d in ("L", "U"):
            assert model.disc_diff[d](x, t, x).shape == (b,)
            logits = model.disc_nd[d](x)
            assert logits.ndim == 4 and logits.shape[:2] == (b, 1)
    assert len(model.generators()) == 4 and len(model.discriminators()) == 4
    assert not list(model.diffusion.parameters())


def test_paper_preset_matches_reference_sizes_and_runs_at_64px():
    torch.manual_seed(0)
    model = SynDiff(get_preset("paper"))
    counts = {k: v / 2 for k, v in model.parameter_counts().items()}  # two networks of each kind
    # AxonDeepSynth's networks, measured: NCSN++ 39.7M, time-dependent D 27.7M, ResNet 7.8M, PatchGAN 2.8M
    for part, ref in {"gen_diff": 39.7e6, "disc_diff": 27.7e6, "gen_nd": 7.8e6, "disc_nd": 2.8e6}.items():
        assert abs(counts[part] - ref) <= 0.05e6, (part, counts[part])  # references are rounded to 0.1M
    x = torch.rand(1, 1, 64, 64) * 2 - 1
    t = torch.tensor([2])
    with torch.no_grad():
        assert model.gen_diff["L2U"](torch.cat([x, x], 1), t, torch.randn(1, 100)).shape == (1, 1, 64, 64)
        assert model.gen_nd["U2L"](x).shape == (1, 1, 64, 64)
        assert model.disc_diff["L"](x, t, x).shape == (1,)
        assert model.disc_nd["U"](x).shape[:2] == (1, 1)


@pytest.mark.parametrize("name", SMALL_PRESETS)
def test_gradient_reaches_every_trainable_parameter(name):
    torch.manual_seed(0)
    cfg = get_preset(name)
    model = SynDiff(cfg)
    x, t, z = _inputs(cfg)
    y = x.flip(-1)
    loss = 0
    for d in DIRECTIONS:
        w = torch.randn(x.shape)
        loss = loss + (model.gen_diff[d](torch.cat([x, y], 1), t, z) * w).sum()
        loss = loss + (model.gen_nd[d](x) * w).sum()
    for d in ("L", "U"):
        loss = loss + (model.disc_diff[d](x, t, y) * torch.randn(x.shape[0])).sum()
        patch = model.disc_nd[d](x)
        loss = loss + (patch * torch.randn(patch.shape)).sum()
    loss.backward()
    dead = [n for n, p in model.named_parameters()
            if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)]
    assert not dead


def test_latent_z_changes_the_output(tiny_model):
    cfg = tiny_model.config
    x, t, z = _inputs(cfg)
    gen = tiny_model.gen_diff["L2U"]
    with torch.no_grad():
        a = gen(torch.cat([x, x], 1), t, z)
        b = gen(torch.cat([x, x], 1), t, z)
        c = gen(torch.cat([x, x], 1), t, torch.randn(z.shape))
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_patch_size_and_any_tile_multiple():
    cfg = get_preset("tiny")
    cfg = dataclasses.replace(cfg, ncsnpp=dataclasses.replace(cfg.ncsnpp, patch_size=2))
    model = SynDiff(cfg)
    m = model.size_multiple
    assert m == 4
    out = model.translate(torch.zeros(1, 1, 3 * m, 5 * m), "U2L", seed=0)
    assert out.shape == (1, 1, 3 * m, 5 * m)
    with pytest.raises(ValueError, match="multiple"):
        model.translate(torch.zeros(1, 1, 3 * m + 2, 5 * m), "U2L")
    with pytest.raises(ValueError, match="direction"):
        model.translate(torch.zeros(1, 1, m, m), "L2L")


# ---------------------------------------------------------------------------------------------------------------
# diffusion process
# ---------------------------------------------------------------------------------------------------------------
def _alpha_bar(k, cfg):
    """Independent VP marginal: alpha_bar(t) = exp(-t^2 (b_max - b_min) / 2 - t b_min), t = k/T (1 - eps) + eps."""
    t = np.asarray(k, dtype=np.float64) / cfg.num_timesteps * (1 - 1e-3) + 1e-3
    return np.exp(-0.5 * t ** 2 * (cfg.beta_max - cfg.beta_min) - t * cfg.beta_min)


def test_q_sample_pairs_statistics_follow_the_schedule():
    cfg = get_preset("tiny")
    diff = DiffusionProcess(cfg.num_timesteps, cfg.beta_min, cfg.beta_max)
    torch.manual_seed(0)
    c = 0.5
    for k in range(cfg.num_timesteps):
        x0 = torch.full((8, 1, 64, 64), c)
        x_t, x_tp1 = diff.q_sample_pairs(x0, torch.full((8,), k, dtype=torch.long))
        for x, idx in ((x_t, k), (x_tp1, k + 1)):
            ratio = _alpha_bar(idx, cfg) / _alpha_bar(0, cfg)  # step 0 is the (almost clean) start
            assert abs(x.mean().item() - np.sqrt(ratio) * c) < 0.02
            assert abs(x.var().item() - (1 - ratio)) < 0.03 + 0.03 * (1 - ratio)
    # the pair is one more forward step: x_{t+1} = sqrt(1 - beta) x_t + sqrt(beta) n
    x0 = torch.randn(2, 1, 4, 4)
    n1, n2 = torch.randn(2, 2, 1, 4, 4)
    t = torch.tensor([0, 2])
    x_t, x_tp1 = diff.q_sample_pairs(x0, t, noise=(n1, n2))
    beta = 1 - _alpha_bar(t.numpy() + 1, cfg) / _alpha_bar(t.numpy(), cfg)
    beta = torch.tensor(beta, dtype=torch.float32)[:, None, None, None]
    assert torch.allclose(x_tp1, (1 - beta).sqrt() * x_t + beta.sqrt() * n2, atol=1e-5)


def test_posterior_matches_gaussian_closed_form():
    cfg = get_preset("tiny")
    diff = DiffusionProcess(cfg.num_timesteps, cfg.beta_min, cfg.beta_max)
    x0 = torch.randn(cfg.num_timesteps, 1, 3, 3)
    x_tp1 = torch.randn(cfg.num_timesteps, 1, 3, 3)
    t = torch.arange(cfg.num_timesteps)
    mean = diff.sample_posterior(x0, x_tp1, t, noise=torch.zeros_like(x0))
    spread = diff.sample_posterior(x0, x_tp1, t, noise=torch.ones_like(x0)) - mean
    assert torch.allclose(mean[0], x0[0], atol=1e-6)  # t = 0: the x0 prediction
    assert torch.equal(spread[0], torch.zeros_like(spread[0]))  # and no noise
    for k in range(1, cfg.num_timesteps):
        # prior x_k ~ N(sqrt(ab_k) x0, 1 - ab_k), likelihood x_{k+1} | x_k ~ N(sqrt(1 - b) x_k, b); ab relative to 0
        ab = _alpha_bar(k, cfg) / _alpha_bar(0, cfg)
        beta = 1 - _alpha_bar(k + 1, cfg) / _alpha_bar(k, cfg)
        precision = 1 / (1 - ab) + (1 - beta) / beta
        ref = (np.sqrt(ab) * x0[k].numpy() / (1 - ab) + np.sqrt(1 - beta) * x_tp1[k].numpy() / beta) / precision
        assert np.allclose(mean[k].numpy(), ref, atol=1e-5)
        assert np.allclose(spread[k].numpy(), np.sqrt(1 / precision), rtol=1e-4)


def test_sample_runs_the_reverse_chain_with_fresh_latents():
    cfg = get_preset("tiny")
    diff = DiffusionProcess(cfg.num_timesteps, cfg.beta_min, cfg.beta_max)
    calls = []

    def generator(x, t, z):
        calls.append((x.shape, t.tolist(), z.clone()))
        return x[:, 1:] * 0.5  # predict half the condition

    cond = torch.randn(2, 1, 4, 4)
    out = diff.sample(generator, cond, nz=5, generator_rng=torch.Generator().manual_seed(0))
    assert [c[1] for c in calls] == [[k, k] for k in reversed(range(cfg.num_timesteps))]
    assert all(c[0] == (2, 2, 4, 4) for c in calls)
    assert not torch.equal(calls[0][2], calls[1][2])
    assert torch.allclose(out, cond * 0.5)  # the last step returns the x0 prediction itself


# ---------------------------------------------------------------------------------------------------------------
# translate and checkpoints
# ---------------------------------------------------------------------------------------------------------------
def test_translate_is_reproducible_by_seed(tiny_model):
    x, _, _ = _inputs(tiny_model.config)
    a = tiny_model.translate(x, "L2U", seed=3)
    b = tiny_model.translate(x, "L2U", seed=3)
    c = tiny_model.translate(x, "L2U", seed=4)
    assert a.shape == x.shape and torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    assert not a.requires_grad


def test_a_tile_translates_the_same_alone_or_in_a_batch(tiny_model):
    x, _, _ = _inputs(tiny_model.config)
    both = tiny_model.translate(x, "U2L", seed=7)
    second = tiny_model.translate(x[1:], "U2L", seed=8)  # tile 1 of the batch draws from seed + 1
    torch.testing.assert_close(both[1:], second, rtol=1e-5, atol=1e-5)
    assert (both[0] - tiny_model.translate(x[1:], "U2L", seed=7)[0]).abs().max() > 1e-3


def test_translate_runs_only_the_diffusive_generator_of_its_direction(tiny_model):
    calls = {}
    handles = [module.register_forward_hook(lambda m, i, o, n=name: calls.__setitem__(n, calls.get(n, 0) + 1))
               for name, module in {**tiny_model.generators(), **tiny_model.discriminators()}.items()]
    try:
        x, _, _ = _inputs(tiny_model.config)
        tiny_model.translate(x, "U2L", seed=0)
    finally:
        for h in handles:
            h.remove()
    assert calls == {"gen_diff.U2L": tiny_model.config.num_timesteps}


def test_save_and_load_fp32_exact_fp16_close(tiny_model, tmp_path):
    x, _, _ = _inputs(tiny_model.config)
    ref = tiny_model.translate(x, "L2U", seed=7)
    tiny_model.save_pretrained(tmp_path / "fp32", dtype=torch.float32, extra={"pixel_size": 0.1})
    loaded = SynDiff.from_pretrained(tmp_path / "fp32")
    assert torch.equal(loaded.translate(x, "L2U", seed=7), ref)
    assert loaded.extra == {"pixel_size": 0.1} and loaded.config == tiny_model.config
    assert set(loaded.shipped_parts) == {"gen_diff", "gen_nd", "disc_diff", "disc_nd"}
    for a, b in zip(loaded.state_dict().values(), tiny_model.state_dict().values()):
        assert torch.equal(a, b)

    tiny_model.save_pretrained(tmp_path / "fp16")
    assert sorted(p.name for p in (tmp_path / "fp16").iterdir()) == ["config.json", "weights.pt"]  # no temp files
    stored = torch.load(tmp_path / "fp16" / "weights.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    loaded = SynDiff.from_pretrained(tmp_path / "fp16" / "config.json")
    assert next(loaded.parameters()).dtype == torch.float32
    out = loaded.translate(x, "L2U", seed=7)
    assert (out - ref).abs().max() < 0.05 and (out - ref).abs().mean() < 0.01
    meta = json.loads((tmp_path / "fp16" / "config.json").read_text())
    assert meta["format"] == 1 and "ads_synth_version" in meta and meta["extra"] == {}


def test_generators_only_checkpoint(tiny_model, tmp_path):
    x, _, _ = _inputs(tiny_model.config)
    tiny_model.save_pretrained(tmp_path, dtype=torch.float32, generators_only=True)
    stored = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert stored and all(k.startswith("gen_diff.") for k in stored)
    loaded = SynDiff.from_pretrained(tmp_path)
    assert loaded.shipped_parts == ("gen_diff",)
    assert torch.equal(loaded.translate(x, "U2L", seed=1), tiny_model.translate(x, "U2L", seed=1))
    w_loaded = loaded.disc_nd["L"].model[0].weight
    assert not torch.equal(w_loaded, tiny_model.disc_nd["L"].model[0].weight)  # not shipped: stays random


def test_from_pretrained_rebuilds_from_the_checkpoint_config_alone(tmp_path, monkeypatch):
    base = get_preset("tiny")
    cfg = dataclasses.replace(base, nz=5, ncsnpp=dataclasses.replace(base.ncsnpp, ch=12, ch_mult=(1, 1, 2)),
                              tdisc=dataclasses.replace(base.tdisc, ngf=3))
    torch.manual_seed(1)
    model = _randomized(SynDiff(cfg), seed=1)
    model.save_pretrained(tmp_path, dtype=torch.float32)
    # the code's presets and defaults must play no part in rebuilding
    monkeypatch.setattr(config_module, "_PRESETS", {})
    for cls in (SynDiffConfig, NCSNppConfig, ResnetGenConfig, PatchGANConfig, TDiscConfig):
        monkeypatch.setattr(cls.__init__, "__defaults__", None)
    with pytest.raises(TypeError):
        NCSNppConfig()
    loaded = SynDiff.from_pretrained(tmp_path)
    assert loaded.config == cfg and loaded.gen_diff["L2U"].conv_in.weight.shape[0] == 12
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    assert torch.equal(loaded.translate(x, "L2U", seed=0), model.translate(x, "L2U", seed=0))


def test_from_pretrained_rejects_bad_checkpoints(tiny_model, tmp_path):
    with pytest.raises(InputError, match="config.json"):
        SynDiff.from_pretrained(tmp_path / "missing")
    tiny_model.save_pretrained(tmp_path, generators_only=True)
    data = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**data, "format": 99}))
    with pytest.raises(InputError, match="format"):
        SynDiff.from_pretrained(tmp_path)
    del data["ncsnpp"]["ch"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="ch"):
        SynDiff.from_pretrained(tmp_path)
    data["ncsnpp"]["ch"] = 16  # weights of another size
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="does not match"):
        SynDiff.from_pretrained(tmp_path)
    with pytest.raises(TypeError):
        tiny_model.save_pretrained(tmp_path / "bad", extra={"obj": object()})
    assert not (tmp_path / "bad" / "weights.pt").exists()


def test_translation_imports_without_torchvision_ads_or_nnunet():
    code = (
        "import sys\n"
        "import ads_synth.translation.config, ads_synth.translation.layers, ads_synth.translation.ncsnpp\n"
        "import ads_synth.translation.discriminators, ads_synth.translation.resnet\n"
        "import ads_synth.translation.diffusion, ads_synth.translation.model\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torchvision', 'AxonDeepSeg', 'nnunetv2'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
