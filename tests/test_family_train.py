"""``ads-synth family train``: bad input before anything is written, the budget plan, the state file, and one real
run end to end on bundled data (tiny presets), killed with SIGKILL mid-run and continued by the same command."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ads_synth.cli import main
from ads_synth.errors import InputError
from ads_synth.family.budget import Plan, make_plan
from ads_synth.family.state import STATE_FILE, FamilyState
from ads_synth.family.cards import family_strategies

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "docs" / "demo" / "sub-rat8_sample-V915_SEM.png"
TINY = ["--preset", "tiny", "--steps", "6", "--epochs", "1", "--iterations", "2", "--patch", "64", "--folds", "0",
        "--time-budget", "5"]


#: Side (px) of the unlabeled crops of the end-to-end run, and of the labeled images cropped for it (the bundled
#: TEM tiles are 600 px): small enough for seconds a phase, large enough for a scale estimate from axon sizes.
U_SIDE, L_SIDE = 256, 384


def _unlabeled(folder, n=2, side=320):
    """``n`` crops of the bundled demo SEM image, each in its own folder with its pixel size."""
    image = np.array(Image.open(DEMO).convert("L"))
    out = []
    for i in range(n):
        sub = folder / f"sem{i}"
        sub.mkdir(parents=True)
        y, x = i * (image.shape[0] - side), i * (image.shape[1] - side)
        Image.fromarray(image[y:y + side, x:x + side]).save(sub / f"sem{i}.png")
        (sub / "pixel_size_in_micrometer.txt").write_text("0.07")
        out.append(sub)
    return out


@pytest.fixture
def labeled(tmp_path_factory):
    """Five images of the bundled labeled TEM set (nnU-Net's five-fold split needs five), cropped with their labels
    to :data:`L_SIDE` px."""
    from ads_synth.data.bundled import labeled_set
    from tiny_models import copy_labeled_subset

    folder = copy_labeled_subset(labeled_set("TEM"), tmp_path_factory.mktemp("labeled"))
    for path in folder.glob("*.png"):
        with Image.open(path) as im:
            im.load()
            cropped = im.crop((0, 0, L_SIDE, L_SIDE))
        cropped.save(path)
    return folder


def _run(args, capsys):
    code = main(["family", "train", *args])
    return code, capsys.readouterr()


def _bad(args, capsys, *words):
    code, captured = _run(args, capsys)
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    for word in words:
        assert word in lines[0]
    return lines[0]


# -- bad input: one line, exit 2, nothing written ----------------------------------------------------------------
def test_no_images(tmp_path, user_cards, capsys):
    (tmp_path / "empty").mkdir()
    _bad(["--unlabeled", str(tmp_path / "empty"), "--target", "NEW", "-o", str(tmp_path / "out")], capsys,
         "no images")
    assert not (tmp_path / "out").exists()


def test_too_small_image(tmp_path, user_cards, capsys):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "pixel_size_in_micrometer.txt").write_text("0.1")
    _bad(["--unlabeled", str(tmp_path / "small.png"), "--target", "NEW", "-o", str(tmp_path / "out")], capsys,
         "small.png", "64 x 64", "at least 128")
    assert not (tmp_path / "out").exists()


def test_no_pixel_size(tmp_path, user_cards, capsys):
    Image.fromarray(np.zeros((200, 200), np.uint8)).save(tmp_path / "a.png")
    _bad(["--unlabeled", str(tmp_path / "a.png"), "--target", "NEW", "-o", str(tmp_path / "out")], capsys,
         "a.png", "--pixel-size")
    assert not (tmp_path / "out").exists()


def test_target_clashing_with_a_shipped_card(tmp_path, capsys):
    (u,) = _unlabeled(tmp_path / "u", n=1)
    _bad(["--unlabeled", str(u), "--target", "SEM", "-o", str(tmp_path / "out")], capsys, "SEM", "shipped"
         if False else "package")
    assert not (tmp_path / "out").exists()


def test_labeled_without_labels_or_source(tmp_path, user_cards, capsys):
    (u,) = _unlabeled(tmp_path / "u", n=1)
    _bad(["--unlabeled", str(u), "--target", "NEW", "-o", str(tmp_path / "out"), "--labeled", str(u)], capsys,
         "--source")
    _bad(["--unlabeled", str(u), "--target", "NEW", "-o", str(tmp_path / "out"), "--labeled", str(u),
          "--source", "SEM"], capsys, "label")
    assert not (tmp_path / "out").exists()


def test_unwritable_or_foreign_out(tmp_path, user_cards, capsys):
    (u,) = _unlabeled(tmp_path / "u", n=1)
    (tmp_path / "a_file").write_text("x")
    _bad(["--unlabeled", str(u), "--target", "NEW", "-o", str(tmp_path / "a_file" / "out")], capsys, "a_file")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("precious")
    _bad(["--unlabeled", str(u), "--target", "NEW", "-o", str(foreign)], capsys, "not empty")
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.docx"]


def test_bad_options(tmp_path, user_cards, capsys):
    (u,) = _unlabeled(tmp_path / "u", n=1)
    base = ["--unlabeled", str(u), "-o", str(tmp_path / "out")]
    _bad(base + ["--target", "TEM"], capsys, "--source")
    _bad(base + ["--target", "my modality"], capsys, "--target")
    _bad(base + ["--target", "NEW", "--time-budget", "0"], capsys, "--time-budget")
    _bad(base + ["--target", "NEW", "--scale", "huge"], capsys, "--scale")
    _bad(base + ["--target", "NEW", "--folds", "7"], capsys, "--folds")
    _bad(base + ["--target", "NEW", "--rounds", "0"], capsys, "--rounds")
    _bad(base + ["--target", "NEW", "--rounds", "many"], capsys, "--rounds")
    assert not (tmp_path / "out").exists()


# -- plan and state ----------------------------------------------------------------------------------------------
def test_budget_scales_steps_and_epochs():
    small, large = make_plan(20), make_plan(90)
    assert large.translation_steps > 2 * small.translation_steps
    assert large.teacher_epochs > small.teacher_epochs and large.proxy_epochs >= small.proxy_epochs
    gpu = make_plan(20, device="cuda:0")
    assert gpu.device == "cuda" and gpu.translation_steps > 5 * small.translation_steps
    assert sum(make_plan(45).estimates_s.values()) <= 45 * 60 * 1.1  # the default fits its budget
    fixed = make_plan(20, steps=7, epochs=2)
    assert (fixed.translation_steps, fixed.teacher_epochs, fixed.proxy_epochs) == (7, 2, 2)
    # without --steps the translation gets a time share and sets its own length from its measured speed
    assert fixed.translation_s is None and small.translation_s == small.estimates_s["translation"]
    assert large.translation_s > 4 * small.translation_s > 0
    assert Plan.from_dict({k: v for k, v in small.to_dict().items() if k != "translation_s"}).translation_s is None


def test_nnunet_folds_get_the_time_earlier_phases_saved_or_overran():
    from types import SimpleNamespace

    from ads_synth.family.train import FamilyRun

    plan = make_plan(45, train_l_model=False)

    def fold_time(spent, phase):  # ``spent`` seconds per phase before ``phase``
        state = SimpleNamespace(seconds=lambda name: spent.get(name, 0.0))
        return FamilyRun._fold_time_s(SimpleNamespace(plan=plan, state=state), plan.teacher_fold_s, phase)

    as_planned = {n: plan.estimates_s[n] for n in ("scale", "translation")}
    assert fold_time(as_planned, "teachers") == pytest.approx(plan.teacher_fold_s, rel=0.02)
    faster = {"scale": 10.0, "translation": plan.estimates_s["translation"] / 2}
    assert fold_time(faster, "teachers") > 1.2 * plan.teacher_fold_s
    assert fold_time({"translation": 10 * plan.budget_s}, "teachers") == pytest.approx(0.25 * plan.teacher_fold_s)
    assert FamilyRun._fold_time_s(SimpleNamespace(plan=plan, state=None), None, "proxy") is None  # --epochs given


def test_budget_gives_the_tutor_the_teachers_share_when_l_is_reused():
    trained, reused = make_plan(45), make_plan(45, train_l_model=False)
    assert reused.teacher_epochs >= 2 * trained.teacher_epochs - 1
    assert reused.estimates_s["teachers"] <= trained.estimates_s["teachers"] * 1.05
    assert sum(reused.estimates_s.values()) <= 45 * 60 * 1.1


def test_shipped_l_model_found_only_for_exactly_its_training_images(tmp_path):
    """The bundled TEM set is what the shipped L models were trained on (same contents, some files renamed):
    found, nearest pixel size chosen, copied whole; a subset, or a fold they lack, finds none."""
    from ads_synth.checksums import contents_digest, files_digest
    from ads_synth.data.bundled import labeled_set
    from ads_synth.data.datasets import find_samples
    from ads_synth.family.l_model import closest, copy_l_model, trained_l_models

    samples = find_samples(labeled_set("TEM"), require_labels=True)
    found = trained_l_models(samples, [0, 1])
    names = sorted(card.name for card, _ in found)
    assert names == ["TEM2BF_adapt", "TEM2SEM_adapt"]  # one per model folder (invert and auto share them)
    pixel = {card.name: json.loads((folder / "ads_synth.json").read_text())["pixel_size"] for card, folder in found}
    assert closest(found, pixel["TEM2SEM_adapt"] * 1.1)[0].name == "TEM2SEM_adapt"
    assert closest(found, pixel["TEM2BF_adapt"] * 0.95)[0].name == "TEM2BF_adapt"
    assert trained_l_models(samples[:-1], [0, 1]) == []
    assert trained_l_models(samples, [0, 1, 2]) == []
    # renaming a file changes the names-and-contents digest, not the contents digest
    renamed = tmp_path / "renamed.png"
    renamed.write_bytes(samples[0].image.read_bytes())
    paths = [s.image for s in samples]
    assert contents_digest([renamed] + paths[1:]) == contents_digest(paths)
    assert files_digest([renamed] + paths[1:]) != files_digest(paths)

    card, folder = found[0]
    dest = copy_l_model(folder, tmp_path / "L")
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert not (tmp_path / "L.copying").exists()


def test_the_translation_used_is_one_that_learned_the_contrast(tmp_path, monkeypatch):
    """best/ (the cycle score's choice) unless it kept L's contrast and a snapshot learned U's: then the snapshot
    with the best cycle score among those that learned it; never the untrained networks of step 0."""
    from ads_synth.family.train import FamilyRun

    run = tmp_path / "run"
    for name, score in (("best", 0.30), ("snapshots/step_000000", 0.0), ("snapshots/step_000100", 0.30), ("snapshots/step_000200", 0.25),
                        ("snapshots/step_000300", 0.27), ("snapshots/step_000400", 0.20)):
        (run / name).mkdir(parents=True)
        step = int(name.split("_")[-1]) if "step_" in name else 999
        (run / name / "config.json").write_text(json.dumps({"extra": {"step": step, "scores": {"score": score}}}))
    learned = {"best": False, "step_000000": True, "step_000100": False, "step_000200": True, "step_000300": True, "step_000400": True}

    def look(self, folder):
        ok = learned[Path(folder).name]
        return {"learned": ok, "contrast_translated": 1.0 if ok else -1.0}

    monkeypatch.setattr(FamilyRun, "_look", look)
    family = FamilyRun.__new__(FamilyRun)
    model, check, chosen_by, by_step = family._choose_translation(run)
    assert model == run / "snapshots" / "step_000300" and check["learned"] and "step 300" in chosen_by
    assert by_step == {100: -1.0, 200: 1.0, 300: 1.0, 400: 1.0}
    learned.update(step_000200=False, step_000300=False, step_000400=False)  # none learned it: best/, with a note
    model, check, chosen_by, _ = family._choose_translation(run)
    assert model == run / "best" and check["learned"] is False and "no snapshot" in chosen_by
    learned["best"] = None  # the check cannot tell (same contrast in both modalities): the cycle score decides
    model, _, chosen_by, by_step = family._choose_translation(run)
    assert model == run / "best" and by_step == {}


def test_state_refuses_another_configuration(tmp_path):
    out = tmp_path / "out"
    state = FamilyState.open(out, {"a": 1})
    state.record("scale", {"scale": 5.0}, 1.0)
    again = FamilyState.open(out, {"a": 1})
    assert again.done("scale") and again.result("scale") == {"scale": 5.0}
    with pytest.raises(InputError, match="another configuration"):
        FamilyState.open(out, {"a": 2})
    resumed = FamilyState.open(out, {"a": 2}, resume=True)
    assert resumed.done("scale")  # --resume keeps the finished phases
    fresh = FamilyState.open(out, {"a": 2}, overwrite=True)
    assert not fresh.done("scale")


@pytest.mark.parametrize("teacher, names, items", [("combined", ["tutor", "adapt"], "combined"),
                                                   ("adapt_nd", ["adapt"], "adapt"), ("tutor", ["tutor"], "tutor")])
def test_proxy_teacher_labels_for_every_choosable_teacher(tmp_path, teacher, names, items):
    """The label-free choice can pick the pooled ``combined`` (not a --strategy name), the non-diffusive
    adaptation or one path: each gives the labels the proxy learns from (found when the tiny run chose combined)."""
    from types import SimpleNamespace

    from ads_synth.family.train import FamilyRun

    run = object.__new__(FamilyRun)  # the phase's inputs only: no models are trained here
    run.out, run.work = tmp_path, tmp_path / "work"
    run.state = SimpleNamespace(result=lambda phase: {"tutor": "models/tutor", "L": "models/L"})
    labelled = []
    run._training_images = lambda: ["u0"]
    run._translation_model = lambda key="model": key
    run._reference = lambda: None
    run._label = lambda images, strategies, models, dirs, translation, reference=None: labelled.append(
        (strategies, {n: m.name for n, m in models.items()}, sorted(dirs), translation))
    run._label_items = lambda folder: folder.name
    assert run._teacher_labels(teacher) == items
    (strategies, models, dirs, translation), = labelled
    assert strategies == names and dirs == sorted(names + (["combined"] if teacher == "combined" else []))
    assert models == {n: "tutor" if n == "tutor" else "L" for n in names}
    assert translation == ("nondiffusive" if teacher == "adapt_nd" else "model")


def test_u_phase_is_read_from_the_scale_phase_record_when_it_holds_one():
    """The scale phase's detector already found each U image's axon phase: the contrast check reuses it instead of
    running the detector again; with ``--scale`` given (no record) it detects on the U images."""
    from types import SimpleNamespace

    from ads_synth.family.train import FamilyRun

    def run_with(scale_result):
        run = object.__new__(FamilyRun)
        run.state = SimpleNamespace(result=lambda phase: scale_result)
        run.u_jobs = []  # detecting on these would give None
        return run

    recorded = {"estimate": {"images": [{"domain": "L", "axon_phase": "bright"}, {"domain": "U", "axon_phase": "dark"},
                                        {"domain": "U", "axon_phase": None}, {"domain": "U", "axon_phase": "dark"}]}}
    assert run_with(recorded)._u_phase == "dark"
    assert run_with({"scale": 5.0, "method": "given (--scale)"})._u_phase is None  # detected: no U image here


def test_translated_labeled_images_teach_the_proxy_only_through_a_translated_teacher():
    """When the choice picks a no-translation baseline, the translated paths scored below it: the L images in the
    translation's look then stay out of the proxy's training (family run E taught the proxy adapt's thin sheaths
    and the translation's look together)."""
    from ads_synth.family.train import CANDIDATES, _translated_path

    translated = {name: _translated_path(name) for name in CANDIDATES + ("combined", "adapt_nd", "proxy")}
    assert translated == {"tutor": True, "adapt": True, "combined": True, "adapt_nd": True, "proxy": True,
                          "direct": False, "invert": False, "histmatch": False}


# -- end to end --------------------------------------------------------------------------------------------------
def _phases(out):
    path = out / STATE_FILE
    try:
        return json.loads(path.read_text())["phases"]
    except (OSError, ValueError):
        return {}


def test_family_train_end_to_end_killed_and_resumed(tmp_path, labeled, user_cards, capsys):
    """A tiny real run: killed with SIGKILL once the translation is done, the same command finishes the rest;
    the installed family then works through `ads-synth models` and `axondeepseg --pseudo auto`."""
    us = _unlabeled(tmp_path / "u", side=U_SIDE)
    out = tmp_path / "out"
    args = ["--unlabeled", *map(str, us), "--target", "SEMX", "-o", str(out), "--labeled", str(labeled),
            "--source", "TEM", *TINY, "--rounds", "2"]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "ads_synth.cli", "family", "train", *args, "-v", "0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not _phases(out).get("translation", {}).get("done"):
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    killed = _phases(out)
    assert killed["translation"]["done"] and not killed.get("family", {}).get("done")
    translation_time = killed["translation"]["seconds"]

    code, captured = _run(args, capsys)
    assert code == 0, captured.err[-3000:]
    assert "translation: done earlier" in captured.err
    phases = _phases(out)
    assert all(p["done"] for p in phases.values()) and len(phases) == 8
    assert phases["translation"]["seconds"] == translation_time  # not trained again

    from ads_synth.cards.lookup import find_card
    from ads_synth.cards.verify import verify_card

    state = json.loads((out / STATE_FILE).read_text())
    proxy = state["phases"]["proxy"]["result"]
    auto = state["phases"]["family"]["result"]["auto"]
    # two self-training rounds: the second learned from the first's labels and is kept only if it scored higher
    first, second = proxy["rounds"]
    assert first["kept"] and first["best_before"] is None
    assert second["kept"] == (second["score"] > second["best_before"])  # both ranked in round 2's scoring
    assert proxy["model"] == (second if second["kept"] else first)["model"]
    assert (out / "work" / "teacher_labels" / "proxy").is_dir()  # round 1's labels on every U image taught round 2
    # translated L images taught the proxy only if the translation's tutorship model passed the validity gate and
    # the chosen teacher goes through the translation (not a no-translation baseline)
    from ads_synth.family.train import _translated_path

    choice = state["phases"]["choice"]["result"]
    tutor_valid = choice["scores"]["tutor"]["valid"] and _translated_path(choice["teacher"])
    n_u = state["config"]["unlabeled"]["n_images"]  # fewer than nnU-Net's five folds need: L kept to make them up
    assert proxy["translated_labeled"] == (state["config"]["labeled"]["n_images"] if tutor_valid or n_u < 5 else 0)
    # round 1 fine-tuned from its teacher's network, round 2 from round 1's, both recorded in the model's json
    assert first["initial_weights"] and second["initial_weights"] == "the U model's folds"
    from ads_synth.segmentation.predict import read_model_info

    recorded = read_model_info(out / first["model"])["trained_on"]["initial_weights"]
    assert recorded == first["initial_weights"]
    made = [s.name for s in family_strategies()]
    assert set(made) == {"tutor", "adapt", "proxy", "direct", "invert", "histmatch"} and auto in made
    from ads_synth.family.cards import choose_auto

    assert auto == choose_auto(proxy["scores"])  # the best-scoring path a card ships, baselines included
    for name in (*made, "auto"):
        assert (out / "family" / f"TEM2SEMX_{name}.yaml").is_file()
        assert (user_cards / f"TEM2SEMX_{name}.yaml").is_file()  # installed where models install puts archives
    card = find_card("TEM", "SEMX", "auto")
    assert card.name == "TEM2SEMX_auto" and card.auto["chosen"] == auto and card.strategy == auto
    assert not verify_card(card)
    assert set(card.auto["scores"]) >= {"tutor", "adapt", "proxy", "invert", "histmatch", "direct"}
    assert find_card("TEM", "SEMX", "tutor").name == "TEM2SEMX_tutor"
    assert "ads-synth family train" in card.entry["training"]["command"]

    assert main(["models", "show", "TEM2SEMX_auto"]) == 0
    shown = capsys.readouterr().out
    assert f"--pseudo auto: {auto}" in shown

    report = (out / "report.md").read_text()
    assert "## Scale between the modalities" in report and "auto" in report
    look = state["phases"]["translation"]["result"]["look"]  # the contrast check, in the state and the report
    assert look["U_axons"] in ("dark", "bright", None) and look["verdict"] in report
    for figure in ("translations.png", "confidence.png"):
        assert (out / "figures" / figure).stat().st_size > 1000

    from ads_synth.integration.ads_cli import main as ads_main

    image = us[0] / "sem0.png"
    assert ads_main(["-t", "SEMX", "--pseudo", "auto", "-i", str(image)]) == 0
    for suffix in ("_seg-axon.png", "_seg-myelin.png", "_seg-axonmyelin.png"):
        written = np.array(Image.open(us[0] / f"sem0{suffix}"))
        assert written.shape == (U_SIDE, U_SIDE)


def test_a_whole_slide_trains_the_proxy_on_textured_crops_small_images_whole(tmp_path, monkeypatch):
    """A slide over TRAINING_MPX is replaced by crops of its tissue (not of the blank glass around it), written once
    with the pixel size; smaller images are used whole."""
    from ads_synth.data.datasets import Sample
    from ads_synth.data.images import read_image, read_pixel_size
    from ads_synth.family import crops

    monkeypatch.setattr(crops, "TRAINING_CROP", 64)
    monkeypatch.setattr(crops, "TRAINING_MPX", 3 * 64 * 64 / 1e6)  # room for three crops
    rng = np.random.default_rng(0)
    slide = np.full((256, 512), 230, np.uint8)  # glass
    slide[64:192, 128:448] = rng.integers(0, 255, (128, 320))  # tissue: 2 x 5 tiles
    big, small = tmp_path / "slide.png", tmp_path / "small.png"
    Image.fromarray(slide).save(big)
    Image.fromarray(slide[:40, :60]).save(small)
    jobs = [(Sample(name="slide", image=big, pixel_size=None, labels={}), 0.25),
            (Sample(name="small", image=small, pixel_size=None, labels={}), 0.25)]
    got = crops.training_images(jobs, tmp_path / "crops")
    paths = [p for p, _ in got]
    assert paths[-1] == small and len(paths) == 4
    for path in paths[:-1]:
        crop = read_image(path)
        assert crop.shape == (64, 64) and crop.std() > 40  # tissue, never the flat glass
        assert read_pixel_size(path) == 0.25
    origins = [tuple(int(v) for v in p.parent.name.split("_")[1:]) for p in paths[:-1]]
    assert sorted(origins) == [(64, 128), (64, 384), (128, 384)]  # the first, middle and last of the 10 tissue tiles
    stamp = [p.stat().st_mtime_ns for p in paths[:-1]]
    assert [p for p, _ in crops.training_images(jobs, tmp_path / "crops")] == paths  # written once, reused
    assert [p.stat().st_mtime_ns for p in paths[:-1]] == stamp
