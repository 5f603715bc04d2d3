"""A throw-away PostgreSQL cluster for the tests: ``initdb`` and ``pg_ctl`` (Debian's
postgresql 15, installed by scripts/os-deps.sh) run as the ``postgres`` user when the tests
run as root (they refuse to run as root), on a free loopback port, with the data folder and
the socket in a temporary folder that user can write. Started once per test session
(:func:`postgres_cluster`), stopped at the end; each test gets a fresh database
(:meth:`Cluster.new_database`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import reaper
from tests.support.gwnodes import free_port

__all__ = ["Cluster", "find_bin", "start_cluster"]

_BIN_DIRS = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


def find_bin(name: str) -> Path | None:
    for folder in _BIN_DIRS:
        if (folder / name).is_file():
            return folder / name
    found = shutil.which(name)
    return Path(found) if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@dataclass
class Cluster:
    """One running cluster; ``url(db)`` is a libpq URL for database ``db``."""

    root: Path
    port: int
    pg_ctl: Path
    #: fsync as in production (benchmarks); the tests run without it, for speed
    durable: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def new_schema(self) -> str:
        """A fresh empty schema in the shared ``tests`` database (much quicker than a new
        database); returns a URL whose connections use it (``search_path``)."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'tests'").fetchone() \
                    is None:
                conn.execute('CREATE DATABASE "tests"')
        with psycopg.connect(self.url("tests"), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return self.url("tests") + f"?options=-csearch_path%3D{name}"

    def _ctl(self, *args: str, timeout: float = 60.0) -> None:
        log = self.root / "server.log"
        subprocess.run(_as_postgres([str(self.pg_ctl), "-D", str(self.data), "-l", str(log),
                                     "-w", "-t", "30", *args]),
                       check=True, capture_output=True, timeout=timeout)

    def start(self) -> None:
        self._ctl("-o", f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                  f"-c fsync={'on' if self.durable else 'off'} -c max_connections=200 "
                  "-c shared_buffers=32MB",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._ctl("-m", mode, "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


def start_cluster(*, durable: bool = False) -> Cluster:
    """initdb a cluster in a new temporary folder and start it (``durable``: with fsync,
    as in production). Raises RuntimeError with what is missing when PostgreSQL is not
    installed."""
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError("PostgreSQL is not installed (initdb/pg_ctl not found); "
                           "run scripts/os-deps.sh as root")
    root = Path(tempfile.mkdtemp(prefix="gw-pg-"))
    reaper.watch(root, remove=True)  # stopped and removed even if this process is killed
    os.chmod(root, 0o755)  # noqa: S103 - the postgres user must reach its data folder
    (root / "run").mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "run", "postgres", "postgres")
    subprocess.run(_as_postgres([str(initdb), "-D", str(root / "data"), "-A", "trust",
                                 "-U", "postgres", "-E", "UTF8", "--no-sync"]),
                   check=True, capture_output=True, timeout=120)
    cluster = Cluster(root=root, port=free_port(), pg_ctl=pg_ctl, durable=durable)
    for attempt in range(3):
        try:
            cluster.start()
            break
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise
            cluster.port = free_port()  # the port was taken meanwhile
            time.sleep(0.2)
    return cluster


@contextlib.contextmanager
def running_cluster(*, durable: bool = False) -> Iterator[Cluster]:
    cluster = start_cluster(durable=durable)
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)
        reaper.unwatch(cluster.root)
