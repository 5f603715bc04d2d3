"""A real OpenSSH ``sshd`` serving SFTP on a free 127.0.0.1 port, for ``gateway demo``.

Shipped with the package (the demo must not import from ``tests/``); the tests keep their
own richer helper in ``tests/support/sshd.py``. The server has its own config, ed25519 host
key, one client key per named user of the demo, ``authorized_keys`` and a ``known_hosts``
file pinning its host key; it accepts only those keys for the current OS user and serves
nothing but SFTP (``ForceCommand internal-sftp -d ROOT``)::

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
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.errors import DemoFailed

__all__ = ["DemoSshd", "find_sshd"]

HOST = "127.0.0.1"


def find_sshd() -> Path | None:
    """The sshd binary, or ``None`` when OpenSSH's server is not installed."""
    for candidate in ("/usr/sbin/sshd", shutil.which("sshd")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def _ssh_key(path: Path, comment: str) -> str:
    """Write a new ed25519 private key (OpenSSH format, 0600); return the public line."""
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class DemoSshd:
    """One sshd process serving SFTP for the current OS user on 127.0.0.1."""

    def __init__(self, root: Path, workdir: Path, *, clients: Sequence[str],
                 sshd: Path | None = None) -> None:
        self.root = root.resolve()
        self.workdir = workdir.resolve()
        self.clients = tuple(clients)
        self.sshd = sshd or find_sshd()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.port = 0
        self.known_hosts = self.workdir / "known_hosts"
        self.config = self.workdir / "sshd_config"
        self.log_file = self.workdir / "sshd.log"
        self._host_key = self.workdir / "ssh_host_ed25519_key"
        self._host_public = ""
        self._process: subprocess.Popen[bytes] | None = None

    def client_key(self, client: str) -> Path:
        return self.workdir / f"{client}_ed25519"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def url(self, path: Path) -> str:
        """``sftp://user@127.0.0.1:PORT/abs/path``."""
        return f"sftp://{self.user}@{HOST}:{self.port}{path.resolve()}"

    def start(self, timeout: float = 15.0) -> DemoSshd:
        if self.sshd is None:
            raise DemoFailed("OpenSSH sshd is not installed")
        self.root.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # privilege separation directory, needed when run as root
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        self._host_public = _ssh_key(self._host_key, "cse-gateway-demo-host")
        lines = [_ssh_key(self.client_key(c), f"cse-gateway-demo-{c}") for c in self.clients]
        (self.workdir / "authorized_keys").write_text("\n".join(lines) + "\n", encoding="ascii")
        problem = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = _free_port()
            self._write_config()
            with self.log_file.open("ab") as log:
                self._process = subprocess.Popen(
                    [str(self.sshd), "-D", "-e", "-f", str(self.config)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            problem = self._wait_ready(timeout)
            if not problem:
                keytype, blob = self._host_public.split()[:2]
                self.known_hosts.write_text(f"[{HOST}]:{self.port} {keytype} {blob}\n",
                                            encoding="ascii")
                return self
            self.stop()
        raise DemoFailed(f"sshd did not start: {problem}", where=str(self.log_file))

    def _write_config(self) -> None:
        assert self.sshd is not None  # noqa: S101 - checked by start()
        lines = [
            f"Port {self.port}", f"ListenAddress {HOST}", f"HostKey {self._host_key}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
            f"AllowUsers {self.user}", "StrictModes no", "UsePAM no",
            "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
            "AllowTcpForwarding no", "AllowAgentForwarding no", "X11Forwarding no",
            "PermitTTY no", "LogLevel INFO", "Subsystem sftp internal-sftp",
            f"ForceCommand internal-sftp -d {self.root}",
        ]
        self.config.write_text("\n".join(lines) + "\n", encoding="ascii")
        check = subprocess.run([str(self.sshd), "-t", "-f", str(self.config)],
                               capture_output=True, check=False)
        if check.returncode != 0:
            raise DemoFailed("sshd refused its configuration: "
                             + check.stderr.decode(errors="replace").strip()[:300],
                             where=str(self.config))

    def _wait_ready(self, timeout: float) -> str:
        assert self._process is not None  # noqa: S101 - set by start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return f"exited with status {self._process.returncode}"
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
