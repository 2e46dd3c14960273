"""Shared fixtures. PostgreSQL: a throwaway cluster per test session; ledger: an empty, migrated DB.

The cluster lives in a temporary folder with fsync off and is stopped at the end of the session, so
tests leave nothing behind. initdb refuses to run as root, so as root (our containers, CI) the server
runs as the `postgres` user via `runuser`. Without PostgreSQL binaries the PostgreSQL tests are
skipped on a developer machine but fail in CI (env var CI set): CI must exercise PostgreSQL.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Test helpers (tests/servers.py, tests/fakes/, tests/statement_builders.py) are plain modules next to
# the tests; pytest's importlib mode does not put this folder on sys.path, so it is done once here.
sys.path.insert(0, os.path.dirname(__file__))

# Prefect writes into PREFECT_HOME (default ~/.prefect) even under its test harness; keep the user's
# home clean and telemetry off (there is no network here).
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="creditflow-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


# --------------------------------------------------------------------------------------------------
# PostgreSQL throwaway cluster
# --------------------------------------------------------------------------------------------------


def _postgres_bindir() -> Path | None:
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    newest_first = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0),
        reverse=True,
    )
    candidates += [Path(p) for p in newest_first]
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresCluster:
    host: str
    port: int
    user: str = "postgres"
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1), repr=False)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, prefix: str = "t", *, template: str | None = None) -> str:
        """A fresh database (empty, or a copy of `template`); returns its name."""
        name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        # FILE_COPY: with fsync off it is several times faster than PG 15's default WAL_LOG.
        source = f' TEMPLATE "{template}"' if template else ""
        self._admin(f'CREATE DATABASE "{name}"{source} STRATEGY FILE_COPY')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _missing_postgres(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = _postgres_bindir()
    if bindir is None:
        _missing_postgres("initdb/pg_ctl not found (pg_config --bindir, /usr/lib/postgresql/*/bin)")
    as_root = os.geteuid() == 0
    if as_root and not shutil.which("runuser"):
        _missing_postgres("running as root and `runuser` is missing")
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []

    # /tmp directly: the postgres user must be able to traverse every parent of the data folder.
    root = Path(tempfile.mkdtemp(prefix="creditflow-pg-", dir="/tmp" if as_root else None))
    data, log = root / "data", root / "server.log"
    if as_root:
        shutil.chown(root, "postgres", "postgres")

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=timeout)

    done = run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
               "--no-sync", "-E", "UTF8", "--locale=C")
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed:\n{done.stdout}\n{done.stderr}", pytrace=False)

    started = None
    for _ in range(3):  # a free port can be taken between probing and binding: try another
        port = _free_port()
        options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        done = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                   "-w", "-t", "60", "start")
        if done.returncode == 0:
            started = port
            break
    if started is None:
        server_log = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed:\n{done.stderr}\n{server_log[-3000:]}", pytrace=False)

    try:
        yield PostgresCluster(host="127.0.0.1", port=started)
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database for one test (created in a few milliseconds)."""
    name = postgres_cluster.create_database()
    yield postgres_cluster.url(name)
    postgres_cluster.drop_database(name)


# --------------------------------------------------------------------------------------------------
# Ledger
# --------------------------------------------------------------------------------------------------


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def ledger_url(request, tmp_path) -> str:
    """A fresh, empty (not migrated) ledger database URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger' / 'creditflow.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def pg_ledger_template(postgres_cluster: PostgresCluster) -> str:
    """A PostgreSQL database migrated to head once per session, cloned for each `ledger`."""
    from creditflow.ledger import db

    name = postgres_cluster.create_database("ledger_template")
    engine = db.make_engine(postgres_cluster.url(name))
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()
    return name


@pytest.fixture(params=BACKENDS)
def ledger(request, tmp_path):
    """(engine, session_factory) of a fresh ledger at the head revision, once per backend."""
    from creditflow.ledger import db

    database = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger' / 'creditflow.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        database = cluster.create_database(template=request.getfixturevalue("pg_ledger_template"))
        url = cluster.url(database)
    engine = db.make_engine(url)
    db.upgrade(engine)  # from empty on SQLite; on the PostgreSQL clone it only checks the revision
    try:
        yield engine, db.session_factory(engine)
    finally:
        engine.dispose()
        if database is not None:
            cluster.drop_database(database)


# --------------------------------------------------------------------------------------------------
# A real OpenSSH sshd (tests/servers.py), one per test module that asks for it
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd():
    """A throwaway sshd; skipped without OpenSSH on a developer machine, a failure in CI."""
    from servers import sshd_missing_reason, sshd_server

    reason = sshd_missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"OpenSSH sshd is required in CI: {reason}", pytrace=False)
        pytest.skip(f"no real sshd here: {reason}")
    with sshd_server() as server:
        yield server
