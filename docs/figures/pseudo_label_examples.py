"""Figure of pseudo labels on one image: the image, its translation, and each strategy's labels overlaid.

Used for ``docs/figures/tem2bf_examples.png`` (BF has no labels, so the pseudo labels are judged by eye)::

    python docs/figures/pseudo_label_examples.py --image runs/bf-crop/bf_nerve_crop.png \
        --translation runs/tem2bf-compact/best --pseudo runs/pseudo-tem2bf/pseudo_labels \
        --strategies tutor adapt direct --crop 300 300 260 --crop 620 80 260 -o docs/figures/tem2bf_examples.png

Rows: one per ``--crop`` (top, left, side in pixels of the image). Columns: the image (RGB as stored), the image
translated U->L (what the adaptation path segments), then each strategy's ``<stem>_seg-axonmyelin.png`` over the
image (axon red, myelin blue).
"""

import argparse
from pathlib import Path

import numpy as np

AXON_RGB = np.array([255, 60, 60], np.float32)
MYELIN_RGB = np.array([60, 90, 255], np.float32)


def overlay(rgb, axonmyelin, alpha=0.45):
    """``rgb`` (H, W, 3) uint8 with axon (255) and myelin (127) of an AxonDeepSeg label image blended in."""
    out = rgb.astype(np.float32)
    for value, colour in ((255, AXON_RGB), (127, MYELIN_RGB)):
        mask = axonmyelin == value
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    return out.astype(np.uint8)


def as_rgb(image):
    image = np.asarray(image)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--pixel-size", type=float, default=None, help="default: read beside the image")
    parser.add_argument("--translation", required=True, help="translation model folder")
    parser.add_argument("--pseudo", required=True, help="the pseudo_labels folder (one sub-folder per strategy)")
    parser.add_argument("--strategies", nargs="+", default=["tutor", "adapt", "direct"])
    parser.add_argument("--crop", nargs=3, type=int, action="append", metavar=("TOP", "LEFT", "SIDE"),
                        required=True)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from ads_synth.data.images import read_image, read_label, require_pixel_size
    from ads_synth.translation.translate import load_translation_model, translate_image

    image_path = Path(args.image)
    stored = as_rgb(np.array(Image.open(image_path)))
    gray = read_image(image_path)
    px = require_pixel_size(image_path, args.pixel_size)
    model = load_translation_model(args.translation, device="cpu")
    translated, _ = translate_image(model, gray, px, "U2L", output_grid="input", progress=False)
    labels = {s: read_label(Path(args.pseudo) / s / f"{image_path.stem}_seg-axonmyelin.png")
              for s in args.strategies}
    titles = ["image", "translated U->L"] + [f"{s} pseudo labels" for s in args.strategies]
    rows = len(args.crop)
    fig, axes = plt.subplots(rows, len(titles), figsize=(2.6 * len(titles), 2.6 * rows), squeeze=False)
    for r, (top, left, side) in enumerate(args.crop):
        window = (slice(top, top + side), slice(left, left + side))
        panels = [stored[window], as_rgb(translated[window])]
        panels += [overlay(stored[window], labels[s][window]) for s in args.strategies]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
