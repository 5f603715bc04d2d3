"""Hypothesis round trips: random valid transactions (any table row, any number of blocks,
any printable text in the free-text fields) go bytes -> value -> bytes unchanged and stay
valid; typed values go value -> text -> value unchanged."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from gateway.demo.csenet_samples import transaction_for
from gateway.documents.csenet import Record, Transaction, check, decode, encode_file, read_file
from gateway.documents.csenet.layout import record_spec
from gateway.documents.csenet.records import format_field, read_field
from gateway.documents.csenet.table import rows
from gateway.documents.csenet.xmlform import from_xml, to_xml

TODAY = dt.date(2026, 12, 4)
FREE = re.compile(r"Line-2|City$|Middle|Suffix|Marks|Occupation|Insurance|Licenses|"
                  r"Place-Of-Birth|Docket|Tribunal|Internet|Extension|Text-Line-[45]|Maiden|"
                  r"Alias-\d-(First|Last)|Spouse|RDFI|Contact-Name")
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@st.composite
def free_text(draw: st.DrawFn, record: Record) -> Record:
    values: dict[str, object] = {}
    for spec in record.spec().fields:
        if not spec.numeric and not spec.values and FREE.search(spec.key) and draw(st.booleans()):
            values[spec.key] = draw(st.text(PRINTABLE, max_size=spec.length))
    return record.replace(values)  # type: ignore[arg-type]


@st.composite
def transactions(draw: st.DrawFn) -> Transaction:
    row = draw(st.sampled_from(rows()))
    extra = {name: draw(st.integers(0, 2)) for name in ("participant", "order", "collection")}
    extra["information"] = draw(st.integers(0, 1))
    txn = transaction_for(row, today=TODAY, serial=draw(st.integers(1, 10**12 - 1)),
                          extra=extra)
    return Transaction(
        txn.header,
        draw(free_text(txn.case)) if txn.case else None,
        draw(free_text(txn.ncp_identification)) if txn.ncp_identification else None,
        draw(free_text(txn.ncp_locate)) if txn.ncp_locate else None,
        tuple(draw(free_text(p)) for p in txn.participants),
        tuple(draw(free_text(o)) for o in txn.orders),
        tuple(draw(free_text(c)) for c in txn.collections),
        draw(free_text(txn.information)) if txn.information else None,
    )


@given(transactions())
def test_bytes_value_bytes(txn: Transaction) -> None:
    data = txn.to_bytes()
    value = decode(data)
    assert value.to_bytes() == data
    assert value == txn
    assert check(value, today=TODAY) == []


@given(st.lists(transactions(), min_size=1, max_size=4), st.sampled_from(["lf", "crlf"]))
def test_file_round_trip(txns: list[Transaction], newline: str) -> None:
    from gateway.documents.csenet import Framing

    framing = Framing(newline)
    data = encode_file(txns, framing=framing)
    got = [c.transaction for c in read_file(data, framing=framing)]
    assert got == txns
    assert encode_file([t for t in got if t], framing=framing) == data


@given(st.dates(dt.date(1000, 1, 1), dt.date(9999, 12, 31)), st.times(),
       st.integers(-(10**9), 10**11 - 1))
def test_typed_values_round_trip(day: dt.date, moment: dt.time, cents: int) -> None:
    date_spec = record_spec("order").field("Order-Filing-Date")
    time_spec = record_spec("header-to-server").field("Sent-Time")
    money = record_spec("order").field("Order-Arrears-Total-Amount")
    assert read_field(date_spec, format_field(date_spec, day)) == day
    whole = moment.replace(microsecond=0, tzinfo=None)
    assert read_field(time_spec, format_field(time_spec, whole)) == whole
    amount = Decimal(cents) / 100
    text = format_field(money, amount)
    assert len(text) == 12
    assert read_field(money, text) == amount


@given(transactions())
def test_csenet_xml_csenet_is_byte_identical(txn: Transaction) -> None:
    data = txn.to_bytes()
    xml = to_xml(decode(data))
    back = from_xml(xml)
    assert back.to_bytes() == data
    assert to_xml(back) == xml
