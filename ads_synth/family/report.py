"""``OUT/report.md``: what a family run did and chose, for the microscopist who ran it (PNG figures beside it)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ads_synth.atomic import atomic_write, atomic_write_text


def _fmt_s(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _save(fig, path):
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


#: Side (px) of the images shown in the report's figures.
SHOWN = 384


def _crop(image, side=SHOWN):
    h, w = image.shape[:2]
    y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return image[y0:y0 + side, x0:x0 + side]


def translation_figure(run, path, n=2):
    """Two L images translated L->U and two U images translated U->L, on the model's grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ads_synth.data.images import read_image
    from ads_synth.data.resample import rescale_to_pixel_size
    from ads_synth.translation.translate import translate_image, working_pixel_sizes

    model = run._translation_model()
    work = working_pixel_sizes(model)
    rows = [(s.image, s.pixel_size, "L2U") for s in run.labeled[:n]]
    rows += [(s.image, px, "U2L") for s, px in run.u_jobs[:n]]
    fig, axes = plt.subplots(len(rows), 2, figsize=(6, 3 * len(rows)), squeeze=False)
    for (image_path, px, direction), (a, b) in zip(rows, axes):
        src = "L" if direction == "L2U" else "U"
        # only the shown centre is translated (twice its side, for context): a whole slide would take an hour
        image = _crop(read_image(image_path), int(np.ceil(2 * SHOWN * work[src] / px)))
        out, _ = translate_image(model, image, px, direction, output_grid="model", progress=False)
        shown = rescale_to_pixel_size(image, px, work[src])
        a.imshow(_crop(shown), cmap="gray")
        b.imshow(_crop(out), cmap="gray")
        a.set_title(f"{Path(image_path).stem[:28]} ({src})", fontsize=8)
        b.set_title(f"translated {direction}", fontsize=8)
        for ax in (a, b):
            ax.axis("off")
    _save(fig, path)
    plt.close(fig)
    return path


def confidence_figure(run, path, strategy, n=2):
    """Pseudo labels and confidence maps of ``strategy`` on ``n`` scoring crops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ads_synth.data.images import read_image, read_label
    from ads_synth.data.writers import AXONMYELIN_SUFFIX
    from ads_synth.segmentation.pseudo import CONFIDENCE_SUFFIX

    images = [run._abs(p) for p in run.state.result("candidates")["images"]][:n]
    folder = run.work / "candidates" / strategy
    fig, axes = plt.subplots(len(images), 3, figsize=(9, 3 * len(images)), squeeze=False)
    for image, (a, b, c) in zip(images, axes):
        a.imshow(read_image(image), cmap="gray")
        b.imshow(read_label(folder / f"{image.stem}{AXONMYELIN_SUFFIX}"), cmap="viridis", vmin=0, vmax=255)
        shown = c.imshow(read_label(folder / f"{image.stem}{CONFIDENCE_SUFFIX}") / 255.0, cmap="magma", vmin=0,
                         vmax=1)
        a.set_title(image.stem[:28], fontsize=8)
        b.set_title(f"{strategy}: axon (yellow), myelin", fontsize=8)
        c.set_title("confidence", fontsize=8)
        for ax in (a, b, c):
            ax.axis("off")
    fig.colorbar(shown, ax=axes[:, 2].tolist(), shrink=0.6)
    _save(fig, path)
    plt.close(fig)
    return path


def _scores_table(scores, chosen, mark):
    keys = sorted({k for s in scores.values() for k in s if k != "score"}) + ["score"]
    lines = ["| path | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, s in sorted(scores.items(), key=lambda kv: -kv[1].get("score", 0.0)):
        label = f"**{name}** ({mark})" if name == chosen else name
        lines.append(f"| {label} | " + " | ".join(f"{s.get(k, float('nan')):.3f}" for k in keys) + " |")
    return "\n".join(lines)


def _rounds_table(rounds) -> list:
    """Markdown lines of the self-training rounds (score beside the candidates, kept or not), or none."""
    if not rounds:
        return []
    lines = ["| round | label-free score | best earlier round, same ranking | kept | seconds |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['score']:.3f} | "
              f"{'-' if r.get('best_before') is None else format(r['best_before'], '.3f')} | "
              f"{'yes' if r['kept'] else 'no (stopped)'} | {r['seconds']:.0f} |" for r in rounds]
    return lines + [""]


def write_report(run) -> Path:
    """Write ``OUT/report.md`` and ``OUT/figures/*.png``; return the report's path."""
    from ads_synth.family.cards import _command

    state = run.state
    figures = run.out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    scale = state.result("scale")
    translation = state.result("translation")
    choice = state.result("choice")
    proxy = state.result("proxy")
    family = state.result("family")
    translation_figure(run, figures / "translations.png")
    curves = run._abs(translation["run"]) / "curves.png"
    if curves.is_file():
        shutil.copyfile(curves, figures / "cycle_scores.png")
    confidence_figure(run, figures / "confidence.png", family["auto"])
    lines = [
        f"# Model family {run.opts.pair}: {run.opts.source} (labeled) -> {run.opts.target} (unlabeled)",
        "",
        f"Made by `ads-synth family train` from {state.config['labeled']['n_images']} labeled "
        f"{run.opts.source} images and {state.config['unlabeled']['n_images']} {run.opts.target} images. No label "
        f"of the {run.opts.target} images was read: every choice below comes from the images.",
        "",
        f"**Use it:** `axondeepseg -t {run.opts.target} -s {run.opts.source} --pseudo auto -i IMAGE` "
        f"(auto = {family['auto']}); cards: {', '.join(family['cards'])}"
        + (f", installed in `{family['installed']}`." if family.get("installed") else " (not installed)."),
        "",
        "## Scale between the modalities",
        "",
        f"Scale factor **{scale['scale']:.3g}**"
        + (f" (range {scale['low']:.3g} to {scale['high']:.3g})" if scale.get("low") is not None else "")
        + f", {scale.get('method', '')}. The labeled images are magnified by this factor on top of the unlabeled "
        "images' pixel size so that fibres have the same size in pixels in both (1 would be the paper's rule: "
        "the same physical pixel size).",
        "",
    ]
    per_image = scale.get("per_image")
    if per_image:
        lines += ["| image | estimate |", "|---|---|"]
        items = per_image.items() if isinstance(per_image, dict) else enumerate(per_image)
        lines += [f"| {k} | {v if isinstance(v, str) else v} |" for k, v in items]
        lines.append("")
    lines += [
        "## Translation",
        "",
        f"SynDiff ({run.opts.preset} preset), {translation['steps']} steps on {translation['tile']} px tiles.",
        "",
        f"Contrast check (no unlabeled label used): {translation['look']['verdict']}. The model used was chosen "
        f"by {translation['chosen_by']}."
        if translation.get("look") else "Contrast check: not run (a run from before the check existed).",
        "",
        "![translations](figures/translations.png)",
        "",
    ]
    if (figures / "cycle_scores.png").is_file():
        lines += ["Cycle-consistency scores on held-back tiles during training:", "",
                  "![cycle scores](figures/cycle_scores.png)", ""]
    lines += [
        "## Candidate pseudo labels and the choice",
        "",
        "Label-free scores (higher is better) of each candidate's pseudo labels on crops of the unlabeled images. "
        "`direct`, `invert` and `histmatch` need no translation (the L model on the images as they are, inverted, "
        "or histogram-matched): a translation path is worth its cost only where it scores above them. `score` "
        "ranks the candidates that pass the fibre gate (`valid`: closed myelin rings round axons) above those that "
        "do not, then by `intensity_coherence`, the share of the image's intensity variance their labels explain.",
        "",
        _scores_table(choice["scores"], choice["teacher"], "taught the proxy"),
        "",
        f"After self-training (proxy, {proxy['epochs']} epochs per round, taught by `{proxy['teacher']}`; "
        f"round {proxy.get('round', 1)} kept):",
        "",
        *_rounds_table(proxy.get("rounds", [])),
        _scores_table(proxy["scores"], family["auto"], "auto"),
        "",
        f"Pseudo labels and confidence of `{family['auto']}` (auto):",
        "",
        "![confidence](figures/confidence.png)",
        "",
        "## Wall time",
        "",
        "| phase | wall time |",
        "|---|---|",
    ]
    from ads_synth.family.train import PHASES

    for name in PHASES:
        lines.append(f"| {name} | {_fmt_s(state.seconds(name))} |")
    lines.append(f"| all | {_fmt_s(sum(state.seconds(n) for n in PHASES))} |")
    lines += [
        "",
        f"Budget: {run.opts.time_budget:g} min on {run.device.type}.",
        "",
        "## Reproduce",
        "",
        "```bash",
        _command(run),
        "```",
        "",
    ]
    path = run.out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


__all__ = ["write_report", "translation_figure", "confidence_figure"]
