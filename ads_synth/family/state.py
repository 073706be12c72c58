"""The state of a family run: ``OUT/family_state.json``, written atomically after every phase.

It holds the configuration fingerprint (what makes the result: data checksums and the options that change it,
never absolute paths) and, per finished phase, its result (JSON) and wall time. A rerun of the same command skips
the finished phases; a folder made by another configuration is refused unless ``--resume`` (continue with the
phases already done) or ``--overwrite`` (start again).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from ads_synth.atomic import atomic_write_text
from ads_synth.checksums import sha256_file
from ads_synth.errors import InputError

STATE_FILE = "family_state.json"
FORMAT = 1
#: What ``--overwrite`` removes in OUT (everything the command writes there; nothing else is touched).
OWNED = (STATE_FILE, "work", "family", "report.md", "figures")


def data_fingerprint(samples) -> dict:
    """Image names, count and checksums of ``samples`` (labels included when a sample has them)."""
    items = []
    for s in samples:
        files = [Path(s.image)] + [Path(p) for _, p in sorted(s.labels.items())]
        items.append({"name": s.name, "sha256": [sha256_file(p) for p in files], "pixel_size": s.pixel_size})
    items.sort(key=lambda d: d["name"])
    digest = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()
    return {"n_images": len(items), "names": [d["name"] for d in items], "sha256": digest}


class FamilyState:
    """The run folder's state (see the module docstring)."""

    def __init__(self, out, config, data):
        self.out = Path(out)
        self.path = self.out / STATE_FILE
        self.data = data
        self.config = config

    @classmethod
    def open(cls, out, config, *, resume=False, overwrite=False, warn=None, state_file=STATE_FILE, owned=OWNED,
             what="family run") -> "FamilyState":
        """Open (or start) the state of ``out`` for ``config``.

        InputError when ``out`` holds a run of another configuration and neither ``resume`` nor ``overwrite`` is
        given, or holds files this command did not write (``out`` must then be another folder). ``state_file``,
        ``owned`` and ``what`` let another command (``ads-synth refine``) keep its own state the same way.
        """
        out = Path(out)
        path = out / state_file
        if overwrite and path.is_file():
            for name in owned:
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise InputError(f"{path}: unreadable state file (a run of another version?); use --overwrite "
                                 "to start again in this folder.") from None
            if data.get("config") != config:
                differ = sorted(k for k in set(config) | set(data.get("config", {}))
                                if config.get(k) != data.get("config", {}).get(k))
                if not resume:
                    raise InputError(f"{out}: holds a {what} of another configuration (differs in "
                                     f"{', '.join(differ)}); use --resume to continue it, --overwrite to start "
                                     "again, or another -o folder.")
                if warn:
                    warn(f"resuming {out} with changed options ({', '.join(differ)}); finished phases are kept.")
                data["config"] = config
            state = cls(out, config, data)
            state.path = path
            return state
        if out.exists() and any(out.iterdir()):
            raise InputError(f"{out}: exists and is not empty (no {state_file}); choose a new or empty -o folder.")
        out.mkdir(parents=True, exist_ok=True)
        state = cls(out, config, {"format": FORMAT, "config": config, "phases": {}, "started": time.time()})
        state.path = path
        state.save()
        return state

    def save(self):
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True, default=str))

    def done(self, name) -> bool:
        return bool(self.data["phases"].get(name, {}).get("done"))

    def result(self, name):
        return self.data["phases"].get(name, {}).get("result")

    def seconds(self, name) -> float:
        return float(self.data["phases"].get(name, {}).get("seconds", 0.0))

    def record(self, name, result, seconds):
        entry = self.data["phases"].setdefault(name, {})
        entry.update({"done": True, "result": result, "seconds": entry.get("seconds", 0.0) + seconds})
        self.save()

    def add_time(self, name, seconds):
        """Time spent in an unfinished phase (kept across kills, for the report)."""
        entry = self.data["phases"].setdefault(name, {})
        entry["seconds"] = entry.get("seconds", 0.0) + seconds
        self.save()

    def set(self, key, value):
        self.data[key] = value
        self.save()

    def get(self, key, default=None):
        return self.data.get(key, default)


def _fmt(seconds) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class PhaseRunner:
    """Runs the phases in order, one line each (name, elapsed, estimated remaining); quiet when ``verbose=0``."""

    def __init__(self, state, names, estimates, verbose=1, stream=None):
        self.state = state
        self.names = list(names)
        self.estimates = dict(estimates)
        self.verbose = verbose
        self.stream = stream or sys.stderr
        self.start = time.time()

    def say(self, text):
        if self.verbose:
            print(f"ads-synth family: {text}", file=self.stream, flush=True)

    def _remaining(self, after):
        return sum(self.estimates.get(n, 0.0) for n in self.names[self.names.index(after) + 1:]
                   if not self.state.done(n))

    def run(self, name, fn):
        """Run phase ``name`` (``fn()`` returns its JSON result) unless the state has it; return the result."""
        k = self.names.index(name) + 1
        head = f"[{k}/{len(self.names)}] {name}"
        if self.state.done(name):
            self.say(f"{head}: done earlier ({_fmt(self.state.seconds(name))}), skipped")
            return self.state.result(name)
        estimate = self.estimates.get(name, 0.0)
        self.say(f"{head}: started (estimated {_fmt(estimate)}; about {_fmt(estimate + self._remaining(name))} "
                 f"left in all)")
        t0 = time.time()
        try:
            result = fn()
        except BaseException:
            self.state.add_time(name, time.time() - t0)
            raise
        seconds = time.time() - t0
        self.state.record(name, result, seconds)
        self.say(f"{head}: done in {_fmt(seconds)} (elapsed {_fmt(time.time() - self.start)}; about "
                 f"{_fmt(self._remaining(name))} left)")
        return result
