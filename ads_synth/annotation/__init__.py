"""The annotation loop: corrected segmentations (``corrections``), ``ads-synth refine`` (``refine``) and
``ads-synth rank`` (``rank``: which image to correct first)."""
