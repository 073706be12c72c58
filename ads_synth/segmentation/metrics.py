"""Pixel-wise Dice, sensitivity and specificity of axon and myelin, with AxonDeepSeg's implementation.

The counts and formulas are AxonDeepSeg's ``testing.segmentation_scoring.Metrics_calculator``
(``pw_dice = 2TP / (2TP + FP + FN)``, ``pw_sensitivity = TP / (TP + FN)``, ``pw_specificity = TN / (TN + FP)``),
applied per class to the binary masks of a label map (0 background, 1 myelin, 2 axon). Undefined ratios (an empty
truth and an empty prediction for Dice, no positives for sensitivity, no negatives for specificity) are NaN, as
AxonDeepSeg's ``numpy.true_divide`` gives them; the evaluation's means skip NaN.
"""

from __future__ import annotations

import warnings

import numpy as np

from ads_synth.data.datasets import AXON, MYELIN

#: Classes scored, in table order.
SCORED_CLASSES = {"axon": AXON, "myelin": MYELIN}
#: Metrics, in table order.
METRICS = ("dice", "sensitivity", "specificity")


def binary_metrics(prediction, truth) -> dict:
    """Dice, sensitivity, specificity of a binary ``prediction`` against a binary ``truth`` (same shape)."""
    from AxonDeepSeg.testing.segmentation_scoring import Metrics_calculator

    prediction = np.asarray(prediction, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape")
    calc = Metrics_calculator(prediction.astype(np.uint8), truth.astype(np.uint8))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        values = (calc.pw_dice(), calc.pw_sensitivity(), calc.pw_specificity())
    return {name: float(v) for name, v in zip(METRICS, values)}


def label_map_metrics(prediction, truth) -> dict:
    """``{"axon": {...}, "myelin": {...}}`` of :func:`binary_metrics` for two label maps (0 / 1 / 2)."""
    prediction = np.asarray(prediction)
    truth = np.asarray(truth)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape")
    return {name: binary_metrics(prediction == value, truth == value) for name, value in SCORED_CLASSES.items()}
