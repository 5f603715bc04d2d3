"""Batch framing cost (issue 18): decoding and encoding a multipart/mixed batch of 16 x
10 KB envelopes and of its 16 application/http answers with ``transports.multipart``,
against the standard library's ``email`` package parsing the same body, measured in the
same run (CPU time, best of several rounds)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from email import policy
from email.parser import BytesParser

from bench import Row
from transports.multipart import (
    decode_http_response,
    decode_multipart,
    encode_http_response,
    encode_multipart,
)

BENCH = "multipart"
XML = frozenset({"application/xml"})
HTTP = frozenset({"application/http"})


def _cost(work: Callable[[], object], count: int, rounds: int = 5) -> float:
    """CPU microseconds per call, best of ``rounds``."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            work()
        best = min(best, (time.process_time() - started) / count)
    return best * 1e6


def main(quick: bool = False) -> list[Row]:
    count = 100 if quick else 1000
    envelopes = [os.urandom(10_240) for _ in range(16)]
    content_type, body = encode_multipart(envelopes)
    receipts = [b"<Receipt>" + os.urandom(750).hex().encode() + b"</Receipt>" for _ in range(16)]
    answers = [encode_http_response(200, r) for r in receipts]
    answer_type, answer_body = encode_multipart(answers, part_type="application/http")
    head = b"Content-Type: " + content_type.encode() + b"\r\n\r\n"
    parser = BytesParser(policy=policy.HTTP)

    def ours() -> object:
        return decode_multipart(content_type, body, max_parts=64, part_types=XML)

    def theirs() -> object:
        message = parser.parsebytes(head + body)
        return [p.get_payload(decode=True) for p in message.iter_parts()]

    def answers_decoded() -> object:
        parts = decode_multipart(answer_type, answer_body, max_parts=16, part_types=HTTP)
        return [decode_http_response(p, index=i) for i, p in enumerate(parts)]

    assert ours() == theirs() == envelopes
    baseline = _cost(theirs, max(10, count // 20))
    decode = _cost(ours, count)
    encode = _cost(lambda: encode_multipart(envelopes), count)
    answer = _cost(answers_decoded, count)
    return [
        Row(BENCH, "email package: parse 16 x 10 KB batch", baseline, "us CPU", "baseline"),
        Row(BENCH, "decode 16 x 10 KB batch", decode, "us CPU",
            f"{baseline / decode:.0f}x faster than email"),
        Row(BENCH, "encode 16 x 10 KB batch", encode, "us CPU", ""),
        Row(BENCH, "decode 16 answers (1.5 KB receipts)", answer, "us CPU", ""),
    ]


if __name__ == "__main__":
    from bench import format_rows

    print(format_rows(main()))
