"""The ads-synth model family: one model card (YAML) per modality pair and strategy, and the card's files.

A card ``<source>2<target>_<strategy>.yaml`` (e.g. ``TEM2SEM_tutor.yaml``) describes a pseudo-label model in the
form of AxonDeepSeg's ``model_cards.yaml``; its files live in ``<source>2<target>/`` beside it. Cards are found in
this package folder and in the folders named by the environment variable ``ADS_SYNTH_MODELS``
(see ``README.md`` here). Adding a modality pair is adding a card and its files. This package holds data only; the
code that reads, checks, makes and installs cards is :mod:`ads_synth.cards`.
"""
