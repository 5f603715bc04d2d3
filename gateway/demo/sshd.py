"""A real OpenSSH ``sshd`` serving SFTP on a free 127.0.0.1 port.

One launcher for ``gateway demo`` (shipped with the package: the demo must not import from
``tests/``) and for the tests and benchmarks, whose helper in ``tests/support/sshd.py``
extends it. The server has its own config, ed25519 host key, one client key per named
client, ``authorized_keys`` and a ``known_hosts`` file pinning its host key; it accepts
only those keys for the current OS user and serves nothing but SFTP
(``ForceCommand internal-sftp -d ROOT``)::

    server = DemoSshd(root, workdir, clients=["hub", "tx"]).start()
    url = server.url(root / "tx-inbound")
    options = {"key_file": server.client_key("hub"), "known_hosts": server.known_hosts}
    ...
    server.stop()

:func:`find_sshd` says where sshd is, or ``None``: the demo then falls back to another
transport and says so.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.demo.lifetime import end_with_this_process
from gateway.errors import DemoFailed

__all__ = ["DemoSshd", "LoopbackSshd", "find_sshd", "make_ssh_key", "write_known_hosts"]

HOST = "127.0.0.1"


def find_sshd() -> Path | None:
    """The sshd binary, or ``None`` when OpenSSH's server is not installed."""
    for candidate in ("/usr/sbin/sshd", shutil.which("sshd")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def make_ssh_key(path: Path, comment: str = "cse-gateway") -> str:
    """Write a new ed25519 private key (OpenSSH format, 0600) to ``path`` and
    ``path.pub``; return the public key line."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    line = f"{public} {comment}"
    path.with_name(path.name + ".pub").write_text(line + "\n", encoding="ascii")
    return line


def write_known_hosts(path: Path, port: int, public_line: str, host: str = HOST) -> Path:
    """Write a known_hosts file pinning ``public_line`` for ``[host]:port``."""
    keytype, blob = public_line.split()[:2]
    name = host if port == 22 else f"[{host}]:{port}"
    path.write_text(f"{name} {keytype} {blob}\n", encoding="ascii")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class LoopbackSshd:
    """One sshd process serving SFTP for the current OS user on 127.0.0.1.

    ``clients`` names the client keys to create (``key_for(name)``); ``extra_config`` adds
    sshd_config lines placed before the fixed ones, so they take precedence (e.g. a
    legacy cipher for a test). Keys are kept across restarts of the same ``workdir``.
    """

    host = HOST

    def __init__(self, root: Path | str, workdir: Path | str, *,
                 clients: Sequence[str] = ("client",), extra_config: Sequence[str] = (),
                 sshd: Path | None = None, label: str = "cse-gateway") -> None:
        self.root = Path(root).resolve()
        self.workdir = Path(workdir).resolve()
        self.clients = tuple(clients)
        self.extra_config = list(extra_config)
        self.sshd = sshd
        self.label = label
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.port = 0
        self.known_hosts = self.workdir / "known_hosts"
        self.config = self.workdir / "sshd_config"
        self.log_file = self.workdir / "sshd.log"
        self.host_key = self.workdir / "ssh_host_ed25519_key"
        self.host_public = ""
        self.client_publics: dict[str, str] = {}
        self._process: subprocess.Popen[bytes] | None = None

    def key_for(self, client: str) -> Path:
        return self.workdir / f"{client}_ed25519"

    def _preexec(self) -> Callable[[], None] | None:
        """What the child runs before ``sshd``: nothing here (tests manage their own)."""
        return None

    def _binary(self) -> Path:
        """The sshd to run (subclasses may install it when missing)."""
        found = self.sshd or find_sshd()
        if found is None:
            raise DemoFailed("OpenSSH sshd is not installed")
        return found

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def url(self, path: Path | str | None = None) -> str:
        """``sftp://user@127.0.0.1:PORT/abs/path`` (default: the root directory)."""
        remote = Path(path) if path is not None else self.root
        return f"sftp://{self.user}@{HOST}:{self.port}{remote}"

    def authorize(self, public_line: str) -> None:
        """Also accept another client key; sshd reads authorized_keys at every login, so
        this works while it runs."""
        with (self.workdir / "authorized_keys").open("a", encoding="ascii") as f:
            f.write(public_line.strip() + "\n")

    # -- life cycle ----------------------------------------------------------------------

    def start(self, timeout: float = 15.0, attempts: int = 5) -> LoopbackSshd:
        sshd = self._binary()
        self.root.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # privilege separation directory, needed when run as root
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        if not self.host_key.exists():
            self.host_public = make_ssh_key(self.host_key, f"{self.label}-host")
            self.client_publics = {c: make_ssh_key(self.key_for(c), f"{self.label}-{c}")
                                   for c in self.clients}
            (self.workdir / "authorized_keys").write_text(
                "".join(line + "\n" for line in self.client_publics.values()),
                encoding="ascii")
        problem = ""
        for _attempt in range(attempts):  # a free port can be taken between probe and bind
            self.port = _free_port()
            self._write_config(sshd)
            with self.log_file.open("ab") as log:
                self._process = subprocess.Popen(
                    [str(sshd), "-D", "-e", "-f", str(self.config)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                    preexec_fn=self._preexec())  # noqa: PLW1509 - see gateway/demo/lifetime.py
            problem = self._wait_ready(timeout)
            if not problem:
                write_known_hosts(self.known_hosts, self.port, self.host_public)
                return self
            self.stop()
        raise DemoFailed(f"sshd did not start: {problem}", where=str(self.log_file))

    def _write_config(self, sshd: Path) -> None:
        lines = [
            *self.extra_config,
            f"Port {self.port}", f"ListenAddress {HOST}", f"HostKey {self.host_key}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
            f"AllowUsers {self.user}", "StrictModes no", "UsePAM no",
            "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
            "AllowTcpForwarding no", "AllowAgentForwarding no", "X11Forwarding no",
            "PermitTTY no", "MaxStartups 200:30:400", "MaxSessions 100", "LogLevel INFO",
            "Subsystem sftp internal-sftp", f"ForceCommand internal-sftp -d {self.root}",
        ]
        # OpenSSH >= 9.8 penalises sources that fail authentication, which tests do on
        # purpose; older versions do not know the keyword.
        self.config.write_text("\n".join([*lines, "PerSourcePenalties no"]) + "\n",
                               encoding="ascii")
        check = subprocess.run([str(sshd), "-t", "-f", str(self.config)],
                               capture_output=True, check=False)
        if check.returncode == 0:
            return
        if b"PerSourcePenalties" in check.stderr:
            self.config.write_text("\n".join(lines) + "\n", encoding="ascii")
            return
        raise DemoFailed("sshd refused its configuration: "
                         + check.stderr.decode(errors="replace").strip()[:300],
                         where=str(self.config))

    def _wait_ready(self, timeout: float) -> str:
        process = self._process
        if process is None:
            return "not started"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return f"exited with status {process.returncode}"
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return ""
            except OSError:
                pass
            time.sleep(0.05)
        return f"no SSH banner on {HOST}:{self.port} within {timeout:.0f} s"

    def stop(self) -> None:
        """Stop sshd and its per-connection children (its own process group)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)

    def __enter__(self) -> LoopbackSshd:
        return self if self._process is not None else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class DemoSshd(LoopbackSshd):
    """The demo's sshd: one client key per demo node that connects."""

    def __init__(self, root: Path, workdir: Path, *, clients: Sequence[str],
                 sshd: Path | None = None) -> None:
        super().__init__(root, workdir, clients=clients, sshd=sshd, label="cse-gateway-demo")

    def client_key(self, client: str) -> Path:
        return self.key_for(client)

    def _preexec(self) -> Callable[[], None] | None:
        """The demo's sshd ends with the demo (:mod:`gateway.demo.lifetime`)."""
        return end_with_this_process()

    def start(self, timeout: float = 15.0, attempts: int = 3) -> DemoSshd:
        super().start(timeout, attempts)
        return self
