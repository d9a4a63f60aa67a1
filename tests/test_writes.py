"""Nothing writes outside the runs directory and the OS temp directory."""

import os
import subprocess
import sys

from helpers import ROOT, SUBSET


def _tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_cli_training_writes_only_to_runs_and_temp(tmp_path):
    home, cwd, runs, tmp = (tmp_path / n for n in ("home", "cwd", "runs", "tmp"))
    for d in (home, cwd, tmp):
        d.mkdir()
    repo_before = _tree(ROOT / "kmnist_core")
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "KMNIST_RUNS_DIR": str(runs),
           "KMNIST_DATA_DIR": str(SUBSET), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("KERAS_HOME", None)
    out = subprocess.run([sys.executable, "-m", "kmnist_core", "train", "--hidden", "16", "--epochs", "1"],
                         cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert _tree(home) == [] and _tree(cwd) == []
    assert len([p for p in runs.iterdir()]) == 1
    assert _tree(ROOT / "kmnist_core") == repo_before
