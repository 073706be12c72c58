"""Time and peak memory per phase of ``ads-synth family train`` (issue: a new modality in one command).

Runs the command (every argument after ``--`` is passed to ``ads-synth family train``) in a child process, samples
the resident memory of its whole process tree every ``--interval`` seconds, follows which phase runs from the
command's own phase lines, and prints per phase: wall seconds (as recorded in ``OUT/family_state.json``), peak RSS
of the tree, and the plan's estimate; then the machine's load. With ``--summarize OUT`` it prints the times of a run
that already finished (no memory: that needs a live run).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/family_train.py -- --unlabeled ../shared/data/sem-dev --target SEMB \
        -o /tmp/fam-sem
    OMP_NUM_THREADS=1 python benchmarks/family_train.py -- --unlabeled ../shared/data/bf-unlabeled \
        --target BFB -o /tmp/fam-bf
    python benchmarks/family_train.py --summarize /tmp/fam-sem

Set ``ADS_SYNTH_MODELS`` to a scratch folder so the benchmark's family is installed there, not beside the shipped
cards. The result is also written as JSON (``--json``).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

PHASE_LINE = re.compile(r"\[(\d+)/(\d+)\] (\w+): (started|done)")


def tree_rss(pid) -> int:
    """Resident bytes of ``pid`` and all its descendants (0 when it has ended)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def phase_times(out) -> dict:
    """``{phase: seconds}`` and the plan's estimates from ``OUT/family_state.json``."""
    state = json.loads((Path(out) / "family_state.json").read_text(encoding="utf-8"))
    seconds = {name: p.get("seconds") for name, p in state.get("phases", {}).items()}
    estimates = (state.get("plan") or {}).get("estimates_s", {})
    return {"seconds": seconds, "estimates": estimates, "plan": state.get("plan")}


def run(args, interval):
    """Run ``ads-synth family train ARGS``; return ``{phase: peak RSS bytes}``, the exit code and the wall time."""
    cmd = [sys.executable, "-m", "ads_synth.cli", "family", "train", *args]
    start = time.time()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, bufsize=1)
    current = ["start"]
    peaks = {}

    def sample():
        while proc.poll() is None:
            rss = tree_rss(proc.pid)
            peaks[current[0]] = max(peaks.get(current[0], 0), rss)
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in proc.stderr:
        sys.stderr.write(line)
        for match in PHASE_LINE.finditer(line):
            if match.group(4) == "started":
                current[0] = match.group(3)
    code = proc.wait()
    sampler.join(timeout=5)
    return peaks, code, time.time() - start


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summarize", metavar="OUT", help="print the phase times of a finished run in OUT")
    parser.add_argument("--interval", type=float, default=0.5, help="memory sampling interval, seconds")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    opts = parser.parse_args(argv)
    peaks, code, wall = {}, 0, None
    if opts.summarize:
        out = Path(opts.summarize)
    else:
        if not passthrough:
            parser.error("give the family train arguments after --, or --summarize OUT")
        out = Path(passthrough[passthrough.index("-o" if "-o" in passthrough else "--out") + 1])
        peaks, code, wall = run(passthrough, opts.interval)
    times = phase_times(out)
    load = os.getloadavg()
    print(f"\nads-synth family train: {out}  (load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, "
          f"{os.cpu_count()} cores)")
    print(f"{'phase':<12} {'seconds':>9} {'estimate':>9} {'peak RSS MB':>12}")
    from ads_synth.family.train import PHASES

    for name in [n for n in PHASES if n in times["seconds"]]:
        seconds = times["seconds"][name]
        est = times["estimates"].get(name)
        peak = peaks.get(name)
        print(f"{name:<12} {seconds or 0:>9.0f} {est or 0:>9.0f} "
              f"{(peak / 2**20 if peak else float('nan')):>12.0f}")
    total = sum(s or 0 for s in times["seconds"].values())
    print(f"{'total':<12} {total:>9.0f} {sum(times['estimates'].values()):>9.0f} "
          f"{(max(peaks.values()) / 2**20 if peaks else float('nan')):>12.0f}")
    if wall is not None:
        print(f"wall time {wall:.0f} s, exit code {code}")
    if opts.json:
        Path(opts.json).write_text(json.dumps({"out": str(out), "times": times, "peak_rss_bytes": peaks,
                                               "wall_s": wall, "exit_code": code, "load": load}, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
