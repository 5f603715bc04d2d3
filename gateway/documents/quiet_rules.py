"""Python proofs that a Schematron rule file reports nothing for a document, so that its
XSLT (about 80 us for a 15 KB InterstateTransaction, most of a valid document's rules
time) runs only when a rule may fail.

A check is registered for the exact bytes of one rule file (its SHA-256, see
:data:`QUIET_CHECKS`): edit the file and the XSLT alone decides again until the check is
brought along. A check answers True only when every assertion of the file certainly holds;
on anything it does not model (a second Header, a field holding elements or comments, a
value XPath's ``number()`` or ``normalize-space()`` could read otherwise than its text) it
answers False and the XSLT runs. So the rules' report (every failure, its message and its
location) is the XSLT's in every case; only an empty one is known without it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from lxml import etree

__all__ = ["INTERSTATE_SCH_SHA256", "QUIET_CHECKS", "QuietCheck", "interstate_quiet"]

QuietCheck = Callable[[etree._ElementTree, Mapping[str, str]], bool]
"""(tree, the rule file's baked table variables by name) -> whether no rule fails."""

#: xsd/interstate/interstate.sch as :func:`interstate_quiet` reads it.
INTERSTATE_SCH_SHA256 = "f299128b618fb2ebfc132a2f14de50ea515c93de124f295274e729d728051e21"

_NS = "{urn:cse-gateway:interstate:2}"
_HEADER = _NS + "Header"
# BlockCount<Block>: number(i:<Indicator>) = count(../i:<Block>)
_INDICATORS = tuple((_NS + indicator, _NS + block) for block, indicator in (
    ("Case", "CaseDataInd"), ("NCPIdentification", "NCPIdentificationInd"),
    ("NCPLocate", "NCPLocateDataInd"), ("Participant", "ParticipantDataInd"),
    ("Order", "OrderDataInd"), ("Collection", "CollectionDataInd"),
    ("Information", "InformationInd")))
_TRIPLE = tuple(_NS + name for name in ("FunctionalTypeCode", "ActionCode", "ActionReason"))
_LOCAL, _OTHER = _NS + "LocalFIPSState", _NS + "OtherFIPSState"
_READ = frozenset({*(tag for tag, _ in _INDICATORS), *_TRIPLE, _LOCAL, _OTHER})
_DIGITS = frozenset("0123456789")
# no XPath whitespace and nothing but printable ASCII: normalize-space() leaves it as is
_WORD = re.compile(r"[!-~]*")


def interstate_quiet(tree: etree._ElementTree, tables: Mapping[str, str]) -> bool:
    """Whether interstate.sch certainly reports nothing for ``tree``.

    Only an ``InterstateTransaction`` with exactly one ``Header`` is modelled (the file's
    other rules are about other roots): each field the header rule reads appears at most
    once and holds text only (its XPath string value is then its text); every block
    indicator is one digit equal to the number of such blocks (what ``number()`` reads of
    one digit); function, action and reason are printable ASCII without blanks (what
    ``normalize-space()`` leaves alone) and ``|F A R|`` is in the baked table
    ``combinations`` (XPath ``contains``); the two FIPS states are not the same text."""
    root = tree.getroot()
    if root.tag != _NS + "InterstateTransaction":
        return False
    counts: dict[object, int] = {}
    header: etree._Element | None = None
    for child in root:
        tag = child.tag
        counts[tag] = counts.get(tag, 0) + 1
        if tag == _HEADER:
            header = child
    if header is None or counts[_HEADER] != 1:
        return False
    values: dict[object, str] = {}
    for child in header:
        tag = child.tag
        if tag in _READ:
            if tag in values or len(child):
                return False
            values[tag] = child.text or ""
    for indicator, block in _INDICATORS:
        text = values.get(indicator)
        if text is None or len(text) != 1 or text not in _DIGITS \
                or int(text) != counts.get(block, 0):
            return False
    triple = [values.get(tag, "") for tag in _TRIPLE]
    if not all(_WORD.fullmatch(text) for text in triple):
        return False
    combinations = tables.get("combinations")
    if combinations is None or f"|{' '.join(triple)}|" not in combinations:
        return False
    local, other = values.get(_LOCAL), values.get(_OTHER)
    return local is None or other is None or local != other


QUIET_CHECKS: dict[str, QuietCheck] = {INTERSTATE_SCH_SHA256: interstate_quiet}
