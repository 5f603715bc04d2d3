"""Reading and writing CSENet 2000 transactions: file framing, then header and blocks.

**Framing** (not defined by the sources we have, so a setting: :class:`Framing`): a file is
ASCII text with one transaction per line. ``newline`` says which line ending is accepted:
``lf``, ``crlf`` or ``any`` (either, even mixed; the default). A line holds exactly one
transaction: the header, then the blocks its indicators announce, so its length follows
from the header. Anything else is refused with a ``framing.*`` issue: a byte outside
printable ASCII (``0x20``-``0x7E``; so no EBCDIC, UTF-8, tab or stray CR), a line ending
the setting does not allow, an empty line, a line whose length does not match its header.
The last line may lack its line ending.

:func:`decode` reads one transaction; :func:`read_file` streams a file, one transaction at a
time (it never holds more than one line), and :func:`check_file` adds the federal edits.
:func:`encode_file` writes transactions back with the framing's line ending.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

from gateway.documents.csenet.edits import check
from gateway.documents.csenet.issues import CsenetIssue
from gateway.documents.csenet.layout import BLOCK_RECORDS, record_spec
from gateway.documents.csenet.records import (
    BLOCK_CLASSES,
    Header,
    HeaderFromServer,
    HeaderToServer,
    Record,
    Transaction,
)
from gateway.errors import CsenetInvalid

__all__ = [
    "NEWLINES",
    "Checked",
    "Framing",
    "HeaderKind",
    "Line",
    "check_file",
    "decode",
    "encode_file",
    "max_length",
    "read_file",
]

NEWLINES = ("any", "lf", "crlf")
HeaderKind = Literal["to-server", "from-server"]


@dataclass(frozen=True)
class Framing:
    """How transactions sit in a file: ASCII, one per line, ``newline`` one of
    :data:`NEWLINES` (``any`` accepts LF and CRLF; writing then uses LF)."""

    newline: str = "any"

    def __post_init__(self) -> None:
        if self.newline not in NEWLINES:
            raise ValueError(f"newline must be one of {', '.join(NEWLINES)}")

    @property
    def terminator(self) -> bytes:
        return b"\r\n" if self.newline == "crlf" else b"\n"


def _header_class(kind: HeaderKind) -> type[Header]:
    return HeaderToServer if kind == "to-server" else HeaderFromServer


def max_length(kind: HeaderKind = "to-server") -> int:
    """The longest transaction there can be (every indicator at its maximum)."""
    total = record_spec(_header_class(kind).RECORD).length
    for name, _, most in BLOCK_RECORDS:
        total += most * record_spec(name).length
    return total


def _issue(position: int, rule: str, message: str, *, block: str = "file", field: str = "-",
           columns: tuple[int, int] | None = None) -> CsenetIssue:
    return CsenetIssue(position, block, field, columns, rule, message)


_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")


def _printable_issue(data: bytes, position: int) -> CsenetIssue | None:
    found = _NOT_PRINTABLE.search(data)
    if found is None:
        return None
    for index, byte in enumerate(data[found.start():], found.start()):
        if byte < 0x20 or byte > 0x7E:
            what = "a carriage return inside the line" if byte == 0x0D else \
                "a control character" if byte < 0x20 or byte == 0x7F else "a non-ASCII byte"
            return _issue(position, "framing.ascii",
                          f"{what} at column {index + 1}: a transaction is printable ASCII",
                          columns=(index + 1, index + 1))
    return None


def decode(data: bytes, *, position: int = 1, kind: HeaderKind = "to-server") -> Transaction:
    """One transaction from its exact bytes (no line ending). Raises
    :class:`~gateway.errors.CsenetInvalid` (its ``issues`` located, without values) when the
    bytes cannot be cut into a header and blocks; field-level errors are left to
    :func:`gateway.documents.csenet.edits.check`."""
    bad = _printable_issue(data, position)
    if bad is not None:
        raise CsenetInvalid("the transaction is not printable ASCII", issues=[bad])
    text = data.decode("ascii")
    header_cls = _header_class(kind)
    hlen = header_cls.spec().length
    if len(text) < hlen:
        raise CsenetInvalid("the transaction is shorter than its header", issues=[_issue(
            position, "framing.length",
            f"{len(text)} bytes: shorter than the {hlen}-byte header ({kind})",
            block="header")])
    header = header_cls(text[:hlen])
    try:
        counts = header.counts()
    except ValueError:
        issues = [
            _issue(position, "field.numeric", "a block indicator must be one digit",
                   block="header", field=spec.name, columns=(spec.start, spec.end))
            for spec in header.spec().fields
            if spec.kind == "count" and not header.raw(spec.key).isdigit()]
        raise CsenetInvalid("a block indicator is not a digit", issues=issues) from None
    expected = hlen
    for (name, indicator, most), count in zip(BLOCK_RECORDS, counts, strict=True):
        if count > most:
            spec = header.spec().field(indicator)
            raise CsenetInvalid("a block indicator is out of range", issues=[_issue(
                position, "field.enumeration", f"at most {most} {name} block(s)",
                block="header", field=spec.name, columns=(spec.start, spec.end))])
        expected += count * record_spec(name).length
    if len(text) != expected:
        raise CsenetInvalid("the transaction's length does not match its header", issues=[
            _issue(position, "framing.length",
                   f"{len(text)} bytes where the header's indicators announce {expected}")])
    at = hlen
    blocks: dict[str, list[Record]] = {}
    for (name, _, _), count in zip(BLOCK_RECORDS, counts, strict=True):
        cls = BLOCK_CLASSES[name]
        size = cls.spec().length
        for _ in range(count):
            blocks.setdefault(name, []).append(cls(text[at:at + size]))
            at += size

    def one(name: str) -> Record | None:
        found = blocks.get(name)
        return found[0] if found else None

    return Transaction(
        header,
        one("case"), one("ncp-identification"), one("ncp-locate"),  # type: ignore[arg-type]
        tuple(blocks.get("participant", ())), tuple(blocks.get("order", ())),  # type: ignore[arg-type]
        tuple(blocks.get("collection", ())), one("information"),  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Line:
    """One line of a file: its 1-based position, exact bytes (without the line ending), the
    ending found, and framing issues (an issue means the line is refused)."""

    position: int
    data: bytes
    ending: bytes
    issues: tuple[CsenetIssue, ...]


def _lines(stream: BinaryIO, framing: Framing, limit: int) -> Iterator[Line]:
    position = 0
    while True:
        raw = stream.readline(limit + 3)
        if not raw:
            return
        position += 1
        if not raw.endswith(b"\n") and len(raw) >= limit + 3:
            # far longer than any transaction: skip the rest of the line, holding nothing
            while True:
                more = stream.readline(1 << 16)
                if not more or more.endswith(b"\n"):
                    break
            yield Line(position, b"", b"\n", (_issue(
                position, "framing.length",
                f"a line longer than the longest transaction ({limit} bytes)"),))
            continue
        if raw.endswith(b"\r\n"):
            data, ending = raw[:-2], b"\r\n"
        elif raw.endswith(b"\n"):
            data, ending = raw[:-1], b"\n"
        else:
            data, ending = raw, b""
        issues: list[CsenetIssue] = []
        if ending == b"\r\n" and framing.newline == "lf":
            issues.append(_issue(position, "framing.line-ending",
                                 "a CRLF line ending where the framing is LF"))
        elif ending == b"\n" and framing.newline == "crlf":
            issues.append(_issue(position, "framing.line-ending",
                                 "an LF line ending where the framing is CRLF"))
        if not data:
            issues.append(_issue(position, "framing.empty-line",
                                 "an empty line: one transaction per line, no blank lines"))
        yield Line(position, data, ending, tuple(issues))


def _as_stream(source: bytes | BinaryIO) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes | bytearray) else source


@dataclass(frozen=True)
class Checked:
    """One line of a file after reading (and, from :func:`check_file`, the edits):
    ``transaction`` is ``None`` when the line could not be cut into one."""

    position: int
    data: bytes
    transaction: Transaction | None
    issues: tuple[CsenetIssue, ...]

    @property
    def valid(self) -> bool:
        return self.transaction is not None and not self.issues


def read_file(source: bytes | BinaryIO, *, framing: Framing | None = None,
              kind: HeaderKind = "to-server") -> Iterator[Checked]:
    """Each line of a file read into a transaction (framing and structure only)."""
    framing = framing or Framing()
    limit = max_length(kind)
    for line in _lines(_as_stream(source), framing, limit):
        if line.issues:
            yield Checked(line.position, line.data, None, line.issues)
            continue
        try:
            txn = decode(line.data, position=line.position, kind=kind)
        except CsenetInvalid as exc:
            yield Checked(line.position, line.data, None, tuple(exc.issues))
            continue
        yield Checked(line.position, line.data, txn, ())


def check_file(source: bytes | BinaryIO, *, today: dt.date, framing: Framing | None = None,
               kind: HeaderKind = "to-server") -> Iterator[Checked]:
    """Each line of a file read and put through every federal edit, one at a time."""
    for item in read_file(source, framing=framing, kind=kind):
        if item.transaction is None:
            yield item
            continue
        issues = check(item.transaction, today=today, position=item.position)
        yield Checked(item.position, item.data, item.transaction, tuple(issues))


def encode_file(transactions: Iterable[Transaction], *, framing: Framing | None = None) -> bytes:
    """Transactions as a file: one per line, each ended by the framing's line ending."""
    end = (framing or Framing()).terminator
    return b"".join(txn.to_bytes() + end for txn in transactions)
