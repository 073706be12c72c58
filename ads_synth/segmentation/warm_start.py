"""Initial weights for a model that learns from another model's labels: fine-tuning instead of training from
scratch.

A self-trained proxy learns U images from a teacher's pseudo labels. Trained from random weights in the few
epochs a CPU budget allows, it ends up worse than its teacher (on sem-dev: 0.706 / 0.671 against the inverted
baseline's 0.784 / 0.709, docs/results.md). Started from the teacher's own network, it starts at the teacher's
output and the self-training can only refine it:

* a teacher that segments U images itself (``tutor``, an earlier proxy round): its folds, as they are;
* the L model on U as it is (``direct``) or histogram-matched (``histmatch``, a monotone map of the intensities):
  the L model's folds;
* the L model on intensity-inverted U (``invert``): the L model's folds with the first convolution's weights
  negated. Every channel is z-scored per image before the network, so inverting the image negates its input
  exactly, and ``conv(-x; W) = conv(x; -W)``: the started network gives the teacher's labels on the image itself;
* a translating teacher (``adapt``): no network reads U images the way it does, so the U model the family trained
  (``tutor``) starts the proxy.

:data:`FINETUNE_LR` is the learning rate every fine-tune here starts with (also ``ads-synth refine``'s).
"""

from __future__ import annotations

from pathlib import Path

#: Fine-tuning starts at half nnU-Net's initial learning rate (1e-2), decayed as nnU-Net does (poly).
FINETUNE_LR = 5e-3
#: The convolution that reads the image channel in a PlainConvUNet (nnU-Net 2.2.1's compact and 2d networks).
FIRST_CONV = "encoder.stages.0.0.convs.0.conv.weight"
#: Every state-dict key of that convolution's weight. ``ConvDropoutNormReLU`` holds it twice (``conv`` and the
#: first of ``all_modules``) and the decoder holds the encoder again (``decoder.encoder``); loading the dict sets
#: the one tensor from each key in turn, so all four must change.
FIRST_CONV_KEYS = tuple(f"{owner}encoder.stages.0.0.convs.0.{name}.weight" for owner in ("", "decoder.")
                        for name in ("conv", "all_modules.0"))
#: The parts of the compact plan that make the network (patch and batch size do not change its weights).
_NETWORK_KEYS = ("n_stages", "base_features", "max_features")


def network_plan(model_dir):
    """The compact-network shape recorded in ``model_dir/ads_synth.json`` (``None`` when it is not a compact
    ads-synth model, e.g. an AxonDeepSeg model folder)."""
    from ads_synth.segmentation.predict import read_model_info

    plan = read_model_info(model_dir).get("compact_plan") if Path(model_dir).is_dir() else None
    return {k: plan.get(k) for k in _NETWORK_KEYS} if plan else None


def teacher_checkpoints(model_dir, folds) -> dict:
    """``{fold: checkpoint}`` starting each of ``folds`` from ``model_dir``'s fold of the same number, else its
    first trained fold (a model trained with ``--folds all`` starts every fold)."""
    from ads_synth.segmentation.predict import CHECKPOINT_FINAL, finished_folds

    trained = finished_folds(model_dir)
    if not trained:
        return {}
    return {fold: Path(model_dir) / f"fold_{fold if fold in trained else trained[0]}" / CHECKPOINT_FINAL
            for fold in folds}


def negate_first_conv(checkpoint, out_path):
    """Write ``checkpoint`` with :data:`FIRST_CONV` negated to ``out_path`` (atomically; everything else as it is)
    and return it: the network then gives on an image what ``checkpoint``'s gives on the inverted image."""
    import torch

    from ads_synth.atomic import atomic_torch_save

    state = torch.load(str(checkpoint), map_location="cpu")
    weights = state["network_weights"]
    if FIRST_CONV not in weights:
        raise ValueError(f"{checkpoint}: no {FIRST_CONV} (not a PlainConvUNet)")
    for key in FIRST_CONV_KEYS:
        if key in weights:
            weights[key] = -weights[key]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_torch_save(state, out_path)


def warm_start(teacher, *, l_model, u_model, folds, network, work) -> tuple:
    """Initial weights for a model self-trained on ``teacher``'s labels (module docstring).

    Parameters
    ----------
    teacher : str
        The teacher strategy's name (``tutor``, ``adapt``, ``adapt_nd``, ``combined``, ``direct``, ``invert``,
        ``histmatch``, or a proxy round's name: any other name is read as a model of U).
    l_model, u_model : Path
        The L model and the model of U (the tutorship model, or the previous round) the teacher used.
    folds : list
        The folds to train.
    network : dict
        The compact network being trained (:func:`network_plan`'s keys); a teacher of another shape starts
        nothing.
    work : Path
        Where a transformed checkpoint is written (``invert``).

    Returns
    -------
    (dict, str or None)
        ``{fold: checkpoint}`` (empty: train from scratch) and how the weights were made, for the model card.
    """
    if teacher in ("direct", "histmatch", "invert"):
        source, how = Path(l_model), f"the L model's folds ({teacher})"
    else:
        source, how = Path(u_model), "the U model's folds"
    if network_plan(source) != {k: network.get(k) for k in _NETWORK_KEYS}:
        return {}, None
    starts = teacher_checkpoints(source, folds)
    if teacher == "invert":  # one negated copy per source fold (two folds may start from the same one)
        made = {c: negate_first_conv(c, Path(work) / c.parent.name / "initial_weights.pth")
                for c in set(starts.values())}
        starts = {fold: made[c] for fold, c in starts.items()}
        how = "the L model's folds, first convolution negated (invert)"
    return starts, (how if starts else None)
