"""A real Dask cluster of separate "nodes" on this machine: `dask scheduler` and `dask worker` processes.

Each node is its own process group (its nanny and the worker process it spawns), bound to its own
loopback address (127.0.0.2, 127.0.0.3, ...), so killing a node's group is a machine going away.
Tests and the benchmark share it; close() ends every process it started, on any exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .postgres import free_port

ROOT = Path(__file__).resolve().parent.parent  # the repo: `python -m kmnist_core` runs from here


class DaskNodes:
    """A scheduler on 127.0.0.1 and worker nodes added one by one, started as the README says; `address`: the scheduler's.

    Args:
        log_dir: each process' output goes to <log_dir>/<name>.log.
        port: the scheduler's port (default: a free one).
    """

    def __init__(self, log_dir: Path, port: int | None = None):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                                       env={**os.environ, **(env or {})}, start_new_session=True)
        self.processes[name] = process
        return process

    def start_scheduler(self) -> None:
        self._start("scheduler", [sys.executable, "-m", "kmnist_core", "scheduler", "--host", "127.0.0.1",
                                  "--port", str(self.port)])

    def add_worker(self, name: str, host: str, threads: int = 1, env: dict[str, str] | None = None) -> None:
        """Start one worker node as the README says (`python -m kmnist_core worker`), bound to `host`."""
        self._start(name, [sys.executable, "-m", "kmnist_core", "worker", "--scheduler", self.address, "--host", host,
                           "--threads", str(threads), "--name", name], env)

    def kill(self, name: str) -> None:
        """The node disappears: SIGKILL to its whole process group."""
        process = self.processes[name]
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(10)

    def pids(self, name: str) -> list[int]:
        """Every live process of a node's process group."""
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.processes[name].pid and fields[0] != "Z":  # pgid, not a zombie
                out.append(int(stat.parent.name))
        return out

    def close(self) -> None:
        """End every node and the scheduler (SIGTERM, then SIGKILL after 5 s)."""
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        for name, process in self.processes.items():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(name)
            if self.pids(name):
                os.killpg(process.pid, signal.SIGKILL)

    def __enter__(self) -> DaskNodes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
