"""SFTP transport (paramiko): ``sftp://user@host:port/path``.

Push: the blob is written to ``.NAME.part`` in the remote directory (created
exclusively; a file of that name left by a sender stopped mid-upload is removed and the
upload made again, so nothing a crash left stays on the server), then renamed to ``NAME``
with the plain SFTP rename, which by the SFTP v3
specification, and in OpenSSH, fails when the target exists: nothing is overwritten
and the receiver never sees a partial file. A failed rename whose target already holds
the very same bytes (a retry after a lost answer) counts as success; different bytes raise
``AlreadyExists``. The temporary file is removed on failure where the connection allows.

Pull: ``list`` names the complete files in the directory (oldest first, never dot-files),
``fetch`` downloads one, ``acknowledge`` removes it (or moves it to ``done/``).

Security: private-key authentication only (``look_for_keys`` and ``allow_agent`` off, no
passwords), host keys pinned by a known_hosts file and checked with a reject policy:
unknown and changed keys raise ``HostKeyRejected`` naming the host and the fingerprint
seen. Every step has a finite timeout. One SSH connection per transport is kept open and
reused (connecting costs 60-160 ms); it is dropped after any connection-level failure and
made again on next use, and an operation that fails on a reused connection because that
connection had gone stale is retried once on a fresh one (every operation is idempotent).
"""

from __future__ import annotations

import base64
import builtins
import errno
import hashlib
import logging
import secrets
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import paramiko
from paramiko import sftp as sftp_const
from paramiko.ssh_exception import IncompatiblePeer

from transports.base import check_name, visible_names
from transports.errors import (
    AlreadyExists,
    AuthRejected,
    ConnectFailed,
    ConnectionLost,
    EndpointInvalid,
    HostKeyRejected,
    Incompatible,
    NotFound,
    PermissionDenied,
    RemoteFailed,
    RemoteFull,
    Timeout,
    TooLarge,
    TransportClosed,
    TransportError,
    connect_error,
)

__all__ = ["SftpTransport", "fingerprint"]

log = logging.getLogger("gateway.transports.sftp")

T = TypeVar("T")

# Free space below which a generic write failure is reported as ``RemoteFull``.
_FULL_BELOW = 1024 * 1024
_CHUNK = 32768
# Data per SFTP write: the whole request (data plus ~30 bytes of header and handle) must
# fit one 32 KB SSH channel packet, else each write costs a second, tiny packet (measured:
# ~30% slower for large files).
_WRITE = _CHUNK - 256
_MAX_PENDING = 64  # writes in flight before waiting for the oldest reply


# Refused unless ``allow_legacy_algorithms=True``: CBC ciphers, 3DES, SHA-1 and MD5 MACs,
# SHA-1 key exchange and SHA-1 RSA signatures (RSA keys still work with rsa-sha2-256/512),
# as OpenSSH itself does by default since 8.8.
LEGACY_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "ciphers": ("aes128-cbc", "aes192-cbc", "aes256-cbc", "3des-cbc"),
    "macs": ("hmac-sha1", "hmac-sha1-96", "hmac-md5", "hmac-md5-96"),
    "kex": ("diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1",
            "diffie-hellman-group-exchange-sha1"),
    "keys": ("ssh-rsa", "ssh-dss"),
    "pubkeys": ("ssh-rsa", "ssh-dss"),
}


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:base64`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")



class _OpenRefused(OSError):
    """The server refused the exclusive open of the temporary file without saying why."""

class _RejectUnknown(paramiko.RejectPolicy):
    """paramiko's RejectPolicy, raising our error with the host and the fingerprint."""

    def __init__(self, endpoint: str, known_hosts: str) -> None:
        self.endpoint = endpoint
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> NoReturn:
        raise HostKeyRejected(
            f"host key of {hostname} is not in {self.known_hosts} "
            f"(server offered {key.get_name()} {fingerprint(key)}); refusing to connect",
            endpoint=self.endpoint,
        )


class _Session:
    def __init__(self, client: paramiko.SSHClient, sftp: paramiko.SFTPClient) -> None:
        self.client = client
        self.sftp = sftp
        self.used = False

    def alive(self) -> bool:
        transport = self.client.get_transport()
        channel = self.sftp.get_channel()
        return (
            transport is not None
            and transport.is_active()
            and channel is not None
            and not channel.closed
        )

    def close(self) -> None:
        try:
            self.sftp.close()
        except Exception:  # closing a broken session must not fail
            log.debug("closing SFTP channel failed", exc_info=True)
        self.client.close()


class SftpTransport:
    """A ``Transport`` to one remote directory over SFTP, with one reused connection."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        path: str,
        *,
        key_file: str | Path,
        known_hosts: str | Path,
        key_passphrase: str | None = None,
        timeout: float = 15.0,
        connect_timeout: float = 10.0,
        move_to_done: bool = False,
        window_size: int = 8 * 1024 * 1024,
        max_fetch: int = 256 * 1024 * 1024,
        allow_legacy_algorithms: bool = False,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.user = user
        if path.startswith("/~/"):
            path = path[3:]  # relative to the login (or ForceCommand -d) directory
        self.path = path.rstrip("/") or "/"
        shown = self.path if self.path.startswith("/") else f"/~/{self.path}"
        self.endpoint = f"sftp://{user}@{host}:{self.port}{shown}"
        self.known_hosts = str(known_hosts)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.move_to_done = move_to_done
        self.window_size = window_size
        self.max_fetch = int(max_fetch)
        self.disabled_algorithms: dict[str, list[str]] = {} if allow_legacy_algorithms else {
            kind: list(names) for kind, names in LEGACY_ALGORITHMS.items()
        }
        if allow_legacy_algorithms:
            log.warning("%s: legacy SSH algorithms (CBC, SHA-1) allowed by configuration",
                        self.endpoint)
        if self.timeout <= 0 or self.connect_timeout <= 0:
            raise EndpointInvalid("timeouts must be positive", endpoint=self.endpoint)
        self._pkey = self._load_key(Path(key_file), key_passphrase)
        self._lock = threading.RLock()
        self._session: _Session | None = None
        self._closed = False

    # -- connection ---------------------------------------------------------------------

    def _load_key(self, path: Path, passphrase: str | None) -> paramiko.PKey:
        try:
            return paramiko.PKey.from_path(path, password=passphrase)
        except FileNotFoundError:
            raise EndpointInvalid(
                f"SSH key file {path} not found", endpoint=self.endpoint
            ) from None
        except PermissionError:
            raise EndpointInvalid(
                f"SSH key file {path} is not readable", endpoint=self.endpoint
            ) from None
        except (paramiko.SSHException, ValueError, OSError) as exc:
            raise EndpointInvalid(
                f"cannot load SSH key file {path} ({type(exc).__name__}: wrong passphrase "
                "or unsupported format)",
                endpoint=self.endpoint,
            ) from None

    def _connect(self) -> _Session:
        where = f"{self.host}:{self.port}"
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(self.known_hosts)
        except (OSError, paramiko.SSHException) as exc:
            client.close()
            raise HostKeyRejected(
                f"cannot read known_hosts file {self.known_hosts} ({type(exc).__name__}); "
                "no host key can be trusted",
                endpoint=self.endpoint,
            ) from exc
        client.set_missing_host_key_policy(_RejectUnknown(self.endpoint, self.known_hosts))
        started = time.monotonic()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            client.close()
            raise connect_error(exc, where, endpoint=self.endpoint) from exc
        # Small SFTP requests go out back to back (writes, then close); without this,
        # Nagle's algorithm holds the later ones for the earlier ones' ACKs.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            client.connect(
                self.host,
                self.port,
                username=self.user,
                pkey=self._pkey,
                sock=sock,
                # paramiko's ``timeout`` bounds the key exchange and then returns without
                # an error; keep it above the banner timeout so a silent server is caught
                # by the latter, and classify by elapsed time below.
                timeout=2 * self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
                look_for_keys=False,
                allow_agent=False,
                disabled_algorithms=self.disabled_algorithms,
            )
            transport = client.get_transport()
            if transport is None:
                raise paramiko.SSHException("no transport after connecting")
            sftp = paramiko.SFTPClient.from_transport(
                transport, window_size=self.window_size, max_packet_size=_CHUNK
            )
            if sftp is None:
                raise paramiko.SSHException("the server refused the SFTP subsystem")
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(self.timeout)
        except TransportError:
            client.close()
            sock.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            known_as = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
            raise HostKeyRejected(
                f"host key of {known_as} CHANGED: server offered {exc.key.get_name()} "
                f"{fingerprint(exc.key)}, {self.known_hosts} pins "
                f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}; refusing "
                "to connect (possible man-in-the-middle)",
                endpoint=self.endpoint,
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise AuthRejected(
                f"{where} refused key authentication for user {self.user}",
                endpoint=self.endpoint,
            ) from exc
        except IncompatiblePeer as exc:
            client.close()
            raise Incompatible(
                f"{where} and this client share no acceptable SSH algorithm "
                f"({str(exc)[:120]})",
                endpoint=self.endpoint,
            ) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            sock.close()
            if time.monotonic() - started >= self.connect_timeout:
                raise Timeout(
                    f"SSH handshake with {where} timed out after {self.connect_timeout:g} s",
                    endpoint=self.endpoint,
                ) from exc
            raise self._connection_error(exc, f"SSH handshake with {where}") from exc
        log.debug("%s: connected", self.endpoint)
        return _Session(client, sftp)

    def _connection_error(self, exc: BaseException, doing: str) -> TransportError:
        text = str(exc)
        if isinstance(exc, TimeoutError) or "timeout" in text.lower() or "banner" in text:
            return Timeout(f"{doing} timed out", endpoint=self.endpoint)
        if isinstance(exc, ConnectionRefusedError):
            return ConnectFailed(f"{doing}: connection refused", endpoint=self.endpoint)
        reason = type(exc).__name__ if not text else f"{type(exc).__name__}: {text[:80]}"
        return ConnectionLost(f"{doing}: connection lost ({reason})", endpoint=self.endpoint)

    def _drop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _run(self, doing: str, operation: Callable[[paramiko.SFTPClient], T]) -> T:
        """Run ``operation`` on the session, translating failures; retry once when a
        reused connection turns out to be stale."""
        with self._lock:
            if self._closed:
                raise TransportClosed("transport is closed", endpoint=self.endpoint)
            for attempt in (1, 2):
                session = self._session
                if session is not None and not session.alive():
                    self._drop()
                    session = None
                if session is None:
                    session = self._session = self._connect()
                reused = session.used
                session.used = True
                try:
                    return operation(session.sftp)
                except TransportError:
                    if not session.alive():
                        self._drop()
                    raise
                except (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError) as exc:
                    # EOF and SSH-layer errors mean the connection is gone even when
                    # paramiko has not marked the transport inactive yet; only an error
                    # status (an IOError carrying errno) comes from a live server.
                    lost = isinstance(exc, TimeoutError | EOFError | paramiko.SSHException)
                    if lost or not session.alive():
                        # A timed-out channel may still deliver a late answer: never reuse.
                        self._drop()
                        error = self._connection_error(exc, doing)
                        if reused and attempt == 1 and not isinstance(exc, TimeoutError):
                            log.info("%s: stale connection, retrying once: %s", self.endpoint,
                                     error.message)
                            continue
                        raise error from exc
                    raise self._status_error(exc, doing) from exc
            raise AssertionError("unreachable")

    def _status_error(self, exc: BaseException, doing: str) -> TransportError:
        """An error status from the SFTP server (the connection is still fine)."""
        code = getattr(exc, "errno", None)
        if code == errno.ENOENT:
            return NotFound(f"{doing}: no such file or directory", endpoint=self.endpoint)
        if code == errno.EACCES:
            return PermissionDenied(f"{doing}: permission denied", endpoint=self.endpoint)
        text = str(exc)[:80] or type(exc).__name__
        return RemoteFailed(f"{doing}: the server reported {text!r}", endpoint=self.endpoint)

    # -- helpers ------------------------------------------------------------------------

    def _remote(self, name: str) -> str:
        return f"{self.path}/{name}" if self.path != "/" else f"/{name}"

    def _free_space(self, sftp: paramiko.SFTPClient) -> int | None:
        """Bytes available on the remote file system (OpenSSH ``statvfs@openssh.com``),
        or None when the server does not say."""
        try:
            # paramiko has no public statvfs; this is the documented OpenSSH extension
            # (PROTOCOL, section 4.4) sent through paramiko's request helper.
            kind, msg = sftp._request(  # type: ignore[attr-defined]
                paramiko.sftp.CMD_EXTENDED, "statvfs@openssh.com", self.path
            )
            if kind != paramiko.sftp.CMD_EXTENDED_REPLY:
                return None
            frsize = (msg.get_int64(), msg.get_int64())[1]  # f_bsize, f_frsize
            msg.get_int64()  # f_blocks
            msg.get_int64()  # f_bfree
            bavail = msg.get_int64()
            return int(frsize * bavail)
        except Exception:  # best effort diagnosis only
            return None

    def _upload(self, sftp: paramiko.SFTPClient, temp: str, data: bytes) -> None:
        """Create ``temp`` exclusively and write ``data``, raising the first error.

        Pipelined: the writes and the close go out without waiting, then every reply is
        read in request order and checked (one round trip after the open, not one per
        write plus one for the close). paramiko's own pipelined ``SFTPFile`` is not used
        because it drops the status of writes it has not drained itself and ``close()``
        does not check them: a write refused for lack of space passed unnoticed and left a
        truncated file (measured against OpenSSH on a full tmpfs). This uses paramiko's
        request helpers (``_request``, ``_async_request``, ``_read_response``); with a
        paramiko that lacks them, it falls back to unpipelined, checked writes.
        """
        if not all(hasattr(sftp, a) for a in ("_request", "_async_request", "_read_response")):
            try:
                f = sftp.open(temp, "wbx")
            except OSError as exc:
                if getattr(exc, "errno", None) is None and not isinstance(exc, TimeoutError):
                    raise _OpenRefused(str(exc)) from exc
                raise
            with f:  # not pipelined: each write is checked
                f.write(data)
            return
        flags = sftp_const.SFTP_FLAG_WRITE | sftp_const.SFTP_FLAG_CREATE | sftp_const.SFTP_FLAG_EXCL
        try:
            kind, msg = sftp._request(  # type: ignore[attr-defined]
                sftp_const.CMD_OPEN, temp, flags, paramiko.SFTPAttributes()
            )
        except OSError as exc:
            if getattr(exc, "errno", None) is None and not isinstance(exc, TimeoutError):
                # SFTP v3 reports an existing file on an exclusive open as a bare "Failure"
                raise _OpenRefused(str(exc)) from exc
            raise
        if kind != sftp_const.CMD_HANDLE:
            raise paramiko.SFTPError("expected a handle for the new file")
        handle = msg.get_binary()
        pending: deque[int] = deque()
        first_error: OSError | None = None

        def settle(num: int) -> None:
            nonlocal first_error
            try:
                sftp._read_response(num)  # type: ignore[attr-defined]  # raises on error
            except OSError as exc:
                if isinstance(exc, TimeoutError):
                    raise
                first_error = first_error or exc

        for offset in range(0, len(data), _WRITE):
            if first_error is not None:
                break  # stop sending after a refused write; close and report
            pending.append(
                sftp._async_request(  # type: ignore[attr-defined]
                    type(None), sftp_const.CMD_WRITE, handle, sftp_const.int64(offset),
                    data[offset : offset + _WRITE],
                )
            )
            if len(pending) > _MAX_PENDING:
                settle(pending.popleft())
        pending.append(
            sftp._async_request(  # type: ignore[attr-defined]
                type(None), sftp_const.CMD_CLOSE, handle
            )
        )
        while pending:
            settle(pending.popleft())
        if first_error is not None:
            raise first_error

    def _same_content(self, sftp: paramiko.SFTPClient, remote: str, data: bytes) -> bool:
        try:
            attrs = sftp.stat(remote)
        except FileNotFoundError:
            return False
        if attrs.st_size != len(data):
            return False
        return self._download(sftp, remote) == data

    def _download(
        self, sftp: paramiko.SFTPClient, remote: str, limit: int | None = None
    ) -> bytes:
        with sftp.open(remote, "rb") as f:
            size = f.stat().st_size or 0
            if limit is not None and size > limit:
                raise TooLarge(
                    f"{remote.rsplit('/', 1)[-1]} is {size} bytes; at most {limit} fetched",
                    endpoint=self.endpoint,
                )
            if size > _CHUNK:
                f.prefetch(size)
            return f.read()

    def _remove_quietly(self, sftp: paramiko.SFTPClient, remote: str) -> None:
        try:
            sftp.remove(remote)
        except Exception:  # cleanup; the first failure is raised
            log.debug("%s: could not remove temporary file %s", self.endpoint, remote)

    # -- Transport ----------------------------------------------------------------------

    def send(self, name: str, data: bytes) -> bytes | None:
        check_name(name, endpoint=self.endpoint)
        final = self._remote(name)

        def operation(sftp: paramiko.SFTPClient) -> None:
            temp = self._remote(f".{name}.part")
            try:
                try:
                    self._upload(sftp, temp, data)
                except _OpenRefused:
                    # most likely the temporary file of an upload that a crash cut short
                    log.info("%s: replacing a stale temporary file for %s", self.endpoint, name)
                    self._remove_quietly(sftp, temp)
                    self._upload(sftp, temp, data)
            except OSError as exc:
                if isinstance(exc, TimeoutError):
                    raise  # the channel is unusable now; the temporary file stays hidden
                self._remove_quietly(sftp, temp)
                if getattr(exc, "errno", None) is not None:
                    raise  # no such directory, permission denied, connection errors
                # A generic failure while writing: tell a full disk from the rest.
                free = self._free_space(sftp)
                if free is not None and free < max(_FULL_BELOW, len(data)):
                    raise RemoteFull(
                        f"writing {name} failed: the remote file system is full "
                        f"({free} bytes free)",
                        endpoint=self.endpoint,
                    ) from exc
                raise
            try:
                sftp.rename(temp, final)
            except OSError as exc:
                if isinstance(exc, TimeoutError):
                    raise
                same = self._same_content(sftp, final, data)
                self._remove_quietly(sftp, temp)
                if same:
                    log.info("%s: %s already there with identical bytes", self.endpoint, name)
                    return
                if self._exists(sftp, final):
                    raise AlreadyExists(
                        f"a different blob named {name} is already there",
                        endpoint=self.endpoint,
                    ) from None
                raise

        self._run(f"uploading {name}", operation)
        return None

    def _exists(self, sftp: paramiko.SFTPClient, remote: str) -> bool:
        try:
            sftp.lstat(remote)
        except FileNotFoundError:
            return False
        return True

    def list(self) -> builtins.list[str]:
        def operation(sftp: paramiko.SFTPClient) -> builtins.list[str]:
            entries = [
                (a.st_mtime or 0, a.filename)
                for a in sftp.listdir_attr(self.path)
                if stat.S_ISREG(a.st_mode or 0)
            ]
            shown = visible_names((n for _, n in entries), endpoint=self.endpoint, log=log)
            return [name for _, name in sorted(entries) if name in shown]

        return self._run("listing the directory", operation)

    def fetch(self, name: str) -> bytes:
        check_name(name, endpoint=self.endpoint)
        remote = self._remote(name)
        try:
            return self._run(
                f"downloading {name}", lambda sftp: self._download(sftp, remote, self.max_fetch)
            )
        except NotFound:
            raise NotFound(f"no blob named {name}", endpoint=self.endpoint) from None

    def acknowledge(self, name: str) -> None:
        check_name(name, endpoint=self.endpoint)
        remote = self._remote(name)

        def operation(sftp: paramiko.SFTPClient) -> None:
            try:
                if not self.move_to_done:
                    sftp.remove(remote)
                    return
                done = self._remote("done")
                if not self._exists(sftp, done):
                    try:
                        sftp.mkdir(done)
                    except OSError:
                        if not self._exists(sftp, done):
                            raise
                try:
                    sftp.rename(remote, f"{done}/{name}")
                except OSError:
                    if not self._exists(sftp, remote):
                        raise
                    sftp.rename(remote, f"{done}/{name}.{secrets.token_hex(4)}")
            except FileNotFoundError:
                return  # already acknowledged

        self._run(f"acknowledging {name}", operation)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()
