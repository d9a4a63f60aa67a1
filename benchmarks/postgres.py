"""A private PostgreSQL cluster for the sweep sections: initdb + pg_ctl in a temp folder, on loopback, removed after.

The same recipe as tests/postgres_support.py (which also puts the server in a network namespace),
without pytest and without the namespace: the throughput figure is about workers, not the network.
As root, initdb and pg_ctl run as the `postgres` user, which must own the folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

USER, DATABASE = "kmnist", "bench"
START_TIMEOUT_S = 60


def find_bin() -> Path | None:
    """The newest PostgreSQL bin folder with initdb and pg_ctl (Debian keeps them off PATH), or None."""
    def version(folder: str) -> int:
        name = Path(folder).parent.name
        return int(name) if name.isdigit() else 0

    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_checked(cmd: list[str], timeout: float = 120) -> str:
    """Run a command; returns its stdout.

    Raises:
        RuntimeError: it failed, with the command and its stderr (or stdout) in one message.
    """
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done.stdout


def ensure_database(name: str, timeout: float, **connect: Any) -> None:
    """Connect (retrying until the server answers, within timeout) and create database `name` if it is missing.

    Args:
        connect: psycopg.connect's host, port, user, password.

    Raises:
        psycopg.OperationalError: the server did not answer within timeout.
    """
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(dbname="postgres", connect_timeout=5, autocommit=True, **connect) as conn:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                    conn.execute(f"CREATE DATABASE {name}")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # the poll's interval, not a wait for a guess


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """A running private cluster with an empty database; yields its `postgresql+psycopg://` URL.

    Trust authentication on 127.0.0.1 only, fsync off (a throwaway cluster: speed, not durability).

    Raises:
        RuntimeError: PostgreSQL is not installed, or the cluster did not start.
    """

    bin_dir = find_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb/pg_ctl in /usr/lib/postgresql/*/bin or on PATH);"
                           " apt-get install -y postgresql")
    root = Path(tempfile.mkdtemp(prefix="kmnist-bench-pg-"))  # under /tmp: the postgres user can reach it
    data, port = root / "data", free_port()
    as_postgres = os.geteuid() == 0

    def owner(cmd: list[str]) -> list[str]:
        return ["su", "postgres", "-c", shlex.join(cmd)] if as_postgres else cmd

    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    started = False
    try:
        run_checked(owner([str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8",
                           "--no-sync", "--no-instructions"]))
        options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
                   " -c full_page_writes=off")
        run_checked(owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options,
                           "-w", "-t", str(START_TIMEOUT_S), "start"]))
        started = True
        ensure_database(DATABASE, START_TIMEOUT_S, host="127.0.0.1", port=port, user=USER)
        yield f"postgresql+psycopg://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                run_checked(owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "60",
                                   "stop"]))
        shutil.rmtree(root, ignore_errors=True)
