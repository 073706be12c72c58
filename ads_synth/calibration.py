"""Training lengths fitted to a time limit from the measured speed (translation steps, nnU-Net epochs).

A cost model guesses how long a unit of training (a SynDiff step, an nnU-Net epoch) takes; the machine decides:
a quiet 2-core CPU ran SynDiff steps 4.4x faster than the guess and a loaded one 2x slower. A training run with a
time limit therefore times its first units and sets its length so that it ends on time, within
:data:`CALIBRATION_RANGE` times the planned length (a guess off by more than that is a defect to fix, not to
follow). The run stores the length it chose in its checkpoint, and a resumed run keeps it.
"""

from __future__ import annotations

import math

#: A calibrated length stays within these multiples of the planned one.
CALIBRATION_RANGE = (0.25, 10.0)

#: Share of the time left that the units may fill (the rest: the last scoring, the final checkpoint).
MARGIN = 0.95


def fitted_count(done, seconds_now, seconds_per_unit, time_limit_s, planned):
    """How many units (in all) fit in ``time_limit_s`` at ``seconds_per_unit``.

    Parameters
    ----------
    done : int
        Units done.
    seconds_now : float
        Seconds the training has taken so far.
    seconds_per_unit : float
        Measured cost of one unit.
    time_limit_s : float
        Seconds the whole training may take.
    planned : int
        The cost model's count.

    Returns
    -------
    int
        At least ``done + 1`` (the unit under way ends the run when the time is spent), else within
        :data:`CALIBRATION_RANGE` times ``planned``.
    """
    lo, hi = CALIBRATION_RANGE
    remaining = max(0.0, float(time_limit_s) - float(seconds_now)) * MARGIN
    fit = int(done) + int(remaining / max(float(seconds_per_unit), 1e-6))
    return max(int(min(max(fit, math.ceil(lo * planned)), math.floor(hi * planned))), int(done) + 1)
