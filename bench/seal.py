"""Seal/open throughput with RSA-3072 keys and with P-256 keys, next to the bare primitive
costs, and peak memory for a 100 MB document.

- ``seal/s`` and ``open/s`` for 10 KB and 1 MB documents (full recipe: Sealed XML, CMS
  SignedData, AuthEnvelopedData, envelope XML and its schema check, chain checks), for
  nodes made by ``gateway keys generate`` (RSA-3072) and ``--curve p256`` (ECDSA
  signatures, ECDH key agreement), in the same run; the P-256 rows end with a ratio
  against RSA-3072.
- ``bare`` costs measured in the same run on the same bytes: one PSS sign (hashing the
  document), one RSA-OAEP wrap, AES-256-GCM of the document; and for opening, one OAEP
  unwrap, AES-GCM decryption and one signature verification. For P-256: one ECDSA sign,
  one ephemeral key + ECDH + X9.63 KDF + AES key wrap, AES-256-GCM; and ECDH + KDF +
  unwrap, AES-GCM, one ECDSA verification.
- Peak memory: each of seal and open runs in a fresh process on a 100 MB document; the
  figure is the growth of the peak resident set over the process's size with its inputs
  already loaded (100 MB document for seal, the ~178 MB envelope for open), so it includes
  libxml2's and OpenSSL's memory, not only Python objects. The peak is reset after the
  inputs are built (Linux ``/proc/self/clear_refs``, then ``VmHWM``), so building the
  inputs does not hide the figure.

Run: ``.venv/bin/python -m bench seal`` (``--quick`` for fewer iterations).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from bench import Row
from gateway.node.keystore import Keystore, generate_node
from gateway.protocol.envelope import Header
from gateway.protocol.identity import NodeIdentity
from gateway.protocol.party import Party
from gateway.protocol.seal import open_envelope, seal

A, B = Party.parse("fips:0600000"), Party.parse("iso3166:NL")
MB = 1024 * 1024


def _per_second(fn: Callable[[], object], iterations: int) -> float:
    fn()  # warm up
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return iterations / (time.perf_counter() - start)


def _document(size: int) -> bytes:
    """XML-shaped synthetic bytes of exactly ``size`` (content does not matter to crypto)."""
    head, tail = b"<Doc xmlns='urn:bench'>", b"</Doc>\n"
    body = (b"TESTPERSON 987654321 " * (size // 21 + 1))[: size - len(head) - len(tail)]
    return head + body + tail


def _nodes(base: Path, curve: bool = False
           ) -> tuple[Keystore, NodeIdentity, Keystore, NodeIdentity]:
    now = datetime.now(UTC)
    generate_node(base / "a", A, now=now, curve="p256" if curve else None)
    generate_node(base / "b", B, now=now, curve="p256" if curve else None)
    a, b = Keystore(base / "a"), Keystore(base / "b")
    ia, ib = a.identity(), b.identity()
    b.import_partner(A, [*a.trust(), ia.signing_cert], now=now)
    return a, ia, b, ib


def _bare(ia: NodeIdentity, ib: NodeIdentity, doc: bytes, iterations: int) -> tuple[float, float]:
    """Seconds for the bare seal primitives and the bare open primitives."""
    key = ia.signing_key
    assert isinstance(key, rsa.RSAPrivateKey)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                        label=None)
    cek, nonce = os.urandom(32), os.urandom(12)
    gcm = AESGCM(cek)
    enc_pub = ib.encryption_cert.public_key()
    assert isinstance(enc_pub, rsa.RSAPublicKey)
    sign_pub = ia.signing_cert.public_key()
    assert isinstance(sign_pub, rsa.RSAPublicKey)
    signature = key.sign(doc, pss, hashes.SHA256())
    wrapped = enc_pub.encrypt(cek, oaep)
    ciphertext = gcm.encrypt(nonce, doc, None)

    def seal_side() -> None:
        key.sign(doc, pss, hashes.SHA256())
        enc_pub.encrypt(cek, oaep)
        gcm.encrypt(nonce, doc, None)

    def open_side() -> None:
        ib.encryption_key.decrypt(wrapped, oaep)
        gcm.decrypt(nonce, ciphertext, None)
        sign_pub.verify(signature, doc, pss, hashes.SHA256())

    return 1 / _per_second(seal_side, iterations), 1 / _per_second(open_side, iterations)


def _bare_ec(ia: NodeIdentity, ib: NodeIdentity, doc: bytes, iterations: int
             ) -> tuple[float, float]:
    """:func:`_bare` for P-256 keys: ECDSA, ECDH + X9.63 KDF + AES-256 key wrap."""
    key, enc_key = ia.signing_key, ib.encryption_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(enc_key, ec.EllipticCurvePrivateKey)
    sign_pub, enc_pub = key.public_key(), enc_key.public_key()
    ecdsa = ec.ECDSA(hashes.SHA256())
    cek, nonce = os.urandom(32), os.urandom(12)
    gcm = AESGCM(cek)

    def kek(secret: bytes) -> bytes:
        return X963KDF(hashes.SHA256(), 32, b"shared-info").derive(secret)

    ephemeral = ec.generate_private_key(ec.SECP256R1())
    wrapped = keywrap.aes_key_wrap(kek(ephemeral.exchange(ec.ECDH(), enc_pub)), cek)
    signature = key.sign(doc, ecdsa)
    ciphertext = gcm.encrypt(nonce, doc, None)

    def seal_side() -> None:
        key.sign(doc, ecdsa)
        one = ec.generate_private_key(ec.SECP256R1())
        keywrap.aes_key_wrap(kek(one.exchange(ec.ECDH(), enc_pub)), cek)
        gcm.encrypt(nonce, doc, None)

    def open_side() -> None:
        keywrap.aes_key_unwrap(kek(enc_key.exchange(ec.ECDH(), ephemeral.public_key())),
                               wrapped)
        gcm.decrypt(nonce, ciphertext, None)
        sign_pub.verify(signature, doc, ecdsa)

    return 1 / _per_second(seal_side, iterations), 1 / _per_second(open_side, iterations)


def _throughput(rows: list[Row], label: str, size: int, iterations: int,  # noqa: PLR0917
                a: Keystore, ia: NodeIdentity, b: Keystore, ib: NodeIdentity,
                suite: str = "RSA-3072") -> float:
    """Adds the rows for one document size and key suite; returns seal+open per second."""
    doc = _document(size)
    now = datetime.now(UTC)
    trust, recipient = b.trust(), ib.encryption_cert

    def header() -> Header:
        return Header.new(from_party=A, to_party=B, service="interstate",
                          action="InterstateTransaction", created=now)

    envelope = seal(doc, header(), sender=ia, recipient_cert=recipient)

    def do_seal() -> None:
        seal(doc, header(), sender=ia, recipient_cert=recipient)

    def do_open() -> None:
        open_envelope(envelope, node=ib, trust=trust, directory=b, now=now)

    assert open_envelope(envelope, node=ib, trust=trust, directory=b, now=now).document == doc
    seals = _per_second(do_seal, iterations)
    opens = _per_second(do_open, iterations)
    ec_keys = suite != "RSA-3072"
    bare_seal, bare_open = (_bare_ec if ec_keys else _bare)(ia, ib, doc, iterations)
    both = 1 / seals + 1 / opens
    if ec_keys:
        label = f"{label} {suite}"
    rows += [
        Row("seal", f"seal {label}", seals, "seal/s", suite),
        Row("seal", f"open {label}", opens, "open/s", suite),
        Row("seal", f"bare sign+wrap+gcm {label}", 1 / bare_seal, "ops/s",
            "ECDSA sign + ECDH/KDF/AES wrap + AES-256-GCM" if ec_keys
            else "RSA-3072 PSS sign + OAEP wrap + AES-256-GCM"),
        Row("seal", f"bare unwrap+gcm+verify {label}", 1 / bare_open, "ops/s"),
        Row("seal", f"seal+open vs bare sign+wrap+gcm {label}", both / bare_seal, "x",
            "target for 10 KB: <= 2x"),
        Row("seal", f"seal+open vs all bare primitives {label}", both / (bare_seal + bare_open),
            "x", "open also needs an RSA private-key operation"),
        Row("seal", f"envelope size {label}", len(envelope) / size, "x document"),
    ]
    return 1 / both


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def _reset_peak() -> int:
    """Reset the peak RSS to the current RSS and return it, in bytes."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS") * 1024


def _memory_child(mode: str, keys: str, work: str, size: int) -> None:
    """Run in a fresh process: print the peak-RSS growth of one seal or open."""
    base = Path(keys)
    a, b = Keystore(base / "a"), Keystore(base / "b")
    ia, ib = a.identity(), b.identity()
    now = datetime.now(UTC)
    envelope_file = Path(work) / "envelope.xml"
    if mode == "seal":
        data = _document(size)
        before = _reset_peak()
        h = Header.new(from_party=A, to_party=B, service="interstate", action="Doc",
                       created=now)
        start = time.perf_counter()
        result = seal(data, h, sender=ia, recipient_cert=ib.encryption_cert)
        seconds = time.perf_counter() - start
        after = _status_kb("VmHWM") * 1024
        envelope_file.write_bytes(result)
    else:
        data = envelope_file.read_bytes()
        before = _reset_peak()
        start = time.perf_counter()
        opened = open_envelope(data, node=ib, trust=b.trust(), directory=b, now=now)
        seconds = time.perf_counter() - start
        after = _status_kb("VmHWM") * 1024
        assert len(opened.document) == size
    print(json.dumps({"before": before, "after": after, "seconds": seconds,
                      "input": len(data)}))


def _memory(rows: list[Row], keys: Path, size: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-seal-mem-") as work:
        for mode in ("seal", "open"):
            proc = subprocess.run(
                [sys.executable, "-c",
                 "import sys, bench.seal as b; b._memory_child(*sys.argv[1:4], int(sys.argv[4]))",
                 mode, str(keys), work, str(size)],
                capture_output=True, check=True, text=True, timeout=600,
                cwd=Path(__file__).resolve().parent.parent)
            figures = json.loads(proc.stdout.strip().splitlines()[-1])
            growth = (figures["after"] - figures["before"]) / size
            label = f"{size // MB} MB"
            rows.append(Row("seal", f"{mode} {label}: peak RSS growth", growth, "x document",
                            f"target < 4x; inputs held: {figures['input'] / size:.2f}x, "
                            f"{figures['seconds']:.2f} s"))
            rows.append(Row("seal", f"{mode} {label}: peak RSS total", figures["after"] / size,
                            "x document", "whole process incl. interpreter and inputs"))


def main(quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-seal-") as tmp:
        base = Path(tmp)
        a, ia, b, ib = _nodes(base)
        ea, eia, eb, eib = _nodes(base / "ec", curve=True)
        for label, size, n in (("10 KB", 10 * 1024, 30 if quick else 200),
                               ("1 MB", MB, 5 if quick else 30)):
            rsa_rate = _throughput(rows, label, size, n, a, ia, b, ib)
            ec_rate = _throughput(rows, label, size, n, ea, eia, eb, eib, suite="P-256")
            rows.append(Row("seal", f"seal+open {label}: P-256 vs RSA-3072", ec_rate / rsa_rate,
                            "x faster", f"{ec_rate:,.0f} vs {rsa_rate:,.0f} seal+open/s"))
        _memory(rows, base, 100 * MB)
    return rows


if __name__ == "__main__":
    from bench import format_rows

    print(format_rows(main(quick="--quick" in sys.argv)))
