"""Time-based one-time passwords (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps), the
kind every authenticator app reads from an ``otpauth://`` URI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote

__all__ = ["STEP", "code_at", "new_secret", "otpauth_uri", "step_of", "verify"]

STEP = 30
DIGITS = 6


def new_secret() -> str:
    """A new 160-bit secret in base32 (what authenticator apps expect)."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")


def step_of(epoch: float) -> int:
    return int(epoch // STEP)


def code_at(secret: str, step: int) -> str:
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def verify(secret: str, code: str, epoch: float, *, last_step: int | None = None,
           window: int = 1) -> int | None:
    """The step ``code`` is valid for (within ``window`` steps of now), or None. A step at
    or before ``last_step`` (a code already used) is refused, so a code works once."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    now = step_of(epoch)
    for step in range(now - window, now + window + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(code_at(secret, step), code):
            return step
    return None


def otpauth_uri(secret: str, account: str, issuer: str = "CSE Gateway") -> str:
    return (f"otpauth://totp/{quote(issuer)}:{quote(account)}?secret={secret}"
            f"&issuer={quote(issuer)}&algorithm=SHA1&digits={DIGITS}&period={STEP}")
