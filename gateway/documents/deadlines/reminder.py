"""A CSENet 2000 reminder (action M, "used when a response is overdue") for a request
whose answer is late, built from the request's business keys only. Pure.

The Valid Transactions Table has M rows for three functions only: ENF, EST and PAT, each
with no reason code ("Reminder Transaction"; ENF: "Response Overdue") and with GRPOU
("Attachment(s) Overdue"). A reminder for a late answer is the row without a reason; it
needs no data block (the header's indicators may be 0 for any M transaction), so the draft
is a header alone: both FIPS codes, the case IDs, the function, action M, the date, a serial
number and zero indicators. Nothing else of the request is copied.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from gateway.documents.csenet.edits import check
from gateway.documents.csenet.issues import CsenetIssue
from gateway.documents.csenet.records import HeaderToServer, Transaction
from gateway.documents.csenet.table import lookup

__all__ = ["draft_reminder", "remindable", "serial_for"]


def remindable(code: str) -> str | None:
    """The CSENet function of a clock's starting document (its code, e.g.
    ``ENF-R-ERARR``) when that document is a request or update whose function has a
    reminder row (M, no reason) in the Valid Transactions Table; else None (a CSI or MSC
    request, a Hague form, an XML document of another kind)."""
    parts = code.split("-")
    if len(parts) < 2 or parts[1] not in ("R", "U"):
        return None
    function = parts[0]
    return function if lookup(function, "M", "") is not None else None


def serial_for(key: str) -> str:
    """A Transaction-Serial-Number for a draft: 12 digits, the same for the same ``key``
    every time (a draft written again after a crash is the same draft), starting with 9
    so that it stands apart from a state's own sequence; the state system may renumber it
    when it sends the draft."""
    number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 10**11
    return f"9{number:011d}"


def _fips(value: str) -> dict[str, str]:
    if len(value) != 7 or not value.isascii() or not value.isdigit():
        raise ValueError("a FIPS code is 7 digits (state 2, county 3, local office 2)")
    return {"State": value[:2], "County": value[2:5], "Sub": value[5:]}


def draft_reminder(*, function: str, our_fips: str, their_fips: str, our_case: str,
                   their_case: str | None, serial: str, on: dt.date
                   ) -> tuple[Transaction, list[CsenetIssue]]:
    """The M transaction from us (``our_fips``, ``our_case``) to the partner, dated ``on``,
    and what the federal edits find wrong with it (an empty list when it is valid).
    ``ValueError`` when a value does not fit its field (names the field, never the
    value)."""
    values: dict[str, object] = {
        "CSENet-Version-Number": "003", "Transaction-Serial-Number": serial,
        "Action-Code": "M", "Functional-Type-Code": function, "Transaction-Date": on,
        "Case-ID": our_case, "Other-Case-ID": their_case, "Attachments-Ind": "N",
        "Case-Data-Ind": 0, "NCP-Identification-Ind": 0, "NCP-Locate-Data-Ind": 0,
        "Participant-Data-Ind": 0, "Order-Data-Ind": 0, "Collection-Data-Ind": 0,
        "Information-Ind": 0, "Overdue-Ind": "0",
    }
    for side, fips in (("Local", our_fips), ("Other", their_fips)):
        values.update({f"{side}-FIPS-{k}": v for k, v in _fips(fips).items()})
    header = HeaderToServer.build(values)  # type: ignore[arg-type]
    txn = Transaction(header)
    return txn, check(txn, today=on)
