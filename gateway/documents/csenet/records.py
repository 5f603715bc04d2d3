"""Typed values for the CSENet 2000 records: the two headers, the seven data blocks, the
145-byte error record, and a whole transaction.

A record keeps the exact text it was read from (so writing it back is byte-identical,
blank and zero-filled fields included) and reads each field as a Python value on demand:
:meth:`Record.value` gives ``None`` for a blank field, a :class:`datetime.date`,
:class:`datetime.time`, :class:`decimal.Decimal` (money, in dollars), ``int`` (block counts)
or ``str`` (text, right-stripped; digit strings such as ZIP codes as written).
:meth:`Record.build` makes a record from such values, padding each as its type says.

A record may hold text that breaks the federal edits (a letter in a numeric field, a date
that does not exist): the codec reads what is there and :mod:`.edits` says what is wrong,
so one pass reports every error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar, NoReturn, Self

from gateway.documents.csenet.layout import FieldSpec, RecordSpec, record_spec

__all__ = [
    "CaseBlock",
    "CollectionBlock",
    "ErrorRecord",
    "Header",
    "HeaderFromServer",
    "HeaderToServer",
    "InformationBlock",
    "NcpIdentificationBlock",
    "NcpLocateBlock",
    "OrderBlock",
    "ParticipantBlock",
    "Record",
    "Transaction",
    "format_field",
    "read_field",
]

Value = str | int | Decimal | dt.date | dt.time | None


def read_field(spec: FieldSpec, text: str) -> Value:
    """The field's text as a value (``ValueError`` when the text breaks its type; the edits
    report that with the field's position, never its value)."""
    if not text.strip() or (spec.kind == "date" and text.strip("0") == ""):
        return None
    if spec.kind == "text":
        return text.rstrip(" ")
    if spec.kind == "count":
        if not text.isdigit():
            _bad(spec)
        return int(text)
    if spec.kind == "date":
        if not (text.isascii() and text.isdigit()):
            _bad(spec)
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    if spec.kind == "time":
        if not (text.isascii() and text.isdigit()):
            _bad(spec)
        return dt.time(int(text[:2]), int(text[2:4]), int(text[4:]))
    if spec.kind == "money":
        negative = text.startswith("-")
        digits = text[1:] if negative else text
        if not (digits.isascii() and digits.isdigit()):
            _bad(spec)
        cents = Decimal(int(digits)) / 100
        return -cents if negative else cents
    if not (text.isascii() and text.isdigit()):
        _bad(spec)
    return text


def _bad(spec: FieldSpec) -> NoReturn:
    raise ValueError(f"{spec.record} field {spec.name} does not hold a valid {spec.kind}")


def format_field(spec: FieldSpec, value: Value) -> str:
    """A value as the field's exact text (``ValueError`` naming the field when it does not
    fit; never the value)."""
    if value is None:
        return spec.blank()
    if isinstance(value, dt.datetime):
        value = value.date() if spec.kind == "date" else value.time()
    if isinstance(value, dt.date):
        text = value.strftime("%Y%m%d")
        text = f"{value.year:04d}{text[-4:]}"
    elif isinstance(value, dt.time):
        text = value.strftime("%H%M%S")
    elif isinstance(value, Decimal):
        cents = int((value * 100).to_integral_value())
        sign = "-" if cents < 0 else ""
        text = sign + str(abs(cents)).rjust(spec.length - len(sign), "0")
    elif isinstance(value, int):
        text = str(value).rjust(spec.length, "0")
    elif spec.numeric and value.strip() and value.isdigit():
        text = value.rjust(spec.length, "0")
    else:
        text = value.ljust(spec.length, " ")
    if len(text) != spec.length:
        raise ValueError(f"{spec.record} field {spec.name} takes {spec.length} characters")
    return text


class Record:
    """One fixed-width record; its exact text is :attr:`text`."""

    RECORD: ClassVar[str] = ""
    # key -> (first column, column after, field), 0-based: built once per record class (the
    # edits read fields by key in their hot loop)
    _columns: ClassVar[dict[str, tuple[int, int, FieldSpec]] | None] = None
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        if len(text) != self.spec().length:
            raise ValueError(f"a {self.RECORD} record is {self.spec().length} characters")
        self.text = text

    @classmethod
    def spec(cls) -> RecordSpec:
        found: RecordSpec | None = cls.__dict__.get("_spec")
        if found is None:  # looked up once per record class (every field read asks)
            found = record_spec(cls.RECORD)
            cls._spec = found  # type: ignore[attr-defined]
        return found

    @classmethod
    def build(cls, values: Mapping[str, Value] | None = None) -> Self:
        """A record from field values by key; fields not named are blank (the gaps of the
        error record are blank)."""
        spec = cls.spec()
        chars = [" "] * spec.length
        given = dict(values or {})
        for fspec in spec.fields:
            text = format_field(fspec, given.pop(fspec.key, None))
            chars[fspec.offset:fspec.offset + fspec.length] = text
        if given:
            raise KeyError(f"{cls.RECORD} has no field(s) {', '.join(sorted(given))}")
        return cls("".join(chars))

    def replace(self, values: Mapping[str, Value]) -> Self:
        """A copy with some fields set to new values."""
        chars = list(self.text)
        spec = self.spec()
        for key, value in values.items():
            fspec = spec.field(key)
            chars[fspec.offset:fspec.offset + fspec.length] = format_field(fspec, value)
        return type(self)("".join(chars))

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._columns = None  # each record class builds its own (see _column)

    @classmethod
    def _column(cls, key: str) -> tuple[int, int, FieldSpec]:
        if cls._columns is None:
            cls._columns = {f.key: (f.offset, f.offset + f.length, f)
                            for f in cls.spec().fields}
        found = cls._columns.get(key)
        if found is None:
            cls.spec().field(key)  # raises KeyError naming the record and the key
            raise KeyError(key)  # pragma: no cover - the spec has every key of the table
        return found

    # raw, value and blank look the key up in _columns directly: the edits call them
    # hundreds of times per transaction
    def raw(self, key: str) -> str:
        """A field's exact text."""
        try:
            start, end, _ = self._columns[key]  # type: ignore[index]
        except (TypeError, KeyError):
            start, end, _ = self._column(key)
        return self.text[start:end]

    def value(self, key: str) -> Value:
        """A field as a value (``ValueError`` when its text breaks its type)."""
        try:
            start, end, fspec = self._columns[key]  # type: ignore[index]
        except (TypeError, KeyError):
            start, end, fspec = self._column(key)
        return read_field(fspec, self.text[start:end])

    def blank(self, key: str) -> bool:
        """Whether a field is unused: blank, or a zero-filled date."""
        try:
            start, end, fspec = self._columns[key]  # type: ignore[index]
        except (TypeError, KeyError):
            start, end, fspec = self._column(key)
        text = self.text[start:end]
        return not text.strip() or (fspec.kind == "date" and not text.strip("0"))

    def items(self) -> Iterator[tuple[FieldSpec, str]]:
        """Each field's spec and exact text, in order."""
        for fspec in self.spec().fields:
            yield fspec, self.text[fspec.offset:fspec.offset + fspec.length]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.text == self.text

    def __hash__(self) -> int:
        return hash((self.RECORD, self.text))

    def __repr__(self) -> str:  # no field values: they may be personal
        return f"<{type(self).__name__} {len(self.text)} bytes>"


def _party(fips: str) -> str:
    sub = fips[5:7] if fips[5:7].isdigit() else "00"
    return f"fips:{fips[:5]}{sub}"


class Header(Record):
    """What both headers share (columns 1-96): routing, the transaction's key and the
    block indicators."""

    __slots__ = ()

    @property
    def local_fips(self) -> str:
        return self.text[0:7]

    @property
    def other_fips(self) -> str:
        return self.text[7:14]

    @property
    def sender(self) -> str:
        """The sending agency as a party (``fips:SSCCCLL``; a sub-code that is not two
        digits counts as ``00``)."""
        return _party(self.text[0:7])

    @property
    def destination(self) -> str:
        """The agency the transaction is for (Other-FIPS) as a party, as :attr:`sender`."""
        return _party(self.text[7:14])

    @property
    def version(self) -> str:
        return self.text[14:17]

    @property
    def serial(self) -> str:
        """Transaction-Serial-Number as written (12 characters)."""
        return self.text[17:29]

    @property
    def action(self) -> str:
        return self.text[33]

    @property
    def function(self) -> str:
        return self.text[34:37]

    @property
    def reason(self) -> str:
        return self.text[75:80].strip()

    @property
    def case_id(self) -> str:
        return self.text[45:60]

    @property
    def other_case_id(self) -> str:
        return self.text[60:75]

    @property
    def attachments(self) -> str:
        return self.text[88]

    def counts(self) -> tuple[int, ...]:
        """The seven block indicators (``ValueError`` if one is not a digit)."""
        raw = self.text[89:96]
        if not (raw.isascii() and raw.isdigit()):
            raise ValueError("a block indicator is not a digit")
        return tuple(int(c) for c in raw)


class HeaderToServer(Header):
    """Chart C-3: the 127-byte header a state sends."""

    RECORD = "header-to-server"
    __slots__ = ()

    def received(self, date: dt.date, time: dt.time) -> HeaderFromServer:
        """The 121-byte header as a receiving state gets it: columns 1-96 unchanged,
        Date-Received and Time-Received filled, the reserved fields blank."""
        tail = HeaderFromServer.build({"Date-Received": date, "Time-Received": time})
        return HeaderFromServer(self.text[:96] + tail.text[96:])


    def delivered(self, date: dt.date, time: dt.time) -> HeaderFromServer:
        """The header as the federal server hands it to the receiving state: the FIPS codes
        (columns 1-7 and 8-14) and the case IDs (46-60 and 61-75) swapped to the
        receiver's point of reference, as the IGD says the server does, then
        :meth:`received` (Date-Received, Time-Received)."""
        t = self.text
        swapped = HeaderToServer(t[7:14] + t[0:7] + t[14:45] + t[60:75] + t[45:60] + t[75:])
        return swapped.received(date, time)


class HeaderFromServer(Header):
    """Chart C-4: the 121-byte header a state receives."""

    RECORD = "header-from-server"
    __slots__ = ()


class CaseBlock(Record):
    RECORD = "case"
    __slots__ = ()


class NcpIdentificationBlock(Record):
    RECORD = "ncp-identification"
    __slots__ = ()


class NcpLocateBlock(Record):
    RECORD = "ncp-locate"
    __slots__ = ()


class ParticipantBlock(Record):
    RECORD = "participant"
    __slots__ = ()


class OrderBlock(Record):
    RECORD = "order"
    __slots__ = ()


class CollectionBlock(Record):
    RECORD = "collection"
    __slots__ = ()


class InformationBlock(Record):
    RECORD = "information"
    __slots__ = ()


class ErrorRecord(Record):
    """Chart C-12: the 145-byte error record (fields separated by one blank; positions
    91-102 of the message hold the erred transaction's serial number)."""

    RECORD = "error"
    __slots__ = ()


BLOCK_CLASSES: dict[str, type[Record]] = {
    cls.RECORD: cls for cls in (CaseBlock, NcpIdentificationBlock, NcpLocateBlock,
                                ParticipantBlock, OrderBlock, CollectionBlock, InformationBlock)
}


@dataclass(frozen=True)
class Transaction:
    """A header and the data blocks its indicators announce, in IGD order."""

    header: Header
    case: CaseBlock | None = None
    ncp_identification: NcpIdentificationBlock | None = None
    ncp_locate: NcpLocateBlock | None = None
    participants: tuple[ParticipantBlock, ...] = ()
    orders: tuple[OrderBlock, ...] = ()
    collections: tuple[CollectionBlock, ...] = ()
    information: InformationBlock | None = None

    def blocks(self) -> Iterator[tuple[str, int, Record]]:
        """Each data block as (record name, 1-based number among its kind, block)."""
        singles = (("case", self.case), ("ncp-identification", self.ncp_identification),
                   ("ncp-locate", self.ncp_locate))
        for name, block in singles:
            if block is not None:
                yield name, 1, block
        for name, many in (("participant", self.participants), ("order", self.orders),
                           ("collection", self.collections)):
            for number, item in enumerate(many, 1):
                yield name, number, item
        if self.information is not None:
            yield "information", 1, self.information

    def counts(self) -> tuple[int, ...]:
        """How many of each block the value holds (what the indicators must say)."""
        return (int(self.case is not None), int(self.ncp_identification is not None),
                int(self.ncp_locate is not None), len(self.participants), len(self.orders),
                len(self.collections), int(self.information is not None))

    def with_counts(self) -> Transaction:
        """The same transaction with the header's indicators set from the blocks held."""
        keys = ("Case-Data-Ind", "NCP-Identification-Ind", "NCP-Locate-Data-Ind",
                "Participant-Data-Ind", "Order-Data-Ind", "Collection-Data-Ind",
                "Information-Ind")
        header = self.header.replace(dict(zip(keys, self.counts(), strict=True)))
        return Transaction(header, self.case, self.ncp_identification, self.ncp_locate,
                           self.participants, self.orders, self.collections, self.information)

    @property
    def key(self) -> tuple[str, str]:
        """The business duplicate key: (Transaction-Serial-Number, Local-FIPS)."""
        return (self.header.serial, self.header.local_fips)

    def to_text(self) -> str:
        return self.header.text + "".join(block.text for _, _, block in self.blocks())

    def to_bytes(self) -> bytes:
        return self.to_text().encode("ascii")

    def __repr__(self) -> str:
        return f"<Transaction {self.header.function} {self.header.action} " \
               f"{self.header.reason or '-'} blocks={self.counts()}>"
