"""Synthetic CSENet 2000 transactions: for the demo, the tests and the benchmark.

:func:`transaction` builds a valid transaction for any row of the Valid Transactions Table,
carrying the blocks the table requires plus those the header's indicator rules ask for,
each filled so every conditional edit is met. Every value is synthetic and obviously so
(SSNs from the 987-65-4320..4329 advertising range, ``SAMPLE`` names, ``PO BOX`` addresses).
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from gateway.documents.csenet.edits import required_blocks
from gateway.documents.csenet.records import (
    CaseBlock,
    CollectionBlock,
    HeaderToServer,
    InformationBlock,
    NcpIdentificationBlock,
    NcpLocateBlock,
    OrderBlock,
    ParticipantBlock,
    Transaction,
)
from gateway.documents.csenet.table import TableRow, lookup

__all__ = ["blocks_needed", "case_block", "transaction", "transaction_for", "varied"]

DAY = dt.timedelta(days=1)


def blocks_needed(row: TableRow) -> dict[str, int]:
    """How many of each block a minimal valid transaction of this row carries: those the
    row lists, and those the federal indicator edits require."""
    listed = set(row.blocks or ())
    need = required_blocks(row.function, row.action, row.reason)
    return {name: max(int(name in listed), least) for name, least in need.items()}


def case_block() -> CaseBlock:
    return CaseBlock.build({
        "Case-Type": "S", "Case-Status": "O",
        "Payment-Mail-Address-Line-1": "PO BOX 100", "Payment-City": "SAMPLE CITY",
        "Payment-State": "CA", "Payment-Zip-1": "90001",
        "Contact-Name-Last": "CASEWORKER", "Contact-Name-First": "SAMPLE",
        "Contact-Phone-Num": "5550100000", "Payment-FIPS-State": "06",
        "Payment-FIPS-County": "000", "Nondisclosure-Finding": "N",
    })


def _ncp_identification(ssn: int) -> NcpIdentificationBlock:
    return NcpIdentificationBlock.build({
        "Name-Last": "SAMPLE-NCP", "Name-First": "PAT", "SSN": f"98765432{ssn % 10}",
        "Date-Of-Birth": dt.date(1980, 1, 15), "Race": "X", "Gender": "M",
        "Height-Ft": "5", "Height-In": "10", "Weight": "180", "Hair-Color": "BN",
        "Eye-Color": "BN", "Possibly-Dangerous": "N",
    })


def _ncp_locate(today: dt.date, ended: bool) -> NcpLocateBlock:
    since = today - 400 * DAY
    values: dict[str, object] = {
        "Residential-Address-Line-1": "PO BOX 200", "Residential-City": "SAMPLE CITY",
        "Residential-State": "TX", "Residential-Zip-1": "73301",
        "Residential-Address-Effective-Date": since, "Residential-Address-Confirmed-Ind": "Y",
        "Mailing-Address-Line-1": "PO BOX 201", "Mailing-City": "SAMPLE CITY",
        "Mailing-State": "TX", "Mailing-Zip-1": "73301",
        "Mailing-Address-Effective-Date": since, "Mailing-Address-Confirmed-Ind": "Y",
        "Employer-EIN": "000000000", "Employer-Name": "SAMPLE EMPLOYER INC",
        "Employer-Address-Line-1": "PO BOX 300", "Employer-City": "SAMPLE CITY",
        "Employer-State": "TX", "Employer-Zip-1": "73301",
        "Employer-Effective-Date": since, "Employer-Confirmed-Ind": "Y",
        "Wage-Qtr": "1", "Wage-Year": str(today.year - 1), "Wage-Amount": Decimal("9000.00"),
    }
    if ended:
        values["Residential-Address-End-Date"] = today - 10 * DAY
        values["Mailing-Address-End-Date"] = today - 10 * DAY
    return NcpLocateBlock.build(values)  # type: ignore[arg-type]


def _participant(role: str, number: int) -> ParticipantBlock:
    values: dict[str, object] = {
        "Name-Last": "SAMPLE-PARTY", "Name-First": f"PERSON{number}",
        "Date-Of-Birth": dt.date(1985, 6, 1) if role == "C" else dt.date(2015, 3, 1),
        "SSN": f"98765432{(number + 2) % 10}", "Gender": "F", "Race": "X",
        "Relationship": role, "Participant-Status": "O",
        "Dependent-Relation-CP": "C" if role == "D" else "",
        "Participant-Address-Line-1": "PO BOX 400", "Participant-City": "SAMPLE CITY",
        "Participant-State": "CA", "Participant-Zip-1": "90001",
    }
    if role == "D":
        values.update({"Dependent-Child-State-Of-Residence": "CA",
                       "Dependent-Paternity-Status": "Y"})
    return ParticipantBlock.build(values)  # type: ignore[arg-type]


def _order(today: dt.date, number: int) -> OrderBlock:
    return OrderBlock.build({
        "Order-FIPS-State": "06", "Order-FIPS-County": "000", "Order-ID": f"ORDER-{number:04d}",
        "Order-Filing-Date": today - 800 * DAY, "Order-Type": "J", "Debt-Type": "CS",
        "Order-Freq": "M", "Order-Freq-Amount": Decimal("250.00"),
        "Order-Effective-Date": today - 790 * DAY, "Order-Arrears-Freq": "M",
        "Order-Arrears-Freq-Amount": Decimal("50.00"),
        "Order-Arrears-Total-Amount": Decimal("1200.00"),
        "Arrears-Non-TANF-From-Date": today - 700 * DAY,
        "Arrears-Non-TANF-Thru-Date": today - 30 * DAY,
        "Arrears-Non-TANF-Amount": Decimal("1200.00"), "Medical-Ordered": "Y",
        "Tribunal-Case-Number": "SAMPLE-TRIBUNAL-1", "Controlling-Order-Flag": "P",
        "New-Order-Flag": "N",
    })


def _collection(today: dt.date) -> CollectionBlock:
    return CollectionBlock.build({
        "Date-Of-Collection": today - 20 * DAY, "Date-Of-Posting": today - 19 * DAY,
        "Payment-Amount": Decimal("310.45"), "Payment-Source": "I",
        "Interstate-Payment-Method": "O",
    })


def _information(row: TableRow, today: dt.date, serial: int) -> InformationBlock:
    values: dict[str, object] = {"Status-Change-Code": "O",
                                 "Information-Text-Line-1": "SYNTHETIC SAMPLE TRANSACTION"}
    if row.reason == "REJCT":
        values["Information-Text-Line-1"] = f"{serial - 1:012d}RLO1{today - DAY:%Y%m%d}"
        values["Status-Change-Code"] = None
    elif row.reason == "GSTAI":
        values["Information-Text-Line-1"] = f"{120000:012d}{1500:012d}{today - DAY:%Y%m%d}"
    elif row.reason == "GSCAS":
        values["New-Case-ID"] = "CA-SAMPLE-0002"
    return InformationBlock.build(values)  # type: ignore[arg-type]


def transaction_for(row: TableRow, *, today: dt.date, serial: int = 1,
                    local_fips: str = "0600000", other_fips: str = "4800000",
                    extra: dict[str, int] | None = None) -> Transaction:
    """A valid transaction for ``row`` (``extra``: more blocks of a kind, to the limit)."""
    counts = blocks_needed(row)
    for name, more in (extra or {}).items():
        counts[name] = min(counts[name] + more, 9 if name in ("participant", "order",
                                                              "collection") else 1)
    when = today - DAY
    header = HeaderToServer.build({
        "Local-FIPS-State": local_fips[:2], "Local-FIPS-County": local_fips[2:5],
        "Local-FIPS-Sub": local_fips[5:7], "Other-FIPS-State": other_fips[:2],
        "Other-FIPS-County": other_fips[2:5], "Other-FIPS-Sub": other_fips[5:7],
        "CSENet-Version-Number": "003", "Transaction-Serial-Number": serial,
        "Action-Code": row.action, "Functional-Type-Code": row.function,
        "Transaction-Date": when, "Case-ID": "CA-SAMPLE-0001",
        "Other-Case-ID": "TX-SAMPLE-0001", "Action-Reason": row.reason,
        "Attachments-Ind": "N", "Sent-Date": when, "Sent-Time": dt.time(12, 0, 0),
        "Overdue-Ind": "0",
    })
    roles = ["C", *(["D"] * 8)]
    txn = Transaction(
        header,
        case_block() if counts["case"] else None,
        _ncp_identification(serial) if counts["ncp-identification"] else None,
        _ncp_locate(today, ended=row.function == "LO1" and row.reason[1:2] == "U")
        if counts["ncp-locate"] else None,
        tuple(_participant(roles[i], i + 1) for i in range(counts["participant"])),
        tuple(_order(today, i + 1) for i in range(counts["order"])),
        tuple(_collection(today) for _ in range(counts["collection"])),
        _information(row, today, serial) if counts["information"] else None,
    )
    return txn.with_counts()


def varied(function: str, action: str, reason: str = "", *, on: dt.date, seed: int,
           local_fips: str, other_fips: str, counts: dict[str, int],
           case_id: str | None = None, serial: int | None = None,
           information_lines: int = 1, given: tuple[str, ...] = ("ALPHA",)) -> Transaction:
    """A transaction dated ``on`` with exactly ``counts`` blocks (any the table and header
    rules need are added), synthetic values varied by ``seed`` (names, SSNs in the
    advertising range, case IDs, amounts); ``function/action/reason`` need not be a row of
    the table (invalid samples start from one)."""
    rng = random.Random(seed)  # noqa: S311 (synthetic data: reproducible, not secret)
    row = lookup(function, action, reason) or TableRow(function, action, reason, "", ())
    need = blocks_needed(row)
    extra = {name: max(0, counts.get(name, need[name]) - need[name]) for name in need}
    number = serial if serial is not None else rng.randrange(1, 10**12)
    txn = transaction_for(row, today=on + DAY, serial=number, local_fips=local_fips,
                          other_fips=other_fips, extra=extra)
    header = txn.header.replace({
        "Case-ID": case_id or f"TST{rng.randrange(10**12):012d}",
        "Other-Case-ID": f"OTH{rng.randrange(10**12):012d}"})
    ncp = txn.ncp_identification
    if ncp is not None:
        ncp = ncp.replace({"Name-Last": "TESTPERSON", "Name-First": rng.choice(given),
                           "SSN": f"98765432{rng.randrange(10)}"})
    parts = tuple(p.replace({"Name-Last": "TESTCHILD" if i else "TESTPERSON",
                             "Name-First": rng.choice(given),
                             "SSN": f"98765432{rng.randrange(10)}"})
                  for i, p in enumerate(txn.participants))
    orders = tuple(o.replace({"Order-Freq-Amount": Decimal(rng.randrange(20000, 90000)) / 100})
                   for o in txn.orders)
    info = txn.information
    if info is not None and row.reason not in ("REJCT", "GSTAI"):
        lines = max(1, min(information_lines, 5))
        info = info.replace({f"Information-Text-Line-{n}":
                             f"SYNTHETIC TEST NOTE {n}: PLEASE PROCESS" for n in
                             range(1, lines + 1)})
    return Transaction(header, txn.case, ncp, txn.ncp_locate, parts, orders,
                       txn.collections, info)


def transaction(function: str, action: str, reason: str = "", *, today: dt.date,
                serial: int = 1, local_fips: str = "0600000",
                other_fips: str = "4800000") -> Transaction:
    """A valid transaction for a function, action and reason of the table."""
    row = lookup(function, action, reason)
    if row is None:
        raise KeyError(f"{function} {action} {reason or '-'} is not in the table")
    return transaction_for(row, today=today, serial=serial, local_fips=local_fips,
                           other_fips=other_fips)
