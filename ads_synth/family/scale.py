"""The ``scale`` phase: the L -> U scale factor estimated from fibre sizes (L's labels, U's images alone)."""

from __future__ import annotations


def estimate(labeled, u_jobs) -> dict:
    """Estimate the scale for labeled samples ``labeled`` and U ``[(Sample, pixel size)]``; a JSON-able dict with
    ``scale``, ``low``, ``high`` (uncertainty), ``method`` and ``per_image``."""
    from ads_synth.data.scale_estimate import estimate_scale

    u_samples = [type(s)(name=s.name, image=s.image, pixel_size=px, labels={}) for s, px in u_jobs]
    result = estimate_scale(labeled, u_samples)
    return result.to_dict() if hasattr(result, "to_dict") else dict(result)
