"""Model cards: reading, listing, verification (checksums, missing files), create/pack/install offline, the CLI."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from ads_synth.errors import InputError
from ads_synth.cards.create import create_card, pack_card
from ads_synth.cards.install import install_archive, install_card
from ads_synth.cards.lookup import ENV_VAR, PACKAGE_DIR, find_card, get_card, list_cards, model_dirs, require_files
from ads_synth.cards.schema import load_card
from ads_synth.cards.verify import require_verified, verify_card
from ads_synth.checksums import sha256_file


def make_fake_models(folder, seed=b"x"):
    """A translation model folder and an nnU-Net model folder with small placeholder files (not loadable)."""
    folder = Path(folder)
    tr = folder / "translation"
    tr.mkdir(parents=True)
    (tr / "config.json").write_text(json.dumps({"preset": "tiny", "extra": {"pixel_size": {"L": 0.05, "U": 0.1}}}))
    (tr / "weights.pt").write_bytes(b"weights-" + seed * 100)
    nn = folder / "nnunet"
    (nn / "fold_all").mkdir(parents=True)
    (nn / "dataset.json").write_text(json.dumps({"file_ending": ".png", "labels": {"background": 0}}))
    (nn / "plans.json").write_text("{}")
    torch.save({"network_weights": {"conv.weight": torch.full((8, 4), float(seed[0]) / 7),
                                    "bn.num_batches_tracked": torch.tensor(3)},
                "init_args": {"configuration": "2d"}, "trainer_name": "nnUNetTrainer",
                "inference_allowed_mirroring_axes": (0, 1), "optimizer_state": {"state": {0: torch.ones(64)}},
                "logging": {"train_losses": [1.0]}}, nn / "fold_all" / "checkpoint_final.pth")
    (nn / "fold_all" / "checkpoint_latest.pth").write_bytes(b"latest, not shipped")
    (nn / "fold_all" / "training_log.txt").write_text("not shipped")
    return tr, nn


def make_fake_card(dest, source="TEST", target="FAKE", strategy="tutor", pixel_size=(0.05, 0.1), seed=b"x",
                   **card_options):
    """A card with placeholder files in ``dest``; returns the ModelCard."""
    tr, nn = make_fake_models(Path(dest).parent / f"src-{source}-{target}-{strategy}-{seed.hex()}", seed)
    return create_card(dest, source=source, target=target, strategy=strategy, translation=tr, nnunet=nn,
                       pixel_size=pixel_size, folds=["all"], **card_options)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    d = tmp_path / "models"
    monkeypatch.setenv(ENV_VAR, str(d))
    return d


def test_create_card_ships_inference_checkpoints_in_float16(user_dir):
    card = make_fake_card(user_dir)
    shipped = torch.load(card.root / "TEST2FAKE/nnunet_tutor/fold_all/checkpoint_final.pth", map_location="cpu")
    assert set(shipped) == {"network_weights", "init_args", "trainer_name", "inference_allowed_mirroring_axes"}
    weights = shipped["network_weights"]
    assert weights["conv.weight"].dtype == torch.float16 and weights["bn.num_batches_tracked"].dtype == torch.int64
    assert torch.allclose(weights["conv.weight"].float(), torch.full((8, 4), ord("x") / 7), rtol=1e-3)


def test_create_card_writes_ads_form_with_checksums_of_every_shipped_file(user_dir):
    card = make_fake_card(user_dir)
    assert card.path == user_dir / "TEST2FAKE_tutor.yaml"
    data = yaml.safe_load(card.path.read_text())
    entry = data["TEST2FAKE_tutor"]
    # AxonDeepSeg's model_cards.yaml fields
    for key in ("full_name", "task", "n_classes", "model-info", "training-data", "weights"):
        assert key in entry
    assert entry["full_name"] == "model_seg_pseudo_TEST2FAKE_tutor"
    assert set(entry["files"]) == {
        "TEST2FAKE/translation/config.json",
        "TEST2FAKE/translation/weights.pt",
        "TEST2FAKE/nnunet_tutor/dataset.json",
        "TEST2FAKE/nnunet_tutor/plans.json",
        "TEST2FAKE/nnunet_tutor/fold_all/checkpoint_final.pth",
    }
    for rel, digest in entry["files"].items():
        assert sha256_file(user_dir / rel) == digest
    assert card.pixel_size == (0.05, 0.1) and card.folds == ("all",) and card.strategy == "tutor"
    assert card.translation == user_dir / "TEST2FAKE/translation" and card.nnunet.name == "nnunet_tutor"
    assert verify_card(card) == []


def test_list_cards_user_dir_first_and_hides_same_name(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    ca = make_fake_card(a, seed=b"a")
    make_fake_card(b, seed=b"b")
    make_fake_card(b, strategy="adapt", seed=b"c")
    monkeypatch.setenv(ENV_VAR, os.pathsep.join([str(a), str(b)]))
    found = {c.name: c for c in list_cards()}
    assert found["TEST2FAKE_tutor"].path == ca.path  # a hides b
    assert found["TEST2FAKE_adapt"].root == b
    assert model_dirs()[:2] == [a, b] and model_dirs()[-1] == PACKAGE_DIR
    assert find_card("test", "fake", "adapt").name == "TEST2FAKE_adapt"  # case-insensitive modalities


def test_find_card_error_lists_available_pairs(user_dir):
    make_fake_card(user_dir)
    with pytest.raises(InputError) as err:
        find_card("TEM", "NOPE", "tutor")
    msg = str(err.value)
    assert "TEM -> NOPE" in msg and "TEST2FAKE_tutor (TEST -> FAKE, tutor)" in msg and "\n" not in msg
    with pytest.raises(InputError, match="no model card named 'zzz'"):
        get_card("zzz")


def test_verify_reports_checksum_mismatch_and_missing_files(user_dir):
    card = make_fake_card(user_dir)
    (user_dir / "TEST2FAKE/translation/weights.pt").write_bytes(b"tampered")
    (user_dir / "TEST2FAKE/nnunet_tutor/plans.json").unlink()
    problems = verify_card(card)
    assert "TEST2FAKE/translation/weights.pt: checksum mismatch" in problems
    assert "TEST2FAKE/nnunet_tutor/plans.json: missing" in problems
    assert card.missing_files() == ["TEST2FAKE/nnunet_tutor/plans.json"] and not card.is_installed()
    with pytest.raises(InputError, match="points at 1 missing file"):
        require_files(card)
    with pytest.raises(InputError, match="failed verification: .*and 1 more"):
        require_verified(card)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: e.pop("files"), "lacks files"),
        (lambda e: e.update(strategy="guess"), "strategy 'guess'"),
        (lambda e: e.update(pixel_size={"min": 0.2, "max": 0.1}), "not a positive range"),
        (lambda e: e.update(pixel_size="fine"), "pixel_size must be"),
        (lambda e: e.update(nnunet="../elsewhere"), "must stay inside"),
        (lambda e: e["files"].update({"x/y.bin": "abc"}), "not 64 hex digits"),
        (lambda e: e.update(source="T E M"), "must be a modality name"),
    ],
)
def test_invalid_card_is_one_line_input_error(user_dir, mutate, message):
    card = make_fake_card(user_dir)
    data = yaml.safe_load(card.path.read_text())
    mutate(data["TEST2FAKE_tutor"])
    card.path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=message) as err:
        get_card("TEST2FAKE_tutor")
    assert str(card.path) in str(err.value) and "\n" not in str(err.value)
    assert "TEST2FAKE_tutor" not in [c.name for c in list_cards()]  # skipped with a warning by the listing


def test_card_entry_must_be_named_like_its_file(user_dir):
    card = make_fake_card(user_dir)
    data = yaml.safe_load(card.path.read_text())
    card.path.write_text(yaml.safe_dump({"Other": data["TEST2FAKE_tutor"]}))
    with pytest.raises(InputError, match="named 'Other' but the file is TEST2FAKE_tutor.yaml"):
        load_card(card.path)
    card.path.write_text("a: [unclosed")
    with pytest.raises(InputError, match="not valid YAML"):
        load_card(card.path)


def test_pack_then_install_archive_offline_into_user_dir(tmp_path, monkeypatch):
    src = tmp_path / "built"
    card = make_fake_card(src)
    make_fake_card(src, strategy="adapt")
    archive = pack_card(card, tmp_path / "TEST2FAKE_tutor.zip")
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == sorted(["TEST2FAKE_tutor.yaml", *card.files])
    dest = tmp_path / "user"
    monkeypatch.setenv(ENV_VAR, str(dest))
    installed = install_archive(archive)
    assert [c.name for c in installed] == ["TEST2FAKE_tutor"]
    assert installed[0].root == dest and verify_card(installed[0]) == []
    assert not any(p.name.startswith(".install-") for p in dest.iterdir())  # temp folder gone
    # the adapt card shares the pair's translation files: installing it too does not conflict
    installed2 = install_archive(pack_card(get_card("TEST2FAKE_adapt", [src]), tmp_path / "adapt.zip"))
    assert installed2[0].name == "TEST2FAKE_adapt" and verify_card(installed2[0]) == []
    # reinstalling the same archive is fine (same content): the same files, byte for byte, and no stray ones
    before = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    again = install_archive(archive)
    assert [c.name for c in again] == ["TEST2FAKE_tutor"] and verify_card(again[0]) == []
    after = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert after == before
    assert {Path(rel) for rel in card.files} | {Path("TEST2FAKE_tutor.yaml")} <= set(after)


def test_install_archive_refuses_damaged_archive_and_leaves_dest_unchanged(tmp_path):
    card = make_fake_card(tmp_path / "built")
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(damaged, "w") as zf:
        zf.write(card.path, card.path.name)
        for rel in card.files:
            data = card.file_path(rel).read_bytes()
            zf.writestr(rel, data + b"!" if rel.endswith("weights.pt") else data)
    dest = tmp_path / "dest"
    with pytest.raises(InputError, match="weights.pt: checksum mismatch.*damaged"):
        install_archive(damaged, dest)
    assert list(dest.iterdir()) == []
    not_zip = tmp_path / "model.zip"
    not_zip.write_text("hello")
    with pytest.raises(InputError, match="not a zip archive"):
        install_archive(not_zip, dest)
    with pytest.raises(InputError, match="no such file"):
        install_archive(tmp_path / "absent.zip", dest)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.yaml", "x: 1")
    with pytest.raises(InputError, match="outside its folder"):
        install_archive(evil, dest)
    assert not (tmp_path / "outside.yaml").exists()


def test_install_archive_does_not_replace_other_content_without_overwrite(tmp_path):
    card = make_fake_card(tmp_path / "built")
    archive = pack_card(card, tmp_path / "a.zip")
    dest = tmp_path / "dest"
    install_archive(archive, dest)
    (dest / "TEST2FAKE/translation/weights.pt").write_bytes(b"local change")
    with pytest.raises(InputError, match="exists with other content; use --overwrite"):
        install_archive(archive, dest)
    assert (dest / "TEST2FAKE/translation/weights.pt").read_bytes() == b"local change"
    install_archive(archive, dest, overwrite=True)
    assert verify_card(load_card(dest / "TEST2FAKE_tutor.yaml")) == []


def test_install_card_never_downloads_and_names_the_archive(tmp_path):
    built = make_fake_card(tmp_path / "built")
    archive = pack_card(built, tmp_path / "release" / "TEST2FAKE_tutor.zip")
    # a shipped card (files absent) naming where its archive is published
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    data = yaml.safe_load(built.path.read_text())
    data["TEST2FAKE_tutor"]["weights"]["single_fold"] = archive.as_uri()
    (shipped / "TEST2FAKE_tutor.yaml").write_text(yaml.safe_dump(data))
    card = load_card(shipped / "TEST2FAKE_tutor.yaml")
    assert card.url == archive.as_uri() and not card.is_installed()
    before = sorted(p.name for p in shipped.rglob("*"))
    with pytest.raises(InputError, match=r"published at file:.*install --archive"):
        install_card(card)
    assert sorted(p.name for p in shipped.rglob("*")) == before
    # the archive installs offline, and then the card verifies
    install_archive(archive, shipped, overwrite=True)
    installed = install_card(load_card(shipped / "TEST2FAKE_tutor.yaml"))
    assert installed.root == shipped and verify_card(installed) == []


def test_pixel_size_outside_is_more_than_twice_out_of_range(user_dir):
    card = make_fake_card(user_dir, pixel_size=(0.07, 0.18))
    assert not card.pixel_size_outside(0.035) and card.pixel_size_outside(0.034)
    assert not card.pixel_size_outside(0.36) and card.pixel_size_outside(0.37)


# ----------------------------------------------------------------------------------------------------------------
# the `ads-synth models` command (subprocess: the real console script)
# ----------------------------------------------------------------------------------------------------------------
def _ads_synth(*args, env_dir, cwd):
    env = dict(os.environ, **{ENV_VAR: str(env_dir)})
    exe = Path(sys.executable).parent / "ads-synth"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_models_cli_list_show_verify_install(tmp_path):
    card = make_fake_card(tmp_path / "built")
    archive = pack_card(card, tmp_path / "TEST2FAKE_tutor.zip")
    user = tmp_path / "user"
    r = _ads_synth("models", "install", "--archive", str(archive), "--no-ads", env_dir=user, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "installed TEST2FAKE_tutor (TEST -> FAKE, tutor)" in r.stdout and "5 files verified" in r.stdout
    r = _ads_synth("models", "list", env_dir=user, cwd=tmp_path)
    assert r.returncode == 0
    line = next(x for x in r.stdout.splitlines() if x.startswith("TEST2FAKE_tutor"))
    assert "TEST -> FAKE" in line and "0.05-0.1" in line and "present" in line
    r = _ads_synth("models", "show", "TEST2FAKE_tutor", env_dir=user, cwd=tmp_path)
    assert r.returncode == 0 and "full_name: model_seg_pseudo_TEST2FAKE_tutor" in r.stdout
    r = _ads_synth("models", "verify", "TEST2FAKE_tutor", env_dir=user, cwd=tmp_path)
    assert r.returncode == 0 and "TEST2FAKE_tutor: OK (5 files)" in r.stdout
    (user / "TEST2FAKE/nnunet_tutor/dataset.json").write_text("{}")
    r = _ads_synth("models", "verify", "TEST2FAKE_tutor", env_dir=user, cwd=tmp_path)
    assert r.returncode == 2
    assert "dataset.json: checksum mismatch" in r.stdout
    assert r.stderr.strip().count("\n") == 0 and "failed verification (TEST2FAKE_tutor)" in r.stderr
    r = _ads_synth("models", "install", env_dir=user, cwd=tmp_path)
    assert r.returncode == 2 and "give a card name" in r.stderr
    r = _ads_synth("info", env_dir=user, cwd=tmp_path)
    assert r.returncode == 0 and "TEST2FAKE_tutor" in r.stdout


def test_models_cli_create_and_pack(tmp_path):
    tr, nn = make_fake_models(tmp_path / "trained")
    user = tmp_path / "user"
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"dice_axon": 0.8}))
    r = _ads_synth("models", "create", "--source", "TEST", "--target", "FAKE", "--strategy", "adapt",
                   "--translation", str(tr), "--nnunet", str(nn), "--pixel-size", "0.1", "0.2",
                   "--scores", str(scores), env_dir=user, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    card = load_card(user / "TEST2FAKE_adapt.yaml")
    assert card.entry["scores"] == {"dice_axon": 0.8} and card.pixel_size == (0.1, 0.2) and card.folds is None
    r = _ads_synth("models", "pack", "TEST2FAKE_adapt", "-o", str(tmp_path / "a.zip"), env_dir=user, cwd=tmp_path)
    assert r.returncode == 0 and zipfile.is_zipfile(tmp_path / "a.zip")
    r = _ads_synth("models", "create", "--source", "TEST", "--target", "FAKE", "--strategy", "adapt",
                   "--translation", str(tmp_path), "--nnunet", str(tmp_path / "nope"), "--pixel-size", "0.1",
                   env_dir=user, cwd=tmp_path)
    assert r.returncode == 2 and "not an nnU-Net trained model folder" in r.stderr
