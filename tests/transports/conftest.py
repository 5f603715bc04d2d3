"""Fixtures for the transport tests: one real sshd per session, endpoint pairs for the
shared contract suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.sshd import SshServer
from transports import Transport, open_transport
from transports.memory import MemoryNetwork


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A real OpenSSH sshd on 127.0.0.1 for the whole session; tests use their own
    directories under its root (``sshd.root_dir``), so they never see each other."""
    root = tmp_path_factory.mktemp("sftp-root")
    work = tmp_path_factory.mktemp("sshd-work")
    server = SshServer(root, work).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Pair:
    """A sender and a receiver on the same far-side mailbox, plus a way to put a raw file
    there behind the transport's back (``plant``), where the backend has files."""

    kind: str
    sender: Transport
    receiver: Transport
    plant: Callable[[str, bytes], None] | None = None
    folder: Path | None = None
    extra: list[Transport] = field(default_factory=list)

    def close(self) -> None:
        for t in (self.sender, self.receiver, *self.extra):
            t.close()


def _local_pair(tmp_path: Path) -> Pair:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return Pair(
        "local",
        open_transport(f"file://{folder}"),
        open_transport(f"file://{folder}"),
        plant=lambda n, d: (folder / n).write_bytes(d),
        folder=folder,
    )


def _memory_pair() -> Pair:
    network = MemoryNetwork()
    return Pair(
        "memory",
        open_transport("memory://partner", network=network),
        open_transport("memory://partner", network=network),
    )


def _sftp_pair(server: SshServer, tmp_path: Path) -> Pair:
    folder = server.root_dir / tmp_path.name / "inbox"
    folder.mkdir(parents=True)
    url = server.url(folder)
    options = server.client_options()
    return Pair(
        "sftp",
        open_transport(url, **options),
        open_transport(url, **options),
        plant=lambda n, d: (folder / n).write_bytes(d),
        folder=folder,
    )


@pytest.fixture(
    params=[
        "memory",
        "local",
        pytest.param("sftp", marks=pytest.mark.integration),
    ]
)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    kind = request.param
    if kind == "memory":
        p = _memory_pair()
    elif kind == "local":
        p = _local_pair(tmp_path)
    else:
        p = _sftp_pair(request.getfixturevalue("sshd"), tmp_path)
    try:
        yield p
    finally:
        p.close()
