"""ads-synth: pseudo labels for unlabeled microscopy modalities by unpaired image translation.

A plugin extension to AxonDeepSeg (ADS). Heavy dependencies (torch, nnU-Net, ADS) are imported lazily, where
they are used, so that the translation code runs with torch, numpy, scikit-image and tifffile alone.
"""

__version__ = "0.1.0"
