"""``ads-synth family train``: from a user's unlabeled images of a new modality to an installed model family.

* :mod:`ads_synth.family.options`: what the command asks for, and the checks made before anything is written.
* :mod:`ads_synth.family.budget`: the time budget turned into steps and epochs (a cost model per device).
* :mod:`ads_synth.family.state`: the run folder's state file (configuration fingerprint, finished phases), so a
  killed run continues where it stopped and a folder of another configuration is refused.
* :mod:`ads_synth.family.train`: the phases (scale, translation, teachers, candidates, choice, proxy, family,
  report) and :func:`~ads_synth.family.train.train_family`.
* :mod:`ads_synth.family.report`: ``OUT/report.md`` and its figures.

Nothing here is imported by the inference engine (:mod:`ads_synth.segmentation.pseudo`) or by the AxonDeepSeg
integration: a family is used through its model cards.
"""
