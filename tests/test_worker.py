"""Dask worker processes: a killed worker, a hung one, a full disk, several workers; real processes, real signals."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, SUBSET, wait_done, wait_until

from kmnist_core.config import TINY
from kmnist_core.errors import ConfigError
from kmnist_core.engine import threads_per_worker, worker_count
from kmnist_core.jobs import STOP_GRACE_S, JobQueue
from kmnist_core.store import RESULT_FILES, RunStore

LONG = TINY.replace(epochs=200, batch_size=16)  # trains for minutes unless stopped


def _running(queue, job_id, epochs=1):
    """Wait until the job has finished `epochs` epochs in its worker; returns its snapshot."""
    return wait_until(lambda: (s := queue.progress(job_id)).status == "running" and len(s.history) >= epochs and s)


def _gone(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_a_killed_worker_fails_its_run_by_name_and_a_fresh_worker_takes_the_next_job(queue, store):
    victim = queue.submit(LONG)
    pid = _running(queue, victim).worker_pid
    following = queue.submit(TINY)
    os.kill(pid, signal.SIGKILL)  # as the OOM killer would
    snap = wait_done(queue, victim, timeout=30)
    assert snap.status == "failed" and snap.error.startswith(f"worker {snap.worker} died mid-run ("), snap.error
    info = store.get(victim)
    assert info.status == "failed" and info.reason == snap.error
    assert len(info.history) >= 1  # the epochs it finished are kept
    after = wait_done(queue, following)
    assert after.status == "completed" and after.worker_pid not in (None, pid)
    assert store.get(following).completed


def test_a_worker_that_does_not_answer_stop_is_killed_and_the_run_reads_cancelled(queue, store):
    job = queue.submit(LONG)
    pid = _running(queue, job).worker_pid
    os.kill(pid, signal.SIGSTOP)  # hung: it cannot answer (as inside a long XLA compile)
    try:
        started = time.monotonic()
        assert queue.cancel(job)
        snap = wait_done(queue, job, timeout=STOP_GRACE_S + 20)
        waited = time.monotonic() - started
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGCONT)
    assert snap.status == "cancelled" and "did not answer" in snap.error
    assert waited >= STOP_GRACE_S - 0.5  # it was given its chance to stop cooperatively
    wait_until(lambda: _gone(pid), timeout=10)
    info = store.get(job)
    assert info.status == "cancelled" and "stopped by force" in info.reason
    nxt = queue.submit(TINY)
    assert wait_done(queue, nxt).status == "completed"


def test_a_cooperative_stop_answers_within_a_second(queue, store):
    job = queue.submit(LONG)
    pid = _running(queue, job).worker_pid
    started = time.monotonic()
    queue.cancel(job)
    snap = wait_done(queue, job, timeout=10)
    assert snap.status == "cancelled" and time.monotonic() - started < 1.5
    assert queue.workers()[0].pid == pid  # the same worker goes on: nothing was killed
    assert store.get(job).status == "cancelled"


def test_two_workers_train_two_jobs_at_once_with_one_thread_each(store, data):
    q = JobQueue(store, data, workers=2)
    try:
        a, b = q.submit(LONG), q.submit(LONG.replace(seed=1))
        snaps = [_running(q, a), _running(q, b)]
        assert snaps[0].worker_pid != snaps[1].worker_pid
        assert [w.threads for w in q.workers()] == [threads_per_worker(2)] * 2
        assert threads_per_worker(2) * 2 <= max(2, os.cpu_count())
    finally:
        q.close()
    assert store.get(a).status == store.get(b).status == "cancelled"  # close() stopped both


@pytest.mark.parametrize("text", ["0", "two", "-1", "1.5", "100"])
def test_a_bad_worker_count_is_one_line_naming_the_variable(text):
    with pytest.raises(ConfigError, match=f"KMNIST_WORKERS must be a whole number from 1 to 64; got '{text}'"):
        worker_count(text)
    assert worker_count("") == 1 and worker_count(" 3 ") == 3


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A real 400 KB file system (tmpfs) for the runs folder; unmounted at the end."""
    mount = tmp_path / "disk"
    try:
        _mount_tmpfs(mount, "400k")
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        pytest.fail(f"this test mounts a tmpfs and needs root (as CI has): {e}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def _cli(runs, *args, log_dir):
    env = {**os.environ, "KMNIST_LOG_DIR": str(log_dir), "TF_CPP_MIN_LOG_LEVEL": "0"}  # TF may talk: to the log
    return subprocess.run([sys.executable, "-m", "kmnist_core", "--data-dir", str(SUBSET), "--runs-dir", str(runs),
                           "train", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_full_disk_is_one_line_naming_the_runs_folder_and_the_next_run_works(small_disk, tmp_path):
    runs = small_disk / "runs"
    out = _cli(runs, "--hidden", "256", "--epochs", "1", log_dir=tmp_path / "logs")
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"no space left on the device of runs folder {runs}" in out.stderr
    assert "free some space or set KMNIST_RUNS_DIR" in out.stderr
    assert "Traceback" in (tmp_path / "logs" / "worker.log").read_text()  # the details are in the log file
    [run] = RunStore(runs).list_runs()
    assert run.status == "failed" and "no space left" in run.reason
    assert not [name for name in RESULT_FILES if (run.path / name).exists()]  # no half-saved result
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)  # space is free again
    again = _cli(runs, "--hidden", "256", "--epochs", "1", log_dir=tmp_path / "logs")
    assert again.returncode == 0, again.stderr
    assert sorted(r.status for r in RunStore(runs).list_runs()) == ["completed", "failed"]


def test_a_pruned_job_reads_pruned_and_keeps_its_epochs(queue, store):
    job = queue.submit(LONG)
    _running(queue, job, epochs=2)
    assert queue.cancel(job, status="pruned")
    snap = wait_done(queue, job, timeout=10)
    info = store.get(job)
    assert snap.status == info.status == "pruned" and len(info.history) >= 2
    assert store.find_completed(info.key) is None


def test_a_stop_requested_through_the_store_by_another_process_stops_the_run(queue, store):
    job = queue.submit(LONG)
    _running(queue, job)
    subprocess.run([sys.executable, "-c", f"from kmnist_core.store import RunStore; "
                    f"RunStore({str(store.root)!r}).request_stop({job!r})"], cwd=ROOT, check=True)
    assert wait_done(queue, job, timeout=10).status == "cancelled"
    assert store.get(job).status == "cancelled"
