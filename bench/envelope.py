"""The envelope and receipt layer per message (issue 18), each shortcut against the long way
it replaces, measured in the same run on the same bytes (P-256 nodes, 10 KB document):

- ``parse_envelope``: the full path (hardened parse, schema check, base64 check and decode)
  against reading the envelope in the exact bytes we write (``gateway.protocol.canonical``);
- ``take_sealed``: the same for the signed ``Sealed`` content inside;
- ``receipt fields``: the signed ``Receipt`` document, parsed and schema-checked against
  read by its exact form;
- ``base64 lines``: encoding a 15 KB payload with ``binascii`` cut into 76-character lines
  (the encoder before) against pybase64's ``encodebytes``;
- ``receipt signer checks``: checking a receipt (parsed already) as the daemon does, with
  the signer's chain, usage and registration checked every time against remembered per
  signer certificate (``receipts.SignerChecks``, what ``NodeKeys`` keeps);
- then the whole per-message protocol work of each side as it is now: seal (A), open and
  build the receipt (B), check the receipt (A).

CPU time (``time.process_time``) per call, the median of alternating rounds (the machine is
shared); the note gives the ratio after/before.

Run: ``.venv/bin/python -m bench envelope`` (``--quick`` for fewer rounds).
"""

from __future__ import annotations

import binascii
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import Row, format_rows
from bench.seal import A, B, _document, _nodes
from gateway.protocol import cms
from gateway.protocol.envelope import (
    DEFAULT_MAX_ENVELOPE_BYTES,
    Header,
    _encode_lines,
    _parse_envelope_full,
    _take_sealed_full,
    parse_envelope,
    take_sealed,
)
from gateway.protocol.identity import StaticDirectory
from gateway.protocol.receipts import (
    SignerChecks,
    _fields,
    _fields_full,
    build_receipt,
    verify_receipt,
)
from gateway.protocol.seal import open_parsed, seal

BENCH = "envelope"


def _cpu(func: Callable[[], object], number: int) -> float:
    start = time.process_time()
    for _ in range(number):
        func()
    return (time.process_time() - start) / number


def _pair(before: Callable[[], object], after: Callable[[], object], *, number: int,
          rounds: int) -> tuple[float, float]:
    """Median CPU seconds per call of each, rounds alternating."""
    before()
    after()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        times[0].append(_cpu(before, number))
        times[1].append(_cpu(after, number))
    return tuple(sorted(t)[len(t) // 2] for t in times)  # type: ignore[return-value]


def _binascii_lines(data: bytes) -> bytes:
    """The line encoder before pybase64 (one b2a_base64 call, cut into lines)."""
    text = binascii.b2a_base64(data, newline=False)
    return b"\n".join([text[i:i + 76] for i in range(0, len(text), 76)]) + b"\n"


def main(quick: bool = False) -> list[Row]:
    number, rounds = (100, 5) if quick else (400, 11)
    with tempfile.TemporaryDirectory() as tmp:
        _a, ia, store_b, ib = _nodes(Path(tmp), curve=True)
        _a.import_partner(B, [*store_b.trust(), ib.signing_cert], now=datetime.now(UTC))
        trust_a, trust_b = list(_a.trust()), list(store_b.trust())
    now = datetime.now(UTC)
    document = _document(10 * 1024)
    header = Header.new(from_party=A, to_party=B, service="interstate", action="Doc",
                        created=now)
    envelope = seal(document, header, sender=ia, recipient_cert=ib.encryption_cert)
    parsed = parse_envelope(envelope)
    plain = cms.decrypt(parsed.payload_der, key=ib.encryption_key, cert=ib.encryption_cert)
    sealed = cms.verify(plain).content
    receipt = build_receipt(for_header=header, envelope_digest=parsed.digest,
                            status="Delivered", errors=[], received=now, node=ib, now=now)
    receipt_doc = cms.verify(parse_envelope(receipt).payload_der).content
    digest = hashlib.sha256(envelope).hexdigest()
    limit = DEFAULT_MAX_ENVELOPE_BYTES
    parsed_receipt = parse_envelope(receipt)
    directory = StaticDirectory({B: [*trust_b, ib.signing_cert]})
    signers = SignerChecks(trust_a, directory)
    payload = parsed.payload_der

    rows: list[Row] = []
    pairs: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("parse_envelope", lambda: _parse_envelope_full(envelope, digest, max_bytes=limit,
                                                        source="envelope"),
         lambda: parse_envelope(envelope)),
        ("take_sealed", lambda: _take_sealed_full([sealed], max_bytes=limit, source="Sealed"),
         lambda: take_sealed([sealed])),
        ("receipt fields", lambda: _fields_full(receipt_doc), lambda: _fields(receipt_doc)),
        ("base64 lines", lambda: _binascii_lines(payload), lambda: _encode_lines(payload)),
        ("receipt signer checks", lambda: verify_receipt(
            receipt, expected_signer=B, sent_envelope_digest=parsed.digest, trust=trust_a,
            directory=directory, now=now, parsed=parsed_receipt),
         lambda: verify_receipt(
            receipt, expected_signer=B, sent_envelope_digest=parsed.digest, trust=trust_a,
            directory=directory, now=now, parsed=parsed_receipt, signers=signers)),
    ]
    for case, before, after in pairs:
        old, new = _pair(before, after, number=number, rounds=rounds)
        rows.append(Row(BENCH, f"{case} (long way)", old * 1e6, "us/call"))
        rows.append(Row(BENCH, f"{case} (now)", new * 1e6, "us/call",
                        f"{new / old:.2f}x the long way"))
    sides: list[tuple[str, Callable[[], object]]] = [
        ("A: seal", lambda: seal(document, header, sender=ia,
                                 recipient_cert=ib.encryption_cert)),
        ("B: parse + open", lambda: open_parsed(parse_envelope(envelope), node=ib,
                                                trust=trust_b, directory=None, now=now)),
        ("B: build receipt", lambda: build_receipt(
            for_header=header, envelope_digest=parsed.digest, status="Delivered", errors=[],
            received=now, node=ib, now=now)),
        ("A: parse + check receipt", lambda: verify_receipt(
            receipt, expected_signer=B, sent_envelope_digest=parsed.digest, trust=trust_a,
            directory=None, now=now, parsed=parse_envelope(receipt))),
    ]
    for case, func in sides:
        func()
        best = sorted(_cpu(func, max(1, number // 4)) for _ in range(rounds))
        rows.append(Row(BENCH, case, best[len(best) // 2] * 1e6, "us/message"))
    return rows


if __name__ == "__main__":
    print(format_rows(main(quick="--quick" in sys.argv)))
