"""Pseudo labels with nnU-Net v2: training sets, compact plans, training, prediction, confidence, evaluation.

nnU-Net and AxonDeepSeg are imported inside functions only, after :mod:`.nnunet_env` has set nnU-Net's
environment. Modules:

* :mod:`.nnunet_env` -- nnU-Net's folders and worker settings, in one place; device resolution.
* :mod:`.dataset_export` -- nnU-Net v2 raw datasets (2-D PNG, labels 0 background / 1 myelin / 2 axon).
* :mod:`.plans` -- fingerprint, plan, preprocess (nnU-Net's API) and the compact 2-D configuration.
* :mod:`.nnunet_trainers` -- nnU-Net trainer subclasses (imports nnU-Net; loaded through :mod:`.trainer`).
* :mod:`.trainer` -- training folds resumably into a model folder.
* :mod:`.model_building` -- labeled / translated training sets -> trained model folder (``ads_synth.json``).
* :mod:`.predict` -- model folders, per-fold prediction with ``nnUNetPredictor``.
* :mod:`.confidence` -- fold agreement: ensemble label and confidence maps.
* :mod:`.postprocess` -- speck removal and AxonDeepSeg's axon filling.
* :mod:`.metrics` -- Dice, sensitivity, specificity (AxonDeepSeg's implementation).
* :mod:`.evaluate` -- per image / per fold scores, Table 2, CSV, Markdown, figure.
* :mod:`.strategies` -- the strategy registry (standard library only).
* :mod:`.pseudo` -- the inference engine, ``pseudo_label_images`` (never imports training).
* :mod:`.pseudo_training` -- ``run_pseudo`` (``ads-synth pseudo``): trains what is missing, then runs the engine.
"""
