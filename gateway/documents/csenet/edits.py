"""The federal edits: what the IGD says a valid transaction is, as checks on a
:class:`~gateway.documents.csenet.records.Transaction`.

:func:`check` runs every edit and returns every issue (never the first only). It is pure:
the date the "not in the future" and "before today" edits compare with is ``today``.
Rule ids and their codes are in :mod:`.issues`; ``docs/csenet.md`` lists the edits and the
readings chosen where the IGD's text is ambiguous.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import cache

from gateway.documents.csenet.fields import NEGATIVE_ALLOWED, SSN_FIELDS, check_fields
from gateway.documents.csenet.issues import CsenetIssue
from gateway.documents.csenet.layout import BLOCK_RECORDS, FieldSpec, record_spec
from gateway.documents.csenet.records import HeaderToServer, Record, Transaction
from gateway.documents.csenet.table import lookup

# NEGATIVE_ALLOWED and SSN_FIELDS (now in .fields) stay importable from here.
__all__ = ["NEGATIVE_ALLOWED", "SSN_FIELDS", "case_id_problem", "check", "check_fields",
           "required_blocks"]

def case_id_problem(text: str) -> str | None:
    """Why a (non-blank) case ID breaks the IGD's case ID rules, or ``None``."""
    if text.startswith(" "):
        return "its first position is a blank"
    if set(text) <= {"0"}:
        return "it is all zeros"
    if "*" in text or "\\" in text:
        return "it holds an asterisk or a backslash"
    if set(text) <= {"0", " "}:
        return "it is only blanks and zeros"
    return None


class _Checker:
    """One transaction's edits: collects issues with their columns in the transaction."""

    def __init__(self, txn: Transaction, today: dt.date, position: int) -> None:
        self.txn = txn
        self.today = today
        # today as CCYYMMDD: a real date's text sorts as the date does, so comparing texts
        # first skips reading most dates (the exact reading decides the rest)
        self.today_text = f"{today.year:04d}{today.month:02d}{today.day:02d}"
        self.position = position
        self.issues: list[CsenetIssue] = []
        header = txn.header
        self.f, self.a, self.r = header.function, header.action, header.reason
        self.s2 = self.r[1:2]
        self.req_upd = self.a in ("R", "U")
        self.pee = self.f in ("PAT", "EST", "ENF")
        self._offsets: dict[int, int] | None = None   # built on the first issue

    def offset(self, record: Record) -> int:
        """The record's 0-based offset in the transaction."""
        if self._offsets is None:
            at = len(self.txn.header.text)
            self._offsets = {id(self.txn.header): 0}
            for _, _, block in self.txn.blocks():
                self._offsets[id(block)] = at
                at += len(block.text)
        return self._offsets[id(record)]

    def is_(self, function: str, action: str, reason: str | None = None) -> bool:
        return self.f == function and self.a == action and (reason is None or self.r == reason)

    def add(self, record: Record, label: str, key: str | None, rule: str, message: str) -> None:
        base = self.offset(record)
        if key is None:
            self.issues.append(CsenetIssue(self.position, label, "-", None, rule, message))
            return
        spec = record.spec().field(key)
        self.issues.append(CsenetIssue(self.position, label, spec.name,
                                       (base + spec.start, base + spec.end), rule, message))


def _typed(record: Record, key: str) -> object:
    try:
        return record.value(key)
    except ValueError:
        return None


def _positive(record: Record, key: str) -> bool:
    """Whether a money field holds an amount above zero (what its value says: unsigned
    digits, not all zeros; a blank, negative or unreadable amount is not above zero)."""
    text = record.raw(key)
    return text.isascii() and text.isdigit() and text.strip("0") != ""


def _labels(txn: Transaction) -> Iterable[tuple[str, Record]]:
    yield "header", txn.header
    for name, number, block in txn.blocks():
        many = name in ("participant", "order", "collection")
        yield (f"{name} {number}" if many else name), block


def check(txn: Transaction, *, today: dt.date, position: int = 1) -> list[CsenetIssue]:
    """Every federal edit on one transaction; an empty list when it is valid."""
    c = _Checker(txn, today, position)
    labelled = list(_labels(txn))
    for label, record in labelled:
        for key, rule, message in check_fields(record):
            c.add(record, label, None if key == "-" else key, rule, message)
    _header(c)
    _indicators(c)
    for label, record in labelled:
        checker = _BLOCK_CHECKS.get(record.RECORD)
        if checker is not None:
            checker(c, record, label)
    _information(c)
    return c.issues


# --- header -----------------------------------------------------------------------------


def _header(c: _Checker) -> None:
    h = c.txn.header
    if h.version.strip() and h.version != "003":
        c.add(h, "header", "CSENet-Version-Number", "header.version", "must be 003")
    serial = h.serial
    if serial.isascii() and serial.isdigit() and int(serial) < 1:
        c.add(h, "header", "Transaction-Serial-Number", "header.serial", "must be 1 or greater")
    when = _typed(h, "Transaction-Date") if h.raw("Transaction-Date") > c.today_text else None
    if isinstance(when, dt.date) and when > c.today:
        c.add(h, "header", "Transaction-Date", "header.future-date",
              "the transaction date is after today")
    row = lookup(c.f, c.a, c.r)
    if row is None and c.f.strip() and c.a.strip():
        c.add(h, "header", "Action-Reason", "header.table",
              "this function, action and reason are not a row of the Valid Transactions Table")
    # Case IDs. The IGD describes them as the receiving state sees them (after the server
    # swaps the two); seen from the sender, its own Case-ID is needed except in LO1
    # responses and acknowledgments, and the other state's in responses, acknowledgments
    # and CSI transactions (docs/csenet.md, "Readings").
    to_server = isinstance(h, HeaderToServer)
    own, other = ("Case-ID", "Other-Case-ID") if to_server else ("Other-Case-ID", "Case-ID")
    needs_own = not (c.f == "LO1" and c.a in ("P", "A"))
    needs_other = c.a in ("P", "A") or c.f == "CSI"
    for key, needed in ((own, needs_own), (other, needs_other)):
        text = h.raw(key)
        if not text.strip():
            if needed:
                c.add(h, "header", key, "header.case-id-missing",
                      "this transaction needs this case ID")
            continue
        problem = case_id_problem(text)
        if problem:
            c.add(h, "header", key, "header.case-id", f"not a valid case ID: {problem}")
    try:
        counts = h.counts()
    except ValueError:
        return
    if h.attachments == "Y" and counts[6] == 0:
        c.add(h, "header", "Information-Ind", "header.attachments",
              "Attachments-Ind is Y: an Information block must list the attachments")
    if row is not None and row.blocks:
        held = dict(zip((name for name, _, _ in BLOCK_RECORDS), counts, strict=True))
        for block in row.blocks:
            if not held.get(block):
                indicator = next(ind for name, ind, _ in BLOCK_RECORDS if name == block)
                c.add(h, "header", indicator, "header.table-blocks",
                      f"the Valid Transactions Table requires a {block} block for "
                      f"{c.f} {c.a} {c.r or '(no reason)'}")


def required_blocks(function: str, action: str, reason: str) -> dict[str, int]:
    """The fewest blocks of each kind the federal indicator edits ask of a transaction with
    this function, action and reason (on top of the blocks its table row lists)."""
    f, a, r = function, action, reason
    s2 = r[1:2]
    pee_ru = f in ("PAT", "EST", "ENF") and a in ("R", "U")
    grpay = (f, a, r) == ("MSC", "R", "GRPAY")
    optional_case = (a in ("A", "C", "M") or (f == "MSC" and a in ("R", "U"))
                     or (f, a) == ("CSI", "R") or (f, a, r) == ("MSC", "P", "REJCT")
                     or ((f, a) == ("CSI", "P") and s2 != "S"))
    optional_id = a in ("A", "C", "M") or f in ("COL", "MSC", "CSI")
    return {
        "case": int(grpay or not optional_case),
        "ncp-identification": int(grpay or (f, a, r) == ("COL", "P", "CISUB")
                                  or not optional_id),
        "ncp-locate": int(pee_ru or ((f, a) == ("LO1", "P") and s2 == "S")),
        "participant": 2 if pee_ru or grpay else int((f, a) == ("CSI", "P") and s2 == "S"),
        "order": int(f == "ENF" and a in ("R", "U")),
        "collection": int((f, a, r) == ("COL", "P", "CITAX")),
        "information": int(f == "MSC" and a == "P" and r in ("REJCT", "GSCAS", "GSTAI")),
    }


def _indicators(c: _Checker) -> None:
    h = c.txn.header
    try:
        case, ncp_id, locate, parts, orders, colls, info = h.counts()
    except ValueError:
        return
    need = required_blocks(c.f, c.a, c.r)
    if case != 1 and need["case"]:
        c.add(h, "header", "Case-Data-Ind", "header.case-ind",
              "this transaction must carry a Case block")
    if ncp_id != 1 and need["ncp-identification"]:
        c.add(h, "header", "NCP-Identification-Ind", "header.ncp-identification-ind",
              "this transaction must carry an NCP Identification block")
    if locate != 1 and need["ncp-locate"]:
        c.add(h, "header", "NCP-Locate-Data-Ind", "header.ncp-locate-ind",
              "this transaction must carry an NCP Locate block")
    if parts < need["participant"]:
        c.add(h, "header", "Participant-Data-Ind", "header.participant-ind",
              "at least two Participant blocks (the custodial party and a dependent)"
              if need["participant"] == 2 else
              "a successful CSI response carries at least one Participant block")
    if orders < need["order"]:
        c.add(h, "header", "Order-Data-Ind", "header.order-ind",
              "an ENF request or update carries at least one Order block")
    if colls < need["collection"]:
        c.add(h, "header", "Collection-Data-Ind", "header.collection-ind",
              "COL P CITAX carries at least one Collection block")
    if info != 1 and need["information"]:
        c.add(h, "header", "Information-Ind", "header.information-ind",
              f"MSC P {c.r} carries an Information block")


# --- data blocks ------------------------------------------------------------------------


@cache
def _date_pairs(record: str, pairs: tuple[tuple[str, str], ...],
                ) -> tuple[tuple[str, slice, str, slice], ...]:
    spec = record_spec(record)
    return tuple((start_key, _slice(spec.field(start_key)), end_key, _slice(spec.field(end_key)))
                 for start_key, end_key in pairs)


def _slice(spec: FieldSpec) -> slice:
    return slice(spec.offset, spec.offset + spec.length)


def _after(c: _Checker, rec: Record, label: str, pairs: tuple[tuple[str, str], ...]) -> None:
    text = rec.text
    for start_key, start_at, end_key, end_at in _date_pairs(rec.RECORD, pairs):
        start_text, end_text = text[start_at], text[end_at]
        if end_text > start_text or not (start_text.isdigit() and end_text.isdigit()):
            continue  # not two dates, or in order (CCYYMMDD sorts as the date does)
        start, end = _typed(rec, start_key), _typed(rec, end_key)
        if isinstance(start, dt.date) and isinstance(end, dt.date) and end <= start:
            c.add(rec, label, end_key, "date.order", f"must be after {start_key}")


def _past(c: _Checker, rec: Record, label: str, key: str) -> None:
    if rec.raw(key) < c.today_text:
        return  # not a date, or one before today
    born = _typed(rec, key)
    if isinstance(born, dt.date) and born >= c.today:
        c.add(rec, label, key, "date.past", "must be before today")


def _case(c: _Checker, rec: Record, label: str) -> None:
    if rec.blank("Payment-Mail-Address-Line-1") and (
            (c.f in ("EST", "ENF") and c.req_upd) or c.is_("MSC", "R", "GRPAY")):
        c.add(rec, label, "Payment-Mail-Address-Line-1", "case.payment-address",
              "required for EST and ENF requests and updates and MSC R GRPAY")


def _locate_empty(txn: Transaction) -> bool:
    loc = txn.ncp_locate
    return loc is None or all(loc.blank(k) for k in (
        "Residential-Address-Line-1", "Mailing-Address-Line-1", "Employer-Name"))


def _ncp_identification(c: _Checker, rec: Record, label: str) -> None:
    if rec.blank("SSN"):
        scoped = (c.pee and c.req_upd) or (c.f in ("PAT", "EST", "COL") and c.a == "P")
        if c.is_("ENF", "P") or (scoped and _locate_empty(c.txn)):
            c.add(rec, label, "SSN", "ncp.ssn",
                  "required for ENF responses, and where the NCP Locate block has no "
                  "address or employer")
    if rec.blank("Height-Ft") != rec.blank("Height-In"):
        key = "Height-Ft" if rec.blank("Height-Ft") else "Height-In"
        c.add(rec, label, key, "ncp.height", "Height-Ft and Height-In are given together")
    _past(c, rec, label, "Date-Of-Birth")


def _ncp_locate(c: _Checker, rec: Record, label: str) -> None:
    main = ("Residential-Address-Line-1", "Mailing-Address-Line-1", "Employer-Name")
    if all(rec.blank(k) for k in main):
        id_block = c.txn.ncp_identification
        no_ssn = id_block is None or id_block.blank("SSN")
        if ((c.f in ("LO1", "PAT", "EST", "ENF") and c.a == "P" and c.s2 == "S")
                or (((c.f in ("PAT", "EST") and c.a in ("R", "P"))
                     or c.is_("COL", "P")) and no_ssn)
                or (c.f == "ENF" and c.req_upd)):
            c.add(rec, label, "Residential-Address-Line-1", "locate.address-or-employer",
                  "a residential or mailing address or an employer name is required here")
    needs: list[tuple[str, str]] = []
    if not rec.blank("Residential-Address-Line-1"):
        needs += [("Residential-Address-Effective-Date", "Residential-Address-Line-1"),
                  ("Residential-Address-Confirmed-Ind", "Residential-Address-Line-1")]
    if not rec.blank("Mailing-Address-Line-1"):
        needs.append(("Mailing-Address-Confirmed-Ind", "Mailing-Address-Line-1"))
        if (c.pee and c.req_upd) or (c.f in ("LO1", "PAT", "EST", "ENF") and c.a == "P"):
            needs.append(("Mailing-Address-Effective-Date", "Mailing-Address-Line-1"))
    if c.is_("LO1", "P") and c.s2 == "U":
        if not rec.blank("Residential-Address-Line-1"):
            needs.append(("Residential-Address-End-Date", "Residential-Address-Line-1"))
        if not rec.blank("Mailing-Address-Line-1"):
            needs.append(("Mailing-Address-End-Date", "Mailing-Address-Line-1"))
    for prefix in ("Employer", "Employer2", "Employer3"):
        if rec.blank(f"{prefix}-Name"):
            continue
        needs += [(f"{prefix}-Effective-Date", f"{prefix}-Name"),
                  (f"{prefix}-Confirmed-Ind", f"{prefix}-Name")]
        address_scope = (c.f == "ENF" and c.req_upd) if prefix == "Employer" else \
            (c.is_("ENF", "R") or c.is_("LO1", "P"))
        if address_scope:
            needs.append((f"{prefix}-Address-Line-1", f"{prefix}-Name"))
    for key, because in needs:
        if rec.blank(key):
            c.add(rec, label, key, "locate.details", f"required when {because} is given")
    _after(c, rec, label, (
        ("Residential-Address-Effective-Date", "Residential-Address-End-Date"),
        ("Mailing-Address-Effective-Date", "Mailing-Address-End-Date")))
    for n in ("", "2", "3"):
        keys = (f"Wage{n}-Qtr", f"Wage{n}-Year", f"Wage{n}-Amount")
        blank = [rec.blank(k) for k in keys]
        if any(blank) and not all(blank):
            c.add(rec, label, keys[blank.index(True)], "locate.wage",
                  "wage quarter, year and amount are given together")
        year = rec.raw(keys[1])
        if year.isdigit() and not 1900 <= int(year) <= 2099:
            c.add(rec, label, keys[1], "locate.wage", "a year between 1900 and 2099")


def _participant(c: _Checker, rec: Record, label: str) -> None:
    no_last, no_first = rec.blank("Name-Last"), rec.blank("Name-First")
    named = not (no_last and no_first)
    relation = rec.raw("Relationship").strip()
    if (no_last or no_first) and (
            (c.f in ("PAT", "EST", "CSI") and c.req_upd) or c.is_("CSI", "P")
            or (c.f == "ENF" and c.req_upd and relation == "D")):
        key = "Name-Last" if no_last else "Name-First"
        c.add(rec, label, key, "participant.name", "the participant's name is required here")
    if not relation and ((named and c.f in ("LO1", "PAT", "EST", "ENF")
                          and c.a in ("R", "U", "P")) or c.is_("MSC", "R", "GRPAY")):
        c.add(rec, label, "Relationship", "participant.role", "required for a named participant")
    if named and rec.blank("Participant-Status"):
        c.add(rec, label, "Participant-Status", "participant.role",
              "required for a named participant")
    if ((c.f == "PAT" and c.req_upd) or (c.f in ("EST", "ENF") and c.req_upd
                                         and relation == "D")) and rec.blank("Date-Of-Birth"):
        c.add(rec, label, "Date-Of-Birth", "participant.dob", "required here")
    if c.f == "PAT" and c.req_upd and relation == "D" and rec.blank("Dependent-Relation-CP"):
        c.add(rec, label, "Dependent-Relation-CP", "participant.dependent",
              "required for a dependent in a PAT request or update")
    _past(c, rec, label, "Date-Of-Birth")
    if label == "participant 1" and c.is_("MSC", "R", "GRPAY"):
        roles = {p.raw("Relationship") for p in c.txn.participants}
        if not {"C", "D"} <= roles:
            c.add(rec, label, "Relationship", "participant.grpay",
                  "MSC R GRPAY needs one participant with C and one with D")


# Each arrears amount of the Order block and the period it needs when above zero.
_ARREARS = tuple((f"{part}-Amount", (f"{part}-From-Date", f"{part}-Thru-Date"))
                 for part in ("Arrears-TANF", "Arrears-Non-TANF", "Foster-Care", "Medical"))


def _order(c: _Checker, rec: Record, label: str) -> None:
    responses = c.pee and c.a == "P"
    enf_ru = c.f == "ENF" and c.req_upd
    otype = rec.raw("Order-Type").strip()
    if not c.is_("CSI", "P"):
        for key in ("Order-FIPS-State", "Order-FIPS-County"):
            if rec.blank(key):
                c.add(rec, label, key, "order.fips", "required except in CSI responses")
    if c.f != "CSI" and rec.blank("Order-Filing-Date"):
        c.add(rec, label, "Order-Filing-Date", "order.filing-date", "required except in CSI")
    if not otype and (enf_ru or responses):
        c.add(rec, label, "Order-Type", "order.type",
              "required for ENF requests and updates and PAT, EST, ENF responses")
    pat_not_p = c.is_("PAT", "P") and otype != "P"
    if (enf_ru or (c.f in ("EST", "ENF") and c.a == "P") or pat_not_p) and \
            rec.blank("Order-Effective-Date"):
        c.add(rec, label, "Order-Effective-Date", "order.effective-date", "required here")
    if ((c.f in ("EST", "ENF") and c.a == "P") or pat_not_p) and rec.blank("Medical-Ordered"):
        c.add(rec, label, "Medical-Ordered", "order.medical-ordered", "required here")
    if rec.blank("Order-Freq") and _positive(rec, "Order-Freq-Amount"):
        c.add(rec, label, "Order-Freq", "order.frequency",
              "required when Order-Freq-Amount is above zero")
    if rec.blank("Order-Freq-Amount") and rec.blank("Order-Arrears-Total-Amount"):
        c.add(rec, label, "Order-Freq-Amount", "order.frequency",
              "required when Order-Arrears-Total-Amount is blank")
    if enf_ru or responses:
        if rec.blank("Order-Arrears-Freq") and _positive(rec, "Order-Arrears-Freq-Amount"):
            c.add(rec, label, "Order-Arrears-Freq", "order.frequency",
                  "required when Order-Arrears-Freq-Amount is above zero")
        if not rec.blank("Order-Arrears-Freq") and rec.blank("Order-Arrears-Freq-Amount"):
            c.add(rec, label, "Order-Arrears-Freq-Amount", "order.frequency",
                  "required when Order-Arrears-Freq is given")
        for amount, dates in _ARREARS:
            if _positive(rec, amount):
                for key in dates:
                    if rec.blank(key):
                        c.add(rec, label, key, "order.arrears-dates",
                              f"required when {amount} is above zero")
    _after(c, rec, label, (
        ("Order-Effective-Date", "Order-End-Date"), ("Order-Effective-Date", "Order-Cancel-Date"),
        ("Arrears-TANF-From-Date", "Arrears-TANF-Thru-Date"),
        ("Arrears-Non-TANF-From-Date", "Arrears-Non-TANF-Thru-Date"),
        ("Foster-Care-From-Date", "Foster-Care-Thru-Date"),
        ("Medical-From-Date", "Medical-Thru-Date")))


def _collection(c: _Checker, rec: Record, label: str) -> None:
    if c.is_("COL", "P", "CITAX"):
        for key in ("Date-Of-Collection", "Date-Of-Posting", "Payment-Amount",
                    "Payment-Source", "Interstate-Payment-Method"):
            if rec.blank(key):
                c.add(rec, label, key, "collection.citax", "required for COL P CITAX")
    if rec.raw("Date-Of-Posting") >= rec.raw("Date-Of-Collection"):
        return  # not two dates, or in order
    collected, posted = _typed(rec, "Date-Of-Collection"), _typed(rec, "Date-Of-Posting")
    if isinstance(collected, dt.date) and isinstance(posted, dt.date) and posted < collected:
        c.add(rec, label, "Date-Of-Posting", "collection.posting",
              "must not be before Date-Of-Collection")


def _information(c: _Checker) -> None:
    rec = c.txn.information
    if rec is None:
        return
    label = "information"
    if rec.blank("Status-Change-Code") and not c.is_("MSC", "P", "REJCT"):
        c.add(rec, label, "Status-Change-Code", "information.status",
              "required except for MSC P REJCT")
    new_id = rec.raw("New-Case-ID")
    if not new_id.strip():
        if c.is_("MSC", "P", "GSCAS"):
            c.add(rec, label, "New-Case-ID", "information.new-case-id",
                  "required for MSC P GSCAS")
    elif (problem := case_id_problem(new_id)) is not None:
        c.add(rec, label, "New-Case-ID", "header.case-id", f"not a valid case ID: {problem}")
    lines = [rec.raw(f"Information-Text-Line-{n}") for n in (1, 2, 3)]
    if c.txn.header.attachments == "Y" and not any(line.strip() for line in lines):
        c.add(rec, label, "Information-Text-Line-1", "information.text",
              "Attachments-Ind is Y: lines 1-3 must list the attachments")
    if c.is_("MSC", "P", "REJCT") and not lines[0][:24].strip():
        c.add(rec, label, "Information-Text-Line-1", "information.text",
              "MSC P REJCT: the first 24 positions identify the rejected transaction")
    if c.is_("MSC", "P", "GSTAI"):
        line = lines[0]
        as_of: dt.date | None
        try:
            as_of = dt.date(int(line[24:28]), int(line[28:30]), int(line[30:32]))
        except ValueError:
            as_of = None
        if not (line[:24].isdigit() and as_of is not None and as_of <= c.today):
            c.add(rec, label, "Information-Text-Line-1", "information.gstai",
                  "12 digits arrears, 12 digits interest, then an as-of date CCYYMMDD "
                  "not after today")


_BLOCK_CHECKS = {
    "case": _case,
    "ncp-identification": _ncp_identification,
    "ncp-locate": _ncp_locate,
    "participant": _participant,
    "order": _order,
    "collection": _collection,
}
