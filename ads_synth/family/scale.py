"""The ``scale`` phase: the L -> U scale factor estimated from axon sizes (L's labels, U's images alone), by
:func:`ads_synth.translation.scale.estimate_scale`."""

from __future__ import annotations

import math


def estimate(labeled, u_jobs) -> dict:
    """Estimate the scale for labeled samples ``labeled`` and U ``[(Sample, pixel size)]``.

    Returns
    -------
    dict
        JSON-ready: ``scale``, ``low`` and ``high`` (68% bootstrap interval over images), ``method`` (one line),
        ``per_image`` ({U image name: its own estimate}) and the estimator's whole record (``estimate``).
    """
    from ads_synth.translation.scale import estimate_scale

    u_samples = [type(s)(name=s.name, image=s.image, pixel_size=px, labels={}) for s, px in u_jobs]
    est = estimate_scale(labeled, u_samples)
    if not math.isfinite(est.scale) or est.scale <= 0:
        from ads_synth.errors import InputError

        raise InputError("no axons were found in the unlabeled images, so the scale cannot be estimated; give it "
                         "with --scale (1: the same physical pixel size).")
    record = est.to_dict()
    method = (f"from axon diameters: {est.labeled_diameter_um:.3g} um in the labeled images (their labels), "
              f"{est.unlabeled_diameter_um:.3g} um detected in the unlabeled images (no labels)")
    per_image = {s.name: round(s.scale, 3) for s in est.images if s.domain == "U" and s.scale is not None}
    return {"scale": float(est.scale), "low": float(est.low), "high": float(est.high), "method": method,
            "per_image": per_image, "estimate": record}
