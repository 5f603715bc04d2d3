"""Build gateway nodes for tests and benchmarks: key directories (generated once per
process and copied), partner registrations both ways, and a config file per node.

    keys = NodeKeysFactory(tmp_root)
    a = NodeSpec("a", "fips:0600000", root / "a")
    write_node(a, keys, partners=[PartnerSpec("fips:4800000", ["memory://b"])])
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import gateway
import transports
from gateway.demo.network import NodeFolders
from gateway.node.keystore import Curve, Keystore, SignAlgorithm, generate_node
from gateway.protocol.certs import load_certificates_file
from gateway.protocol.party import Party
from tests.support.pki import TestPki

__all__ = ["CHAOS_SETTINGS", "EC_KEYS", "PRODUCT_KEYS", "TEST_KEYS", "Daemon", "KeyProfile",
           "NodeSpec", "PartnerSpec", "free_port", "generate_keys", "https_node", "https_to",
           "register", "wait_until", "write_config"]

@dataclass(frozen=True)
class KeyProfile:
    """Which keys a test node gets: RSA size (encryption, and signing when RSA) and the
    signing algorithm, or ``curve`` "p256" for every key on P-256 (``gateway keys generate
    --curve p256``). Tests use 2048-bit RSA for speed; the product default is RSA-3072."""

    rsa_bits: int = 2048
    sign_algorithm: SignAlgorithm = "rsa"
    curve: Curve | None = None

    @property
    def label(self) -> str:
        if self.curve is not None:
            return "P-256: ECDH encryption, ECDSA signatures"
        sign = "RSA" if self.sign_algorithm == "rsa" else "ECDSA P-256"
        return f"RSA-{self.rsa_bits} encryption, {sign} signatures"


TEST_KEYS = KeyProfile()
PRODUCT_KEYS = KeyProfile(rsa_bits=3072)
EC_KEYS = KeyProfile(curve="p256")

#: settings for the tests that kill daemons and expect every message through: quick
#: retries, a breaker that (almost) never opens, a 10-minute expiry
CHAOS_SETTINGS = """
[retry]
base = "200ms"
factor = 2
max_delay = "1s"
jitter = 0.2
expiry = "10m"
[breaker]
failure_threshold = 50
reset_after = "500ms"
[schedule]
outbox_scan = "100ms"
retry_scan = "100ms"
"""
_CACHE: dict[tuple[str, KeyProfile], Path] = {}


def generate_keys(cache_root: Path, party: str, profile: KeyProfile = TEST_KEYS) -> Path:
    """A key directory for ``party`` (``profile``), generated once per process."""
    cached = _CACHE.get((party, profile))
    if cached is None or not cached.exists():
        kind = profile.curve or f"{profile.rsa_bits}-{profile.sign_algorithm}"
        cached = cache_root / f"keys-{party.replace(':', '_')}-{kind}"
        generate_node(cached, Party.parse(party), now=datetime.now(UTC),
                      rsa_bits=profile.rsa_bits, sign_algorithm=profile.sign_algorithm,
                      curve=profile.curve)
        _CACHE[(party, profile)] = cached
    return cached


def register(keys_dir: Path, other_keys: Path, other_party: str) -> None:
    """Register ``other_party``'s CA, signing and encryption certificates in ``keys_dir``."""
    store = Keystore(keys_dir)
    chosen = [c for name in ("ca.crt", "sign.crt", "encrypt.crt")
              for c in load_certificates_file(other_keys / name)]
    store.import_partner(Party.parse(other_party), chosen, now=datetime.now(UTC))


@dataclass
class PartnerSpec:
    party: str
    transports: list[tuple[str, dict[str, str]]]  # (url, options as TOML keys)
    pull: list[tuple[str, dict[str, str]]] = field(default_factory=list)


@dataclass
class NodeSpec(NodeFolders):
    name: str
    party: str
    root: Path
    partners: list[PartnerSpec] = field(default_factory=list)
    routes: list[tuple[str, str]] = field(default_factory=list)
    https: dict[str, object] | None = None
    inbound_folders: list[Path] = field(default_factory=list)
    extra: str = ""
    #: more keys of the ``[[outbox]]`` and ``[inbox]`` tables (``format``, ``newline``)
    outbox_options: dict[str, object] = field(default_factory=dict)
    inbox_options: dict[str, object] = field(default_factory=dict)
    #: this node's keys, when not the ``keys`` given to :func:`write_config`
    key_profile: KeyProfile | None = None


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(node: NodeSpec, cache_root: Path, all_nodes: list[NodeSpec], *,
                 keys: KeyProfile = TEST_KEYS) -> Path:
    """Write ``node``'s key directory (copied from the cache) with every other node of
    ``all_nodes`` registered, and its config file; returns the config path. Each node's
    keys are its ``key_profile``, else ``keys``."""
    node.root.mkdir(parents=True, exist_ok=True)
    if not node.keys.exists():
        shutil.copytree(generate_keys(cache_root, node.party, node.key_profile or keys),
                        node.keys)
        for other in all_nodes:
            if other.party != node.party:
                register(node.keys, generate_keys(cache_root, other.party,
                                                  other.key_profile or keys), other.party)
    lines = [
        "[node]", f"party = {_toml_value(node.party)}", 'keys_dir = "keys"', "",
        "[spool]", 'database = "spool/gateway.db"', "",
        "[[outbox]]", 'path = "outbox"',
        *(f"{k} = {_toml_value(v)}" for k, v in node.outbox_options.items()), "",
        "[inbox]", 'path = "inbox"',
        *(f"{k} = {_toml_value(v)}" for k, v in node.inbox_options.items()), "",
        "[rejected]", 'path = "rejected"', "",
        "[intake]", 'ready = "marker"', 'poll_interval = "200ms"', "",
    ]
    if node.inbound_folders:
        folders = ", ".join(_toml_value(str(f)) for f in node.inbound_folders)
        lines += ["[inbound]", f"folders = [{folders}]", 'poll_interval = "200ms"', ""]
    if node.https is not None:
        lines += ["[listeners.https]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in node.https.items()]
        lines += [""]
    for partner in node.partners:
        lines += ["[[partners]]", f"party = {_toml_value(partner.party)}"]
        for kind, items in (("transports", partner.transports), ("pull", partner.pull)):
            for url, options in items:
                lines += [f"[[partners.{kind}]]", f"url = {_toml_value(url)}"]
                lines += [f"{k} = {_toml_value(v)}" for k, v in options.items()]
        lines += [""]
    for to, partner_party in node.routes:
        lines += ["[[routes]]", f"to = {_toml_value(to)}",
                  f"partner = {_toml_value(partner_party)}", ""]
    lines.append(node.extra)
    node.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return node.config_path


def https_node(name: str, party: str, root: Path, pki: TestPki, port: int, *,
               extra: str = "") -> NodeSpec:
    """A node under ``root/name`` with an HTTPS listener on ``port`` (mutual TLS, server
    certificate and client CA from ``pki``)."""
    server = pki.server(f"{name}-server")
    return NodeSpec(name, party, root / name, extra=extra, https={
        "host": "127.0.0.1", "port": port, "cert": str(server.cert), "key": str(server.key),
        "client_ca": str(pki.ca.cert)})


def https_to(pki: TestPki, me: str, port: int) -> tuple[str, dict[str, str]]:
    """The transport (URL, options) by which node ``me`` posts to the listener on
    ``port``: its own client certificate, the test CA pinned."""
    client = pki.client(f"{me}-client-{port}")
    return (f"https://127.0.0.1:{port}/v1/messages",
            {"client_cert": str(client.cert), "client_key": str(client.key),
             "ca_file": str(pki.ca.cert)})


# --- real daemons (subprocesses) ------------------------------------------------------

def drop(spec: NodeSpec, name: str, data: bytes) -> None:
    """Put a document in ``spec``'s outbox the way a state system does: the file, then
    its ``.ready`` marker."""
    spec.outbox.mkdir(parents=True, exist_ok=True)
    (spec.outbox / name).write_bytes(data)
    (spec.outbox / f"{name}.ready").write_bytes(b"")


def inbox(spec: NodeSpec) -> list[bytes]:
    """The documents delivered into ``spec``'s inbox (not temporary files), sorted."""
    if not spec.inbox.exists():
        return []
    return sorted(p.read_bytes() for p in spec.inbox.iterdir() if not p.name.startswith("."))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Daemon:
    """``python -m gateway --config FILE -v run`` as a child process."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.log = spec.root / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Daemon:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(self.spec.config_path),
                 "-v", "run"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)
        self.starts += 1
        marker = f"gateway {self.spec.party} running"
        wait_until(lambda: self.log.read_text(errors="replace").count(marker) >= self.starts
                   or not self.alive(), 30, f"{self.spec.name} to start")
        if not self.alive():
            raise AssertionError(f"{self.spec.name} exited: {self.tail()}")
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """``kill -9``: no cleanup of any kind."""
        if self.alive():
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        if self.process is None:
            return 0
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def errors(self, limit: int = 10) -> list[str]:
        """The log's ERROR/CRITICAL lines and the exception line ending each traceback
        (the first ``limit``), for a failure message."""
        if not self.log.exists():
            return []
        found: list[str] = []
        in_traceback = False
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("Traceback"):
                in_traceback = True
            elif in_traceback and line and not line[0].isspace():
                in_traceback = False
                found.append(f"  {line}")
            elif " ERROR " in line or " CRITICAL " in line:
                found.append(line)
            if len(found) >= limit:
                break
        return found


def source_stamp() -> dict[str, int]:
    """mtime of every module the daemons import from this tree (gateway/, transports/):
    a daemon restarted during a test imports the tree as it is then, so an edit made
    meanwhile (several people share one working tree) changes the code under test."""
    stamp: dict[str, int] = {}
    for package in (gateway, transports):
        root = Path(package.__file__ or "").parent
        for file in root.rglob("*.py"):
            with contextlib.suppress(OSError):
                stamp[str(file.relative_to(root.parent))] = file.stat().st_mtime_ns
    return stamp


def sources_changed(since: dict[str, int]) -> list[str]:
    """The modules added, removed or modified after :func:`source_stamp` returned
    ``since``."""
    now = source_stamp()
    return sorted(name for name in since.keys() | now.keys() if since.get(name) != now.get(name))
