"""Architecture and safety rules that hold for the whole tree, checked on the source itself."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

# Every module of the product, in its layer; a new module without one fails test_every_module_has_a_layer.
# - ui: Streamlit pages and helpers; they lay out widgets and call the engine. Never TensorFlow or Keras.
# - engine: kmnist_core's server side. Never Streamlit, never TensorFlow or Keras (not even lazily).
# - worker: kmnist_core's worker side; imports Keras/TensorFlow lazily, in the worker process only.
# - tool: the benchmark; anything goes (servers, Chromium), but the product never imports it.
# What may import what: ui -> engine; engine -> engine (and names worker.py only as a spawn target,
# lazily); worker -> engine, worker; tool -> everything. kmnist_core never imports ui or tool modules.
LAYERS = {
    "dashboard.py": "ui",
    **{f"pages/{name}.py": "ui" for name in ("common", "config_form", "legacy_mpa", "live_mode", "run_actions", "train",
                                             "compare", "confusion", "draw", "data", "inspect", "sweep")},
    **{f"kmnist_core/{name}.py": "engine" for name in (
        "__init__", "__main__", "errors", "config", "records", "data", "store", "engine", "jobs", "inference", "service",
        "views", "charts", "evaluate", "baselines", "drawing", "cli", "insight", "sweeps", "stats", "sweep_cli")},
    **{f"kmnist_core/{name}.py": "worker" for name in ("model", "train", "loop", "worker", "events")},
}
TOOL_PACKAGES = ("benchmarks",)
FRAMEWORKS = {"keras", "tensorflow"}
PRODUCT = [ROOT / "dashboard.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "kmnist_core").glob("*.py"))]


def _layer(path: Path) -> str:
    return LAYERS.get(path.relative_to(ROOT).as_posix(), "none")


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Top-level package names a file imports (kmnist_core's own modules as kmnist_core.<name>)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1:  # from .x import y / from . import x
            modules = [node.module] if node.module else [a.name for a in node.names]
            names |= {f"kmnist_core.{m.split('.')[0]}" for m in modules}
    return names


def test_every_module_has_a_layer():
    missing = [p.relative_to(ROOT).as_posix() for p in PRODUCT if _layer(p) == "none"]
    assert missing == [], f"give each new module a layer in LAYERS: {missing}"


@pytest.mark.parametrize("path", PRODUCT, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_imports_follow_the_layers(path):
    layer, names = _layer(path), _imports(path)
    assert not names & set(TOOL_PACKAGES), "the product never imports the benchmark"
    assert "playwright" not in names
    if layer == "ui":
        assert not names & FRAMEWORKS
    if layer in ("engine", "worker"):
        assert "streamlit" not in names and "pages" not in names
    if layer == "engine":
        assert not names & FRAMEWORKS
        worker_side = {n for n in names if LAYERS.get(f"{n.replace('.', '/')}.py") == "worker"}
        assert worker_side <= {"kmnist_core.worker"}, worker_side
        assert not _imports(path, top_level_only=True) & {"kmnist_core.worker"}  # only as a spawn target, lazily
    if layer == "worker":
        assert not _imports(path, top_level_only=True) & FRAMEWORKS  # lazily: inside the worker process


def test_the_server_side_loads_no_tensorflow():
    engine = [p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".") for p in PRODUCT
              if _layer(p) == "engine" and p.stem != "__main__" and p.exists()]
    code = ("import sys; sys.path.insert(0, '.');" + "".join(f"import {m};" for m in engine) +
            "assert not {'tensorflow', 'keras'} & set(sys.modules), sorted({'tensorflow', 'keras'} & set(sys.modules))")
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
