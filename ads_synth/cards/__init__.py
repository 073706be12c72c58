"""Model cards: one module per job.

* :mod:`~ads_synth.cards.schema`: :class:`~ads_synth.cards.schema.ModelCard`, reading, validating and writing a card;
* :mod:`~ads_synth.cards.lookup`: where cards are (``$ADS_SYNTH_MODELS``, the ``ads_synth_models`` package) and
  finding one (``list_cards``, ``get_card``, ``find_card``, ``require_files``);
* :mod:`~ads_synth.cards.verify`: every file against its sha256, and the pixel-size cross-check;
* :mod:`~ads_synth.cards.create`: ``create_card`` and ``pack_card`` (a zip archive);
* :mod:`~ads_synth.cards.install`: installing an archive offline.

The ``ads_synth_models`` package holds only data: the YAML cards, their model folders and the bundled datasets.
No torch at import; ``translation/`` never imports this package (card names are resolved in the command layer).
"""
