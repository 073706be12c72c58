"""Sharded inference: the images of one pseudo-label run shared among processes (torchrun's environment)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ads_synth.sharding import Share, cpu_threads, process_share, shard

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "docs" / "demo" / "sub-rat8_sample-V915_SEM.png"
OUTPUTS = ("_seg-axon.png", "_seg-myelin.png", "_seg-axonmyelin.png", "_seg-confidence.png")


def test_share_from_torchrun_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "OMP_NUM_THREADS", "ADS_SYNTH_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert process_share() == Share() and shard([1, 2, 3]) == [1, 2, 3]
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    share = process_share()
    assert share == Share(1, 3, 1, 3)
    assert shard(list(range(7)), share) == [1, 4]
    # every item exactly once over the ranks
    assert sorted(i for r in range(3) for i in shard(range(7), Share(r, 3, r, 3))) == list(range(7))
    # threads: the cores this process may use, shared among the local processes, minus the busy ones
    monkeypatch.setattr("ads_synth.sharding.available_cores", lambda: 8)
    assert cpu_threads(Share(0, 2, 0, 2), load=1.0) == 4  # the other local rank is not a competitor
    assert cpu_threads(Share(), load=0.0) == 8
    assert cpu_threads(Share(), load=6.2) == 2
    assert cpu_threads(Share(), load=30.0) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(Share(), load=30.0) == 3


def test_busy_cores_counts_what_runs_now_not_the_minute_before(tmp_path, monkeypatch):
    """The busy cores are the runnable processes now (this one excluded), the median of a few reads: a run that
    has just finished (a high 1-minute load average) costs the next one no thread and a transient spike is
    ignored; an unreadable file gives None (the caller falls back to the load average)."""
    from ads_synth import sharding

    fake = tmp_path / "loadavg"
    reads = iter(["7.90 3.00 1.00 1/77 100", "7.90 3.00 1.00 9/77 101", "7.90 3.00 1.00 1/77 102"])

    real_open = open

    def fake_open(path, *a, **k):
        if str(path) == str(fake):
            fake.write_text(next(reads))
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", fake_open)
    assert sharding.busy_cores(samples=3, interval=0, path=str(fake)) == 0
    monkeypatch.undo()
    assert sharding.busy_cores(path=str(tmp_path / "missing")) is None
    (tmp_path / "bad").write_text("garbage")
    assert sharding.busy_cores(path=str(tmp_path / "bad")) is None
    # this machine's own file reads as a count (other workers of the suite may be running: not asserted)
    live = sharding.busy_cores()
    assert live is None or live >= 0
    # cpu_threads reads the busy cores now, and the load average only without them
    for name in ("OMP_NUM_THREADS", sharding.THREADS_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sharding, "available_cores", lambda: 8)
    monkeypatch.setattr(sharding.os, "getloadavg", lambda: (7.9, 3.0, 1.0))
    monkeypatch.setattr(sharding, "busy_cores", lambda: 0.0)
    assert sharding.cpu_threads(sharding.Share()) == 8
    monkeypatch.setattr(sharding, "busy_cores", lambda: None)
    assert sharding.cpu_threads(sharding.Share()) == 1


def _images(folder):
    folder.mkdir(parents=True)
    full = np.asarray(Image.open(DEMO).convert("L"))
    for i, (y, x) in enumerate(((0, 0), (300, 420), (600, 100))):
        Image.fromarray(full[y:y + 200, x:x + 230]).save(folder / f"img{i}.png")
    (folder / "pixel_size_in_micrometer.txt").write_text("0.07\n")
    return sorted(folder.glob("img*.png"))


def test_two_ranks_share_the_images_and_write_what_one_process_writes(tmp_path, monkeypatch):
    """The `axondeepseg -t SEM --pseudo tutor -i FOLDER` action under RANK / WORLD_SIZE = 2 (torchrun's
    environment): rank r writes images r, r + 2, ... and nothing else, with the bytes a single-process run writes."""
    from ads_synth.integration.pseudo_action import run_pseudo_labels

    single, shared = _images(tmp_path / "single"), _images(tmp_path / "shared")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)

    def written(image):
        return [image.with_name(image.stem + suffix).is_file() for suffix in OUTPUTS]

    run_pseudo_labels([single[0].parent], target="SEM", strategy="tutor", progress=False)
    records = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        records[rank] = run_pseudo_labels([shared[0].parent], target="SEM", strategy="tutor", progress=False)
        if rank == 0:  # rank 0: images 0 and 2, all their files, and nothing of image 1
            assert [all(written(i)) for i in shared] == [True, False, True] and not any(written(shared[1]))
    assert [r["name"] for r in records[0]] == ["img0", "img2"] and [r["name"] for r in records[1]] == ["img1"]
    for a, b in zip(single, shared):
        for suffix in OUTPUTS:
            one, two = a.with_name(a.stem + suffix), b.with_name(b.stem + suffix)
            assert one.is_file() and two.is_file(), two
            assert one.read_bytes() == two.read_bytes(), two


def test_two_processes_at_once_write_each_image_once(tmp_path):
    """Two real processes (rank 0 and 1 of WORLD_SIZE 2) at the same time through the `axondeepseg` command:
    both succeed (neither finds the other's outputs or locks) and every image gets its files."""
    shared = _images(tmp_path / "shared")[:2]
    (tmp_path / "shared" / "img2.png").unlink()
    exe = Path(sys.executable).with_name("axondeepseg")
    base = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    runs = [subprocess.Popen([str(exe), "-t", "SEM", "--pseudo", "tutor", "-i", str(shared[0].parent)],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=dict(base, RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), LOCAL_WORLD_SIZE="2"))
            for r in (0, 1)]
    deadline = time.monotonic() + 300  # a hang fails the test instead of blocking CI
    for run in runs:
        try:
            out, _ = run.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for r in runs:
                r.kill()
            pytest.fail("the two sharded runs did not finish within 300 s")
        assert run.returncode == 0, out.decode(errors="replace")[-2000:]
    for image in shared:
        assert all(image.with_name(image.stem + suffix).is_file() for suffix in OUTPUTS), image
