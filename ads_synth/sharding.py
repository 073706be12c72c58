"""Sharing one inference run among processes (``torchrun --nproc_per_node=N``), and torch's CPU threads.

Under ``torchrun`` (or any launcher that sets ``RANK`` and ``WORLD_SIZE``, and ``LOCAL_RANK`` /
``LOCAL_WORLD_SIZE`` per machine), every process runs the same command on the same image list; process ``RANK``
takes images ``RANK, RANK + WORLD_SIZE, ...`` (:func:`shard`) and writes only those, so no two processes write one
image (the per-image output locks of :mod:`ads_synth.locking` and the atomic writes guard it anyway). No process
group is needed: inference exchanges nothing. Each process uses its own GPU (``cuda:LOCAL_RANK``,
:func:`shard_device`) or its share of the CPU cores (:func:`cpu_threads`).

Thread count: torch's intra-op pool collapses when another process holds one of its cores (measured 4-9x slower
for two threads than one on a busy 2-core machine), so :func:`cpu_threads` gives
``min(cores this process may use / local processes, cores not already busy)``. The busy cores are the processes
runnable right now (``/proc/loadavg``'s fourth field, the median of a few samples over ~0.1 s, this process
excluded), not the 1-minute load average, which still counts a run that has just finished (two runs in a row on a
quiet machine would otherwise give the second one thread); where ``/proc`` is missing, the load average.
``OMP_NUM_THREADS`` or ``ADS_SYNTH_THREADS`` set by the user win.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass

#: Environment variable fixing torch's thread count for inference (else :func:`cpu_threads` chooses).
THREADS_ENV = "ADS_SYNTH_THREADS"


@dataclass(frozen=True)
class Share:
    """This process's place among the processes of one run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def sharded(self) -> bool:
        return self.world > 1


def _int_env(name, default):
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        return default


def process_share() -> Share:
    """The :class:`Share` torchrun's environment gives (a single process without it)."""
    world = _int_env("WORLD_SIZE", 1)
    if world <= 1 or "RANK" not in os.environ:
        return Share()
    rank = _int_env("RANK", 0)
    local_world = _int_env("LOCAL_WORLD_SIZE", world)
    local_rank = _int_env("LOCAL_RANK", rank % max(1, local_world))
    if not 0 <= rank < world:
        from ads_synth.errors import InputError

        raise InputError(f"RANK={rank} is outside WORLD_SIZE={world}; launch with torchrun --nproc_per_node=N.")
    return Share(rank, world, local_rank, max(1, local_world))


def shard(items, share=None) -> list:
    """The items this process handles: every ``world``-th, from its ``rank`` (all of them for one process)."""
    share = share or process_share()
    items = list(items)
    return items[share.rank::share.world] if share.sharded else items


def shard_device(device, share=None):
    """``cuda:LOCAL_RANK`` (modulo the visible GPUs) for a CUDA ``device`` in a sharded run; else ``device``."""
    import torch

    share = share or process_share()
    device = torch.device(device)
    if not share.sharded or device.type != "cuda":
        return device
    n = max(1, torch.cuda.device_count())
    return torch.device("cuda", share.local_rank % n)


def available_cores() -> int:
    """Cores this process may run on (``sched_getaffinity``; ``os.cpu_count`` where that is missing)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores(samples=7, interval=0.015, path="/proc/loadavg"):
    """Processes other than this one that are runnable now (median over ``samples`` reads of ``path``'s
    ``running/total`` field); None where the file cannot be read."""
    counts = []
    for i in range(samples):
        try:
            with open(path) as fh:
                counts.append(int(fh.read().split()[3].split("/")[0]))
        except (OSError, IndexError, ValueError):
            return None
        if i + 1 < samples:
            time.sleep(interval)
    return max(0.0, statistics.median(counts) - 1)


def cpu_threads(share=None, load=None) -> int:
    """Torch threads for inference: the user's ``ADS_SYNTH_THREADS`` / ``OMP_NUM_THREADS``, else this process's
    share of the cores that are not busy (see the module docstring); at least 1."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = _int_env(name, 0)
        if value > 0:
            return value
    share = share or process_share()
    cores = available_cores()
    mine = max(1, cores // share.local_world)
    if load is None:
        load = busy_cores()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    # the other local processes of this run are counted in the load; they are not competitors
    others = max(0.0, float(load) - (share.local_world - 1))
    free = max(1, cores - int(math.floor(others + 0.5)))
    return max(1, min(mine, free))


def set_cpu_threads(share=None) -> int:
    """Apply :func:`cpu_threads` to torch (intra-op threads); return the count."""
    import torch

    n = cpu_threads(share)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
