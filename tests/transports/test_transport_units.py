"""Unit tests of the transport package: errors, names, URL parsing, the in-memory
transport's responder and fault injection, the local folder's extras, and the rule that
``transports`` imports nothing from ``gateway``."""

from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import transports
from transports import PeerInfo, open_transport
from transports import errors as te
from transports.base import check_name, is_visible_name
from transports.local import LocalFolderTransport
from transports.memory import MemoryNetwork, MemoryTransport, http_responder

PACKAGE = Path(transports.__file__).parent


# --- errors -------------------------------------------------------------------------------

RETRYABLE = {te.ConnectFailed, te.Timeout, te.ConnectionLost, te.RemoteFull, te.RemoteFailed}
PERMANENT = {
    te.HostKeyRejected, te.AuthRejected, te.Incompatible, te.TlsRejected,
    te.PermissionDenied, te.AlreadyExists,
    te.NotFound, te.TooLarge, te.InvalidName, te.EndpointInvalid, te.NotSupported,
    te.TransportClosed,
}


def test_every_error_class_has_a_unique_stable_code_and_flag() -> None:
    classes = RETRYABLE | PERMANENT | {te.HttpStatus}
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        assert cls.code == cls.__name__
        assert issubclass(cls, te.TransportError)
    for cls in RETRYABLE:
        assert cls("x").retryable is True
    for cls in PERMANENT:
        assert cls("x").retryable is False
    assert set(te.__all__) >= {c.__name__ for c in classes}


def test_error_carries_endpoint_and_can_override_code() -> None:
    error = te.TransportError("it broke", code="Custom", retryable=True, endpoint="sftp://h:22/x")
    assert (error.code, error.retryable) == ("Custom", True)
    assert str(error) == "sftp://h:22/x: it broke"
    assert "Custom" in repr(error)
    assert te.ConnectFailed("x").code == "ConnectFailed"


@pytest.mark.parametrize(
    ("status", "retryable", "cls"),
    [(400, False, te.HttpStatus), (404, False, te.HttpStatus), (408, True, te.HttpStatus),
     (413, False, te.HttpTooLarge), (429, True, te.HttpStatus), (500, True, te.HttpStatus),
     (502, True, te.HttpStatus), (301, False, te.HttpStatus)],
)
def test_http_status_mapping(status: int, retryable: bool, cls: type[te.HttpStatus]) -> None:
    error = te.http_error(status, b"<Receipt/>", endpoint="https://h:1/v1/messages")
    assert type(error) is cls
    assert error.status == status
    assert error.body == b"<Receipt/>"
    assert error.retryable is retryable
    assert "<Receipt/>" not in str(error)
    if status == 413:
        assert isinstance(error, te.TooLarge)
        assert error.code == "TooLarge"


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "msg-1.xml", "A_b.c@d+e=f", "0" * 200, "x.part"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name
    assert is_visible_name(name)


@pytest.mark.parametrize(
    "name", ["", ".a", "..", "a/b", "/a", "a\\b", "a b", "a\nb", "x" * 201, "ü", "-a", "a:b"]
)
def test_bad_names(name: str) -> None:
    with pytest.raises(te.InvalidName):
        check_name(name, endpoint="memory://x")
    assert not is_visible_name(name)


# --- open_transport -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ftp://h/x", "memory://", "file://remotehost/x", "sftp://h:22/x", "sftp://u@h:99999/x",
     "sftp://u:pw@h/x", "not a url", "https://user:pw@h/v1/messages"],
)
def test_bad_urls_are_endpoint_errors(url: str, tmp_path: Path) -> None:
    options = {}
    if url.startswith("https"):
        options = {"cert": "c", "key": "k", "ca": "a"}
    with pytest.raises(te.EndpointInvalid):
        open_transport(url, **options)


def test_open_memory_and_file(tmp_path: Path) -> None:
    network = MemoryNetwork()
    t = open_transport("memory://node-b", network=network)
    assert isinstance(t, MemoryTransport)
    assert t.endpoint == "memory://node-b"
    folder = tmp_path / "in box"
    t2 = open_transport(f"file://{tmp_path}/in%20box", create=True)
    assert isinstance(t2, LocalFolderTransport)
    assert t2.path == folder
    assert folder.is_dir()
    with pytest.raises(te.EndpointInvalid, match="colour"):
        open_transport(f"file://{tmp_path}", colour="blue")


# --- memory transport -------------------------------------------------------------------------


def test_memory_mailboxes_are_separate_and_networks_isolated() -> None:
    a, b = MemoryNetwork(), MemoryNetwork()
    a.open("x").send("m", b"1")
    assert b.open("x").list() == []
    assert a.open("y").list() == []
    assert a.blobs("x") == {"m": b"1"}
    assert a.delivered("x") == 1


def test_memory_fault_injection() -> None:
    network = MemoryNetwork()
    t = network.open("partner")
    network.fail_next("partner", 2)
    for _ in range(2):
        with pytest.raises(te.ConnectFailed) as info:
            t.send("m", b"1")
        assert info.value.retryable
    t.send("m", b"1")
    network.fail_next("partner", error=te.AuthRejected("injected"), operations=("list",))
    t.send("n", b"2")  # only list is affected
    with pytest.raises(te.AuthRejected):
        t.list()
    assert t.list() == ["m", "n"]
    assert network.delivered("partner") == 2


def test_memory_responder_emulates_https() -> None:
    network = MemoryNetwork()
    seen: list[tuple[bytes, PeerInfo]] = []

    def handler(body: bytes, peer: PeerInfo) -> tuple[int, bytes]:
        seen.append((body, peer))
        return (200, b"delivered") if body != b"bad" else (400, b"rejected")

    network.serve("node-b", http_responder(handler, endpoint="memory://node-b"))
    t = network.open("node-b")
    assert t.send("m1", b"ok") == b"delivered"
    with pytest.raises(te.HttpStatus) as info:
        t.send("m2", b"bad")
    assert (info.value.status, info.value.body, info.value.retryable) == (400, b"rejected", False)
    assert network.blobs("node-b") == {}  # answered, not stored
    assert [b for b, _ in seen] == [b"ok", b"bad"]
    network.serve("node-b", None)
    assert t.send("m3", b"x") is None
    assert network.blobs("node-b") == {"m3": b"x"}


def test_memory_acknowledge_can_keep_done() -> None:
    network = MemoryNetwork()
    t = network.open("box", move_to_done=True)
    t.send("a", b"1")
    t.acknowledge("a")
    assert network.done("box") == {"a": b"1"}
    assert t.list() == []


# --- local folder extras ----------------------------------------------------------------------


def test_local_missing_folder_is_retryable(tmp_path: Path) -> None:
    t = LocalFolderTransport(tmp_path / "not-mounted")
    with pytest.raises(te.ConnectFailed) as info:
        t.send("m", b"x")
    assert info.value.retryable
    with pytest.raises(te.ConnectFailed):
        t.list()


def test_local_move_to_done_keeps_every_copy(tmp_path: Path) -> None:
    t = LocalFolderTransport(tmp_path, move_to_done=True)
    t.send("a", b"1")
    t.acknowledge("a")
    t.send("a", b"2")
    t.acknowledge("a")
    done = sorted(p.read_bytes() for p in (tmp_path / "done").iterdir())
    assert done == [b"1", b"2"]
    assert t.list() == []


def test_local_send_leaves_file_private_to_group(tmp_path: Path) -> None:
    t = LocalFolderTransport(tmp_path)
    t.send("a", b"1")
    assert (tmp_path / "a").stat().st_mode & 0o007 == 0


# --- package boundary ---------------------------------------------------------------------------


def test_transports_source_never_imports_gateway() -> None:
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "gateway"]
    assert offenders == []
    assert len(list(PACKAGE.glob("*.py"))) >= 8


@pytest.mark.integration  # runs a subprocess
def test_importing_every_transport_loads_no_gateway_module() -> None:
    code = (
        "import sys, transports, transports.sftp, transports.https_client, "
        "transports.https_server, transports.memory, transports.local\n"
        "bad = [m for m in sys.modules if m == 'gateway' or m.startswith('gateway.')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_local_fetch_refuses_a_blob_over_the_limit(tmp_path: Path) -> None:
    (tmp_path / "huge").write_bytes(b"h" * 5000)
    t = LocalFolderTransport(tmp_path, max_fetch=4096)
    with pytest.raises(te.TooLarge):
        t.fetch("huge")
    assert t.list() == ["huge"]


# --- round-trip property (memory and local folder) ---------------------------------------------

_NAME_START = "abcXYZ019_"
_NAME_REST = _NAME_START + ".@+=-"


@given(
    blobs=st.dictionaries(
        st.builds(
            lambda a, b: a + b,
            st.sampled_from(_NAME_START),
            st.text(alphabet=_NAME_REST, max_size=30),
        ),
        st.binary(max_size=2048),
        max_size=6,
    )
)
def test_round_trip_property(blobs: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        network = MemoryNetwork()
        for sender, receiver in (
            (network.open("p"), network.open("p")),
            (LocalFolderTransport(tmp), LocalFolderTransport(tmp)),
        ):
            for name, data in blobs.items():
                assert sender.send(name, data) is None
            assert sorted(receiver.list()) == sorted(blobs)
            for name, data in blobs.items():
                assert receiver.fetch(name) == data
                receiver.acknowledge(name)
            assert receiver.list() == []


def test_local_without_hard_links_falls_back_to_checked_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    t = LocalFolderTransport(tmp_path)
    t.send("a", b"1")
    t.send("a", b"1")  # identical: fine
    with pytest.raises(te.AlreadyExists):
        t.send("a", b"2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert (tmp_path / "a").read_bytes() == b"1"
