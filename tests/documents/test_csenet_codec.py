"""The CSENet codec: lossless reading and writing, the framing setting, streaming, the
received header and the 145-byte error record."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest

from gateway.demo.csenet_samples import transaction, transaction_for
from gateway.documents.csenet import (
    Framing,
    HeaderFromServer,
    OrderBlock,
    check,
    check_file,
    decode,
    encode_file,
    read_file,
)
from gateway.documents.csenet.codec import max_length
from gateway.documents.csenet.errorfile import error_record, error_records, parse_error_record
from gateway.documents.csenet.table import rows
from gateway.errors import CsenetInvalid

TODAY = dt.date(2026, 12, 4)


def test_every_table_row_round_trips_and_is_accepted_with_its_required_blocks() -> None:
    for number, row in enumerate(rows(), 1):
        txn = transaction_for(row, today=TODAY, serial=number)
        data = txn.to_bytes()
        back = decode(data, position=number)
        assert back.to_bytes() == data
        assert back == txn
        assert check(back, today=TODAY, position=number) == [], row.key
        held = dict(zip(("case", "ncp-identification", "ncp-locate", "participant", "order",
                         "collection", "information"), back.counts(), strict=True))
        for block in row.blocks or ():
            assert held[block] >= 1, (row.key, block)


def test_blank_and_zero_filled_fields_survive() -> None:
    txn = transaction("ENF", "R", "ERARR", today=TODAY)
    order = txn.orders[0].replace({"Order-End-Date": "00000000", "Date-Of-Last-Payment": None,
                                   "Arrears-TANF-Amount": Decimal("0")})
    raw = txn.header.text + "".join(b.text for _, _, b in txn.blocks() if b is not txn.orders[0])
    assert order.raw("Order-End-Date") == "00000000"
    assert order.raw("Date-Of-Last-Payment") == " " * 8
    assert order.raw("Arrears-TANF-Amount") == "0" * 12
    assert order.value("Order-End-Date") is None
    assert raw  # the other blocks are untouched text
    rebuilt = type(txn)(txn.header, txn.case, txn.ncp_identification, txn.ncp_locate,
                        txn.participants, (order,), txn.collections, txn.information)
    data = rebuilt.to_bytes()
    assert decode(data).to_bytes() == data
    assert check(decode(data), today=TODAY) == []


def test_typed_values() -> None:
    txn = transaction("COL", "P", "CITAX", today=TODAY, serial=42)
    header = txn.header
    assert header.serial == "000000000042"
    assert header.value("Transaction-Serial-Number") == "000000000042"
    assert header.value("Transaction-Date") == TODAY - dt.timedelta(days=1)
    assert header.value("Sent-Time") == dt.time(12, 0)
    assert header.value("Participant-Data-Ind") == 1
    assert (header.function, header.action, header.reason) == ("COL", "P", "CITAX")
    assert txn.collections[0].value("Payment-Amount") == Decimal("310.45")
    assert txn.key == ("000000000042", "0600000")
    negative = OrderBlock.build({"Order-Arrears-Total-Amount": Decimal("-12.34")})
    assert negative.raw("Order-Arrears-Total-Amount") == "-00000001234"
    assert negative.value("Order-Arrears-Total-Amount") == Decimal("-12.34")
    with pytest.raises(ValueError, match="Order-ID takes 17"):
        OrderBlock.build({"Order-ID": "X" * 18})
    assert "SAMPLE" not in repr(txn)
    assert "SAMPLE" not in repr(txn.ncp_identification)


def test_file_framing_lf_crlf_and_any() -> None:
    txns = [transaction("LO1", "R", today=TODAY, serial=n) for n in (1, 2, 3)]
    lf = encode_file(txns)
    crlf = encode_file(txns, framing=Framing("crlf"))
    assert crlf.count(b"\r\n") == 3
    assert lf.count(b"\r") == 0
    for data, framing in ((lf, Framing("lf")), (crlf, Framing("crlf")), (lf, Framing()),
                          (crlf, Framing()), (lf.rstrip(b"\n"), Framing("lf"))):
        got = list(check_file(data, today=TODAY, framing=framing))
        assert [c.position for c in got] == [1, 2, 3]
        assert all(c.valid for c in got)
        assert [c.transaction for c in got] == txns
    with pytest.raises(ValueError, match="newline must be"):
        Framing("cr")


def _rules(data: bytes, framing: Framing | None = None) -> list[set[str]]:
    return [{i.rule for i in c.issues} for c in read_file(data, framing=framing)]


def test_framing_refuses_lf_where_crlf_is_set_and_crlf_where_lf_is_set() -> None:
    line = transaction("LO1", "R", today=TODAY).to_bytes()
    assert _rules(line + b"\r\n", Framing("lf")) == [{"framing.line-ending"}]
    assert _rules(line + b"\n", Framing("crlf")) == [{"framing.line-ending"}]


def test_framing_refuses_non_ascii_control_and_bare_cr() -> None:
    line = transaction("LO1", "R", today=TODAY).to_bytes()
    for bad in (b"\xe9", b"\t", b"\r", b"\x00"):
        corrupt = line[:200] + bad + line[201:]
        (issues,) = list(read_file(corrupt + b"\n"))
        assert issues.transaction is None
        assert [(i.rule, i.columns) for i in issues.issues] == [("framing.ascii", (201, 201))]
    ebcdic = line.decode("ascii").encode("cp037")
    assert _rules(ebcdic + b"\n")[0] == {"framing.ascii"}


def test_framing_refuses_empty_lines_and_wrong_lengths() -> None:
    line = transaction("LO1", "R", today=TODAY).to_bytes()
    assert _rules(line + b"\n\n" + line + b"\n") == [set(), {"framing.empty-line"}, set()]
    assert _rules(line[:-1] + b"\n") == [{"framing.length"}]
    assert _rules(line + b" \n") == [{"framing.length"}]
    assert _rules(line[:100] + b"\n") == [{"framing.length"}]
    assert _rules(b"X" * (max_length() + 500) + b"\n" + line) == [{"framing.length"}, set()]
    bad_indicator = line[:92] + b"A" + line[93:]
    (item,) = list(read_file(bad_indicator))
    assert [(i.rule, i.field, i.columns) for i in item.issues] == [
        ("field.numeric", "Participant-Data-Ind", (93, 93))]
    with pytest.raises(CsenetInvalid) as caught:
        decode(bad_indicator, position=7)
    assert caught.value.issues[0].position == 7


def test_reading_streams_one_line_at_a_time() -> None:
    class Counting(io.BytesIO):
        biggest = 0

        def readline(self, size: int | None = -1) -> bytes:
            got = super().readline(size)
            Counting.biggest = max(Counting.biggest, len(got))
            return got

    txns = [transaction("ENF", "R", "ERARR", today=TODAY, serial=n) for n in range(1, 51)]
    data = encode_file(txns)
    items = check_file(Counting(data), today=TODAY)
    first = next(items)
    assert first.valid
    assert first.position == 1
    assert Counting.biggest <= max_length() + 3 < len(data)
    assert sum(1 for _ in items) == 49


def test_received_header_is_121_bytes_with_date_and_time() -> None:
    txn = transaction("CSI", "P", "FSINF", today=TODAY)
    assert isinstance(txn.header, type(txn.header))
    received = txn.header.received(TODAY, dt.time(9, 30, 5))  # type: ignore[attr-defined]
    assert isinstance(received, HeaderFromServer)
    assert len(received.text) == 121
    assert received.text[:96] == txn.header.text[:96]
    assert received.raw("Date-Received") == "20261204"
    assert received.raw("Time-Received") == "093005"
    assert received.text[111:] == " " * 10
    inbound = received.text + "".join(b.text for _, _, b in txn.blocks())
    back = decode(inbound.encode(), kind="from-server")
    assert back.to_text() == inbound
    assert check(back, today=TODAY) == []


def test_error_record_layout_and_no_personal_values() -> None:
    txn = transaction("ENF", "R", "ERARR", today=TODAY, serial=77)
    ssn_block = txn.ncp_identification
    assert ssn_block is not None
    bad = ssn_block.replace({"SSN": "98765432X"})
    data = txn.header.text + "".join(
        (bad if b is ssn_block else b).text for _, _, b in txn.blocks())
    issues = check(decode(data.encode(), position=3), today=TODAY, position=3)
    record = error_record(3, data.encode(), issues)
    assert len(record.text) == 145
    assert record.raw("Txn-Counter") == "000003"
    assert record.raw("Local-FIPS-Code") == "0600000"
    assert record.raw("Other-FIPS-Code") == "4800000"
    assert record.raw("Local-Case-ID").strip() == "CA-SAMPLE-0001"
    assert record.raw("Functional-Type-Code") == "ENF"
    assert record.raw("Error-Code") == "GT01"
    assert record.text[90:102] == "000000000077"
    assert record.text[102] == " "
    assert "SSN" in record.text[103:]
    for gap in record.spec().gaps:
        assert record.text[gap - 1] == " "
    assert "98765432" not in record.text
    assert "SAMPLE-NCP" not in record.text
    assert parse_error_record(record.text.encode()) == record
    with pytest.raises(ValueError, match="separates two fields"):
        parse_error_record(record.text[:6].encode() + b"X" + record.text[7:].encode())
    garbage = error_records([(9, b"\xff\xfe", [issues[0]])], terminator=b"\r\n")
    assert len(garbage) == 147
    assert garbage.endswith(b"\r\n")
    assert garbage[90:102] == b" " * 12
