"""``ads-synth refine`` and ``ads-synth rank`` on a tiny seeded family built from the bundled TEM set (no ../shared).

The family ``SEM2TEM``: a compact nnU-Net trained for 4 iterations on 5 bundled TEM images (the "proxy" to refine)
and a random tiny translation model. Corrections are other bundled TEM images with their manual labels saved as
AxonDeepSeg's ``_seg-axonmyelin.png``; the held-back image's labels are read only to score it.
"""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ads_synth.cli import main

#: The pixel size the test family and its images claim (10x the TEM tiles' real 0.00493 um): mouse axons (60-300 px)
#: then pass the fibre clean-up's 0.5 um minimum diameter, as rat SEM axons do at their own pixel size.
PIXEL = 0.05
CORRECTED = ("sub-370_sample-0002_acq-roi_TEM", "sub-371_sample-0001_acq-roi_TEM", "sub-372_sample-0002_acq-roi_TEM")
HELD_BACK = "sub-375_sample-0003_acq-roi_TEM"
#: Crop of the refine test's images (None: the whole 600 x 600 tiles; crops of 320 px left too few fibres to learn).
CROP = None


def _bundled():
    from ads_synth.data.bundled import labeled_set
    from ads_synth.data.datasets import find_samples

    return {s.name: s for s in find_samples(labeled_set("TEM"), require_labels=True)}


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """The tiny base model and translation (built once per session, ~20 s)."""
    from ads_synth.data.bundled import labeled_set
    from tiny_models import build_tiny_segmentation_model, build_tiny_translation_model, copy_labeled_subset

    base = tmp_path_factory.getbasetemp() / "refine_family"
    labeled = copy_labeled_subset(labeled_set("TEM"), base / "tem-5")
    (labeled / "pixel_size_in_micrometer.txt").write_text(f"{PIXEL}\n")
    model = build_tiny_segmentation_model(base / "proxy", labeled, folds=(0,), epochs=1, iterations=4)
    translation = build_tiny_translation_model(base / "translation", pixel_sizes={"L": 0.02, "U": PIXEL})
    return model, translation


@pytest.fixture
def family(tiny_base, user_cards):
    """The SEM2TEM family installed in an empty $ADS_SYNTH_MODELS (the package's cards hidden)."""
    from ads_synth.cards.create import create_card

    model, translation = tiny_base
    return create_card(user_cards, source="SEM", target="TEM", strategy="proxy", translation=translation,
                       nnunet=model, pixel_size=(0.04, 0.06), folds=["0"])


def _save_correction(sample, folder, labels=None, crop=None):
    """``folder/<stem>.png`` + pixel size + ``<stem>_seg-axonmyelin.png`` (the manual labels unless ``labels``),
    optionally the top-left ``crop`` x ``crop`` pixels only."""
    from ads_synth.data.datasets import load_label_map

    folder.mkdir(parents=True, exist_ok=True)
    if crop is None:
        shutil.copy2(sample.image, folder / sample.image.name)
    else:
        Image.fromarray(np.array(Image.open(sample.image).convert("L"))[:crop, :crop]).save(folder / sample.image.name)
    (folder / "pixel_size_in_micrometer.txt").write_text(f"{PIXEL}\n")
    if labels is None:
        lm = load_label_map(sample)
        labels = np.zeros(lm.shape, np.uint8)
        labels[lm == 1], labels[lm == 2] = 127, 255
        if crop is not None:
            labels = labels[:crop, :crop]
    path = folder / f"{sample.image.stem}_seg-axonmyelin.png"
    Image.fromarray(labels).save(path)
    return folder / sample.image.name


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _dice(pred_dir, image, truth):
    from ads_synth.segmentation.label_free import read_candidate

    pred = read_candidate(pred_dir, image)["label_map"]
    out = []
    for c in (2, 1):
        a, b = pred == c, truth == c
        out.append(2 * (a & b).sum() / max(1, a.sum() + b.sum()))
    return np.array(out)


def _one_line_exit_2(args, capsys, *words):
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    for word in words:
        assert word in err[0], err[0]
    return err[0]


# -- the loop end to end -----------------------------------------------------------------------------------------
def test_refine_raises_dice_on_a_held_back_image_and_installs_a_refined_card(family, tmp_path, capsys, user_cards,
                                                                             monkeypatch):
    from ads_synth.cards.lookup import get_card
    from ads_synth.device import PRECISION_ENV
    from ads_synth.integration.pseudo_action import run_pseudo_labels

    # float32 networks: the shipped card's float16 weights against the work's float32 ones, and nothing else (in
    # bfloat16 the two round differently, and a barely trained tiny model has many pixels near p = 0.5)
    monkeypatch.setenv(PRECISION_ENV, "float32")

    samples = _bundled()
    from ads_synth.data.datasets import load_label_map

    corrected = [_save_correction(samples[n], tmp_path / "corrected" / n, crop=CROP) for n in CORRECTED]
    held = tmp_path / "unlabeled" / f"{HELD_BACK}.png"
    held.parent.mkdir(parents=True)
    Image.fromarray(np.array(Image.open(samples[HELD_BACK].image).convert("L"))[:CROP, :CROP]).save(held)
    (held.parent / "pixel_size_in_micrometer.txt").write_text(f"{PIXEL}\n")
    truth = load_label_map(samples[HELD_BACK])[:CROP, :CROP]  # read only to score
    before = {p: _sha(p) for c in corrected for p in c.parent.iterdir()}
    original = {rel: _sha(family.file_path(rel)) for rel in family.files}
    out = tmp_path / "OUT"
    args = ["refine", "--family", "SEM2TEM", "--corrected", str(tmp_path / "corrected" / CORRECTED[0]),
            *map(str, corrected[1:]), "--unlabeled", str(held.parent), "-o", str(out), "--epochs", "10",
            "--iterations", "10", "--device", "cpu", "-v", "0"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "SEM2TEM_refined: 3 corrected + 1 re-pseudo-labelled" in printed

    # the held-back image: better than the unrefined model's pseudo labels (the teacher phase's)
    unrefined = _dice(out / "work" / "teacher", held, truth)
    refined = _dice(out / "pseudo_labels", held, truth)
    assert refined.mean() > unrefined.mean() + 0.1, (refined, unrefined)

    # nothing of the user's or of the original card changed; the refined card is installed beside it
    assert before == {p: _sha(p) for c in corrected for p in c.parent.iterdir()}
    assert original == {rel: _sha(family.file_path(rel)) for rel in family.files}
    card = get_card("SEM2TEM_refined")
    assert card.strategy == "refined" and card.path.parent == user_cards and card.folds == ("all",)
    assert card.entry["training"]["corrected"] == sorted(CORRECTED)

    # the boundary convention is the user's: the teacher's labels of the corrected images against the corrections,
    # without the half-way boundary (recomputed here from the files) and with it; the card keeps the better
    import json

    choice = json.loads((out / "refine_state.json").read_text())["phases"]["boundary"]["result"]
    teacher_dice = [_dice(out / "work" / "teacher_corrected", image, load_label_map(samples[n])).mean()
                    for n, image in zip(CORRECTED, corrected)]
    assert choice["dice_without"] == pytest.approx(np.mean(teacher_dice), abs=1e-4)
    assert choice["myelin_boundary"] == (choice["dice_with"] > choice["dice_without"])
    assert card.myelin_boundary == choice["myelin_boundary"] and card.entry["postprocess"] == choice

    # axondeepseg -t TEM --pseudo refined: the same engine, with the installed card
    result = run_pseudo_labels([held], target="TEM", strategy="refined", source="SEM", out_dir=tmp_path / "ads",
                               progress=False)
    assert result[0]["strategy"] == "refined"
    from ads_synth.segmentation.label_free import read_candidate

    # the card ships float16 weights: a few pixels near p = 0.5 flip, and the fibre post-processing can carry a
    # flip to a whole hole or fragment (measured: 99.995-99.999% of pixels equal; Dice within 0.012)
    shipped, work = (read_candidate(d, held)["label_map"] for d in (tmp_path / "ads", out / "pseudo_labels"))
    assert (shipped == work).mean() > 0.98

    # rerun: every phase done earlier; other inputs: refused, one line
    assert main(args) == 0
    capsys.readouterr()
    other = [a if a != "10" else "11" for a in args]
    line = _one_line_exit_2(other, capsys, "holds a refine run of another configuration", "--resume")
    assert "epochs" in line


# -- bad input: one line, exit 2, nothing written -----------------------------------------------------------------
@pytest.fixture
def one_sample():
    return _bundled()[CORRECTED[0]]


def _refine_args(path, out):
    return ["refine", "--family", "SEM2TEM", "--corrected", str(path), "-o", str(out), "-v", "0"]


def test_no_corrected_file(family, tmp_path, capsys, one_sample):
    folder = tmp_path / "plain"
    folder.mkdir()
    shutil.copy2(one_sample.image, folder / one_sample.image.name)
    _one_line_exit_2(_refine_args(folder, tmp_path / "OUT"), capsys, "no corrected image found")
    assert not (tmp_path / "OUT").exists()


def test_unknown_family(family, tmp_path, capsys, one_sample):
    image = _save_correction(one_sample, tmp_path / "c")
    args = _refine_args(image, tmp_path / "OUT")
    args[2] = "TEM2XYZ"
    _one_line_exit_2(args, capsys, "--family TEM2XYZ", "SEM2TEM")
    assert not (tmp_path / "OUT").exists()


def test_mask_of_another_size(family, tmp_path, capsys, one_sample):
    image = _save_correction(one_sample, tmp_path / "c", labels=np.zeros((100, 120), np.uint8))
    _one_line_exit_2(_refine_args(image, tmp_path / "OUT"), capsys, "mask is 120 x 100 px", "image's size")
    assert not (tmp_path / "OUT").exists()


def test_axon_outside_every_myelin_ring(family, tmp_path, capsys, one_sample):
    from ads_synth.data.datasets import load_label_map

    lm = load_label_map(one_sample)
    labels = np.zeros(lm.shape, np.uint8)
    labels[lm == 1], labels[lm == 2] = 127, 255
    labels[:8, :8] = 0
    labels[1:6, 1:6] = 255  # a 25 px axon with no myelin around it
    labels[:, -8:] = 0
    labels[10:15, -6:-2] = 255  # a 20 px one
    labels[30:32, -6:-4] = 255  # and a 4 px speck (read as background)
    image = _save_correction(one_sample, tmp_path / "c", labels=labels)
    _one_line_exit_2(_refine_args(image, tmp_path / "OUT"), capsys, "2 axon region(s) (45 px)",
                     "outside every myelin ring", "--drop-bare-axons")
    assert not (tmp_path / "OUT").exists()

    from ads_synth.annotation.corrections import check_correction, find_corrections

    (sample,), _ = find_corrections([image])
    corr = check_correction(sample, drop_bare_axons=True)
    assert (corr.label_map[1:6, 1:6] == 0).all() and (corr.label_map[30:32, -6:-4] == 0).all()
    assert "1 axon speck(s) under 16 px (4 px)" in corr.warnings[-2] and "45 px" in corr.warnings[-1]


def test_stray_values_reported_and_read_as_ads_does(family, one_sample, tmp_path):
    from ads_synth.annotation.corrections import check_correction, find_corrections

    labels = np.zeros((600, 600), np.uint8)
    labels[100:140, 100:140] = 127
    labels[110:130, 110:130] = 255
    labels[115:118, 115:118] = 200  # 9 px inside the axon: nearest is 255
    labels[0, :5] = 90  # 5 px: nearest is 127 (myelin; myelin without an axon is allowed)
    image = _save_correction(one_sample, tmp_path / "c", labels=labels)
    (sample,), _ = find_corrections([image.parent])
    corr = check_correction(sample, family)
    assert len(corr.warnings) == 1
    assert "14 px of stray values (200: 9 px, 90: 5 px)" in corr.warnings[0]
    assert (corr.label_map[115:118, 115:118] == 2).all() and (corr.label_map[0, :5] == 1).all()


def test_image_outside_the_family_range(family, tmp_path, capsys, one_sample):
    image = _save_correction(one_sample, tmp_path / "c")
    (image.parent / "pixel_size_in_micrometer.txt").write_text("0.5\n")
    _one_line_exit_2(_refine_args(image, tmp_path / "OUT"), capsys, "pixel size 0.5 um", "SEM2TEM family's range")
    sem = image.with_name(image.name.replace("_TEM", "_SEM"))
    (image.parent / "pixel_size_in_micrometer.txt").write_text(f"{PIXEL}\n")
    image.rename(sem)
    (image.parent / f"{image.stem}_seg-axonmyelin.png").rename(image.parent / f"{sem.stem}_seg-axonmyelin.png")
    _one_line_exit_2(_refine_args(sem, tmp_path / "OUT"), capsys, "a SEM image", "segments TEM")
    assert not (tmp_path / "OUT").exists()


def test_corrections_found_as_mask_files_and_bids_labels(tmp_path, one_sample):
    from ads_synth.annotation.corrections import find_corrections
    from ads_synth.data.bundled import labeled_set

    image = _save_correction(one_sample, tmp_path / "c")
    (sample,), rest = find_corrections([image.parent / f"{image.stem}_seg-axonmyelin.png"])
    assert sample.image == image and set(sample.labels) == {"axonmyelin"} and rest == []
    bids = labeled_set("TEM")
    label = next((bids / "derivatives" / "labels").rglob(f"{one_sample.name}_seg-axonmyelin-manual.png"))
    (sample,), _ = find_corrections([label])
    assert sample.image == one_sample.image and sample.labels["axonmyelin"] == label


# -- rank ------------------------------------------------------------------------------------------------------------
def test_score_images_puts_the_unsure_disputed_image_first():
    from ads_synth.annotation.rank import score_images

    rng = np.random.default_rng(0)
    good = np.zeros((64, 64), np.uint8)
    good[10:30, 10:30] = 1
    good[15:25, 15:25] = 2
    items = []
    for k in range(3):
        other = good.copy()
        if k == 2:  # the paths disagree on this one, and the model is unsure
            other = np.where(rng.random(good.shape) < 0.5, 0, good).astype(np.uint8)
        items.append({"image": Path(f"img{k}.png"), "pixel_size": 0.1, "candidates": {"proxy": good, "tutor": other},
                      "confidence": np.full(good.shape, 0.3 if k == 2 else 0.9)})
    rows = score_images(items)
    assert rows[0]["image"] == "img2.png" and rows[0]["rank"] == 1
    assert rows[0]["disagreement"] > 0.2 and rows[1]["disagreement"] == 0.0
    assert rows[0]["uncertainty"] == pytest.approx(0.7)


def test_rank_command_writes_a_csv_and_refuses_to_overwrite(family, tmp_path, capsys):
    samples = _bundled()
    folder = tmp_path / "images"
    folder.mkdir()
    for name in CORRECTED:
        img = np.array(Image.open(samples[name].image).convert("L"))[:256, :256]
        Image.fromarray(img).save(folder / f"{name}.png")
    (folder / "pixel_size_in_micrometer.txt").write_text(f"{PIXEL}\n")
    # the napari widget's command line (its "Rank images to correct" column), run by the real CLI
    from ads_synth.integration.annotation_actions import rank_command, read_ranking

    argv = rank_command("SEM2TEM", folder, out=tmp_path / "rank")
    assert argv[1:4] == ["-m", "ads_synth.cli", "rank"]
    assert main(argv[3:] + ["--device", "cpu"]) == 0
    out = capsys.readouterr().out
    csv = tmp_path / "rank" / "ranking.csv"
    lines = csv.read_text().splitlines()
    assert lines[0].startswith("rank,image,priority,uncertainty,disagreement,unusual")
    assert len(lines) == 4 and lines[1].startswith("1,") and all(n in out for n in CORRECTED)
    rows = read_ranking(csv)
    assert [r["rank"] for r in rows] == [1, 2, 3] and {r["image"].parent for r in rows} == {folder}
    assert rows[0]["priority"] >= rows[1]["priority"] >= rows[2]["priority"]
    assert (tmp_path / "rank" / "work" / "proxy").is_dir()  # the pseudo labels kept for the next ranking
    assert len(list(folder.iterdir())) == 4  # nothing written beside the images
    before = csv.read_text()
    _one_line_exit_2(["rank", str(folder), "--family", "SEM2TEM", "-o", str(csv)], capsys, "already exists",
                     "--overwrite")
    assert csv.read_text() == before
