"""Tutorship models among AxonDeepSeg's own models (AxonDeepSeg/models), where its list and loader look."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ads_synth.errors import InputError
from ads_synth.integration import ads_models
from ads_synth.cards.create import pack_card
from ads_synth.cards.lookup import ENV_VAR
from ads_synth.checksums import sha256_file
from ads_synth.integration.ads_models import ADS_MARKER
from test_model_cards import make_fake_card


def test_register_copies_nnunet_folder_under_ads_name(tmp_path):
    card = make_fake_card(tmp_path / "cards")
    models = tmp_path / "ads_models"
    folder = ads_models.register_in_ads(card, models)
    assert folder == models / "model_seg_pseudo_TEST2FAKE_tutor"
    got = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert got == [ADS_MARKER, "dataset.json", "fold_all/checkpoint_final.pth", "plans.json"]
    for rel in ("dataset.json", "fold_all/checkpoint_final.pth"):
        assert sha256_file(folder / rel) == card.files[f"TEST2FAKE/nnunet_tutor/{rel}"]
    assert ads_models.is_registered(card, models)
    # registering again replaces the folder ads-synth made; a foreign folder needs overwrite
    (folder / "dataset.json").write_text("stale")
    ads_models.register_in_ads(card, models)
    assert sha256_file(folder / "dataset.json") == card.files["TEST2FAKE/nnunet_tutor/dataset.json"]
    (folder / ADS_MARKER).unlink()
    with pytest.raises(InputError, match="that ads-synth did not install"):
        ads_models.register_in_ads(card, models)
    assert not ads_models.unregister_from_ads(card, models) and folder.is_dir()  # not ours: kept
    ads_models.register_in_ads(card, models, overwrite=True)
    assert ads_models.unregister_from_ads(card, models) and not folder.exists()


def test_proxy_card_segments_the_target_and_registers_like_a_tutor_card(tmp_path):
    proxy = make_fake_card(tmp_path / "cards", strategy="proxy")
    assert proxy.segments_target and proxy.nnunet.name == "nnunet_proxy"
    folder = ads_models.register_in_ads(proxy, tmp_path / "m")
    assert folder.name == "model_seg_pseudo_TEST2FAKE_proxy" and ads_models.is_registered(proxy, tmp_path / "m")
    assert sha256_file(folder / "dataset.json") == proxy.files["TEST2FAKE/nnunet_proxy/dataset.json"]
    assert not make_fake_card(tmp_path / "cards", strategy="adapt", seed=b"a").segments_target


def test_adapt_cards_and_cards_without_files_are_not_registered(tmp_path):
    adapt = make_fake_card(tmp_path / "cards", strategy="adapt")
    with pytest.raises(InputError, match="adaptation model.*--pseudo adapt"):
        ads_models.register_in_ads(adapt, tmp_path / "m")
    tutor = make_fake_card(tmp_path / "cards", seed=b"t")
    (tutor.nnunet / "plans.json").unlink()
    with pytest.raises(InputError, match="missing file"):
        ads_models.register_in_ads(tutor, tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.fixture
def real_ads_models():
    """AxonDeepSeg's real models folder; whatever a test adds there is removed afterwards."""
    folder = ads_models.ads_models_dir()
    existed = folder.exists()
    before = set(os.listdir(folder)) if existed else set()
    yield folder
    import shutil

    for name in set(os.listdir(folder)) - before if folder.exists() else ():
        shutil.rmtree(folder / name, ignore_errors=True)
    if not existed and folder.exists() and not os.listdir(folder):
        folder.rmdir()


def test_installed_tutor_model_is_in_ads_model_list(tmp_path, monkeypatch, real_ads_models):
    from AxonDeepSeg import ads_utils, segment

    source = "T" + uuid.uuid4().hex[:8]  # unique: other test runs may share the ADS folder
    card = make_fake_card(tmp_path / "cards", source=source)
    archive = pack_card(card, tmp_path / "card.zip")
    env = dict(os.environ, **{ENV_VAR: str(tmp_path / "user")})
    exe = Path(sys.executable).parent / "ads-synth"
    r = subprocess.run([str(exe), "models", "install", "--archive", str(archive)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"AxonDeepSeg model {card.full_name}" in r.stdout
    # ADS's own model list and its default models path see it
    assert card.full_name in ads_utils.get_existing_models_list()
    assert (segment.MODELS_PATH / card.full_name / "fold_all").is_dir()
    assert segment.get_model_type(segment.MODELS_PATH / card.full_name) == "light"
    r = subprocess.run([str(exe), "models", "list"], capture_output=True, text=True, env=env, timeout=120)
    assert card.full_name in next(x for x in r.stdout.splitlines() if x.startswith(card.name))
    r = subprocess.run([str(exe), "models", "verify"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and f"{card.name}: OK" in r.stdout
    (segment.MODELS_PATH / card.full_name / "plans.json").write_text("changed")
    r = subprocess.run([str(exe), "models", "verify"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "AxonDeepSeg copy" in r.stdout and "plans.json: checksum mismatch" in r.stdout
    r = subprocess.run([str(exe), "models", "unregister", card.name], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0 and card.full_name not in (ads_utils.get_existing_models_list() or [])
