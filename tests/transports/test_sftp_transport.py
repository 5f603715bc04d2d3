"""SFTP transport against a real OpenSSH sshd on 127.0.0.1 (tests/support/sshd.py):
host-key pinning, key-only authentication, atomic no-overwrite hand-over, pull with
acknowledge, connection reuse and every network fault we can produce on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from tests.support.gwnodes import free_port
from tests.support.sshd import SshServer, make_ssh_key, write_known_hosts
from transports import open_transport
from transports.errors import (
    AlreadyExists,
    AuthRejected,
    ConnectFailed,
    ConnectionLost,
    EndpointInvalid,
    HostKeyRejected,
    Incompatible,
    NotFound,
    RemoteFailed,
    RemoteFull,
    Timeout,
    TooLarge,
    TransportError,
)
from transports.sftp import SftpTransport

pytestmark = pytest.mark.integration


@pytest.fixture
def inbox(sshd: SshServer, tmp_path: Path) -> Path:
    folder = sshd.root_dir / f"t-{tmp_path.name}" / "inbox"
    folder.mkdir(parents=True)
    return folder


_opened: list[SftpTransport] = []


@pytest.fixture(autouse=True)
def _close_transports() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def sftp(url: str, **options: object) -> SftpTransport:
    t = open_transport(url, **options)
    assert isinstance(t, SftpTransport)
    _opened.append(t)
    return t


def accepted_logins(server: SshServer) -> int:
    return server.log_file.read_text(errors="replace").count("Accepted publickey")


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


# --- a TCP proxy that can cut connections ------------------------------------------------


class CuttingProxy:
    """Forwards 127.0.0.1:port to the sshd; can reset every connection, or reset one once
    ``cut_after`` client->server bytes have passed (a reset mid-upload)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_after: int | None = None
        self.sent = 0
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upload: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upload:
                    with self.lock:
                        self.sent += len(data)
                        cut = self.cut_after is not None and self.sent >= self.cut_after
                    if cut:
                        self.reset_all()
                        return
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def reset_all(self) -> None:
        with self.lock:
            pairs, self.pairs = self.pairs, []
            self.cut_after = None
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()

    def close(self) -> None:
        self.running = False
        self.listener.close()
        self.reset_all()


@pytest.fixture
def proxy(sshd: SshServer, tmp_path: Path) -> Iterator[tuple[CuttingProxy, dict[str, str]]]:
    p = CuttingProxy(sshd.port)
    known = write_known_hosts(tmp_path / "known_hosts_proxy", p.port, sshd.host_public)
    yield p, {"key_file": str(sshd.client_key), "known_hosts": str(known)}
    p.close()


def proxied_url(sshd: SshServer, proxy: CuttingProxy, folder: Path) -> str:
    return f"sftp://{sshd.user}@127.0.0.1:{proxy.port}{folder}"


# --- atomic hand-over, no overwrite ---------------------------------------------------------


def test_openssh_plain_rename_refuses_an_existing_target(sshd: SshServer, inbox: Path) -> None:
    """The fact send() relies on: SSH_FXP_RENAME (not posix-rename) fails on OpenSSH when
    the target exists, and leaves both files as they were."""
    (inbox / "a").write_bytes(b"old")
    (inbox / "b").write_bytes(b"new")
    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", sshd.port, username=sshd.user, key_filename=str(sshd.client_key),
                   look_for_keys=False, allow_agent=False, timeout=10)
    try:
        s = client.open_sftp()
        with pytest.raises(OSError, match="Failure"):
            s.rename(str(inbox / "b"), str(inbox / "a"))
    finally:
        client.close()
    assert (inbox / "a").read_bytes() == b"old"
    assert (inbox / "b").read_bytes() == b"new"


def test_send_is_atomic_and_leaves_no_temporary_file(sshd: SshServer, inbox: Path) -> None:
    t = sftp(sshd.url(inbox), **sshd.client_options())
    data = os.urandom(2 * 1024 * 1024)
    t.send("m.xml", data)
    assert os.listdir(inbox) == ["m.xml"]
    assert (inbox / "m.xml").read_bytes() == data


def test_receiver_never_sees_a_partial_file(sshd: SshServer, inbox: Path) -> None:
    """Watch the directory while 20 MB is uploaded: only the complete file ever shows."""
    t = sftp(sshd.url(inbox), **sshd.client_options())
    data = os.urandom(20 * 1024 * 1024)
    seen: dict[str, set[int]] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for name in visible(inbox):
                with contextlib.suppress(FileNotFoundError):
                    seen.setdefault(name, set()).add((inbox / name).stat().st_size)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        t.send("big.bin", data)
    finally:
        stop.set()
        watcher.join()
    assert seen.get("big.bin", {len(data)}) == {len(data)}
    assert (inbox / "big.bin").read_bytes() == data


def test_existing_file_is_never_overwritten(sshd: SshServer, inbox: Path) -> None:
    (inbox / "m.xml").write_bytes(b"the receiver's file")
    t = sftp(sshd.url(inbox), **sshd.client_options())
    with pytest.raises(AlreadyExists) as info:
        t.send("m.xml", b"something else")
    assert info.value.retryable is False
    assert "m.xml" in str(info.value)
    assert (inbox / "m.xml").read_bytes() == b"the receiver's file"
    assert os.listdir(inbox) == ["m.xml"]  # the temporary file was cleaned up


def test_missing_remote_directory_is_permanent(sshd: SshServer, tmp_path: Path) -> None:
    t = sftp(sshd.url(sshd.root_dir / "no" / "such" / "dir"), **sshd.client_options())
    with pytest.raises(NotFound) as info:
        t.send("m", b"x")
    assert info.value.retryable is False


# --- pull -------------------------------------------------------------------------------


def test_pull_list_fetch_acknowledge_to_done(sshd: SshServer, inbox: Path) -> None:
    for i in range(3):
        (inbox / f"r{i}.xml").write_bytes(b"receipt %d" % i)
        os.utime(inbox / f"r{i}.xml", (1_700_000_000 + i, 1_700_000_000 + i))
    (inbox / ".r9.xml.abc.part").write_bytes(b"in progress")
    t = sftp(sshd.url(inbox), move_to_done=True, **sshd.client_options())
    assert t.list() == ["r0.xml", "r1.xml", "r2.xml"]  # oldest first, no temp files
    for name in t.list():
        assert t.fetch(name).startswith(b"receipt")
        t.acknowledge(name)
    assert t.list() == []
    assert sorted(os.listdir(inbox / "done")) == ["r0.xml", "r1.xml", "r2.xml"]
    (inbox / "r0.xml").write_bytes(b"again")  # same name arrives again: kept, not lost
    t.acknowledge("r0.xml")
    assert len(os.listdir(inbox / "done")) == 4


def test_relative_path_in_the_login_directory(sshd: SshServer, tmp_path: Path) -> None:
    folder = sshd.root_dir / f"rel-{tmp_path.name}"
    folder.mkdir()
    url = f"sftp://{sshd.user}@127.0.0.1:{sshd.port}/~/{folder.name}"
    t = sftp(url, **sshd.client_options())
    t.send("x", b"1")
    assert (folder / "x").read_bytes() == b"1"


# --- connection reuse ---------------------------------------------------------------------


def test_one_connection_is_reused_across_operations(sshd: SshServer, inbox: Path) -> None:
    before = accepted_logins(sshd)
    t = sftp(sshd.url(inbox), **sshd.client_options())
    for i in range(30):
        t.send(f"m{i}", b"x")
    assert len(t.list()) == 30
    t.fetch("m0")
    t.acknowledge("m0")
    time.sleep(0.2)
    assert accepted_logins(sshd) - before == 1


# --- host keys and authentication (permanent) ----------------------------------------------


def test_unknown_host_key_is_refused_naming_host_and_fingerprint(
    sshd: SshServer, inbox: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    t = sftp(sshd.url(inbox), key_file=str(sshd.client_key), known_hosts=str(empty))
    with pytest.raises(HostKeyRejected) as info:
        t.send("m", b"x")
    text = str(info.value)
    assert f"[127.0.0.1]:{sshd.port}" in text
    assert sshd.host_fingerprint in text
    assert info.value.retryable is False
    assert os.listdir(inbox) == []


def test_changed_host_key_is_refused(sshd: SshServer, inbox: Path, tmp_path: Path) -> None:
    other = make_ssh_key(tmp_path / "impostor")
    known = write_known_hosts(tmp_path / "known_hosts_other", sshd.port, other)
    t = sftp(sshd.url(inbox), key_file=str(sshd.client_key), known_hosts=str(known))
    with pytest.raises(HostKeyRejected) as info:
        t.send("m", b"x")
    text = str(info.value)
    assert "CHANGED" in text
    assert sshd.host_fingerprint in text
    assert f"[127.0.0.1]:{sshd.port}" in text
    assert info.value.code == "HostKeyRejected"
    assert os.listdir(inbox) == []


def test_key_pinned_for_another_port_does_not_count(
    sshd: SshServer, inbox: Path, tmp_path: Path
) -> None:
    known = write_known_hosts(tmp_path / "kh", sshd.port + 1, sshd.host_public)
    t = sftp(sshd.url(inbox), key_file=str(sshd.client_key), known_hosts=str(known))
    with pytest.raises(HostKeyRejected):
        t.list()


def test_missing_known_hosts_file_is_refused(sshd: SshServer, inbox: Path,
                                             tmp_path: Path) -> None:
    t = sftp(sshd.url(inbox), key_file=str(sshd.client_key),
             known_hosts=str(tmp_path / "nope"))
    with pytest.raises(HostKeyRejected) as info:
        t.list()
    assert "known_hosts" in str(info.value)


def test_unauthorised_key_is_refused(sshd: SshServer, inbox: Path, tmp_path: Path) -> None:
    make_ssh_key(tmp_path / "stranger")
    t = sftp(sshd.url(inbox), key_file=str(tmp_path / "stranger"),
             known_hosts=str(sshd.known_hosts))
    with pytest.raises(AuthRejected) as info:
        t.send("m", b"x")
    assert info.value.retryable is False
    assert os.listdir(inbox) == []


def test_a_second_authorized_key_works(sshd: SshServer, inbox: Path, tmp_path: Path) -> None:
    public = make_ssh_key(tmp_path / "node-b")
    sshd.authorize(public)
    t = sftp(sshd.url(inbox), key_file=str(tmp_path / "node-b"),
             known_hosts=str(sshd.known_hosts))
    t.send("from-b", b"b")
    assert visible(inbox) == ["from-b"]


def test_bad_key_file_and_options_are_endpoint_errors(sshd: SshServer, tmp_path: Path) -> None:
    (tmp_path / "garbage").write_text("not a key")
    with pytest.raises(EndpointInvalid):
        open_transport(sshd.url(), key_file=str(tmp_path / "garbage"),
                       known_hosts=str(sshd.known_hosts))
    with pytest.raises(EndpointInvalid):
        open_transport(sshd.url(), key_file=str(tmp_path / "missing"),
                       known_hosts=str(sshd.known_hosts))
    with pytest.raises(EndpointInvalid):
        open_transport(sshd.url(), **sshd.client_options(), password="x")
    with pytest.raises(EndpointInvalid):
        open_transport(f"sftp://u:pw@127.0.0.1:{sshd.port}/x", **sshd.client_options())


# --- network faults (retryable) ------------------------------------------------------------


def test_partner_down_is_retryable(sshd: SshServer, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    known = write_known_hosts(tmp_path / "kh", port, sshd.host_public)
    t = sftp(f"sftp://{sshd.user}@127.0.0.1:{port}/tmp", key_file=str(sshd.client_key),
             known_hosts=str(known))
    with pytest.raises(ConnectFailed) as info:
        t.send("m", b"x")
    assert info.value.retryable is True
    assert f"127.0.0.1:{port}" in str(info.value)


def test_server_that_accepts_but_never_answers_times_out(
    sshd: SshServer, tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        known = write_known_hosts(tmp_path / "kh", port, sshd.host_public)
        t = sftp(f"sftp://{sshd.user}@127.0.0.1:{port}/tmp", key_file=str(sshd.client_key),
                 known_hosts=str(known), connect_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(Timeout) as info:
            t.send("m", b"x")
        assert time.monotonic() - started < 5
        assert info.value.retryable is True


def test_connection_reset_mid_upload(
    sshd: SshServer, inbox: Path, proxy: tuple[CuttingProxy, dict[str, str]]
) -> None:
    p, options = proxy
    t = sftp(proxied_url(sshd, p, inbox), **options)
    p.cut_after = 2 * 1024 * 1024  # reset after ~2 MB of a 10 MB upload
    data = os.urandom(10 * 1024 * 1024)
    with pytest.raises(TransportError) as info:
        t.send("big.bin", data)
    assert isinstance(info.value, ConnectionLost | Timeout)
    assert info.value.retryable is True
    assert visible(inbox) == []  # at most a dot-named temporary file, never big.bin
    assert t.list() == []
    # the next attempt reconnects and succeeds
    t.send("big.bin", data)
    assert (inbox / "big.bin").read_bytes() == data


def test_stale_connection_is_replaced_once(
    sshd: SshServer, inbox: Path, proxy: tuple[CuttingProxy, dict[str, str]]
) -> None:
    p, options = proxy
    t = sftp(proxied_url(sshd, p, inbox), **options)
    t.send("a", b"1")
    p.reset_all()  # the kept connection dies while idle
    time.sleep(0.2)
    t.send("b", b"2")  # noticed and replaced without an error
    assert visible(inbox) == ["a", "b"]


def test_retry_after_a_lost_answer_is_idempotent(sshd: SshServer, inbox: Path) -> None:
    """A send whose rename happened but whose answer was lost is retried: the identical
    file already there counts as delivered, once."""
    t = sftp(sshd.url(inbox), **sshd.client_options())
    t.send("m.xml", b"payload")
    t.send("m.xml", b"payload")
    assert os.listdir(inbox) == ["m.xml"]


# --- a full remote disk ------------------------------------------------------------------


@pytest.fixture
def small_disk(sshd: SshServer, tmp_path: Path) -> Iterator[Path]:
    mount = sshd.root_dir / f"full-{tmp_path.name}"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True, check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            "simulating a full remote disk needs a 1 MB tmpfs (root, mount): "
            + result.stderr.decode(errors="replace").strip()
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_remote_disk_is_retryable_and_leaves_nothing(
    sshd: SshServer, small_disk: Path
) -> None:
    t = sftp(sshd.url(small_disk), **sshd.client_options())
    t.send("small", b"x" * 1000)
    with pytest.raises(RemoteFull) as info:
        t.send("big", os.urandom(3 * 1024 * 1024))
    assert info.value.retryable is True
    assert info.value.code == "RemoteFull"
    assert sorted(os.listdir(small_disk)) == ["small"]  # temp file removed, space freed
    t.send("after", b"y" * 1000)  # the connection is still good
    assert visible(small_disk) == ["after", "small"]


def test_full_local_folder_is_retryable(small_disk: Path) -> None:
    t = open_transport(f"file://{small_disk}")
    with pytest.raises(RemoteFull) as info:
        t.send("big", os.urandom(3 * 1024 * 1024))
    assert info.value.retryable is True
    assert os.listdir(small_disk) == []
    t.close()


def test_fetch_refuses_a_blob_over_the_limit(sshd: SshServer, inbox: Path) -> None:
    (inbox / "huge.bin").write_bytes(b"h" * 5000)
    t = sftp(sshd.url(inbox), max_fetch=4096, **sshd.client_options())
    with pytest.raises(TooLarge) as info:
        t.fetch("huge.bin")
    assert info.value.retryable is False
    assert t.list() == ["huge.bin"]  # still usable, nothing removed


@pytest.mark.parametrize(("free", "expected"), [(10_000, RemoteFull), (10**12, RemoteFailed),
                                                 (None, RemoteFailed)])
def test_generic_write_failure_is_classified_by_free_space(
    sshd: SshServer, inbox: Path, monkeypatch: pytest.MonkeyPatch, free: int | None,
    expected: type[TransportError],
) -> None:
    """The mapping alone, without a full disk: OpenSSH reports ENOSPC as a bare
    SSH_FX_FAILURE, so the free space decides between RemoteFull and RemoteFailed."""
    t = sftp(sshd.url(inbox), **sshd.client_options())

    def failing_upload(self: SftpTransport, s: paramiko.SFTPClient, temp: str,
                       data: bytes) -> None:
        s.open(temp, "wbx").close()  # leave a temporary file to clean up
        raise OSError("Failure")

    monkeypatch.setattr(SftpTransport, "_upload", failing_upload)
    monkeypatch.setattr(SftpTransport, "_free_space", lambda self, s: free)
    with pytest.raises(expected) as info:
        t.send("m.xml", b"x" * 5000)
    assert type(info.value) is expected
    assert info.value.retryable is True
    assert os.listdir(inbox) == []


def test_legacy_only_server_is_refused_unless_allowed(tmp_path: Path) -> None:
    """A server offering only CBC ciphers and SHA-1 MACs: refused by default with a
    permanent error, accepted with the explicit opt-in."""
    server = SshServer(tmp_path / "root", tmp_path / "work", extra_config=[
        "Ciphers aes128-cbc", "MACs hmac-sha1",
    ]).start()
    try:
        t = sftp(server.url(), **server.client_options())
        with pytest.raises(Incompatible) as info:
            t.list()
        assert info.value.retryable is False
        assert f"127.0.0.1:{server.port}" in str(info.value)
        legacy = sftp(server.url(), allow_legacy_algorithms=True, **server.client_options())
        legacy.send("m", b"x")
        assert (server.root_dir / "m").read_bytes() == b"x"
    finally:
        server.stop()


def test_one_transport_shared_by_threads(sshd: SshServer, inbox: Path) -> None:
    t = sftp(sshd.url(inbox), **sshd.client_options())
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                t.send(f"t{n}-{i}", os.urandom(3000))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors
    assert len(visible(inbox)) == 60
    assert [p for p in os.listdir(inbox) if p.startswith(".")] == []
