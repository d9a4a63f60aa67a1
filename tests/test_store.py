"""The run store under faults: damaged runs are listed as broken, ids cannot escape the store."""

import json
import shutil

import pytest
from helpers import wait_done

from kmnist_core.config import TINY
from kmnist_core.errors import RunNotFoundError, StoreError
from kmnist_core.store import RunStore


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """Two completed TINY runs (seeds 0 and 5), trained once for this module by a real worker."""
    from kmnist_core.jobs import JobQueue

    store = RunStore(tmp_path_factory.mktemp("trained") / "runs")
    queue = JobQueue(store, data)
    try:
        jobs = [queue.submit(TINY), queue.submit(TINY.replace(seed=5))]
        assert [wait_done(queue, j).status for j in jobs] == ["completed", "completed"]
    finally:
        queue.close()
    return store, jobs


def _copy_in(store: RunStore, trained, index: int) -> str:
    """Copy one trained run's folder into this test's store (mtimes kept); returns its id."""
    source, jobs = trained
    shutil.copytree(source.root / jobs[index], store.root / jobs[index])
    return jobs[index]


@pytest.fixture
def completed(store, trained):
    return _copy_in(store, trained, 0)


def test_completed_run_reads_completed(store, completed):
    info = store.get(completed)
    assert info.completed and info.config == TINY and info.reason == ""


@pytest.mark.parametrize("damage, reason", [
    (lambda p: (p / "metrics.json").write_text("{not json"), "metrics.json is unreadable"),
    (lambda p: (p / "model.keras").unlink(), "model.keras is missing"),
    (lambda p: (p / "model.keras").write_bytes(b"PK\x03\x04 half a zip"), "model.keras is damaged"),
    (lambda p: (p / "config.json").write_text('{"config": {"epochs": 0}, "key": "k"}'), "epochs must be"),
    (lambda p: (p / "status.json").unlink(), "status.json is missing"),
])
def test_damaged_runs_are_broken_with_a_reason_and_do_not_break_listing(store, completed, trained, damage, reason):
    other = _copy_in(store, trained, 1)
    damage(store.root / completed)
    runs = {r.run_id: r for r in store.list_runs()}
    assert runs[completed].status == "broken" and reason in runs[completed].reason
    assert runs[other].completed
    assert store.find_completed(runs[other].key) == other


def test_empty_folder_and_foreign_entries(store, completed):
    (store.root / "20260101-000000-abcdef").mkdir()
    (store.root / "notes.txt").write_text("hello")
    (store.root / "some-folder").mkdir()
    runs = {r.run_id: r for r in store.list_runs()}
    assert set(runs) == {completed, "20260101-000000-abcdef"}
    assert runs["20260101-000000-abcdef"].status == "broken"
    assert "config.json is missing" in runs["20260101-000000-abcdef"].reason


@pytest.mark.parametrize("bad", ["../etc", "/etc/passwd", "..", "20260101-000000-abcdef/../../x", "", "x" * 300])
def test_run_ids_cannot_name_paths_outside_the_store(store, bad):
    with pytest.raises(RunNotFoundError, match="is not valid"):
        store.get(bad)
    with pytest.raises(RunNotFoundError):
        store.delete(bad)


def test_delete(store, completed):
    store.delete(completed)
    assert store.list_runs() == []
    with pytest.raises(RunNotFoundError, match="no longer exists"):
        store.get(completed)


def test_store_path_that_is_a_file(tmp_path):
    f = tmp_path / "runs"
    f.write_text("x")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        RunStore(f)


def test_unwritable_store_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = RunStore(blocker / "runs")  # the parent is a file: nothing can be created there
    with pytest.raises(StoreError, match="is not writable"):
        store.create(TINY, "k")
    assert store.list_runs() == []


def test_status_is_written_last(store, completed):
    path = store.root / completed
    mtimes = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    assert mtimes["status.json"] == max(mtimes.values())
    assert json.loads((path / "status.json").read_text())["status"] == "completed"


READ_ONLY_CHECK = """
import sys
from kmnist_core.config import TINY
from kmnist_core.errors import StoreError
from kmnist_core.store import RunStore
store = RunStore(sys.argv[1])
assert [r.run_id for r in store.list_runs()] == [sys.argv[2]], "listing a read-only store"
try:
    store.create(TINY, "k")
except StoreError as e:
    print(e)
else:
    raise SystemExit("created a run in a read-only store")
"""


def test_read_only_store_lists_and_refuses_writes_clearly(store, completed):
    import os
    import subprocess
    import sys

    from helpers import ROOT

    os.chmod(store.root, 0o555)
    try:
        # root ignores permission bits; without these capabilities it obeys them like any user
        drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]
        prefix = drop if os.geteuid() == 0 else []
        out = subprocess.run([*prefix, sys.executable, "-c", READ_ONLY_CHECK, str(store.root), completed],
                             cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert f"runs directory {store.root} is not writable (Permission denied)" in out.stdout
    finally:
        os.chmod(store.root, 0o755)
