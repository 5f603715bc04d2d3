"""The field rules of the federal edits: each field's type, its list of values, the IGD's
unconditional "required" marks, the reserved fields and the SSN ranges
(:func:`check_fields`). The rules that depend on other fields or on the transaction are in
:mod:`.edits`.

Most records break none of these rules, so each record layout is compiled once into a
*clean pattern*: a regular expression that a record's text matches only when no field rule
is broken. A record that matches is passed by that one match; one that does not is walked
field by field (:func:`_walk`) to say what is wrong. The pattern is built from the same rules:
a listed field's alternatives are the paddings of its values that :func:`_problem` accepts,
and the other fields take digits, real dates and times or issued SSNs, as
:func:`_field_issue` and :func:`ssn_never_issued` read them. A field a rule reads admits
printable ASCII only (blank means spaces), so a record with any other character there is
always walked; free text no rule reads may hold anything.
"""

from __future__ import annotations

import re
from functools import cache

from gateway.documents.csenet.layout import RECORD_NAMES, FieldSpec, record_spec
from gateway.documents.csenet.records import Record, read_field

__all__ = ["EXTRA_VALUES", "NEGATIVE_ALLOWED", "RESERVED", "SSN_FIELDS", "UNCONDITIONAL",
           "check_fields", "compile_patterns", "ssn_never_issued"]

# Fields the IGD marks required whose comment sets no condition. Every other "required"
# mark is conditional and is checked by a rule in :mod:`.edits`.
UNCONDITIONAL: dict[str, frozenset[str]] = {
    "header-to-server": frozenset({
        "Local-FIPS-State", "Local-FIPS-County", "Other-FIPS-State", "Other-FIPS-County",
        "CSENet-Version-Number", "Transaction-Serial-Number", "Action-Code",
        "Functional-Type-Code", "Transaction-Date", "Attachments-Ind"}),
    "case": frozenset({"Case-Type", "Case-Status"}),
    "ncp-identification": frozenset({"Name-Last", "Name-First"}),
    "order": frozenset({"Order-ID", "Debt-Type"}),
}
UNCONDITIONAL["header-from-server"] = UNCONDITIONAL["header-to-server"]

# Reserved fields: blank (a numeric one may also be zero-filled).
RESERVED: dict[str, frozenset[str]] = {
    "header-to-server": frozenset({"Error-Reason-Code", "Transaction-Type", "Due-Date",
                                   "Response-Date"}),
    "header-from-server": frozenset({"Error-Reason-Code", "Transaction-Type",
                                     "Processing-Complete", "Attachments-Due-Date",
                                     "Sent-To-State-Host", "Interstate-Forms-Printed"}),
}
# Values the IGD adds in brackets to a field's comment (a later release) beside its list.
EXTRA_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("participant", "Dependent-Paternity-Status"): frozenset("123456"),
}
NEGATIVE_ALLOWED = frozenset({("order", "Order-Arrears-Total-Amount")})

SSN_FIELDS = {("ncp-identification", "SSN"), ("ncp-identification", "Alias-SSN-1"),
              ("ncp-identification", "Alias-SSN-2"), ("participant", "SSN")}

FieldIssue = tuple[str, str, str]   # (field key or "-", rule, message)


def ssn_never_issued(digits: str) -> bool:
    """Whether nine digits are an SSN the SSA never issues (area 000, 666 or 900-999, group
    00, serial 0000). The advertising range 987-65-4320..4329, the only SSNs synthetic data
    may use, is let through on purpose: those are never issued to a person either."""
    if digits.startswith("98765432"):
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000"


def _field_issue(spec: FieldSpec, text: str) -> tuple[str, str] | None:
    """(rule, message) for a field whose text breaks its type or list, else ``None``."""
    stripped = text.strip()
    if spec.numeric and stripped:
        body = text[1:] if (spec.record, spec.key) in NEGATIVE_ALLOWED and \
            text.startswith("-") else text
        if not (body.isascii() and body.isdigit()):
            return "field.numeric", f"{spec.length} digits (or blank when unused)"
        if spec.kind in ("date", "time"):
            try:
                read_field(spec, text)
            except ValueError:
                kind = "CCYYMMDD date" if spec.kind == "date" else "HHMMSS time"
                return f"field.{spec.kind}", f"not a real {kind}"
    allowed = EXTRA_VALUES.get((spec.record, spec.key))
    if (spec.values and stripped and spec.kind != "count" and text not in spec.values
            and stripped not in spec.values and (allowed is None or stripped not in allowed)):
        return "field.enumeration", f"allowed: {' '.join(spec.values)}"
    return None


def _blank(spec: FieldSpec, text: str) -> bool:
    return not text.strip() or (spec.kind == "date" and set(text) <= {"0"})


def _problem(spec: FieldSpec, what: str, ssn: bool, text: str) -> tuple[str, str] | None:
    """(rule, message) for one field of a record's plan (see :func:`_plan`), or ``None``."""
    if what == "type" and text.isspace():
        return None  # an unused field breaks no type, list or SSN rule
    if what == "reserved":
        if text.strip() and not (spec.numeric and set(text) <= {"0"}):
            return "field.reserved", "reserved: must be blank"
        return None
    if what == "required" and _blank(spec, text):
        return "field.required", "required"
    problem = _field_issue(spec, text)
    if problem is None and ssn and text.isdigit() and ssn_never_issued(text):
        return "field.ssn", "not an SSN the SSA issues"
    return problem


@cache
def _plan(name: str) -> tuple[tuple[FieldSpec, str, bool], ...]:
    """The fields of a record that any field rule concerns, each with what to check
    (``reserved``, ``required`` or ``type``; free text with no list is never looked at) and
    whether it is an SSN."""
    spec = record_spec(name)
    required = UNCONDITIONAL.get(name, frozenset())
    reserved = RESERVED.get(name, frozenset())
    plan = []
    for fspec in spec.fields:
        ssn = (name, fspec.key) in SSN_FIELDS
        if fspec.key == "Overdue-Ind":
            continue  # checked on its own: "must be 0"
        if fspec.key in reserved:
            plan.append((fspec, "reserved", ssn))
        elif fspec.key in required:
            plan.append((fspec, "required", ssn))
        elif fspec.numeric or fspec.values:
            plan.append((fspec, "type", ssn))
    return tuple(plan)


def _walk(record: Record) -> list[FieldIssue]:
    """Every field rule a record breaks, field by field (what :func:`check_fields` says of
    a record that does not match its clean pattern)."""
    text_all = record.text
    out: list[FieldIssue] = []
    for spec, what, ssn in _plan(record.RECORD):
        problem = _problem(spec, what, ssn, text_all[spec.offset:spec.offset + spec.length])
        if problem is not None:
            out.append((spec.key, *problem))
    if record.RECORD == "header-to-server" and record.raw("Overdue-Ind") not in ("0", " "):
        out.append(("Overdue-Ind", "field.reserved", "must be 0"))
    for column in record.spec().gaps:
        if text_all[column - 1] != " ":
            out.append(("-", "field.gap",
                        f"column {column} separates two fields and must be blank"))
    return out


def compile_patterns() -> None:
    """Compile every record layout's clean pattern now (about 30 ms of CPU, most of a
    worker's first validation), not in the first transaction that holds the record."""
    for name in RECORD_NAMES:
        _clean_pattern(name)


def check_fields(record: Record) -> list[FieldIssue]:
    """(field key, rule, message) for each field of a record that breaks its type, list,
    unconditional "required" mark or reserved rule (key ``-`` for an error record's
    separator column)."""
    if _clean_pattern(record.RECORD).fullmatch(record.text) is not None:
        return []
    return _walk(record)


# --- the clean patterns -------------------------------------------------------------------

# A real CCYYMMDD date (year 0001-9999; 29 February in leap years only), an HHMMSS time,
# and nine digits that are not an SSN the SSA never issues (see ssn_never_issued).
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
DATE_PATTERN = ("(?:(?!0000)[0-9]{4}(?:(?:0[1-9]|1[0-2])(?:0[1-9]|1[0-9]|2[0-8])"
                "|(?:0[13-9]|1[0-2])(?:29|30)|(?:0[13578]|1[02])31)"
                f"|{_LEAP_YEAR}0229)")
TIME_PATTERN = "(?:[01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]"
SSN_PATTERN = "(?:98765432[0-9]|(?!000|666|9)[0-9]{3}(?!00)[0-9]{2}(?!0000)[0-9]{4})"


def _paddings(spec: FieldSpec) -> set[str]:
    """Every text a listed field could hold that strips to one of its values, blank-padded
    (and the blank field)."""
    values = set(spec.values) | EXTRA_VALUES.get((spec.record, spec.key), frozenset())
    out = {" " * spec.length}
    for value in values:
        room = spec.length - len(value)
        out.update(" " * left + value + " " * (room - left) for left in range(room + 1))
    return out


def _nonblank_pattern(spec: FieldSpec, ssn: bool) -> str:
    """The non-blank texts of an unlisted field that break no type or SSN rule."""
    n = spec.length
    if not spec.numeric:
        return f"(?! {{{n}}})[ -~]{{{n}}}"
    if spec.kind == "date":
        return DATE_PATTERN
    if spec.kind == "time":
        return TIME_PATTERN
    if ssn:
        return SSN_PATTERN
    if (spec.record, spec.key) in NEGATIVE_ALLOWED:
        return f"(?:[0-9]{{{n}}}|-[0-9]{{{n - 1}}})"
    return f"[0-9]{{{n}}}"


def field_pattern(spec: FieldSpec, what: str, ssn: bool) -> str:
    """The texts of one field of a record's plan that :func:`_problem` lets through (in
    printable ASCII)."""
    n = spec.length
    if what == "reserved":
        return f"(?: {{{n}}}|0{{{n}}})" if spec.numeric else f" {{{n}}}"
    if spec.values and spec.kind != "count":
        accepted = sorted(text for text in _paddings(spec)
                          if _problem(spec, what, ssn, text) is None)
        return "(?:" + "|".join(map(re.escape, accepted)) + ")" if accepted else "(?!)"
    nonblank = _nonblank_pattern(spec, ssn)
    if what == "required":
        return nonblank  # a blank field, or a zero-filled date, is "required"
    zeros = f"|0{{{n}}}" if spec.kind == "date" else ""
    return f"(?: {{{n}}}{zeros}|{nonblank})"


@cache
def _clean_pattern(name: str) -> re.Pattern[str]:
    """The text of a ``name`` record that breaks no field rule (see the module's doc)."""
    spec = record_spec(name)
    plan = {fspec.key: (what, ssn) for fspec, what, ssn in _plan(name)}
    parts = []
    column = 1
    free = 0  # characters of free text (no rule reads it) since the last field read
    for fspec in spec.fields:
        if fspec.key not in plan and fspec.start == column and not (
                name == "header-to-server" and fspec.key == "Overdue-Ind"):
            free += fspec.length
            column = fspec.end + 1
            continue
        if free:
            parts.append(f".{{{free}}}")
            free = 0
        parts.append(" " * (fspec.start - column))  # the error record's separator blanks
        if fspec.key in plan:
            parts.append(field_pattern(fspec, *plan[fspec.key]))
        elif fspec.key == "Overdue-Ind":
            parts.append("[0 ]")
        else:
            parts.append(f".{{{fspec.length}}}")
        column = fspec.end + 1
    if free:
        parts.append(f".{{{free}}}")
    return re.compile("".join(parts), re.DOTALL)
