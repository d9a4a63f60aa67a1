"""The job queue: cache hits, FIFO order, cancel, concurrent submitters, restart after SIGKILL."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import ROOT, SUBSET, wait_done, wait_until

from kmnist_core.config import TINY
from kmnist_core.jobs import JobQueue
from kmnist_core.store import RunStore


def test_cache_hit_returns_stored_run_without_training(queue, store):
    first = queue.submit(TINY)
    assert wait_done(queue, first).status == "completed"
    before = sorted(p.name for p in store.root.iterdir())
    start = time.perf_counter()
    again = queue.submit(TINY)
    elapsed = time.perf_counter() - start
    snap = queue.progress(again)
    assert again == first and snap.cached and snap.status == "completed"
    assert len(snap.history) == TINY.epochs
    assert sorted(p.name for p in store.root.iterdir()) == before  # no new run folder
    assert elapsed < 2.0  # answered from the store, far below a training run
    forced = queue.submit(TINY, force=True)
    assert forced != first and wait_done(queue, forced).status == "completed"


def test_a_new_queue_on_the_same_store_answers_from_cache(store, data):
    q1 = JobQueue(store, data)
    job = q1.submit(TINY)
    wait_done(q1, job)
    q1.close()
    q2 = JobQueue(store, data)
    try:
        assert q2.submit(TINY) == job and q2.progress(job).cached
    finally:
        q2.close()


def test_fifo_dedupe_and_cancel_queued(queue):
    blocker = queue.submit(TINY.replace(epochs=100, batch_size=16))
    wait_until(lambda: queue.progress(blocker).status == "running")  # once the worker process is up
    a = queue.submit(TINY.replace(seed=1))
    b = queue.submit(TINY.replace(seed=2))
    assert queue.submit(TINY.replace(seed=1)) == a  # identical in-flight config: same job
    assert queue.progress(a).position == 1 and queue.progress(b).position == 2
    assert queue.cancel(a) and queue.progress(a).status == "cancelled"
    assert queue.store.get(a).status == "cancelled"
    queue.cancel(blocker)
    assert wait_done(queue, b).status == "completed"
    assert [s.status for s in queue.jobs()] == ["cancelled", "cancelled", "completed"]


def test_three_sessions_submit_at_once_and_all_complete_in_order(queue):
    barrier = threading.Barrier(3)
    ids = {}

    def session(seed):
        barrier.wait()
        ids[seed] = queue.submit(TINY.replace(seed=seed, epochs=1))

    threads = [threading.Thread(target=session, args=(s,)) for s in (11, 12, 13)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids.values())) == 3
    snaps = [wait_done(queue, i) for i in ids.values()]
    assert all(s.status == "completed" for s in snaps)
    order = sorted(snaps, key=lambda s: s.submitted)
    infos = [queue.store.get(s.job_id) for s in order]
    assert all(i.completed for i in infos)
    # trained one after another, in submission order: each started after the previous finished
    starts = [os.stat(i.path / "history.json").st_mtime for i in infos]
    assert starts == sorted(starts)


def test_progress_reads_do_not_block_training(queue):
    job = queue.submit(TINY.replace(epochs=4, batch_size=16))
    wait_until(lambda: queue.progress(job).status == "running")
    worst = 0.0
    while queue.progress(job).active:
        t = time.perf_counter()
        snap = queue.progress(job)
        worst = max(worst, time.perf_counter() - t)
        assert snap.fraction <= 1.0
        time.sleep(0.002)  # a busy UI polls often, but not in a spin loop
    assert queue.progress(job).status == "completed"
    assert worst < 0.05


SCRIPT = """
import sys
from kmnist_core.config import TINY
from kmnist_core.data import load_kmnist
from kmnist_core.jobs import JobQueue
from kmnist_core.store import RunStore
q = JobQueue(RunStore(sys.argv[1]), load_kmnist(sys.argv[2]))
job = q.submit(TINY.replace(epochs=200, batch_size=64))
import time
while q.progress(job).epoch < 2:
    time.sleep(0.05)
print(job, q.progress(job).worker_pid, flush=True)
time.sleep(600)
"""


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited


def test_sigkill_of_the_queue_owner_ends_its_worker_and_leaves_the_run_interrupted(store, data):
    q = JobQueue(store, data)
    earlier = q.submit(TINY)
    wait_done(q, earlier)
    q.close()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(store.root), str(SUBSET)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        victim, worker = proc.stdout.readline().split()
        worker = int(worker)
        assert store.get(victim).status == "running" and _alive(worker)
    finally:
        proc.send_signal(signal.SIGKILL)  # the owner only: its worker must notice on its own
        proc.wait()
    wait_until(lambda: not _alive(worker), timeout=10)  # no orphan keeps training
    info = store.get(victim)
    assert info.status == "interrupted" and "stopped" in info.reason
    assert store.get(earlier).completed
    q2 = JobQueue(store, data)  # a restart persists the state
    q2.close()
    assert '"interrupted"' in (info.path / "status.json").read_text()
    assert RunStore(store.root).find_completed(info.key) is None
