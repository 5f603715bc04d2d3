"""Regenerate the CSENet-derived parts of xsd/interstate/ from the shipped IGD tables
(run from the repository root after changing gateway/documents/csenet/data/):

    .venv/bin/python scripts/generate_interstate.py

- ``xsd/interstate/codes.xml``: the Valid Transactions Table (186 rows);
- the block between the ``BEGIN generated`` and ``END generated`` comments of
  ``xsd/interstate/interstate.xsd``: one complex type per CSENet record, one optional
  element per IGD field in IGD order, each typed by its wire length.

``tests/documents/test_csenet_xsd.py`` fails when either is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from gateway.documents.csenet.edits import NEGATIVE_ALLOWED, SSN_FIELDS
from gateway.documents.csenet.layout import BLOCK_RECORDS, FieldSpec, record_spec
from gateway.documents.csenet.table import rows
from gateway.documents.csenet.xmlform import element_name

ROOT = Path(__file__).resolve().parent.parent
XSD = ROOT / "xsd" / "interstate" / "interstate.xsd"
CODES = ROOT / "xsd" / "interstate" / "codes.xml"
BEGIN = "  <!-- BEGIN generated from gateway/documents/csenet/data/layout.csv"
END = "  <!-- END generated -->"

TYPE_NAMES = {"header-to-server": "CsenetHeaderToServer",
              "header-from-server": "CsenetHeaderFromServer", "case": "CsenetCase",
              "ncp-identification": "CsenetNCPIdentification", "ncp-locate": "CsenetNCPLocate",
              "participant": "CsenetParticipant", "order": "CsenetOrder",
              "collection": "CsenetCollection", "information": "CsenetInformation"}


def field_type(spec: FieldSpec) -> str:
    """The XSD type of a field: the SSN and signed-amount fields are the edits' own sets."""
    if (spec.record, spec.key) in SSN_FIELDS:
        return "c:SSN"
    if (spec.record, spec.key) in NEGATIVE_ALLOWED:
        return "i:CsenetSignedMoney"
    return f"i:CsenetN{spec.length}" if spec.numeric else f"i:CsenetAN{spec.length}"


def _element(spec: FieldSpec) -> str:
    return (f'      <xs:element name="{element_name(spec.key)}" type="{field_type(spec)}" '
            f'minOccurs="0"/>')


def generated() -> str:
    numeric: set[int] = set()
    text: set[int] = set()
    out = [BEGIN + " by scripts/generate_interstate.py: do not edit by hand -->", ""]
    for name in TYPE_NAMES:
        for spec in record_spec(name).fields:
            (numeric if spec.numeric else text).add(spec.length)
    for length in sorted(numeric):
        out.append(f'  <xs:simpleType name="CsenetN{length}"><xs:restriction base="xs:string">'
                   f'<xs:pattern value="[0-9]{{{length}}}"/></xs:restriction></xs:simpleType>')
    for length in sorted(text):
        out.append(f'  <xs:simpleType name="CsenetAN{length}"><xs:restriction base="xs:string">'
                   f'<xs:maxLength value="{length}"/><xs:pattern value="[ -~]*[!-~]"/>'
                   "</xs:restriction></xs:simpleType>")
    out.append('  <xs:simpleType name="CsenetSignedMoney"><xs:restriction base="xs:string">'
               '<xs:pattern value="[0-9]{12}|-[0-9]{11}"/></xs:restriction></xs:simpleType>')
    shared = record_spec("header-to-server").fields[:25]   # columns 1-96
    out += ["", '  <xs:group name="CsenetHeaderCommon">', "    <xs:sequence>"]
    out += ["  " + _element(spec) for spec in shared]
    out += ["    </xs:sequence>", "  </xs:group>"]
    for name in ("header-to-server", "header-from-server"):
        out += ["", f'  <xs:group name="{TYPE_NAMES[name]}Tail">', "    <xs:sequence>"]
        out += ["  " + _element(spec) for spec in record_spec(name).fields[25:]]
        out += ["    </xs:sequence>", "  </xs:group>"]
    out += ["", '  <xs:complexType name="CsenetHeader">',
            "    <xs:annotation><xs:documentation>Columns 1-96 of both headers, then the "
            "127-byte header's tail (a state sends it) or, with form=\"from-server\", the "
            "121-byte header's (a state receives it).</xs:documentation></xs:annotation>",
            "    <xs:sequence>", '      <xs:group ref="i:CsenetHeaderCommon"/>',
            "      <xs:choice>", '        <xs:group ref="i:CsenetHeaderToServerTail"/>',
            '        <xs:group ref="i:CsenetHeaderFromServerTail"/>', "      </xs:choice>",
            "    </xs:sequence>",
            '    <xs:attribute name="form" default="to-server"><xs:simpleType>'
            '<xs:restriction base="xs:string"><xs:enumeration value="to-server"/>'
            '<xs:enumeration value="from-server"/></xs:restriction></xs:simpleType>'
            "</xs:attribute>",
            "  </xs:complexType>"]
    for name, _, _ in BLOCK_RECORDS:
        spec = record_spec(name)
        out += ["", f'  <xs:complexType name="{TYPE_NAMES[name]}">',
                f"    <xs:annotation><xs:documentation>The {name} block ({spec.length} "
                "bytes).</xs:documentation></xs:annotation>", "    <xs:sequence>"]
        out += [_element(f) for f in spec.fields]
        out += ["    </xs:sequence>", "  </xs:complexType>"]
    out += ["", END]
    return "\n".join(out) + "\n"


def codes() -> str:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!--",
        "  The CSENet Valid Transactions Table (OCSE CSENet 2000 IGD, Appendix B): the 186",
        "  function / action / reason combinations, their meaning (as extracted from the IGD:",
        "  some words run together) and the data blocks each requires (blocks=\"?\": the page",
        "  was not available). The Schematron rule FunctionActionReason (interstate.sch)",
        "  accepts a header only when its triple is listed; reason=\"\" means no reason code.",
        "  Generated by scripts/generate_interstate.py from",
        "  gateway/documents/csenet/data/transactions.csv: do not edit by hand.",
        "-->",
        '<CodeTable xmlns="urn:cse-gateway:interstate-codes:2" version="2">',
    ]
    for row in rows():
        blocks = "?" if row.blocks is None else " ".join(row.blocks)
        lines.append(f"  <Combination function={quoteattr(row.function)} "
                     f"action={quoteattr(row.action)} reason={quoteattr(row.reason)} "
                     f"blocks={quoteattr(blocks)}>{escape(row.meaning)}</Combination>")
    lines.append("</CodeTable>")
    return "\n".join(lines) + "\n"


def updated_xsd(text: str) -> str:
    start = text.index(BEGIN)
    end = text.index(END) + len(END) + 1
    return text[:start] + generated() + text[end:]


def main() -> int:
    CODES.write_text(codes(), encoding="utf-8")
    XSD.write_text(updated_xsd(XSD.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
