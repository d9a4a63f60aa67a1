"""A real Dask cluster of two "nodes" (127.0.0.2, 127.0.0.3): two clients train at once, a node dies, runs come home.

Also the faults of the scheduler itself: unreachable at the start (one line, then a reconnect
without a restart) and a worker that holds other data than the server (it takes no jobs).
"""

import shutil

import numpy as np
import pytest
from helpers import SUBSET, wait_done, wait_until

from benchmarks.cluster import DaskNodes
from benchmarks.postgres import free_port
from kmnist_core.config import TINY
from kmnist_core.data import load_kmnist
from kmnist_core.errors import KmnistError
from kmnist_core.jobs import JobQueue
from kmnist_core.store import RESULT_FILES, RunStore

pytestmark = pytest.mark.slow
LONG = TINY.replace(epochs=200, batch_size=16)  # trains for minutes unless something ends it


def _ready(queue, count):
    return wait_until(lambda: len(ws := [w for w in queue.workers() if w.state == "idle"]) >= count and ws,
                      timeout=120)


def test_two_clients_on_two_nodes_a_node_dies_and_every_other_run_comes_home_whole(tmp_path, data):
    with DaskNodes(tmp_path / "logs") as nodes:
        nodes.start_scheduler()
        nodes.add_worker("node-a", "127.0.0.2")
        nodes.add_worker("node-b", "127.0.0.3")
        stores = [RunStore(tmp_path / "server-1"), RunStore(tmp_path / "server-2")]
        queues = [JobQueue(store, data, scheduler=nodes.address) for store in stores]
        try:
            workers = _ready(queues[0], 2)
            assert {w.host for w in workers} == {"127.0.0.2", "127.0.0.3"}
            victim = queues[0].submit(LONG)
            running = wait_until(lambda: (s := queues[0].progress(victim)).history and s)
            doomed = "node-a" if running.worker.startswith("tcp://127.0.0.2:") else "node-b"
            others = [queues[1].submit(TINY.replace(seed=s)) for s in (1, 2)] + [queues[0].submit(TINY)]
            node_pids = nodes.pids(doomed)
            nodes.kill(doomed)
            snap = wait_done(queues[0], victim, timeout=60)
            assert snap.status == "failed" and snap.error.startswith(f"worker {running.worker} died mid-run"), snap
            info = stores[0].get(victim)
            assert info.status == "failed" and info.reason == snap.error and len(info.history) >= 1
            owners = [queues[1], queues[1], queues[0]]
            for queue, job in zip(owners, others, strict=True):
                done = wait_done(queue, job, timeout=180)
                assert done.status == "completed", done
                assert not done.worker.startswith(running.worker.rsplit(":", 1)[0] + ":")  # on the node left
            for store, job in zip([stores[1], stores[1], stores[0]], others, strict=True):
                run = store.get(job)
                assert run.completed, run.reason  # the store's own check: every result file there, and whole
                assert all((run.path / name).is_file() for name in RESULT_FILES)
                assert list(run.path.glob("**/events.out.tfevents.*"))  # TensorBoard's files came home too
            assert node_pids and wait_until(lambda: not nodes.pids(doomed), timeout=10)
        finally:
            for queue in queues:
                queue.close()
        everyone = list(nodes.processes)
    assert all(not nodes.pids(name) for name in everyone)  # no process left behind


def test_an_unreachable_scheduler_is_one_line_and_the_queue_reconnects_when_it_answers(tmp_path, data):
    port = free_port()
    store = RunStore(tmp_path / "runs")
    queue = JobQueue(store, data, scheduler=f"tcp://127.0.0.1:{port}")
    try:
        wait_until(queue.engine_problem, timeout=30)
        with pytest.raises(KmnistError) as e:
            queue.submit(TINY)
        message = str(e.value)
        assert message.startswith(f"no scheduler answers at tcp://127.0.0.1:{port}") and "\n" not in message
        assert store.list_runs() == []  # nothing was queued that could never run
        with DaskNodes(tmp_path / "logs", port=port) as nodes:
            nodes.start_scheduler()
            nodes.add_worker("node-a", "127.0.0.2")
            _ready(queue, 1)  # reconnected by itself, no restart
            assert queue.engine_problem() == ""
            job = queue.submit(TINY)
            assert wait_done(queue, job).status == "completed" and store.get(job).completed
            lost = queue.submit(LONG)
            wait_until(lambda: queue.progress(lost).history)
            nodes.kill("scheduler")  # mid-run
            snap = wait_done(queue, lost, timeout=60)
            assert snap.status == "failed" and snap.error == f"the scheduler at tcp://127.0.0.1:{port} went away mid-run"
            assert store.get(lost).reason == snap.error
            assert wait_until(queue.engine_problem, timeout=30).startswith(f"no scheduler answers at tcp://127.0.0.1:{port}")
    finally:
        queue.close()


CLIENT = """
import sys, time
from kmnist_core.config import TINY
from kmnist_core.data import load_kmnist
from kmnist_core.jobs import JobQueue
from kmnist_core.store import RunStore
q = JobQueue(RunStore(sys.argv[1]), load_kmnist(sys.argv[2]), scheduler=sys.argv[3])
job = q.submit(TINY.replace(hidden_layers=(1024, 1024), epochs=200, batch_size=8))
while not q.progress(job).history:
    time.sleep(0.05)
print(job, flush=True)
time.sleep(600)
"""


def test_a_dead_clients_running_job_is_dropped_by_the_remote_worker(tmp_path, data):
    import subprocess
    import sys

    from helpers import ROOT

    with DaskNodes(tmp_path / "logs") as nodes:
        nodes.start_scheduler()
        nodes.add_worker("node-a", "127.0.0.2")  # one training slot: only a dropped job frees it
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(tmp_path / "dead"), str(SUBSET), nodes.address],
                                  stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert client.stdout.readline().strip()  # its job trains on the node (200 epochs of 900 steps: hours)
        finally:
            client.kill()  # the client dies; its scheduler connection closes with it
            client.wait()
        queue = JobQueue(RunStore(tmp_path / "alive"), data, scheduler=nodes.address)
        try:
            job = queue.submit(TINY)
            assert wait_done(queue, job, timeout=120).status == "completed"
        finally:
            queue.close()


def test_a_worker_with_other_data_takes_no_jobs_and_says_so_naming_itself(tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(SUBSET, folder)
    data = load_kmnist(folder)  # what the server holds
    labels = folder / "kmnist-test-labels.npz"
    with np.load(labels) as npz:
        changed = {k: np.roll(npz[k], 1) for k in npz.files}
    np.savez_compressed(labels, **changed)  # the files the worker will load are no longer the server's
    queue = JobQueue(RunStore(tmp_path / "runs"), data)
    try:
        [worker] = wait_until(lambda: [w for w in queue.workers() if w.state != "starting"], timeout=120)
        assert worker.state == "other data" and not worker.usable
        assert worker.line == f"worker {worker.address} holds other KMNIST data than the server: it takes no jobs"
        job = queue.submit(TINY)
        assert queue.progress(job).status == "queued"
    finally:
        queue.close()
