"""Shared test fixtures."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """Path to the real microscopy data beside the repository (``../shared/data``); skip when absent."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real data not found at {SHARED_DATA} (clone the repo beside shared/ to run this test)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Two cores are shared with other processes: one torch thread is much faster then (see docs)."""
    from tiny_models import one_torch_thread

    with one_torch_thread():
        yield


@pytest.fixture
def user_cards(tmp_path, monkeypatch):
    """An empty user cards folder (``$ADS_SYNTH_MODELS``) with the package's own cards hidden, so that the cards a
    test makes there are the only ones found."""
    from ads_synth.cards import lookup

    folder = tmp_path / "models"
    monkeypatch.setenv(lookup.ENV_VAR, str(folder))
    monkeypatch.setattr(lookup, "PACKAGE_DIR", tmp_path / "no-package-cards")
    return folder


@pytest.fixture(scope="module")
def ads_segment_main():
    """AxonDeepSeg's own ``axondeepseg`` entry point for in-process comparisons with the plugin's
    (``test_integration_ads_cli.run_main_in``). loguru's terminal handler is added per call there (on the captured
    stderr), so it is removed for the module and put back afterwards."""
    from loguru import logger

    from AxonDeepSeg.segment import main as own_main

    logger.remove()
    yield own_main
    logger.remove()
    logger.add(sys.stderr)


# -- running the suite on two workers (pytest-xdist, `make test`) -----------------------------------------------------
#: Modules that share one session-scoped build run on the same worker, so that it is built once.
SHARED_BUILDS = {"tiny_pipeline": ("test_integration_e2e", "test_pseudo_e2e", "test_reliability_state",
                                   "test_segmentation_nnunet")}
#: The longest groups first (their seconds on this 2-core machine), so that neither worker waits for one at the end.
LONGEST_FIRST = ("test_family_train", "tiny_pipeline", "test_refine", "test_translation_training",
                 "test_shipped_models")


def _group(module):
    return next((g for g, mods in SHARED_BUILDS.items() if module in mods), module)


def pytest_itemcollected(item):
    """Each test module is one unit of work for ``--dist loadgroup`` (as ``loadfile``), the modules of a shared
    build one unit together (marked as each item is collected: before xdist reads the marks)."""
    item.add_marker(pytest.mark.xdist_group(_group(item.module.__name__)))


def pytest_collection_modifyitems(config, items):
    """The longest units are collected first."""
    rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item.module.__name__), len(rank)))  # stable: file order kept
