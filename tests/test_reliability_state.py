"""Losing or corrupting work (issue 15, items 1-8): killed writes, NaN training, damaged weights, output sets,
concurrent runs, interrupted model swaps, report overwrites and fsync.

Kills are simulated by making ``torch.save`` / ``os.replace`` raise part-way (a ``Killed`` BaseException, which no
``except Exception`` catches), not by real signals.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ads_synth.errors import InputError, NonFiniteError


class Killed(BaseException):
    """Stands for SIGKILL in the middle of a system call."""


def _dead_pid():
    """The pid of a process that has exited (not reused within a test)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _one_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# ------------------------------------------------------------------------------------------------------------------
# 8. fsync before and after the rename
# ------------------------------------------------------------------------------------------------------------------
def _record_fsync_and_replace(monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        events.append(("replace", str(src), str(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    from ads_synth.atomic import atomic_write_text
    from ads_synth.data.writers import write_ads_segmentation

    events = _record_fsync_and_replace(monkeypatch)
    target = atomic_write_text(tmp_path / "card.yaml", "x: 1\n")
    assert target.read_text() == "x: 1\n"
    (rename,) = [e for e in events if e[0] == "replace"]
    i = events.index(rename)
    assert ("fsync", rename[1]) in events[:i]  # the temporary file's data is on disk before it gets the name
    assert ("fsync", str(tmp_path)) in events[i + 1:]  # and the rename itself after it

    events.clear()
    write_ads_segmentation(np.zeros((9, 9), np.uint8), tmp_path / "img.png")
    renames = [e for e in events if e[0] == "replace"]
    assert len(renames) == 3
    first = events.index(renames[0])
    for _, tmp, _ in renames:
        assert ("fsync", tmp) in events[:first]
    assert ("fsync", str(tmp_path)) in events[events.index(renames[-1]) + 1:]


# ------------------------------------------------------------------------------------------------------------------
# 4. an image's outputs are one set; stale temporary files are removed
# ------------------------------------------------------------------------------------------------------------------
def _write_set(tmp_path, overwrite=False, value=2):
    """An image's outputs through pseudo-labelling's writer: 3 masks, the confidence map and its TIFF."""
    from ads_synth.segmentation.pseudo import OutputOptions, _write, output_paths

    image = tmp_path / "img.png"
    paths = output_paths(image, None, [], OutputOptions(confidence_tiff=True))
    label = np.zeros((12, 12), np.uint8)
    label[3:7, 3:7] = value
    return _write(label, np.full((12, 12), 0.5, np.float32), None, image, paths, [], 0.1, overwrite), paths


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fail", ["rename", "disk_full"])
def test_an_images_outputs_are_written_all_or_nothing(tmp_path, monkeypatch, fail):
    real_replace = os.replace
    calls = []
    if fail == "rename":
        def replace(src, dst, *args, **kwargs):
            calls.append(dst)
            if len(calls) == 3:
                raise OSError(28, "No space left on device")
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)
    else:  # the 4th file (the confidence map) does not fit on the disk
        from ads_synth.data import writers

        real_save = writers._save_png

        def save(arr, tmp):
            calls.append(tmp)
            if len(calls) == 4:
                raise OSError(28, "No space left on device")
            return real_save(arr, tmp)

        monkeypatch.setattr(writers, "_save_png", save)
    with pytest.raises(OSError, match="No space"):
        _write_set(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no partial set, no temporary file


def test_a_failed_overwrite_leaves_the_previous_set_whole(tmp_path, monkeypatch):
    _write_set(tmp_path, value=2)
    before = _snapshot(tmp_path)
    real_replace = os.replace
    calls = []

    def replace(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 4:  # killed after three of the five files were replaced
            raise Killed()
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Killed):
        _write_set(tmp_path, overwrite=True, value=1)
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before  # the three files already replaced were restored


def test_stale_temporary_files_of_killed_runs_are_removed_at_the_next_run(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    stale = [tmp_path / f".img_seg-axon.png.{dead}.0badf00d.tmp", tmp_path / f".img_seg-confidence.png.{dead}.1.tmp"]
    kept = [tmp_path / f".img_seg-myelin.png.{alive}.cafe.tmp",  # a live process is writing it
            tmp_path / f".other.png.{dead}.beef.tmp"]  # not a file of this image's set
    for p in stale + kept:
        p.write_bytes(b"partial")
    _write_set(tmp_path)
    left = {p.name for p in tmp_path.iterdir() if p.name.startswith(".")}
    assert left == {p.name for p in kept}


# ------------------------------------------------------------------------------------------------------------------
# 5. concurrent runs on one image
# ------------------------------------------------------------------------------------------------------------------
class _SlowModel:
    """Stands in for a SegmentationModel: one fold, predicts 'axon everywhere' after ``gate`` opens."""

    folds = [0]
    n_folds = 1
    pixel_size = None

    def __init__(self, gate=None, started=None):
        self.gate, self.started = gate, started

    def predict(self, image, per_fold=False, progress=None):
        from ads_synth.segmentation.confidence import EnsembleStats

        if self.started is not None:
            self.started.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        probs = np.zeros((3,) + image.shape, np.float32)
        probs[2] = 1.0
        stats = EnsembleStats.empty(3, image.shape)
        stats.add(probs)
        return stats, None


def _job(image):
    from ads_synth.data.datasets import find_samples
    from ads_synth.segmentation.pseudo import _Job

    return _Job(find_samples(image)[0], 0.1, {"tutor": None})


def _image(folder, name="img.png"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(folder / name)
    (folder / "pixel_size_in_micrometer.txt").write_text("0.1\n")
    return folder / name


def test_a_second_concurrent_run_on_one_image_stops_with_one_line(tmp_path):
    from ads_synth.segmentation.pseudo import OutputOptions, _run_jobs

    image = _image(tmp_path)
    gate, started, result = threading.Event(), threading.Event(), {}

    def first():
        try:
            result["first"] = _run_jobs([_job(image)], {"tutor": _SlowModel(gate, started)}, None,
                                        OutputOptions(), progress=False)
        except BaseException as err:  # noqa: BLE001
            result["first"] = err

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(30)
        with pytest.raises(InputError, match="another ads-synth run") as err:
            _run_jobs([_job(image)], {"tutor": _SlowModel()}, None, OutputOptions(overwrite=True), progress=False)
        assert "\n" not in str(err.value) and str(os.getpid()) in str(err.value)
    finally:
        gate.set()
        thread.join(30)
    assert isinstance(result["first"], list)  # the first run finished its set alone
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["img.png", "img_seg-axon.png", "img_seg-axonmyelin.png", "img_seg-confidence.png",
                     "img_seg-myelin.png", "pixel_size_in_micrometer.txt"]  # and no lock file is left


def test_the_lock_file_of_a_killed_run_does_not_block(tmp_path, capsys):
    from ads_synth.locking import lock_path
    from ads_synth.segmentation.pseudo import OutputOptions, _run_jobs

    image = _image(tmp_path)
    lock = lock_path(tmp_path, "img")
    lock.write_text(f"{_dead_pid()}\n")
    records = _run_jobs([_job(image)], {"tutor": _SlowModel()}, None, OutputOptions(), progress=False)
    assert len(records) == 1 and not lock.exists()
    assert "may be incomplete" in _one_line(capsys.readouterr().err)


def test_a_lock_held_by_another_process_blocks_with_its_pid(tmp_path):
    from ads_synth.locking import OutputLock

    code = ("import sys, time; from ads_synth.locking import OutputLock\n"
            "lock = OutputLock(sys.argv[1], 'img').acquire(); print('held', flush=True); time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"pid {proc.pid}"):
            OutputLock(tmp_path, "img").acquire()
    finally:
        proc.kill()
        proc.wait()
    with OutputLock(tmp_path, "img"):  # the kernel released the dead holder's lock
        pass


# ------------------------------------------------------------------------------------------------------------------
# 3. damaged weights: card checksums on load, non-finite outputs refused
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("ADS_SYNTH_CACHE", str(folder))  # ads_synth.integrity.CACHE_ENV
    return folder


def _flip_block(path, offset=8, size=64):
    data = bytearray(Path(path).read_bytes())
    for i in range(offset, min(offset + size, len(data))):
        data[i] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def test_pseudo_labelling_refuses_a_card_whose_weights_were_damaged(user_cards, cache_dir, tmp_path, monkeypatch):
    from test_model_cards import make_fake_card

    from ads_synth.integration import pseudo_action
    from ads_synth.segmentation import pseudo

    card = make_fake_card(user_cards)
    image = _image(tmp_path / "images")
    calls = []
    monkeypatch.setattr(pseudo, "pseudo_label_images", lambda *a, **k: calls.append(k) or [])
    pseudo_action.run_pseudo_labels([image], card=card.name)  # intact: runs
    assert len(calls) == 1
    weights = card.translation / "weights.pt"
    size = weights.stat().st_size
    _flip_block(weights)
    assert weights.stat().st_size == size  # same size, other content
    with pytest.raises(InputError, match="checksum mismatch") as err:
        pseudo_action.run_pseudo_labels([image], card=card.name)
    assert "weights.pt" in str(err.value) and "\n" not in str(err.value)
    assert len(calls) == 1  # nothing ran


def test_card_verification_is_cached_by_size_and_mtime(user_cards, cache_dir, monkeypatch):
    from test_model_cards import make_fake_card

    from ads_synth import checksums
    from ads_synth.integrity import cache_file, require_verified_card

    card = make_fake_card(user_cards)
    hashed = []

    real = checksums.sha256_file
    monkeypatch.setattr(checksums, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    require_verified_card(card)
    assert len(hashed) == len(card.files) and cache_file().is_file()
    hashed.clear()
    require_verified_card(card)
    assert hashed == []  # cached: nothing hashed again
    weights = card.translation / "weights.pt"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    require_verified_card(card)
    assert hashed == ["weights.pt"]  # only the file whose mtime changed


def test_translation_refuses_non_finite_network_outputs():
    from ads_synth.translation.config import get_preset
    from ads_synth.translation.model import SynDiff
    from ads_synth.translation.translate import translate_image

    torch.manual_seed(0)
    model = SynDiff(get_preset("tiny"))
    model._extra = {"pixel_size": {"L": 0.1, "U": 0.1}}
    image = np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)
    out, _ = translate_image(model, image, 0.1, "L2U", progress=False)
    assert out.std() > 0
    with torch.no_grad():
        next(model.gen_diff["L2U"].parameters()).fill_(float("nan"))  # damaged weights
    with pytest.raises(NonFiniteError, match="non-finite") as err:
        translate_image(model, image, 0.1, "L2U", progress=False)
    assert isinstance(err.value, InputError) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------------------------
# 7. ads-synth evaluate never overwrites its reports without --overwrite
# ------------------------------------------------------------------------------------------------------------------
def _evaluation_data(tmp_path):
    from ads_synth.data.writers import write_ads_segmentation

    truth = tmp_path / "truth"
    image = _image(truth)
    label = np.zeros((32, 32), np.uint8)
    label[8:20, 8:20] = 1
    label[11:17, 11:17] = 2
    Image.fromarray(np.where(label == 2, 255, 0).astype(np.uint8)).save(truth / "img_seg-axon-manual.png")
    Image.fromarray(np.where(label == 1, 255, 0).astype(np.uint8)).save(truth / "img_seg-myelin-manual.png")
    write_ads_segmentation(label, image, tmp_path / "pred" / "tutor")
    return tmp_path / "pred", truth


def test_evaluate_does_not_overwrite_reports_without_overwrite(tmp_path, capsys):
    from ads_synth.cli import main

    pred, truth = _evaluation_data(tmp_path)
    out = tmp_path / "reports"
    args = ["evaluate", "--pred", str(pred), "--truth", str(truth), "-o", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    (out / "evaluation_table.md").write_text("my notes")
    before = _snapshot(out)
    assert main(args) == 2
    assert "--overwrite" in _one_line(capsys.readouterr().err)
    assert _snapshot(out) == before
    assert main(args + ["--overwrite"]) == 0
    assert (out / "evaluation_table.md").read_text().startswith("| Strategy |")


def test_a_dangling_symlink_at_a_report_path_counts_as_existing(tmp_path, capsys):
    from ads_synth.cli import main

    pred, truth = _evaluation_data(tmp_path)
    out = tmp_path / "reports"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere.csv"
    (out / "evaluation_table.csv").symlink_to(elsewhere)
    args = ["evaluate", "--pred", str(pred), "--truth", str(truth), "-o", str(out)]
    assert main(args) == 2
    assert "evaluation_table.csv" in _one_line(capsys.readouterr().err)
    assert not elsewhere.exists() and sorted(p.name for p in out.iterdir()) == ["evaluation_table.csv"]
    assert main(args + ["--overwrite"]) == 0
    assert not elsewhere.exists()  # the link was replaced, not written through
    assert not (out / "evaluation_table.csv").is_symlink()


# ------------------------------------------------------------------------------------------------------------------
# 6. best/ and last/ of a translation run
# ------------------------------------------------------------------------------------------------------------------
def _tiny_model(seed):
    from ads_synth.translation.config import get_preset
    from ads_synth.translation.model import SynDiff

    torch.manual_seed(seed)
    return SynDiff(get_preset("tiny"))


def _first_weight(model):
    return next(model.gen_diff["L2U"].parameters()).detach().float().clone()


def test_an_interrupted_swap_of_best_falls_back_to_best_old_not_last(tmp_path, monkeypatch, capsys):
    from ads_synth.translation import trainer as trainer_mod
    from ads_synth.translation.translate import load_translation_model

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"format": trainer_mod.RUN_FORMAT}))
    extra = {"pixel_size": {"L": 0.02, "U": 0.1}}
    best, last, newer = _tiny_model(1), _tiny_model(2), _tiny_model(3)
    trainer_mod.save_model_dir(best, run / "best", extra)
    trainer_mod.save_model_dir(last, run / "last", extra)
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(src).name == "best.tmp" and Path(dst).name == "best":  # killed between "best -> best.old" and this
            raise Killed()
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Killed):
        trainer_mod.save_model_dir(newer, run / "best", extra)
    monkeypatch.undo()
    assert not (run / "best").exists() and (run / "best.old").is_dir()
    capsys.readouterr()
    model = load_translation_model(run, device="cpu")
    want = _first_weight(best).half().float()
    assert torch.equal(_first_weight(model), want)  # the previous best, not last/
    assert "best.old" in _one_line(capsys.readouterr().err)
    # the next save (or a resumed run) restores best/ first
    assert trainer_mod.recover_model_dir(run / "best")
    assert torch.equal(_first_weight(load_translation_model(run, device="cpu")), want)
    assert capsys.readouterr().err == ""


def test_a_run_without_best_uses_last_with_a_warning(tmp_path, capsys):
    from ads_synth.translation import trainer as trainer_mod
    from ads_synth.translation.translate import load_translation_model

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"format": trainer_mod.RUN_FORMAT}))
    trainer_mod.save_model_dir(_tiny_model(2), run / "last", {"pixel_size": {"L": 0.02, "U": 0.1}})
    load_translation_model(run, device="cpu")
    assert "last/" in _one_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------------------------------------
# 2. translation training stops at the first non-finite loss
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    from test_translation_training import make_domain

    root = tmp_path_factory.mktemp("domains")
    return make_domain(root / "L", "tem", pixel_size=0.025, seed=1), make_domain(root / "U", "sem", seed=2)


def _train_args(domains, out, *extra):
    return ["translation", "train", "--source", str(domains[0]), "--target", str(domains[1]), "--out", str(out),
            "--preset", "tiny", "--steps", "4", "--checkpoint-every", "2", "--eval-every", "2", "--eval-tiles", "2",
            "--batch-size", "2", "--seed", "3", "--device", "cpu", "--no-progress", *extra]


def _weights_finite(folder):
    state = torch.load(Path(folder) / "weights.pt", map_location="cpu", weights_only=True)
    assert state
    return all(bool(torch.isfinite(v.float()).all()) for v in state.values() if v.is_floating_point())


def test_translation_training_stops_at_the_first_nan_loss_keeping_good_files(domains, tmp_path, monkeypatch,
                                                                             capsys):
    from ads_synth.cli import main
    from ads_synth.translation import trainer as trainer_mod

    real_step = trainer_mod.SynDiffTrainer.train_step

    def step(self, real_l, real_u):
        losses = real_step(self, real_l, real_u)
        if self.step >= 3:  # the learning rate was far too high: weights and losses become NaN
            with torch.no_grad():
                for p in self.model.parameters():
                    p.fill_(float("nan"))
            self.update_ema()
            losses = {k: float("nan") for k in losses}
        return losses

    monkeypatch.setattr(trainer_mod.SynDiffTrainer, "train_step", step)
    out = tmp_path / "run"
    (out).mkdir()
    stale = out / ".checkpoint.pt.ab12cd34.tmp"  # left by a killed run of an older version
    assert main(_train_args(domains, out)) == 2
    line = _one_line(capsys.readouterr().err)
    assert "step 3" in line and "diverged" in line and "step 2" in line
    state = trainer_mod.load_checkpoint(out / "checkpoint.pt")
    assert state["trainer"]["step"] == 2
    assert all(bool(torch.isfinite(v).all()) for v in state["trainer"]["model"].values() if v.is_floating_point())
    for sub in ("best", "last"):
        assert _weights_finite(out / sub)
    assert json.loads((out / "last" / "config.json").read_text())["extra"]["step"] == 2
    steps = [line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2"]
    # stale temporary files of killed runs are removed when a run starts
    stale.write_bytes(b"partial")
    monkeypatch.undo()
    args = _train_args(domains, out, "--resume")
    args[args.index("--steps") + 1] = "3"
    assert main(args) == 0
    assert not stale.exists()
    assert trainer_mod.load_checkpoint(out / "checkpoint.pt")["trainer"]["step"] == 3


# ------------------------------------------------------------------------------------------------------------------
# 1 and 2. nnU-Net: atomic checkpoints, fallback to the previous one, NaN losses (real tiny training)
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from tiny_models import tiny_pipeline

    return tiny_pipeline(tmp_path_factory.getbasetemp() / "tiny_pipeline")


@pytest.fixture
def fresh_fold(pipeline, tmp_path):
    """``(train(epochs) -> final checkpoint, fold folder)``: fold 0 of a copy of the pipeline's L model, untrained."""
    from ads_synth.segmentation.nnunet_env import use_folders
    from ads_synth.segmentation.predict import read_model_info
    from ads_synth.segmentation.trainer import train_fold

    l_model = pipeline.result["models"]["L"]
    copy = tmp_path / "model"
    shutil.copytree(l_model, copy, ignore=shutil.ignore_patterns("fold_*"))
    name = read_model_info(l_model)["nnunet_dataset"]
    folders = use_folders(pipeline.out / "work" / "nnunet")

    def train(epochs):
        return train_fold(folders, name, copy, 0, epochs=epochs, iterations=1, val_iterations=1, device="cpu",
                          progress=False)

    return train, copy / "fold_0"


def _kill_torch_save(monkeypatch, match, epoch):
    """``torch.save`` writes half of the file then the process dies, for checkpoints of ``epoch`` whose path
    contains ``match``."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        if match in str(f) and isinstance(obj, dict) and obj.get("current_epoch") == epoch:
            real(obj, f, *args, **kwargs)
            with open(f, "r+b") as fh:
                fh.truncate(os.path.getsize(f) // 2)
            raise Killed()
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_a_run_killed_while_writing_the_latest_checkpoint_resumes_from_it(fresh_fold, monkeypatch):
    train, fold = fresh_fold
    _kill_torch_save(monkeypatch, "checkpoint_latest", epoch=2)  # the save after epoch 1
    with pytest.raises(Killed):
        train(3)
    monkeypatch.undo()
    latest = torch.load(fold / "checkpoint_latest.pth", map_location="cpu")  # whole: the one of epoch 0
    assert latest["current_epoch"] == 1 and latest["trainer_name"] == "nnUNetTrainer"
    final = torch.load(train(3), map_location="cpu")
    assert final["current_epoch"] == 3
    assert len(final["logging"]["train_losses"]) == 3
    assert sorted(p.name for p in fold.glob("*.pth*")) == ["checkpoint_final.pth"]
    assert not [p for p in fold.iterdir() if p.name.endswith(".tmp")]


def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous_one(fresh_fold, monkeypatch, capsys):
    train, fold = fresh_fold
    _kill_torch_save(monkeypatch, "checkpoint_final", epoch=3)
    with pytest.raises(Killed):
        train(3)
    monkeypatch.undo()
    latest = fold / "checkpoint_latest.pth"
    assert torch.load(fold / "checkpoint_latest.pth.prev", map_location="cpu")["current_epoch"] == 1
    with open(latest, "r+b") as fh:  # torn by a crash of an older version, or a bad disk
        fh.truncate(latest.stat().st_size // 3)
    capsys.readouterr()
    final = torch.load(train(3), map_location="cpu")
    line = _one_line(capsys.readouterr().err)
    assert "checkpoint_latest.pth" in line and "prev" in line and "epoch 1" in line
    assert final["current_epoch"] == 3
    assert sorted(p.name for p in fold.glob("*.pth*")) == ["checkpoint_final.pth"]


def test_nnunet_training_stops_at_the_first_nan_loss_and_never_writes_nan_weights(fresh_fold, monkeypatch):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    train, fold = fresh_fold
    real_step = nnUNetTrainer.train_step

    def step(self, batch):
        out = real_step(self, batch)
        if self.current_epoch >= 1:  # diverged: NaN weights, NaN loss
            with torch.no_grad():
                for p in self.network.parameters():
                    p.fill_(float("nan"))
            out = {"loss": np.array(float("nan"), dtype=np.float32)}
        return out

    monkeypatch.setattr(nnUNetTrainer, "train_step", step)
    with pytest.raises(NonFiniteError, match="epoch 1") as err:
        train(3)
    assert "\n" not in str(err.value) and "last good checkpoint" in str(err.value)
    assert not (fold / "checkpoint_final.pth").exists()
    for path in fold.glob("checkpoint_*.pth"):
        checkpoint = torch.load(path, map_location="cpu")
        assert checkpoint["current_epoch"] == 1
        assert all(bool(torch.isfinite(v).all()) for v in checkpoint["network_weights"].values()
                   if v.is_floating_point())


def test_segmentation_refuses_non_finite_network_outputs(pipeline, tmp_path):
    from ads_synth.segmentation.predict import SegmentationModel

    model_dir = tmp_path / "model"
    shutil.copytree(pipeline.result["models"]["L"], model_dir, ignore=shutil.ignore_patterns("fold_1"))
    checkpoint_path = model_dir / "fold_0" / "checkpoint_final.pth"
    image = np.random.default_rng(0).integers(0, 255, (80, 80), dtype=np.uint8)
    stats, _ = SegmentationModel(model_dir, folds=[0], device="cpu").predict(image)
    assert math.isfinite(float(stats.mean_probabilities().sum()))
    checkpoint = torch.load(checkpoint_path, map_location="cpu")
    first = next(k for k, v in checkpoint["network_weights"].items() if v.is_floating_point())
    checkpoint["network_weights"][first].fill_(float("nan"))
    torch.save(checkpoint, checkpoint_path)
    with pytest.raises(NonFiniteError, match="fold 0") as err:
        SegmentationModel(model_dir, folds=[0], device="cpu").predict(image)
    assert "\n" not in str(err.value)
