"""Architecture and safety rules that hold for the whole tree, checked on the source itself."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

CORE = sorted((ROOT / "kmnist_core").glob("*.py"))
UI = [ROOT / "dashboard.py", *sorted((ROOT / "pages").glob("*.py"))]
# The worker side: only these touch Keras, and only lazily, inside the worker process.
KERAS_MODULES = {"model.py", "train.py", "loop.py", "worker.py", "bench.py"}


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_never_imports_streamlit(path):
    assert "streamlit" not in _imports(path)


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_only_model_train_jobs_touch_keras_and_only_lazily(path):
    names = _imports(path)
    if path.name not in KERAS_MODULES:
        assert not names & {"keras", "tensorflow"}
    assert not _imports(path, top_level_only=True) & {"keras", "tensorflow"}


@pytest.mark.parametrize("path", UI, ids=lambda p: p.name)
def test_ui_never_imports_tensorflow(path):
    assert not _imports(path) & {"keras", "tensorflow"}


def test_importing_the_ui_modules_does_not_load_tensorflow():
    code = (
        "import sys, importlib; sys.path[:0] = ['.', 'pages'];"
        "import kmnist_core.cli, kmnist_core.jobs, kmnist_core.store, kmnist_core.model, kmnist_core.data;"
        "import kmnist_core.drawing, kmnist_core.evaluate, kmnist_core.inference, kmnist_core.worker;"
        "import kmnist_core.records, kmnist_core.views, kmnist_core.charts, kmnist_core.baselines;"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_no_pickle_anywhere():
    offenders = [p for p in ROOT.rglob("*.py")
                 if ".venv" not in p.parts and "allow_pickle=True" in p.read_text() and p.name != Path(__file__).name]
    assert offenders == []


def test_models_load_in_safe_mode():
    source = (ROOT / "kmnist_core" / "model.py").read_text()
    assert "safe_mode=True" in source
    loads = [p for p in ROOT.rglob("*.py")
             if ".venv" not in p.parts and p.name != Path(__file__).name and "load_model(" in p.read_text()]
    for p in loads:  # every keras load goes through kmnist_core.model.load_model
        text = p.read_text()
        assert "keras.saving.load_model" not in text or p.name == "model.py", p


def test_server_defaults_are_safe():
    import tomllib

    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["address"] == "localhost"  # exposing it is a deliberate flag, see the README
    assert server["enableXsrfProtection"] is True
    assert 0 < server["maxUploadSize"] <= 5  # MB
