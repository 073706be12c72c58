"""SynDiff training: the step, exact resume, atomic checkpoints, scoring files, data parallelism, the CLI, labels
never read, and a short real training on TEM vs SEM tiles."""

import builtins
import csv
import dataclasses
import math
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ads_synth.cli import main as cli_main
from ads_synth.errors import InputError
from ads_synth.translation import trainer as trainer_mod
from ads_synth.translation.config import get_preset
from ads_synth.translation.model import SynDiff
from ads_synth.translation.tiles import TileSampler, holdout_split, pad_to, working_pixel_sizes
from ads_synth.translation.trainer import SynDiffTrainer, TrainOptions, load_checkpoint, train

LOSS_KEYS = ("d_diff", "d_nd", "g_adv", "g_nd_adv", "l1_L", "l1_U", "cycle_L", "cycle_U", "g_total")


def _rings(rng, shape, background, myelin, axon):
    """A synthetic micrograph: random fibres (axon disc inside a myelin ring) on a background, with noise."""
    h, w = shape
    img = np.full(shape, background, dtype=np.float32)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(h * w // 300):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 9)
        d = np.hypot(yy - cy, xx - cx)
        img[d < r] = myelin
        img[d < 0.6 * r] = axon
    img += rng.normal(0, 8, shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_domain(folder, kind, n=3, pixel_size=0.05, seed=0, with_labels=True):
    """Write ``n`` synthetic images of modality ``kind`` ("tem": dark myelin, "sem": bright myelin) into
    ``folder`` with ``pixel_size_in_micrometer.txt`` and (unused) label files beside them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    values = {"tem": (190, 40, 140), "sem": (30, 230, 90)}[kind]
    for i in range(n):
        img = _rings(rng, (96 + 8 * i, 112), *values)
        Image.fromarray(img).save(folder / f"{kind}{i}.png")
        if with_labels:
            lab = (img < 60).astype(np.uint8) * 255
            Image.fromarray(lab).save(folder / f"{kind}{i}_seg-axon-manual.png")
            Image.fromarray(lab).save(folder / f"{kind}{i}_seg-myelin-manual.png")
    if pixel_size is not None:
        (folder / "pixel_size_in_micrometer.txt").write_text(f"{pixel_size}\n")
    return folder


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    return make_domain(root / "L", "tem", pixel_size=0.025, seed=1), make_domain(root / "U", "sem", seed=2)


def _opts(domains, out, **kw):
    base = dict(source=[str(domains[0])], target=[str(domains[1])], out=str(out), preset="tiny", steps=4,
                checkpoint_every=2, eval_every=2, eval_tiles=2, seed=3, batch_size=2, device="cpu",
                progress=False)
    base.update(kw)
    return TrainOptions(**base)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def full_run(domains, tmp_path_factory):
    """An uninterrupted 4-step tiny run, recording every file opened while it trains."""
    out = tmp_path_factory.mktemp("runs") / "full"
    opened = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtins, "open", spy)
        result = train(_opts(domains, out, keep_snapshots=True))
    return out, result, opened


# ------------------------------------------------------------------------------------------------------------------
def test_train_step_changes_every_network_and_losses_are_finite():
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    model = SynDiff(cfg)
    trainer = SynDiffTrainer(model, cfg, total_steps=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ema_before = {k: v.clone() for k, v in trainer.ema.state_dict().items()}
    x = torch.rand(2, 1, cfg.image_size, cfg.image_size) * 2 - 1
    losses = trainer.train_step(x, -x.flip(-1))
    assert all(math.isfinite(losses[k]) for k in LOSS_KEYS)
    assert math.isfinite(losses["r1"])  # step 0 is an R1 step
    names = {id(p): n for n, p in model.named_parameters()}
    for group in (model.generators(), model.discriminators()):
        for name, module in group.items():
            moved = [not torch.equal(p.detach(), before[names[id(p)]]) for p in module.parameters()]
            assert any(moved), f"{name} did not change"
    # EMA moved towards the weights, but only by (1 - decay)
    ema_after = trainer.ema.state_dict()
    assert any(not torch.equal(ema_after[k], ema_before[k]) for k in ema_after)
    assert trainer.step == 1
    lr_g, _ = trainer.lrs
    assert lr_g < cfg.lr_g  # cosine decay stepped


@pytest.mark.parametrize("flow", [False, True])
def test_diffusive_losses_reach_the_nondiffusive_generators_only_when_configured(flow, monkeypatch):
    """nd_condition_grad=False: the generator step feeds the diffusive generators a detached condition, so only
    the non-diffusive half's own adversarial and cycle losses train it (True: the paper's joint loss)."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(get_preset("tiny"), nd_condition_grad=flow)
    trainer = SynDiffTrainer(SynDiff(cfg), cfg, total_steps=2)
    seen = []
    pseudo_x0 = SynDiffTrainer._pseudo_x0

    def spy(self, X, x_tp1, t, cond):
        seen.append(torch.is_grad_enabled() and cond.requires_grad)
        return pseudo_x0(self, X, x_tp1, t, cond)

    monkeypatch.setattr(SynDiffTrainer, "_pseudo_x0", spy)
    x = torch.rand(2, 1, cfg.image_size, cfg.image_size) * 2 - 1
    trainer.train_step(x, -x.flip(-1))
    assert seen == [False, False, flow, flow]  # discriminator step (no gradient), then generator step


def test_cosine_schedule_and_ema_decay_are_those_configured():
    cfg = dataclasses.replace(get_preset("tiny"), ema_decay=0.5)
    model = SynDiff(cfg)
    trainer = SynDiffTrainer(model, cfg, total_steps=4)
    gen = next(iter(model.generators().values()))
    ema_gen = trainer.ema.generators()[next(iter(model.generators()))]
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(1.0)
    trainer.step = 1000  # past the warm-up: the configured decay
    expected = [pe.detach() + 0.5 * (p.detach() - pe.detach()) for pe, p in zip(ema_gen.parameters(), gen.parameters())]
    trainer.update_ema()
    assert all(torch.allclose(pe, e) for pe, e in zip(ema_gen.parameters(), expected))
    trainer.step = 0
    assert trainer.ema_decay() == pytest.approx(0.1)  # warm-up: (1 + step) / (10 + step)
    lrs = []
    for step in range(5):
        trainer.step = step
        trainer.set_total_steps(4)
        lrs.append(trainer.lrs[0])
    assert lrs[0] == pytest.approx(cfg.lr_g)
    assert lrs[2] == pytest.approx(trainer_mod.ETA_MIN + (cfg.lr_g - trainer_mod.ETA_MIN) / 2)
    assert lrs[4] == pytest.approx(trainer_mod.ETA_MIN)


def test_tile_sampler_is_reproducible_and_skips_empty_tiles():
    flat = np.zeros((64, 64), np.float32)
    textured = np.random.default_rng(0).uniform(-1, 1, (64, 64)).astype(np.float32)
    sampler = TileSampler([flat, textured], 16, seed=5)
    state = sampler.state_dict()
    a = sampler.sample(6)
    assert a.shape == (6, 1, 16, 16) and a.dtype == np.float32
    assert all(t.std() > 0.1 for t in a)  # the blank image is skipped
    sampler.load_state_dict(state)
    np.testing.assert_array_equal(sampler.sample(6), a)
    assert pad_to(np.ones((5, 40), np.float32), 16).shape == (16, 40)
    assert working_pixel_sizes([0.005], [0.07, 0.1, 0.18], scale=5) == pytest.approx((0.02, 0.1))


def test_holdout_split():
    from ads_synth.data.datasets import Sample

    samples = [Sample(f"img{i:02d}", Path(f"img{i:02d}.png")) for i in range(22)]
    train_s, held = holdout_split(samples[::-1])
    assert [s.name for s in held] == ["img05", "img16"]  # 10 %, spread over the sorted names
    assert len(train_s) == 20 and not {s.name for s in train_s} & {"img05", "img16"}
    assert holdout_split(samples[:3]) == (samples[:3], samples[:3])  # too few to hold any back


def test_resume_continues_exactly(domains, full_run, tmp_path):
    out_full, full, _ = full_run
    out = tmp_path / "killed"
    killed = train(_opts(domains, out), _stop_after=3)  # killed after step 3; the checkpoint is at step 2
    assert killed.step == 3 and load_checkpoint(out / "checkpoint.pt")["trainer"]["step"] == 2
    resumed = train(_opts(domains, out, source=[], target=[]), resume=True)
    assert resumed.step == 4
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = full.ema.state_dict(), resumed.ema.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows_full, rows_resumed = _rows(out_full / "metrics.csv"), _rows(out / "metrics.csv")
    assert [r["step"] for r in rows_resumed] == ["1", "2", "3", "4"]
    for r1, r2 in zip(rows_full, rows_resumed):
        assert {k: v for k, v in r1.items() if k != "seconds"} == {k: v for k, v in r2.items() if k != "seconds"}
    assert [r["step"] for r in _rows(out / "scores.csv")] == ["0", "2", "4"]


def test_run_folder_files_and_best_model(full_run):
    out, result, _ = full_run
    scores = _rows(out / "scores.csv")
    assert [r["step"] for r in scores] == ["0", "2", "4"]
    for r in scores:
        assert -1 <= float(r["ssim_L"]) <= 1 and float(r["psnr_U"]) > 0 and float(r["l1_L"]) >= 0
        assert float(r["score"]) == pytest.approx((float(r["ssim_L"]) + float(r["ssim_U"])) / 2)
    for png in ("curves.png", "samples/step_000000.png", "samples/step_000004.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid = np.asarray(Image.open(out / "samples/step_000004.png"))
    assert grid.shape[0] > 200  # six rows of tiles
    best_step = max(scores, key=lambda r: float(r["score"]))["step"]
    best = SynDiff.from_pretrained(out / "best", map_location="cpu")
    assert best.extra["step"] == int(best_step)
    assert best.extra["pixel_size"] == pytest.approx({"L": 0.05, "U": 0.05})
    assert set(best.extra["data"]["L"]) == {"tem0", "tem1", "tem2"}
    last = SynDiff.from_pretrained(out / "last", map_location="cpu")
    assert last.extra["step"] == 4
    from ads_synth.translation.formats import run_snapshots

    snapshots = run_snapshots(out)  # keep_snapshots: one model per scoring, with its scores
    assert [p.name for p in snapshots] == ["step_000000", "step_000002", "step_000004"]
    for snap, row in zip(snapshots, scores):
        extra = SynDiff.from_pretrained(snap, map_location="cpu").extra
        assert extra["step"] == int(row["step"]) and extra["scores"]["score"] == pytest.approx(float(row["score"]))
    # last/ holds the EMA diffusive generators of the final step (all that translation needs)
    assert last.shipped_parts == ("gen_diff",)
    for name, module in last.generators().items():
        if not name.startswith("gen_diff"):
            continue
        for p, q in zip(module.state_dict().values(), result.ema.generators()[name].state_dict().values()):
            torch.testing.assert_close(p.float(), q.float().half().float())
    metrics = _rows(out / "metrics.csv")
    assert [int(r["step"]) for r in metrics] == [1, 2, 3, 4]
    assert all(math.isfinite(float(r[k])) for r in metrics for k in LOSS_KEYS)
    assert float(metrics[-1]["lr_g"]) < float(metrics[0]["lr_g"])


def test_training_never_opens_a_label_file(full_run):
    _, _, opened = full_run
    images = [p for p in opened if p.endswith(".png") and "samples" not in p and "curves" not in p]
    assert any(Path(p).name == "tem0.png" for p in images) and any(Path(p).name == "sem0.png" for p in images)
    assert not [p for p in opened if "_seg-" in p]


def test_checkpoint_write_is_atomic(full_run, monkeypatch):
    out, _, _ = full_run
    path = out / "checkpoint.pt"
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(trainer_mod.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        trainer_mod.atomic_torch_save({"step": 99}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["trainer"]["step"] == 4
    assert not list(out.glob("*.tmp"))


def test_refuses_bad_runs_before_writing(domains, full_run, tmp_path):
    out, _, _ = full_run
    with pytest.raises(InputError, match="--resume"):
        train(_opts(domains, out))
    with pytest.raises(InputError, match="nothing to resume"):
        train(_opts(domains, tmp_path / "none"), resume=True)
    no_px = make_domain(tmp_path / "nopx", "sem", n=1, pixel_size=None, with_labels=False)
    with pytest.raises(InputError, match="--target-pixel-size"):
        train(_opts(domains, tmp_path / "new", target=[str(no_px)]))
    assert not (tmp_path / "new").exists()
    # a fallback pixel size makes the same data usable (validation only: the run is not started)
    prep = trainer_mod.prepare_run(_opts(domains, tmp_path / "new", target=[str(no_px)], target_pixel_size=0.1))
    assert prep["pixel_size"] == pytest.approx({"L": 0.1, "U": 0.1})
    assert not (tmp_path / "new").exists()
    with pytest.raises(InputError, match="--tile 30"):
        train(_opts(domains, tmp_path / "new", tile=30))
    # a tile larger than the L images (about 50 px on the working grid): padded, and said so
    prep = trainer_mod.prepare_run(_opts(domains, tmp_path / "new", tile=64))
    assert prep["config"].image_size == 64 and prep["domains"]["L"].images[0].shape == (64, 64)
    assert prep["domains"]["L"].padded == ["tem0", "tem1", "tem2"] and "3 of 3 source images" in prep["notes"][0]
    assert not (tmp_path / "new").exists()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, opts, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result = train(opts)
    torch.save({"model": result.model.state_dict(), "ema": result.ema.state_dict()},
               Path(out_dir) / f"rank{rank}.pt")


def test_data_parallel_gloo_ranks_stay_in_sync(domains, tmp_path):
    import torch.multiprocessing as mp

    opts = _opts(domains, tmp_path / "ddp", steps=2, checkpoint_every=2, eval_every=0)
    context = mp.spawn(_ddp_worker, args=(2, _free_port(), opts, str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 300  # a hang (e.g. in a collective) fails the test instead of blocking CI
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two data-parallel ranks did not finish within 300 s")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in ("model", "ema"):
        assert all(torch.equal(r0[key][k], r1[key][k]) for k in r0[key])
    torch.manual_seed(3)
    init = SynDiff(get_preset("tiny")).state_dict()
    assert any(not torch.equal(init[k], r0["model"][k]) for k in init)
    state = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert state["trainer"]["step"] == 2 and len(state["rng"]) == 2
    # each rank drew its own tiles
    assert state["rng"][0]["samplers"]["L"] != state["rng"][1]["samplers"]["L"]


def test_cli_train_and_translate_end_to_end(domains, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["translation", "train", "--source", str(domains[0]), "--target", str(domains[1]), "--out", str(out),
            "--preset", "tiny", "--steps", "2", "--checkpoint-every", "1", "--eval-every", "2", "--batch-size", "1",
            "--device", "cpu", "--seed", "1", "--no-progress", "--source-name", "TEM", "--target-name", "SEM"]
    assert cli_main(args) == 0
    assert (out / "best").is_dir() and (out / "checkpoint.pt").is_file()
    assert cli_main(args) == 2  # an existing run without --resume
    assert "--resume" in capsys.readouterr().err
    assert cli_main(["translation", "train", "--out", str(out), "--resume", "--steps", "3", "--no-progress",
                     "--device", "cpu"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["trainer"]["step"] == 3
    translated = tmp_path / "translated"
    assert cli_main(["translate", "--model", str(out), "--direction", "L2U", "-i", str(domains[0] / "tem0.png"),
                     "-o", str(translated), "--device", "cpu", "--no-progress"]) == 0
    img = np.asarray(Image.open(translated / "tem0_L2U.png"))
    assert img.shape == (96, 112) and img.dtype == np.uint8
    assert float((translated / "pixel_size_in_micrometer.txt").read_text()) == pytest.approx(0.025)
    assert cli_main(["translate", "--model", str(out), "--direction", "L2U", "-i", str(domains[0] / "tem0.png"),
                     "-o", str(translated), "--device", "cpu", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_real_training_reduces_cycle_loss(tmp_path):
    """A short real run (tiny preset, TEM tiles vs SEM images, labels never read): the cycle L1 falls. Bundled data:
    five tiles of the labeled TEM set, the sem-dev subject shipped with the tests and the SEM demo image."""
    from ads_synth.data.bundled import labeled_set
    from tiny_models import TEST_SEM, copy_labeled_subset

    tem = copy_labeled_subset(labeled_set("TEM"), tmp_path / "tem-5")
    demo = Path(__file__).resolve().parents[1] / "docs" / "demo"
    opts = TrainOptions(source=[str(tem)], target=[str(TEST_SEM), str(demo)],
                        out=str(tmp_path / "real"), preset="tiny", scale=5.0, steps=150, checkpoint_every=150,
                        eval_every=0, seed=0, batch_size=4, device="cpu", progress=False)
    train(opts)
    rows = _rows(tmp_path / "real" / "metrics.csv")
    cycle = np.array([float(r["cycle_L"]) + float(r["cycle_U"]) for r in rows])
    first, last = cycle[:25].mean(), cycle[-25:].mean()
    assert last < 0.8 * first, (first, last)


def test_calibrated_schedule_fits_the_time_left():
    # 100 s limit, 10 s spent in 10 steps of 1 s: 85 more steps (5 % margin); intervals scale like the steps
    s = trainer_mod.calibrated_schedule(10, 10.0, 1.0, 100.0, 50, eval_every=10, checkpoint_every=5)
    assert (s["steps"], s["eval_every"], s["checkpoint_every"]) == (95, 19, 10)
    # a cost model far off is not followed beyond CALIBRATION_RANGE; a spent budget ends at the next step
    assert trainer_mod.calibrated_schedule(10, 10.0, 0.001, 100.0, 50, 10, 5)["steps"] == 500
    assert trainer_mod.calibrated_schedule(10, 500.0, 1.0, 100.0, 50, 10, 5)["steps"] == 13
    assert trainer_mod.calibrated_schedule(40, 500.0, 1.0, 100.0, 50, 0, 5)["steps"] == 41
    assert trainer_mod.calibrated_schedule(40, 500.0, 1.0, 100.0, 50, 0, 5)["eval_every"] == 0


def test_time_limit_sets_the_steps_and_a_resume_keeps_them(domains, tmp_path, monkeypatch):
    """Each step costs 1 s of a fake clock: a 4-step plan with 8.5 s calibrates (after steps 1-3) to 8 steps,
    scores and checkpoints every 4; killed at step 5 and resumed on a clock 10x faster, it keeps 8 steps and
    ends where the uninterrupted run ends."""
    clock = {"now": 0.0, "cost": 1.0}
    step = SynDiffTrainer.train_step

    def timed_step(self, real_l, real_u):
        clock["now"] += clock["cost"]
        return step(self, real_l, real_u)

    monkeypatch.setattr(trainer_mod, "_clock", lambda: clock["now"])
    monkeypatch.setattr(trainer_mod, "CALIBRATION_STEPS", 2)
    monkeypatch.setattr(SynDiffTrainer, "train_step", timed_step)
    kw = dict(steps=4, time_limit_s=8.5)
    full = train(_opts(domains, tmp_path / "full", **kw))
    assert full.step == 8 and full.total_steps == 8
    assert load_checkpoint(tmp_path / "full" / "checkpoint.pt")["schedule"]["steps"] == 8
    assert [r["step"] for r in _rows(tmp_path / "full" / "scores.csv")] == ["0", "2", "4", "8"]

    out = tmp_path / "killed"
    clock["now"] = 0.0
    train(_opts(domains, out, **kw), _stop_after=5)
    assert load_checkpoint(out / "checkpoint.pt")["trainer"]["step"] == 4
    clock["cost"] = 0.1  # a faster machine now: the stored schedule still wins
    resumed = train(_opts(domains, out, **kw), resume=True)
    assert resumed.step == 8 and resumed.total_steps == 8
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    lr_full = [r["lr_g"] for r in _rows(tmp_path / "full" / "metrics.csv")]
    assert [r["lr_g"] for r in _rows(out / "metrics.csv")] == lr_full

    fixed = train(_opts(domains, tmp_path / "fixed", steps=4))  # no time limit: the steps as given
    assert fixed.step == 4
