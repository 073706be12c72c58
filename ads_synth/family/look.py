"""Did the translation learn the unlabeled modality's look? A label-free check of the myelin / axon contrast.

Myelin is darker than the axons it wraps in some modalities (TEM, toluidine-blue bright field) and brighter in
others (SEM, back-scattered). A translation that kept L's contrast (a blurred copy of L, the failure SynDiff's
non-diffusive half fell into with the paper's joint loss, docs/results.md) teaches a tutor nnU-Net the wrong
modality. The check compares two things measured without any U label:

* **U's contrast**: which intensity phase holds the round, enclosed axons in U's images
  (:func:`ads_synth.translation.scale.axon_phase`, the detector behind ``--scale auto``);
* **the translation's contrast**: L images translated into U's look, with L's own labels: the mean intensity in
  L's myelin minus that in L's axons, in standard deviations of the image.

When L and U have the same contrast the check cannot tell a translation from a copy and says so.
"""

from __future__ import annotations

import numpy as np

#: Labeled images translated for the check (the first ones by name: a few seconds on a CPU).
MAX_IMAGES = 4

#: Myelin-minus-axon contrast each phase implies.
SIGN = {"dark": 1.0, "bright": -1.0}

#: Smallest myelin-minus-axon contrast (standard deviations of the image) that counts as the translation showing
#: one: an untrained generator's noise gives about 0.1 of either sign; TEM tiles -1.7, the shipped TEM -> SEM
#: translation +1.6.
MIN_CONTRAST = 0.5


def myelin_contrast(image, label_map) -> float:
    """Mean intensity in myelin (label 1) minus that in axons (label 2), in standard deviations of ``image``."""
    x = np.asarray(image, dtype=np.float64)
    myelin, axon = label_map == 1, label_map == 2
    sd = float(x.std())
    if not myelin.any() or not axon.any() or sd <= 0:
        return float("nan")
    return float((x[myelin].mean() - x[axon].mean()) / sd)


def unlabeled_phase(u_images):
    """The axon phase (``"dark"``, ``"bright"`` or None) most of the U images (any size) show, without labels."""
    from ads_synth.translation.scale import axon_phase, majority_phase

    return majority_phase([axon_phase(im) for im in u_images])


def look_check(translate, labeled, u_phase, max_images=MAX_IMAGES) -> dict:
    """Compare the contrast of translated L with U's.

    Parameters
    ----------
    translate : callable
        ``translate(image, pixel_size) -> image`` on the input's grid: L into U's look.
    labeled : list of ads_synth.data.datasets.Sample
        Labeled L samples with pixel sizes (the first ``max_images`` by name are translated).
    u_phase : str or None
        U's axon phase, :func:`unlabeled_phase`.

    Returns
    -------
    dict
        JSON-ready: ``U_axons`` and ``L_axons`` (``"dark"``, ``"bright"`` or None), ``contrast_L`` and
        ``contrast_translated`` (median myelin-minus-axon contrast of the L images before and after translation),
        ``learned`` (True when the translated contrast has U's sign and at least :data:`MIN_CONTRAST`; None when
        U's phase is unknown or L and U already share it) and a one-line ``verdict``.
    """
    from ads_synth.data.datasets import load_label_map
    from ads_synth.data.images import read_image
    from ads_synth.translation.scale import majority_phase

    chosen = sorted(labeled, key=lambda s: s.name)[:max_images]
    before, after, l_phases = [], [], []
    for s in chosen:
        image, labels = read_image(s.image, allow_large=True), load_label_map(s)
        before.append(myelin_contrast(image, labels))
        after.append(myelin_contrast(translate(image, s.pixel_size), labels))
        if np.isfinite(before[-1]):  # an image whose labels hold no myelin or no axon says nothing
            l_phases.append("bright" if before[-1] < 0 else "dark")
    l_phase = majority_phase(l_phases)
    finite = [i for i, c in enumerate(before) if np.isfinite(c) and np.isfinite(after[i])]
    c_before = float(np.median([before[i] for i in finite])) if finite else float("nan")
    c_after = float(np.median([after[i] for i in finite])) if finite else float("nan")
    if u_phase is None:
        learned, verdict = None, "no round axons found in the unlabeled images: contrast not checked"
    elif not (np.isfinite(c_before) and np.isfinite(c_after)):
        learned, verdict = None, "the labeled images checked hold no myelin and axon labels: contrast not checked"
    elif u_phase == l_phase:
        learned, verdict = None, (f"both modalities have {u_phase} axons: the contrast cannot tell a translation "
                                  "from a copy; look at the report's translations")
    else:
        learned = bool(np.sign(c_after) == SIGN[u_phase] and abs(c_after) >= MIN_CONTRAST)
        if abs(c_after) < MIN_CONTRAST:
            shown, outcome = "no clear contrast between myelin and axons", "the translation has not learned it"
        else:
            shown = f"{'dark' if c_after > 0 else 'bright'} axons"
            outcome = ("the translation learned the contrast" if learned else
                       "the translation kept the labeled modality's contrast")
        verdict = (f"the unlabeled images have {u_phase} axons; the translated labeled images show {shown} "
                   f"(myelin - axon {c_after:+.2f} sd, before {c_before:+.2f}): {outcome}")
    return {"U_axons": u_phase, "L_axons": l_phase, "contrast_L": c_before, "contrast_translated": c_after,
            "learned": learned, "verdict": verdict, "images": [s.name for s in chosen]}
