"""The CSENet error file: one 145-byte error record (IGD Chart C-12) per rejected
transaction, in the layout the federal server uses, so a state's existing CSENet error
processing can read what the gateway refused.

Each record echoes the rejected transaction's key fields as written (FIPS codes, case IDs,
action, function, reason, dates: no personal data), the code of the first rule it broke
(the gateway's own ``G...`` codes, see :mod:`.issues`), and in the message its serial number
(positions 91-102), a blank and the first issue's place: field and byte columns, and how many
more issues there are. ``Txn-Counter`` is the transaction's position in the file.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.documents.csenet.edits import check_fields
from gateway.documents.csenet.issues import CsenetIssue
from gateway.documents.csenet.records import ErrorRecord

__all__ = ["error_record", "error_records", "parse_error_record"]

# error record field <- header-to-server field (raw copy when the text fits)
_ECHO = (
    ("Local-FIPS-Code", slice(0, 7)),
    ("Other-FIPS-Code", slice(7, 14)),
    ("Local-Case-ID", slice(45, 60)),
    ("Other-Case-ID", slice(60, 75)),
    ("Action-Code", slice(33, 34)),
    ("Functional-Type-Code", slice(34, 37)),
    ("Action-Reason", slice(75, 80)),
    ("Action-Resolution-Date", slice(80, 88)),
    ("Transaction-Date", slice(37, 45)),
)


def _message(serial: str, issues: list[CsenetIssue]) -> str:
    first = issues[0]
    place = first.block if first.field == "-" else first.field
    if first.columns:
        place += f" {first.columns[0]}-{first.columns[1]}"
    more = f" +{len(issues) - 1}" if len(issues) > 1 else ""
    text = f"{place} {first.rule}"
    text = text[:42 - len(more)] + more
    return f"{serial} {text}"


def error_record(position: int, data: bytes, issues: Iterable[CsenetIssue]) -> ErrorRecord:
    """The error record for one rejected line (``data``: its exact bytes, which may not
    even be a transaction). Raises ``ValueError`` without issues."""
    found = list(issues)
    if not found:
        raise ValueError("an error record needs at least one issue")
    text = data.decode("ascii", errors="replace") if data.isascii() else ""
    values: dict[str, object] = {"Txn-Counter": position % 1_000_000}
    if len(text) >= 127 and text.isprintable():
        layout = ErrorRecord.spec()
        for key, part in _ECHO:
            piece = text[part]
            spec = layout.field(key)
            if not spec.numeric or piece.isdigit() or not piece.strip():
                values[key] = piece
        serial = text[17:29]
        serial = serial if serial.isdigit() else " " * 12
    else:
        serial = " " * 12
    values["Error-Code"] = found[0].code
    values["Error-Message"] = _message(serial, found)
    return ErrorRecord.build(values)  # type: ignore[arg-type]


def error_records(rejected: Iterable[tuple[int, bytes, Iterable[CsenetIssue]]],
                  *, terminator: bytes = b"\n") -> bytes:
    """An error file: one record per rejected line, each ended by ``terminator``."""
    return b"".join(error_record(pos, data, issues).text.encode("ascii") + terminator
                    for pos, data, issues in rejected)


def parse_error_record(data: bytes) -> ErrorRecord:
    """One error record from its 145 bytes (``ValueError`` if it is not one: wrong length,
    not ASCII, or a separator column that is not blank)."""
    if len(data) != ErrorRecord.spec().length or not data.isascii():
        raise ValueError("an error record is 145 ASCII bytes")
    record = ErrorRecord(data.decode("ascii"))
    for _key, rule, message in check_fields(record):
        if rule in ("field.gap", "field.numeric"):
            raise ValueError(f"not an error record: {message}")
    return record
