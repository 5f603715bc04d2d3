"""A real OpenSSH ``sshd`` on a free 127.0.0.1 port, for tests and benchmarks.

The launcher itself ships with the gateway (``gateway.demo.sshd.LoopbackSshd``, also used
by ``gateway demo``); this adds what tests need: installing openssh-server when it is
missing, one client key with its options for ``open_transport``, the host key fingerprint,
and OpenSSH's own ``sftp -b`` command line. Plain class, usable outside pytest::

    with SshServer(root_dir, workdir) as server:
        t = open_transport(server.url(root_dir / "inbox"), **server.client_options())

If ``/usr/sbin/sshd`` is missing it runs ``scripts/os-deps.sh`` once (installs
openssh-server as root with apt-get), then fails with a clear message.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

from gateway.demo import sshd as demo_sshd
from gateway.demo.sshd import HOST, LoopbackSshd, make_ssh_key, write_known_hosts

__all__ = ["SshServer", "SshdUnavailable", "find_sshd", "make_ssh_key", "write_known_hosts"]

REPO = Path(__file__).resolve().parents[2]
_install_attempts: list[int] = []


class SshdUnavailable(RuntimeError):
    """OpenSSH's sshd is not installed and could not be installed."""


def find_sshd() -> Path:
    """Path of the sshd binary; runs scripts/os-deps.sh once when it is missing."""
    found = demo_sshd.find_sshd()
    if found is not None:
        return found
    if not _install_attempts:
        _install_attempts.append(1)
        subprocess.run(["bash", str(REPO / "scripts" / "os-deps.sh")], check=False)
        return find_sshd()
    raise SshdUnavailable(
        "OpenSSH sshd not found at /usr/sbin/sshd and scripts/os-deps.sh could not install "
        "it: run `apt-get install openssh-server` as root (the SFTP tests need a real sshd)"
    )


def fingerprint(public_line: str) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a public key line."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class SshServer(LoopbackSshd):
    """One sshd process serving SFTP for the current user on 127.0.0.1, one client key."""

    def __init__(
        self, root_dir: Path | str, workdir: Path | str, *, extra_config: Sequence[str] = ()
    ) -> None:
        super().__init__(root_dir, workdir, clients=("client",), extra_config=extra_config,
                         label="cse-gateway-test")

    def _binary(self) -> Path:
        return find_sshd()

    def start(self, timeout: float = 15.0, attempts: int = 5) -> SshServer:
        super().start(timeout, attempts)
        return self

    def __enter__(self) -> SshServer:
        return self if self.running else self.start()

    @property
    def root_dir(self) -> Path:
        return self.root

    @property
    def client_key(self) -> Path:
        return self.key_for("client")

    @property
    def client_public(self) -> str:
        return self.client_publics.get("client", "")

    @property
    def host_fingerprint(self) -> str:
        return fingerprint(self.host_public)

    def client_options(self) -> dict[str, str]:
        """Options for ``open_transport``: the client key and the pinned known_hosts."""
        return {"key_file": str(self.client_key), "known_hosts": str(self.known_hosts)}

    def sftp_command(self, batch_file: Path | str = "-") -> list[str]:
        """OpenSSH's own ``sftp -b`` client command line for this server."""
        return [
            "sftp", "-q", "-b", str(batch_file), "-i", str(self.client_key),
            "-P", str(self.port),
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "GlobalKnownHostsFile=/dev/null",
            f"{self.user}@{HOST}",
        ]
