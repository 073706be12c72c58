"""The time budget of ``ads-synth family train`` turned into training steps and epochs.

The cost model holds seconds per unit of work for each device kind: on the project's 2-core CPU between what a
quiet machine and a loaded one measured (docs/results.md), and for CUDA conservative estimates. A plan gives each
training phase a share of the budget after the fixed costs (nnU-Net set-up, inference) are set aside. The
trainings do not trust the cost model for their length: each measures its own speed and fits its steps or epochs
into its share (:mod:`ads_synth.calibration`), and the nnU-Net phases get the time the earlier phases saved or
lose what they overran. Every count has a floor so a very small budget still trains something, and explicit
overrides (``--steps``, ``--epochs``) win over the plan (no fitting then).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: Seconds per unit, per device kind. ``translation_step``: one SynDiff step of the compact preset (batch 4,
#: 128 px tiles); ``nnunet_iteration``: one compact nnU-Net iteration (patch 128, batch 4); ``inference_mpx``:
#: one strategy's 2-fold prediction per Mpx of image on the model's grid; ``nnunet_setup``: fingerprint, plan and
#: preprocess one dataset.
COSTS = {
    "cpu": {"translation_step": 1.0, "nnunet_iteration": 0.20, "inference_mpx": 5.0, "nnunet_setup": 35.0},
    "cuda": {"translation_step": 0.12, "nnunet_iteration": 0.05, "inference_mpx": 1.0, "nnunet_setup": 25.0},
}

#: Largest translation training tile (px): the side the translation cost above was measured with (larger tiles
#: cost about the square of their side more per step).
TRANSLATION_TILE = 128

#: Share of the training time left after the fixed costs: translation, the two teachers (tutor, L), the proxy.
#: With the family's preset (``compact-cl``) on TEM -> SEM (batch 1, 128 px tiles) the translation learned the
#: target's contrast between steps 2476 and 3000 of one run (docs/results.md, 2026-12-03): 45% of the 45-minute
#: default bought 2476 steps on this CPU, 60% bought 3292 (run E, contrast learned; 42 min 26 s in all).
SHARES = {"translation": 0.60, "teachers": 0.25, "proxy": 0.15}

#: nnU-Net iterations per epoch in the plan (epochs scale with the budget).
ITERATIONS_PER_EPOCH = 50

#: Floors, so that even a tiny budget trains something.
MIN_STEPS = 20
MIN_EPOCHS = 1

DEFAULT_BUDGET_MINUTES = 45.0


@dataclass
class Plan:
    """Steps and epochs for one family run (recorded in the state file, so a resumed run keeps them).

    Attributes
    ----------
    budget_s : float
        The whole budget in seconds.
    device : str
        ``cpu`` or ``cuda``: the cost model used.
    translation_steps : int
    teacher_epochs, proxy_epochs, iterations : int
        nnU-Net schedule of the teachers and of the proxy (``iterations`` per epoch).
    estimates_s : dict
        Estimated seconds per phase.
    translation_s : float or None
        The translation's share of the budget: its training measures its own seconds per step and sets its
        length to fit (``translation_steps`` is then the cost model's guess); None when ``--steps`` fixed it.
    teacher_fold_s, proxy_fold_s : float or None
        The same for each nnU-Net fold of the teachers and of the proxy (per self-training round): the epochs are
        fitted to it from the measured seconds per epoch; None when ``--epochs`` / ``--proxy-epochs`` fixed them.
    """

    budget_s: float
    device: str
    translation_steps: int
    teacher_epochs: int
    proxy_epochs: int
    iterations: int
    estimates_s: dict
    translation_s: float | None = None
    teacher_fold_s: float | None = None
    proxy_fold_s: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data) -> "Plan":
        return cls(**data)


def device_kind(device) -> str:
    """``cuda`` for a CUDA device (string or torch.device), else ``cpu``."""
    return "cuda" if str(device).startswith("cuda") else "cpu"


def make_plan(budget_minutes, *, device="cpu", n_folds=2, inference_mpx=0.0, steps=None, epochs=None,
              proxy_epochs=None, iterations=None, train_l_model=True) -> Plan:
    """Split ``budget_minutes`` between the phases.

    Parameters
    ----------
    budget_minutes : float
        Wall time for the whole run.
    device : str
        Device the run trains on (``cpu``, ``cuda``, ``cuda:N``).
    n_folds : int
        nnU-Net folds per model.
    inference_mpx : float
        Megapixels predicted in all (every strategy, on the models' grids), set aside first.
    steps, epochs, proxy_epochs, iterations : int, optional
        Explicit counts (they replace the planned ones).
    train_l_model : bool
        The run trains its L model; False when it reuses a shipped one (:mod:`ads_synth.family.l_model`), so the
        teachers' share goes to the tutorship model alone.

    Returns
    -------
    Plan
    """
    kind = device_kind(device)
    cost = COSTS[kind]
    budget = float(budget_minutes) * 60.0
    iterations = int(iterations or ITERATIONS_PER_EPOCH)
    fixed = (2 + int(train_l_model)) * cost["nnunet_setup"] + inference_mpx * cost["inference_mpx"] + 30.0
    train = max(budget - fixed, 0.1 * budget)
    t_steps = int(steps) if steps else max(MIN_STEPS, int(train * SHARES["translation"] / cost["translation_step"]))
    per_epoch = iterations * cost["nnunet_iteration"]
    # the teachers are two models (tutor, L) of n_folds folds each, or the tutor alone when L is reused; the proxy
    # one model of n_folds folds
    n_teachers = 2 if train_l_model else 1
    teacher = int(epochs) if epochs else max(MIN_EPOCHS, int(train * SHARES["teachers"]
                                                              / (n_teachers * n_folds * per_epoch)))
    proxy = int(proxy_epochs) if proxy_epochs else (
        int(epochs) if epochs else max(MIN_EPOCHS, int(train * SHARES["proxy"] / (n_folds * per_epoch))))
    estimates = {
        "scale": 10.0,
        "translation": t_steps * cost["translation_step"],
        "teachers": n_teachers * (cost["nnunet_setup"] + n_folds * teacher * per_epoch),
        "candidates": inference_mpx * cost["inference_mpx"] * 0.6,
        "proxy": cost["nnunet_setup"] + n_folds * proxy * per_epoch + inference_mpx * cost["inference_mpx"] * 0.4,
        "family": 15.0,
        "report": 15.0,
    }
    # the time shares that the trainings fit themselves into (measured speed, not the cost model)
    translation_s = None if steps else max(train * SHARES["translation"], MIN_STEPS * cost["translation_step"])
    teacher_fold_s = None if epochs else max(train * SHARES["teachers"] / (n_teachers * n_folds), per_epoch)
    proxy_fold_s = None if (proxy_epochs or epochs) else max(train * SHARES["proxy"] / n_folds, per_epoch)
    if translation_s is not None:
        estimates["translation"] = translation_s
    if teacher_fold_s is not None:
        estimates["teachers"] = n_teachers * (cost["nnunet_setup"] + n_folds * teacher_fold_s)
    if proxy_fold_s is not None:
        estimates["proxy"] = (cost["nnunet_setup"] + n_folds * proxy_fold_s
                              + inference_mpx * cost["inference_mpx"] * 0.4)
    return Plan(budget_s=budget, device=kind, translation_steps=t_steps, teacher_epochs=teacher,
                proxy_epochs=proxy, iterations=iterations, estimates_s=estimates, translation_s=translation_s,
                teacher_fold_s=teacher_fold_s, proxy_fold_s=proxy_fold_s)
