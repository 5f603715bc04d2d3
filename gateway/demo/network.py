"""The network ``gateway demo`` builds on 127.0.0.1: keys, TLS certificates, an SFTP server,
one ``gateway.toml`` per node, and the nodes themselves as real ``gateway run`` processes.

Topology (the federal hub relays between states without being able to read)::

    California (fips:0600000) --HTTPS--> federal hub (fips:0000000) --SFTP--> Texas (fips:4800000)
                              <--HTTPS--                            <--SFTP--
    California (fips:0600000) <--HTTPS (direct)--> Netherlands Central Authority (iso3166:NL)

The hub's party is ``fips:0000000``: state code ``00`` belongs to no state (FIPS state
codes start at 01), so it can never collide with a real agency, and the protocol's party
pattern (``fips:[0-9]{7}``) admits it. It only ever appears in envelopes, certificates and
configuration: the hub authors no business document (whose FIPS type excludes ``00``).

Each node gets a real key directory from :func:`gateway.node.keystore.generate_node` (3072-bit
RSA signing and encryption keys under a node CA) and registers the certificates of the
parties it exchanges messages with, as an operator would with ``gateway keys
import-partner``. The HTTPS links use mutual TLS with certificates from one demo TLS CA.
The hub<->Texas link is SFTP through a real OpenSSH ``sshd`` when one is installed;
otherwise it falls back to local-folder (``file://``) transports and says so.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gateway.demo.lifetime import end_with_this_process
from gateway.demo.sshd import DemoSshd, find_sshd
from gateway.errors import DemoFailed, GatewayError, UsageError
from gateway.node.keystore import Keystore, generate_node
from gateway.node.tlsca import TlsCa
from gateway.protocol.certs import load_certificates_file
from gateway.protocol.party import Party

__all__ = ["DemoNetwork", "DemoNode", "Link", "NodeFolders"]

log = logging.getLogger("gateway.demo")

CA, HUB, TX, NL = "fips:0600000", "fips:0000000", "fips:4800000", "iso3166:NL"

# Fast schedules so the demo finishes in seconds; a real deployment keeps the defaults.
_FAST = """\
[intake]
ready = "stable"          # a file is taken once its size and mtime hold still for a poll
poll_interval = "200ms"

[retry]
base = "500ms"
factor = 2
max_delay = "5s"
expiry = "10m"

[schedule]
outbox_scan = "200ms"
retry_scan = "200ms"
sftp_pull = "200ms"

# Four nodes share this machine's cores and move five messages: their 16 worker
# processes, all importing at once, held the first messages back by about 6 s.
[limits]
intake_workers = 0
receive_workers = 0
"""


@dataclass
class Link:
    """One direction of one partnership: ``src`` sends to ``dst`` over ``kind``."""

    src: str
    dst: str
    kind: str  # "https" | "sftp" | "file"
    url: str = ""


class NodeFolders:
    """The folder layout of one node under ``root`` (the demo's nodes and the tests'):
    ``gateway.toml`` with ``keys/``, ``outbox/``, ``inbox/`` and ``rejected/`` beside it."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "gateway.toml"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"


@dataclass
class DemoNode(NodeFolders):
    name: str
    party: str
    title: str
    root: Path
    https_port: int | None = None
    inbound_folder: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    knows: tuple[str, ...] = ()  # parties whose certificates this node registers

    @property
    def database(self) -> Path:
        return self.root / "spool" / "gateway.db"

    @property
    def log_file(self) -> Path:
        return self.root / "daemon.log"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rel(node: DemoNode, path: Path) -> str:
    """``path`` relative to the node's folder (the config file's directory), so the demo
    folder can be moved and the configurations stay short."""
    return os.path.relpath(path, node.root)


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DemoNetwork:
    """Build (:meth:`build`), start (:meth:`start`) and always :meth:`stop` the network."""

    def __init__(self, directory: Path, *, progress: Callable[[str], None] = lambda _: None,
                 use_sshd: bool = True, verbosity: int = 1) -> None:
        self.dir = directory.resolve()
        self.verbosity = max(1, verbosity)  # INFO at least: start-up is seen in the log
        self.progress = progress
        self.use_sshd = use_sshd
        root = self.dir
        self.nodes: dict[str, DemoNode] = {
            "ca": DemoNode("ca", CA, "California IV-D agency (state gateway)", root / "ca",
                           knows=(TX, NL)),
            "hub": DemoNode("hub", HUB, "federal hub (relays between states, reads nothing)",
                            root / "hub"),
            "tx": DemoNode("tx", TX, "Texas IV-D agency (state gateway)", root / "tx",
                           knows=(CA,)),
            "nl": DemoNode("nl", NL, "Netherlands Central Authority (Hague Convention)",
                           root / "nl", knows=(CA,)),
        }
        self.links: list[Link] = []
        self.sshd: DemoSshd | None = None
        self.fallback: str | None = None
        self.tls: TlsCa | None = None

    def node(self, party: str) -> DemoNode:
        return next(n for n in self.nodes.values() if n.party == party)

    def link(self, src: str, dst: str) -> Link:
        return next(k for k in self.links if k.src == src and k.dst == dst)

    # --- build ----------------------------------------------------------------------------

    def build(self) -> None:
        if self.dir.exists() and any(self.dir.iterdir()):
            raise UsageError("the demo folder exists and is not empty: give a new --dir",
                             where=str(self.dir))
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the demo folder ({exc.strerror})",
                             where=str(self.dir)) from None
        now = dt.datetime.now(dt.UTC)
        self.progress("generating node keys and certificates (3072-bit RSA, one node CA each)")
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda n: generate_node(n.keys, Party.parse(n.party), now=now),
                          self.nodes.values()))
        for node in self.nodes.values():
            for party in node.knows:
                other = self.node(party)
                chosen = [c for name in ("ca.crt", "sign.crt", "encrypt.crt")
                          for c in load_certificates_file(other.keys / name)]
                Keystore(node.keys).import_partner(Party.parse(party), chosen, now=now)
        self.progress("registered partner certificates (what `gateway keys import-partner` does)")
        self.tls = TlsCa(self.dir / "tls", now)
        for name in ("ca", "hub", "nl"):
            self.nodes[name].https_port = _free_port()
        self._sftp()
        for src, dst in (("ca", "hub"), ("hub", "ca"), ("ca", "nl"), ("nl", "ca")):
            port = self.nodes[dst].https_port
            self.links.append(Link(self.nodes[src].party, self.nodes[dst].party, "https",
                                   f"https://127.0.0.1:{port}/v1/messages"))
        for node in self.nodes.values():
            self._write_config(node)
        self.progress(f"wrote {len(self.nodes)} configurations under {self.dir}")

    def _sftp(self) -> None:
        hub, tx = self.nodes["hub"], self.nodes["tx"]
        sftp_root = self.dir / "sftp"
        hub.inbound_folder = sftp_root / "hub-inbound"
        tx.inbound_folder = sftp_root / "tx-inbound"
        for folder in (hub.inbound_folder, tx.inbound_folder):
            folder.mkdir(parents=True, exist_ok=True)
        reason = None
        if not self.use_sshd:
            reason = "sshd not used (--no-sshd)"
        elif find_sshd() is None:
            reason = "OpenSSH sshd is not installed (apt-get install openssh-server)"
        else:
            try:
                self.sshd = DemoSshd(sftp_root, self.dir / "sshd", clients=["hub", "tx"]).start()
            except GatewayError as exc:
                reason = f"sshd did not start ({exc})"
                self.sshd = None
        if self.sshd is not None:
            self.progress(f"OpenSSH sshd serving SFTP on 127.0.0.1:{self.sshd.port} "
                          "(host key pinned in known_hosts)")
            self.links += [Link(HUB, TX, "sftp", self.sshd.url(tx.inbound_folder)),
                           Link(TX, HUB, "sftp", self.sshd.url(hub.inbound_folder))]
        else:
            self.fallback = (f"SFTP link hub<->Texas FELL BACK to local folders (file://): "
                             f"{reason}")
            self.progress(self.fallback)
            self.links += [Link(HUB, TX, "file", tx.inbound_folder.as_uri()),
                           Link(TX, HUB, "file", hub.inbound_folder.as_uri())]

    def _transport_lines(self, node: DemoNode, link: Link) -> list[str]:
        lines = ["[[partners.transports]]", f"url = {_toml(link.url)}"]
        if link.kind == "https":
            assert self.tls is not None  # noqa: S101 - built first
            cert, key = self.tls.issue(f"{node.name}-client-to-{self.node(link.dst).name}",
                                       server=False)
            lines += [f"client_cert = {_toml(_rel(node, cert))}",
                      f"client_key = {_toml(_rel(node, key))}",
                      f"ca_file = {_toml(_rel(node, self.tls.cert_file))}"]
        elif link.kind == "sftp":
            assert self.sshd is not None  # noqa: S101 - sftp links only with sshd
            lines += [f"key_file = {_toml(_rel(node, self.sshd.client_key(node.name)))}",
                      f"known_hosts = {_toml(_rel(node, self.sshd.known_hosts))}"]
        return lines

    def _write_config(self, node: DemoNode) -> None:
        node.root.mkdir(parents=True, exist_ok=True)
        for folder in (node.outbox, node.inbox, node.rejected):
            folder.mkdir(exist_ok=True)
        lines = [
            f"# gateway.toml for {node.title}, written by `gateway demo`.",
            "# Reference: docs/configuration.md. Paths are relative to this file.",
            "", "[node]", f"party = {_toml(node.party)}", 'keys_dir = "keys"',
            "", "[spool]", 'database = "spool/gateway.db"', 'payloads = "spool/payloads"',
        ]
        if node.name != "hub":  # the hub only relays: it has no case system dropping files
            lines += ["", "[[outbox]]", 'path = "outbox"']
        lines += ["", "[inbox]", 'path = "inbox"', "", "[rejected]", 'path = "rejected"']
        if node.inbound_folder is not None:
            lines += ["", "# partners upload here over SFTP (the demo's sshd serves it)",
                      "[inbound]", f"folders = [{_toml(_rel(node, node.inbound_folder))}]",
                      'poll_interval = "200ms"']
        if node.https_port is not None:
            assert self.tls is not None  # noqa: S101 - built first
            cert, key = self.tls.issue(f"{node.name}-server", server=True)
            lines += ["", "[listeners.https]", 'host = "127.0.0.1"',
                      f"port = {node.https_port}", f"cert = {_toml(_rel(node, cert))}",
                      f"key = {_toml(_rel(node, key))}",
                      f"client_ca = {_toml(_rel(node, self.tls.cert_file))}"]
        for link in (k for k in self.links if k.src == node.party):
            partner = self.node(link.dst)
            lines += ["", "[[partners]]", f"party = {_toml(partner.party)}",
                      f"name = {_toml(partner.title.split(' (')[0])}"]
            lines += self._transport_lines(node, link)
        if node.name in ("ca", "tx"):
            lines += ["", "# anything not routed to a direct partner goes through the hub",
                      "[[routes]]", 'to = "default"', f"partner = {_toml(HUB)}"]
        lines += ["", _FAST]
        node.config_path.write_text("\n".join(lines), encoding="utf-8")

    # --- run ------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start every node as ``python -m gateway --config FILE -v run``; wait until each
        logs that it is running."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("GATEWAY_CONFIG", None)
        for node in self.nodes.values():
            with node.log_file.open("ab") as out:
                node.process = subprocess.Popen(
                    [sys.executable, "-m", "gateway", "--config", str(node.config_path),
                     "-" + "v" * self.verbosity, "run"], stdout=out, stderr=out,
                    stdin=subprocess.DEVNULL, env=env, cwd=node.root, start_new_session=True,
                    preexec_fn=end_with_this_process())  # noqa: PLW1509 - see lifetime.py
        deadline = time.monotonic() + timeout
        waiting = dict(self.nodes)
        while waiting:
            for name, node in list(waiting.items()):
                assert node.process is not None  # noqa: S101 - started above
                if f"gateway {node.party} running" in node.log_file.read_text(errors="replace"):
                    self.progress(f"started {node.name:<3} {node.party:<14} {node.title} "
                                  f"(pid {node.process.pid})")
                    del waiting[name]
                elif node.process.poll() is not None:
                    raise DemoFailed(f"node {name} exited with status {node.process.returncode}"
                                     f": {self.tail(node)}", where=str(node.log_file))
            if waiting and time.monotonic() > deadline:
                raise DemoFailed(f"nodes did not start within {timeout:.0f} s: "
                                 f"{', '.join(waiting)}")
            time.sleep(0.1)

    @staticmethod
    def tail(node: DemoNode, lines: int = 5) -> str:
        if not node.log_file.exists():
            return ""
        return " | ".join(node.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every node (they finish in-flight work), then stop sshd. Idempotent;
        kills a node that does not stop within ``timeout``. Returns each exit status."""
        codes: dict[str, int | None] = {}
        running = [n for n in self.nodes.values() if n.process is not None]
        for node in running:
            assert node.process is not None  # noqa: S101 - filtered
            if node.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in running:
            assert node.process is not None  # noqa: S101 - filtered
            try:
                codes[node.name] = node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(5)
                codes[node.name] = None
                log.warning("node %s did not stop within %.0f s: killed", node.name, timeout)
        if self.sshd is not None:
            self.sshd.stop()
        return codes

    def pids(self) -> Sequence[int]:
        found = [n.process.pid for n in self.nodes.values() if n.process is not None]
        if self.sshd is not None and self.sshd.pid is not None:
            found.append(self.sshd.pid)
        return found

