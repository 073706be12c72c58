"""Import rules between the parts (docs/architecture.md): inference never imports training, ``translation/``
imports neither the model package nor the card layer, the strategy registry and the card layer stay light, and
the model package ``ads_synth_models`` holds data only.

Imports are read from the source with ``ast`` (also those inside functions, which run later), followed
transitively through ``ads_synth`` and ``ads_synth_models``; one subprocess checks what importing really loads.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Modules that train (or only training needs).
TRAINING = {
    "ads_synth.segmentation.pseudo_training",
    "ads_synth.segmentation.model_building",
    "ads_synth.segmentation.trainer",
    "ads_synth.segmentation.nnunet_trainers",
    "ads_synth.segmentation.plans",
    "ads_synth.segmentation.dataset_export",
    "ads_synth.translation.trainer",
    "ads_synth.translation.scoring",
}
#: What the ADS command, napari, FSLeyes and ``ads-synth translate`` run.
INFERENCE = (
    "ads_synth.segmentation.pseudo",
    "ads_synth.segmentation.predict",
    "ads_synth.translation.translate",
    "ads_synth.integration.pseudo_action",
    "ads_synth.integration.ads_cli",
    "ads_synth.integration.napari_widget",
    "ads_synth.integration.fsleyes_control",
)


def _file(module):
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def direct_imports(module) -> set:
    """Project modules that ``module``'s source imports anywhere (module level or inside functions)."""
    path = _file(module)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("ads_synth", "ads_synth_models") and _file(name).is_file():
                found.add(name)
    return found


def closure(module) -> set:
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += direct_imports(m) - seen
    return seen


@pytest.mark.parametrize("module", INFERENCE)
def test_inference_never_imports_training(module):
    reached = closure(module) & TRAINING
    assert not reached, f"{module} reaches training modules {sorted(reached)}"


#: What ``translation/`` must never reach: the model package, the card layer and the command layer (card names
#: are resolved in the command layer).
NOT_FROM_TRANSLATION = ("ads_synth_models", "ads_synth.cards", "ads_synth.commands", "ads_synth.integration")


def test_translation_never_imports_the_model_package_or_the_cards():
    for path in sorted((ROOT / "ads_synth" / "translation").glob("*.py")):
        module = f"ads_synth.translation.{path.stem}"
        bad = {m for m in closure(module) if m.startswith(NOT_FROM_TRANSLATION)}
        assert not bad, f"{module} imports {sorted(bad)}"


def test_card_layer_never_imports_training_or_the_commands():
    for path in sorted((ROOT / "ads_synth" / "cards").glob("*.py")):
        module = f"ads_synth.cards.{path.stem}".removesuffix(".__init__")
        reached = closure(module)
        bad = (reached & TRAINING) | {m for m in reached if m.startswith(("ads_synth.commands", "ads_synth.family"))}
        assert not bad, f"{module} reaches {sorted(bad)}"


def test_model_package_is_data_only():
    """``ads_synth_models`` holds cards, model folders and datasets: no code but its ``__init__`` docstring."""
    package = ROOT / "ads_synth_models"
    code = sorted(str(p.relative_to(package)) for p in package.rglob("*.py"))
    assert code == ["__init__.py"], code
    body = ast.parse((package / "__init__.py").read_text(encoding="utf-8")).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


def test_strategy_registry_is_standard_library_only():
    tree = ast.parse(_file("ads_synth.segmentation.strategies").read_text(encoding="utf-8"))
    top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {(n.module or "").split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert top <= {"__future__", "dataclasses", "typing", "ads_synth"}
    assert direct_imports("ads_synth.segmentation.strategies") <= {"ads_synth.errors", "ads_synth.data.intensity",
                                                                  "ads_synth.data"}


def test_rules_seen_by_a_real_import():
    """Importing the inference engine and the ADS command loads neither training, nor torch for the registry."""
    code = (
        "import sys\n"
        "import ads_synth.segmentation.strategies\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'registry pulled heavy modules'\n"
        "import ads_synth.integration.ads_cli, ads_synth.segmentation.pseudo, ads_synth.translation.translate\n"
        f"bad = sorted(m for m in {sorted(TRAINING)!r} if m in sys.modules)\n"
        "assert not bad, bad\n"
        "assert not [m for m in sys.modules if m.startswith('ads_synth.cards')], 'cards read by inference'\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_card_layer_loads_no_torch():
    """Listing, verifying, making and installing cards imports no torch (``ads-synth models list`` stays quick)."""
    code = ("import sys, ads_synth.cards.create, ads_synth.cards.install, ads_synth.cards.lookup, ads_synth.cards.verify\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'the card layer pulled heavy modules'\n"
            "print('ok')\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_the_checker_sees_imports_inside_functions():
    """The AST reader finds an import inside a function (so the rules above can fail)."""
    assert "ads_synth.segmentation.folds" in direct_imports("ads_synth.segmentation.pseudo")
    assert "ads_synth.segmentation.model_building" in direct_imports("ads_synth.segmentation.pseudo_training")
