"""A real, private PostgreSQL server for tests: initdb + pg_ctl in a temp folder, in a network namespace when possible.

Import the `postgres` fixture into a test module (`from postgres_support import postgres`). It
yields a PostgresServer whose `url` is `postgresql+psycopg://kmnist:PASSWORD@HOST:PORT/sweeps`.

When this process may create network namespaces (root with `ip`), the server runs in one of its
own, reached over a veth pair (10.200.N.1 here, 10.200.N.2 there): the clients' traffic really
crosses a network link, as between machines. Otherwise it listens on 127.0.0.1. Either way its
socket folder is the temp folder and it uses a free port. As root, initdb and pg_ctl run as the
`postgres` user (`su postgres -c ...`), which must own the folder.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from benchmarks.postgres import ensure_database, find_bin, free_port
from benchmarks.postgres import run_checked as _run

INSTALL_HINT = "`make test` installs it (apt-get install -y postgresql)"
USER, DATABASE = "kmnist", "sweeps"


class PostgresServer:
    """One private PostgreSQL cluster; start(), stop() (to simulate an outage), close() removes everything."""

    def __init__(self, bin_dir: Path, netns: bool = True):
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="kmnist-pg-"))  # under /tmp: the postgres user can reach it
        self.data = self.root / "data"
        self.password = "pw-" + secrets.token_hex(8)
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.namespace: str | None = None
        self.host, self.port = "127.0.0.1", free_port()
        self.client_host = "127.0.0.1"
        if netns:
            self._make_namespace()
        self._init()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}:{self.password}@{self.host}:{self.port}/{DATABASE}"

    @property
    def network(self) -> str:
        return f"network namespace {self.namespace} over veth" if self.namespace else "loopback"

    def _as_owner(self, cmd: list[str], namespace: str | None = None) -> list[str]:
        if self.as_postgres:
            cmd = ["su", "postgres", "-c", shlex.join(cmd)]
        return ["ip", "netns", "exec", namespace, *cmd] if namespace else cmd

    def _make_namespace(self) -> None:
        if os.geteuid() != 0 or not shutil.which("ip"):
            return
        n = 1 + os.getpid() % 250
        name, here, there = f"kmnist-pg-{os.getpid()}", f"kmpg{os.getpid()}a"[-15:], f"kmpg{os.getpid()}b"[-15:]
        steps = [
            ["ip", "netns", "add", name],
            ["ip", "link", "add", here, "type", "veth", "peer", "name", there],
            ["ip", "link", "set", there, "netns", name],
            ["ip", "addr", "add", f"10.200.{n}.1/24", "dev", here],
            ["ip", "link", "set", here, "up"],
            ["ip", "netns", "exec", name, "ip", "addr", "add", f"10.200.{n}.2/24", "dev", there],
            ["ip", "netns", "exec", name, "ip", "link", "set", there, "up"],
            ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
        ]
        try:
            for step in steps:
                _run(step, 30)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            subprocess.run(["ip", "link", "del", here], capture_output=True)
            return  # no namespaces here: fall back to loopback
        self.namespace, self.veth = name, here
        self.host, self.client_host, self.subnet = f"10.200.{n}.2", f"10.200.{n}.1", f"10.200.{n}.0/24"

    def _init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        _run(self._as_owner([str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "-A", "scram-sha-256",
                             f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync", "--no-instructions"]))
        if self.namespace:
            with open(self.data / "pg_hba.conf", "a") as f:
                f.write(f"host all all {self.subnet} scram-sha-256\n")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses={self.host} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")  # a test cluster: speed
        _run(self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                             "-o", options, "-w", "-t", "60", "start"], self.namespace))
        self._wait_reachable()

    def _wait_reachable(self, timeout: float = 30) -> None:
        ensure_database(DATABASE, timeout, host=self.host, port=self.port, user=USER, password=self.password)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (mode immediate: as if it crashed); start() brings it back with its data."""
        _run(self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"]))

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            if self.namespace:
                subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
                subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    """A running private PostgreSQL server with an empty `sweeps` database; stopped and removed at the end."""
    bin_dir = find_bin()
    if bin_dir is None:
        pytest.fail(f"PostgreSQL is not installed (no initdb/pg_ctl in /usr/lib/postgresql/*/bin or on PATH); "
                    f"{INSTALL_HINT}", pytrace=False)
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.close()
