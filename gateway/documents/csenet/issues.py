"""What a CSENet check reports: :class:`CsenetIssue` and the catalogue of rules.

Every issue names the transaction's position in the file (1-based; 0 for the file as a
whole), the block (``header``, ``case``, ``participant 2``...), the IGD field, its byte
columns within the transaction (1-based, inclusive) and the rule broken, never the field's
value. Each rule has a four-character code for the 145-byte error record. The codes are the
gateway's own (they all start with ``G``): the IGD's Appendix E codes were not available, and
these do not pretend to be OCSE's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RULES", "CsenetIssue", "Rule", "rule"]


@dataclass(frozen=True)
class Rule:
    id: str
    code: str
    summary: str


_RULES = (
    # framing: the file
    ("framing.ascii", "GF01", "a byte outside printable ASCII"),
    ("framing.line-ending", "GF02", "a line ending the framing setting does not allow"),
    ("framing.empty-line", "GF03", "an empty line"),
    ("framing.length", "GF04", "the transaction's length does not match its header"),
    # field types
    ("field.numeric", "GT01", "a numeric field holds something other than digits"),
    ("field.date", "GT02", "not a real CCYYMMDD date"),
    ("field.time", "GT03", "not a real HHMMSS time"),
    ("field.enumeration", "GT04", "not one of the values the IGD allows"),
    ("field.required", "GT05", "a required field is blank"),
    ("field.reserved", "GT06", "a reserved field is not blank (or zero)"),
    ("field.gap", "GT07", "a separator column of the error record is not blank"),
    ("field.ssn", "GT08", "an SSN the SSA never issues (area 000, 666, 900-999; group 00; "
                          "serial 0000)"),
    # header
    ("header.version", "GH01", "CSENet-Version-Number is not 003"),
    ("header.serial", "GH02", "Transaction-Serial-Number is not 1 or greater"),
    ("header.future-date", "GH03", "Transaction-Date is after today"),
    ("header.table", "GH04", "function, action and reason are not a row of the Valid "
                             "Transactions Table"),
    ("header.case-id", "GH05", "a case ID breaks the case ID rules"),
    ("header.case-id-missing", "GH06", "a case ID this transaction needs is blank"),
    ("header.attachments", "GH07", "Attachments-Ind Y without an Information block"),
    ("header.table-blocks", "GH08", "a data block the Valid Transactions Table requires "
                                    "is missing"),
    ("header.case-ind", "GH10", "Case-Data-Ind breaks its rule"),
    ("header.ncp-identification-ind", "GH11", "NCP-Identification-Ind breaks its rule"),
    ("header.ncp-locate-ind", "GH12", "NCP-Locate-Data-Ind breaks its rule"),
    ("header.participant-ind", "GH13", "Participant-Data-Ind breaks its rule"),
    ("header.order-ind", "GH14", "Order-Data-Ind breaks its rule"),
    ("header.collection-ind", "GH15", "Collection-Data-Ind breaks its rule"),
    ("header.information-ind", "GH16", "Information-Ind breaks its rule"),
    # data blocks
    ("case.payment-address", "GB01", "Payment-Mail-Address-Line-1 is required here"),
    ("ncp.ssn", "GB02", "the NCP's SSN is required here"),
    ("ncp.height", "GB03", "Height-Ft and Height-In go together"),
    ("date.past", "GB04", "a date of birth must be before today"),
    ("locate.address-or-employer", "GB05", "a residential or mailing address or an employer "
                                           "is required here"),
    ("locate.details", "GB06", "an address or employer lacks its effective date or "
                               "confirmed indicator"),
    ("date.order", "GB07", "an end date is not after its start date"),
    ("locate.wage", "GB08", "wage quarter, year and amount go together; year 1900-2099"),
    ("participant.name", "GB09", "the participant's name is required here"),
    ("participant.role", "GB10", "Relationship or Participant-Status is required here"),
    ("participant.grpay", "GB11", "MSC R GRPAY needs a custodial party and a dependent"),
    ("participant.dob", "GB12", "the participant's date of birth is required here"),
    ("participant.dependent", "GB13", "Dependent-Relation-CP is required for a dependent "
                                      "in a PAT request or update"),
    ("order.fips", "GB14", "Order-FIPS-State and -County are required here"),
    ("order.filing-date", "GB15", "Order-Filing-Date is required here"),
    ("order.type", "GB16", "Order-Type is required here"),
    ("order.effective-date", "GB17", "Order-Effective-Date is required here"),
    ("order.medical-ordered", "GB18", "Medical-Ordered is required here"),
    ("order.frequency", "GB19", "a frequency is required with an amount above zero"),
    ("order.arrears-dates", "GB20", "arrears with an amount above zero need their period"),
    ("collection.citax", "GB21", "COL P CITAX needs every collection field"),
    ("collection.posting", "GB22", "Date-Of-Posting is before Date-Of-Collection"),
    ("information.status", "GB23", "Status-Change-Code is required here"),
    ("information.new-case-id", "GB24", "New-Case-ID is required here"),
    ("information.text", "GB25", "the information text this transaction needs is blank"),
    ("information.gstai", "GB26", "MSC P GSTAI's interest figures are not as the IGD says"),
    # the daemon (an outbox in CSENet format)
    ("transaction.duplicate", "GD01", "the same Transaction-Serial-Number and Local-FIPS "
                                      "were taken before: the transaction is sent once"),
    ("transaction.refused", "GR01", "the gateway cannot send the transaction (no route, "
                                    "a sender this node does not speak for, no key)"),
    # the XML form
    ("xml.form", "GX01", "the XML does not map onto the CSENet layout"),
)

RULES: dict[str, Rule] = {rid: Rule(rid, code, summary) for rid, code, summary in _RULES}


def rule(rule_id: str) -> Rule:
    return RULES[rule_id]


@dataclass(frozen=True)
class CsenetIssue:
    """One broken rule, located, without the offending value."""

    position: int                      # transaction's 1-based position in the file; 0: file
    block: str                         # header, case, participant 2, ..., file
    field: str                         # IGD field name, or "-"
    columns: tuple[int, int] | None    # 1-based inclusive byte columns in the transaction
    rule: str                          # a key of RULES
    message: str

    @property
    def code(self) -> str:
        return RULES[self.rule].code

    def where(self) -> str:
        cols = f" columns {self.columns[0]}-{self.columns[1]}" if self.columns else ""
        field = "" if self.field == "-" else f" {self.field}"
        return f"transaction {self.position}: {self.block}{field}{cols}"

    def __str__(self) -> str:
        return f"{self.where()}: {self.rule} ({self.code}): {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "block": self.block, "field": self.field,
                "columns": list(self.columns) if self.columns else None,
                "rule": self.rule, "code": self.code, "message": self.message}
