"""A real OpenSSH ``sshd`` on a free 127.0.0.1 port, for tests, benchmarks and the demo.

It has its own config, ed25519 host key, client key, authorized_keys and known_hosts in
``workdir``, accepts only that key for the current user, and serves nothing but SFTP
(``ForceCommand internal-sftp -d ROOT_DIR``, so sessions start in ``root_dir``). Plain
class, usable outside pytest::

    with SshServer(root_dir, workdir) as server:
        t = open_transport(server.url(root_dir / "inbox"), **server.client_options())

If ``/usr/sbin/sshd`` is missing it runs ``scripts/os-deps.sh`` once (installs
openssh-server as root with apt-get), then fails with a clear message.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

__all__ = ["SshServer", "SshdUnavailable", "find_sshd", "make_ssh_key", "write_known_hosts"]

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
_install_attempts: list[int] = []


class SshdUnavailable(RuntimeError):
    """OpenSSH's sshd is not installed and could not be installed."""


def find_sshd() -> Path:
    """Path of the sshd binary; runs scripts/os-deps.sh once when it is missing."""
    for candidate in ("/usr/sbin/sshd", shutil.which("sshd")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    if not _install_attempts:
        _install_attempts.append(1)
        subprocess.run(["bash", str(REPO / "scripts" / "os-deps.sh")], check=False)
        return find_sshd()
    raise SshdUnavailable(
        "OpenSSH sshd not found at /usr/sbin/sshd and scripts/os-deps.sh could not install "
        "it: run `apt-get install openssh-server` as root (the SFTP tests need a real sshd)"
    )


def make_ssh_key(path: Path, comment: str = "cse-gateway-test") -> str:
    """Write a new ed25519 private key (OpenSSH format, mode 0600) to ``path`` and
    ``path.pub``; return the public key line."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    line = f"{public} {comment}"
    path.with_name(path.name + ".pub").write_text(line + "\n")
    return line


def fingerprint(public_line: str) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a public key line."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def write_known_hosts(path: Path, port: int, public_line: str, host: str = HOST) -> Path:
    """Write a known_hosts file pinning ``public_line`` for ``[host]:port``."""
    keytype, blob = public_line.split()[:2]
    name = host if port == 22 else f"[{host}]:{port}"
    path.write_text(f"{name} {keytype} {blob}\n")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class SshServer:
    """One sshd process serving SFTP for the current user on 127.0.0.1."""

    host = HOST

    def __init__(
        self, root_dir: Path | str, workdir: Path | str, *, extra_config: Sequence[str] = ()
    ) -> None:
        """``extra_config``: more sshd_config lines (e.g. ``"Ciphers aes128-cbc"``),
        placed before the fixed ones so they take precedence."""
        self.extra_config = list(extra_config)
        self.root_dir = Path(root_dir).resolve()
        self.workdir = Path(workdir).resolve()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.port = 0
        self.client_key = self.workdir / "client_ed25519"
        self.known_hosts = self.workdir / "known_hosts"
        self.host_key = self.workdir / "ssh_host_ed25519_key"
        self.config = self.workdir / "sshd_config"
        self.log_file = self.workdir / "sshd.log"
        self.host_public = ""
        self.client_public = ""
        self._process: subprocess.Popen[bytes] | None = None

    # -- life cycle ----------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> SshServer:
        sshd = find_sshd()
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        if not self.host_key.exists():
            self.host_public = make_ssh_key(self.host_key, "cse-gateway-test-host")
            self.client_public = make_ssh_key(self.client_key, "cse-gateway-test-client")
            (self.workdir / "authorized_keys").write_text(self.client_public + "\n")
        last_error = ""
        for _attempt in range(5):
            self.port = _free_port()
            self._write_config(sshd)
            with self.log_file.open("ab") as log:
                self._process = subprocess.Popen(
                    [str(sshd), "-D", "-e", "-f", str(self.config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            last_error = self._wait_ready(timeout)
            if not last_error:
                write_known_hosts(self.known_hosts, self.port, self.host_public)
                return self
            self.stop()
        raise RuntimeError(f"sshd did not start: {last_error}; log: {self.log_file}")

    def _write_config(self, sshd: Path) -> None:
        lines = [
            *self.extra_config,
            f"Port {self.port}",
            f"ListenAddress {HOST}",
            f"HostKey {self.host_key}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
            f"AllowUsers {self.user}",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
            "MaxStartups 200:30:400",
            "MaxSessions 100",
            "LogLevel INFO",
            "Subsystem sftp internal-sftp",
            f"ForceCommand internal-sftp -d {self.root_dir}",
        ]
        # OpenSSH >= 9.8 penalises sources that fail auth; tests fail auth on purpose.
        probe = [*lines, "PerSourcePenalties no"]
        self.config.write_text("\n".join(probe) + "\n")
        check = subprocess.run(
            [str(sshd), "-t", "-f", str(self.config)], capture_output=True, check=False
        )
        if check.returncode != 0:
            if b"PerSourcePenalties" in check.stderr:
                self.config.write_text("\n".join(lines) + "\n")
            else:
                raise RuntimeError(
                    f"sshd rejected its test config {self.config}: "
                    f"{check.stderr.decode(errors='replace').strip()}"
                )

    def _wait_ready(self, timeout: float) -> str:
        assert self._process is not None
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
        return f"no SSH banner on {HOST}:{self.port} within {timeout} s"

    def stop(self) -> None:
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
        # per-connection children of the sshd we started (its own session and group)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)

    def __enter__(self) -> SshServer:
        return self if self._process is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what clients need -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def host_fingerprint(self) -> str:
        return fingerprint(self.host_public)

    def url(self, path: Path | str | None = None) -> str:
        """``sftp://user@127.0.0.1:PORT/abs/path`` (default: the root directory)."""
        remote = Path(path) if path is not None else self.root_dir
        return f"sftp://{self.user}@{HOST}:{self.port}{remote}"

    def authorize(self, public_line: str) -> None:
        """Also accept another client key (e.g. a second node's); sshd reads
        authorized_keys at every login, so this works while running."""
        with (self.workdir / "authorized_keys").open("a") as f:
            f.write(public_line.strip() + "\n")

    def client_options(self) -> dict[str, str]:
        """Options for ``open_transport``: the client key and the pinned known_hosts."""
        return {"key_file": str(self.client_key), "known_hosts": str(self.known_hosts)}

    def sftp_command(self, batch_file: Path | str = "-") -> list[str]:
        """OpenSSH's own ``sftp -b`` client command line for this server."""
        return [
            "sftp",
            "-q",
            "-b",
            str(batch_file),
            "-i",
            str(self.client_key),
            "-P",
            str(self.port),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            f"{self.user}@{HOST}",
        ]
