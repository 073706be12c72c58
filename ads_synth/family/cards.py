"""The ``family`` phase: the model cards of a family run in ``OUT/family/``, and their installation.

One card per shippable path (``<PAIR>_tutor``, ``<PAIR>_adapt``, ``<PAIR>_proxy``, and the cheap baselines
``<PAIR>_direct``, ``<PAIR>_invert``, ``<PAIR>_histmatch``) made by :func:`ads_synth.cards.create.create_card`
(files copied as float16 inference checkpoints, sha256 listed; paths that apply the same model, ``adapt`` and the
baselines, share its files), and ``<PAIR>_auto``: the path chosen without labels (:func:`choose_auto`: a baseline
when it scores above every translation), sharing that card's files, with an ``auto`` block holding the
label-free scores that chose it (``ads-synth models show`` prints it). The cards are then packed into one archive
and installed as ``ads-synth models install --archive`` does, into the first ``$ADS_SYNTH_MODELS`` folder, else
the package's folder, so that ``axondeepseg -t TARGET --pseudo auto`` works at once, offline.
"""

from __future__ import annotations

import shlex
import zipfile
from pathlib import Path

from ads_synth.atomic import atomic_write
from ads_synth.family.auto import AUTO, auto_entry
from ads_synth.family.options import FAMILY_PRESET
from ads_synth.segmentation.strategies import list_strategies


def family_strategies() -> list:
    """The shippable strategies a family run makes the model of (not those another command makes: ``refined``)."""
    return [s for s in list_strategies(shippable=True) if s.made_by is None]


def choose_auto(scores) -> str:
    """``auto``: the best-scoring path (label-free ``scores`` of the candidates and the kept proxy round) among
    those the family ships a card of (:func:`family_strategies`; the cheap baselines among them)."""
    from ads_synth.segmentation.label_free import choose_candidate

    return choose_candidate(scores, eligible=[s.name for s in family_strategies()])


def _command(run) -> str:
    opts = run.opts
    words = ["ads-synth", "family", "train", "--unlabeled", *run.unlabeled_paths, "--target", opts.target,
             "-o", str(opts.out)]
    if opts.labeled:
        words += ["--labeled", *run.labeled_paths, "--source", opts.source]
    words += ["--time-budget", f"{opts.time_budget:g}"]
    if opts.scale != "auto":
        words += ["--scale", f"{opts.scale:g}"]
    for flag, value, default in (("--preset", opts.preset, FAMILY_PRESET), ("--patch", opts.patch, 128),
                                 ("--steps", opts.steps, None), ("--epochs", opts.epochs, None),
                                 ("--proxy-epochs", opts.proxy_epochs, None),
                                 ("--iterations", opts.iterations, None)):
        if value is not None and value != default:
            words += [flag, str(value)]
    if list(opts.folds) != [0, 1]:
        words += ["--folds", *map(str, opts.folds)]
    if opts.rounds != "auto":
        words += ["--rounds", str(opts.rounds)]
    if opts.train_l_model:
        words += ["--train-l-model"]
    return " ".join(shlex.quote(w) for w in words)


def _training(run, strategy) -> dict:
    state = run.state
    times = {name: round(state.seconds(name), 1) for name in state.data["phases"]}
    translation = state.result("translation")
    scale = state.result("scale")
    epochs = state.result("proxy")["epochs"] if strategy == "proxy" else state.result("teachers")["epochs"]
    return {
        "how": "ads-synth family train (every choice from the data; no label of the new modality read)",
        "command": _command(run),
        "hardware": f"{run.device.type}",
        "scale": {k: scale.get(k) for k in ("scale", "low", "high", "method")},
        "translation": {"preset": run.opts.preset, "steps": translation["steps"], "tile": translation["tile"]},
        "nnunet": _nnunet_training(run, strategy, epochs),
        "teacher": state.result("proxy")["teacher"] if strategy == "proxy" else None,
        "self_training_rounds": ([{k: r.get(k) for k in ("round", "score", "best_before", "kept", "seconds")}
                                  for r in state.result("proxy").get("rounds", [])] if strategy == "proxy" else None),
        "wall_time_s": times,
        "data": {"labeled": state.config["labeled"], "unlabeled": state.config["unlabeled"]},
    }


def _nnunet_training(run, strategy, epochs) -> dict:
    from ads_synth.segmentation.strategies import get_strategy

    reused = run.state.result("teachers").get("L_from")
    if reused and get_strategy(strategy).model == "L":
        return {"reused": f"the nnU-Net of the shipped card {reused['card']}, trained on exactly these labeled "
                          "images (same image contents)", **reused}
    return {"configuration": "2d_compact", "patch": run.opts.patch, "folds": list(run.opts.folds),
            "epochs": epochs, "iterations_per_epoch": run.plan.iterations}


def _scores(run, strategy) -> dict:
    scores = run.state.result("proxy")["scores"].get(strategy, {})
    return {"label_free": {k: round(v, 4) for k, v in scores.items()},
            "note": "label-free scores on crops of the unlabeled images (no manual label exists)"}


def sharing_entry(card, strategy) -> dict:
    """The card entry of ``strategy`` (a registered Strategy) applying ``card``'s files its own way, e.g.
    ``invert``: the L model of an ``adapt`` card on intensity-inverted images, on the same grid (the translation is
    read for its working pixel sizes only). Its ``training`` and ``scores`` are ``card``'s until replaced."""
    from ads_synth.cards.schema import ADS_PREFIX

    name = f"{card.pair}_{strategy.name}"
    entry = dict(card.entry)
    entry.pop(AUTO, None)
    entry["full_name"] = ADS_PREFIX + name
    entry["strategy"] = strategy.name
    entry["model-info"] = (f"{card.source}->{card.target} pseudo labels, {strategy.title}: the files of "
                           f"{card.name} (its translation read only for the working pixel sizes).")
    return entry


def _sharing_card(card, strategy, dest, run):
    from ads_synth.cards.schema import load_card, write_card

    name = f"{card.pair}_{strategy.name}"
    entry = sharing_entry(card, strategy)
    entry["training"] = _training(run, strategy.name)
    entry["scores"] = _scores(run, strategy.name)
    write_card(dest / f"{name}.yaml", name, entry)
    return load_card(dest / f"{name}.yaml")


def write_family(run) -> dict:
    """Write (and install) the family's cards; return ``{"cards": [...], "auto": strategy, "installed": dir}``."""
    from ads_synth.cards.create import create_card
    from ads_synth.cards.schema import load_card, write_card

    opts = run.opts
    state = run.state
    dest = run.out / "family"
    translation = run._abs(state.result("translation")["model"])
    teachers = state.result("teachers")
    folders = {"tutor": teachers["tutor"], "L": teachers["L"], "proxy": state.result("proxy")["model"]}
    pixel_sizes = [px for _, px in run.u_jobs]
    made, by_model = {}, {}
    for strategy in family_strategies():  # one card per path; paths of one model share files
        if strategy.model in by_model:
            made[strategy.name] = _sharing_card(by_model[strategy.model], strategy, dest, run)
            continue
        made[strategy.name] = by_model[strategy.model] = create_card(
            dest, source=opts.source, target=opts.target, strategy=strategy.name, translation=translation,
            nnunet=run._abs(folders[strategy.model]), pixel_size=(min(pixel_sizes), max(pixel_sizes)),
            folds=list(map(str, opts.folds)),
            training_data=f"Labeled {opts.source}: {state.config['labeled']['n_images']} images; unlabeled "
                          f"{opts.target}: {state.config['unlabeled']['n_images']} images (never labeled).",
            training=_training(run, strategy.name), scores=_scores(run, strategy.name), overwrite=True)
    auto = choose_auto(state.result("proxy")["scores"])
    name = f"{opts.pair}_{AUTO}"
    entry = auto_entry(made[auto], name, state.result("proxy")["scores"], made)
    write_card(dest / f"{name}.yaml", name, entry)
    family = [load_card(dest / f"{c.name}.yaml") for c in made.values()]
    family.append(load_card(dest / f"{name}.yaml"))
    installed = None
    if opts.register:
        installed = install_family(family, run.work / f"{opts.pair}.zip", overwrite=True)
    return {"cards": [c.name for c in family], "auto": auto, "folder": run._rel(dest),
            "installed": str(installed) if installed else None}


def install_family(family, archive, overwrite=False) -> Path:
    """Pack the cards ``family`` (one folder) into ``archive`` and install it; return the install folder."""
    from ads_synth.cards.install import install_archive
    from ads_synth.cards.lookup import default_install_dir

    files = {}
    for card in family:
        files[card.path.name] = card.path
        files.update({rel: card.file_path(rel) for rel in card.files})

    def write(tmp):
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for rel, path in files.items():
                zf.write(path, rel)

    Path(archive).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(archive, write)
    dest = default_install_dir()
    install_archive(archive, dest, overwrite=overwrite)
    return dest
