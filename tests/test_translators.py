"""Translator types: ``_class_name`` in config.json, the registry, the documented interface, old folders, and the
second type (SynDiff's non-diffusive generators exported from a training run) through translate, the CLI and cards."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ads_synth.cli import main as cli_main
from ads_synth.data.normalize import apply_normalization, normalization_params
from ads_synth.errors import InputError
from ads_synth.translation import translators as T
from ads_synth.translation.model import SynDiff
from ads_synth.translation.nondiffusive import ResnetTranslator
from ads_synth.translation.translate import load_translation_model, translate_image
from ads_synth.translation.trainer import TrainOptions, load_checkpoint, train

PACKAGE = Path(__file__).resolve().parents[1] / "ads_synth_models"


def _domain(folder, bright, pixel_size, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(2):
        img = rng.normal(bright, 30, (64, 72)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i}.png")
    (folder / "pixel_size_in_micrometer.txt").write_text(f"{pixel_size}\n")
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("translators")
    src, tgt = _domain(root / "L", 60, 0.05, 1), _domain(root / "U", 190, 0.1, 2)
    out = root / "run"
    train(TrainOptions(source=[str(src)], target=[str(tgt)], out=str(out), preset="tiny", steps=2, scale=2.0,
                       checkpoint_every=2, eval_every=0, eval_tiles=2, seed=0, batch_size=1, device="cpu",
                       progress=False))
    return out


@pytest.fixture(scope="module")
def exported(run_dir):
    out = run_dir.parent / "nd"
    assert cli_main(["translation", "export", "--non-diffusive", str(run_dir), str(out)]) == 0
    return out


def test_export_writes_the_runs_ema_non_diffusive_generators(run_dir, exported):
    config = json.loads((exported / "config.json").read_text())
    assert config["_class_name"] == "ResnetTranslator" and config["extra"]["pixel_size"] == {"L": 0.05, "U": 0.1}
    model = load_translation_model(exported, "cpu")
    assert type(model) is ResnetTranslator and isinstance(model, T.Translator)
    assert model.pixel_sizes == T.PixelSizes(0.05, 0.1) and model.size_multiple == 4 and model.tile_size == 32
    ema = load_checkpoint(run_dir / "checkpoint.pt")["trainer"]["ema"]
    for d in ("L2U", "U2L"):
        for k, v in ema[f"gen_nd.{d}"].items():
            assert torch.allclose(model.gen_nd[d].state_dict()[k], v.half().float())
    # the shipped folders of the run hold no gen_nd: they are SynDiff's diffusive half
    assert type(load_translation_model(run_dir, "cpu")) is SynDiff
    with pytest.raises(InputError, match="already holds a model"):
        cli_main_raise(["translation", "export", "--non-diffusive", str(run_dir), str(exported)])


def cli_main_raise(argv):
    from ads_synth.commands.translation import run_export
    from ads_synth.cli import build_parser

    return run_export(build_parser().parse_args(argv))


def test_translate_image_runs_one_generator_pass(exported):
    model = load_translation_model(exported, "cpu")
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    out, px = translate_image(model, img, 0.05, "L2U", output_grid="model", progress=False)
    assert out.shape == (32, 32) and out.dtype == np.uint8 and px == pytest.approx(0.1)
    x = apply_normalization(img, normalization_params(img, *model.normalization))
    with torch.no_grad():
        y = model.gen_nd["L2U"](torch.from_numpy(x)[None, None])[0, 0].numpy()
    expected = np.rint((np.clip(y, -1, 1) + 1) * 127.5).astype(np.uint8)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    again, _ = translate_image(model, img, 0.05, "L2U", output_grid="model", progress=False, seed=7)
    assert np.array_equal(out, again)  # deterministic


def test_translate_command_and_a_card_use_the_exported_translator(exported, tmp_path, user_cards):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((40, 48), 80, np.uint8)).save(src / "a.png")
    assert cli_main(["translate", "--model", str(exported), "--direction", "U2L", "-i", str(src / "a.png"),
                     "--pixel-size", "0.1", "-o", str(tmp_path / "out"), "--device", "cpu", "--no-progress"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "a_U2L.png"))
    assert out.shape == (40, 48) and out.dtype == np.uint8
    sidecar = json.loads((tmp_path / "out" / "a_U2L.json").read_text())
    assert sidecar["PixelSize"] == pytest.approx([0.1, 0.1])  # physical: the input's grid (issue 15 item 16)
    assert sidecar["DomainPixelSize"] == pytest.approx(0.05)  # the scale L's model should read it at

    from ads_synth.cards.create import create_card
    from test_model_cards import make_fake_models

    _, nn = make_fake_models(tmp_path / "seg")
    card = create_card(user_cards, source="A", target="B", strategy="tutor", translation=exported, nnunet=nn,
                       pixel_size=0.1)
    assert type(load_translation_model(card.translation, "cpu")) is ResnetTranslator
    assert cli_main(["translate", "--model", card.name, "--direction", "L2U", "-i", str(src / "a.png"),
                     "--pixel-size", "0.05", "-o", str(tmp_path / "via-card"), "--device", "cpu",
                     "--no-progress"]) == 0
    assert np.asarray(Image.open(tmp_path / "via-card" / "a_L2U.png")).shape == (40, 48)


@pytest.mark.parametrize("pair", ["TEM2SEM", "TEM2BF"])
def test_shipped_configs_without_a_class_name_load_as_syndiff(pair):
    folder = PACKAGE / pair / "translation"
    assert "_class_name" not in json.loads((folder / "config.json").read_text())
    assert T.class_name_of(folder) == "SynDiff"
    model = load_translation_model(folder, "cpu")
    assert type(model) is SynDiff and isinstance(model, T.Translator) and model.normalization == (0.5, 99.5)
    assert model.pixel_sizes.U > model.pixel_sizes.L > 0


def test_new_syndiff_folders_name_their_class_and_unknown_types_are_refused(tmp_path):
    from ads_synth.translation.config import get_preset

    SynDiff(get_preset("tiny")).save_pretrained(tmp_path / "m", extra={"pixel_size": {"L": 0.1, "U": 0.2}},
                                                generators_only=True)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["_class_name"] == "SynDiff"
    config["_class_name"] = "Pix2Pix"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="'Pix2Pix' is unknown; known: ResnetTranslator, SynDiff"):
        load_translation_model(tmp_path / "m", "cpu")
    assert T.list_translators() == ["ResnetTranslator", "SynDiff"]
