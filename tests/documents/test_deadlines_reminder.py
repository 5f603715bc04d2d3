"""The CSENet M reminder drafted for an overdue clock: which requests can be reminded (the
Valid Transactions Table's M rows), and that every draft passes the federal edits, holds
the header alone and is the same for the same clock."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.documents.csenet import decode
from gateway.documents.csenet.table import rows
from gateway.documents.deadlines.reminder import draft_reminder, remindable, serial_for

ON = dt.date(2026, 12, 9)


def test_only_requests_of_functions_with_an_m_row_are_remindable() -> None:
    m_rows = {r.function for r in rows() if r.action == "M" and r.reason == ""}
    assert m_rows == {"ENF", "EST", "PAT"}
    for function in ("LO1", "CSI", "ENF", "MSC", "PAT", "EST", "COL"):
        expected = function if function in m_rows else None
        assert remindable(f"{function}-R-XXXXX") == expected
        assert remindable(f"{function}-U") == expected
        assert remindable(f"{function}-P-XXXXX") is None  # an answer is not reminded
        assert remindable(f"{function}-A") is None
    assert remindable("MaintenanceApplication") is None
    assert remindable("DocumentExchange/Transmittal1InitialRequest") is None


@pytest.mark.parametrize("function", ["ENF", "EST", "PAT"])
@pytest.mark.parametrize("their_case", [None, "TX0000000000002"])
def test_every_draft_passes_the_edits(function: str, their_case: str | None) -> None:
    serial = serial_for(f"rule:{function}")
    txn, issues = draft_reminder(function=function, our_fips="0603700",
                                 their_fips="4800000", our_case="CA-2026-0001",
                                 their_case=their_case, serial=serial, on=ON)
    assert issues == []
    data = txn.to_bytes()
    assert len(data) == 127  # the header a state sends, no data block
    back = decode(data)
    h = back.header
    assert (h.function, h.action, h.reason, h.serial) == (function, "M", "", serial)
    assert (h.local_fips, h.other_fips) == ("0603700", "4800000")
    assert h.case_id.rstrip() == "CA-2026-0001"
    assert h.other_case_id.strip() == (their_case or "")
    assert h.raw("Transaction-Date") == "20261209"
    assert h.counts() == (0,) * 7


def test_the_serial_number_is_the_same_for_the_same_clock() -> None:
    a, b = serial_for("cfr-303.7b2-registry-ack:m1"), serial_for("cfr-303.7b2-registry-ack:m2")
    assert a == serial_for("cfr-303.7b2-registry-ack:m1")
    assert a != b
    assert all(len(s) == 12 and s.isdigit() and s.startswith("9") for s in (a, b))


def test_a_draft_the_edits_refuse_says_why() -> None:
    _, issues = draft_reminder(function="ENF", our_fips="0600000", their_fips="4800000",
                               our_case="000000000000000", their_case=None,
                               serial=serial_for("x"), on=ON)
    assert [i.rule for i in issues] == ["header.case-id"]
    _, issues = draft_reminder(function="ENF", our_fips="0600000", their_fips="4800000",
                               our_case="CA1", their_case=None, serial=serial_for("x"),
                               on=ON + dt.timedelta(days=1))
    assert issues == []
    with pytest.raises(ValueError, match="FIPS"):
        draft_reminder(function="ENF", our_fips="NL", their_fips="4800000", our_case="CA1",
                       their_case=None, serial=serial_for("x"), on=ON)
    with pytest.raises(ValueError, match="Case-ID takes 15"):
        draft_reminder(function="ENF", our_fips="0600000", their_fips="4800000",
                       our_case="C" * 16, their_case=None, serial=serial_for("x"), on=ON)
