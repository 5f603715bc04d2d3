"""What the privacy scans look for: the personal values in synthetic documents."""

from __future__ import annotations

import re

from lxml import etree

__all__ = ["PERSONAL", "leaks", "personal_values", "values_in"]


def values_in(tree: etree._Element, tags: set[str]) -> set[str]:
    """The text (4 characters or more) of every element of ``tree`` whose local name is in
    ``tags`` or ends with one of them (``NameLast``, ``ResidentialCity``); a 9-digit value
    also in its NNN-NN-NNNN form (an SSN as people write it)."""
    found: set[str] = set()
    for el in tree.iter():
        if not isinstance(el.tag, str):
            continue
        name = etree.QName(el).localname
        # CSENet's XML form prefixes the name: NameLast, ResidentialAddressLine1, ...
        if name not in tags and not any(name.endswith(tag) for tag in tags):
            continue
        text = (el.text or "").strip()
        if len(text) >= 4:
            found.add(text)
            if re.fullmatch(r"[0-9]{9}", text):
                found.add(f"{text[:3]}-{text[3:5]}-{text[5:]}")
    return found


#: Elements of the synthetic documents that hold personal values.
PERSONAL = frozenset({"SSN", "Last", "First", "FamilyName", "GivenName", "Line", "Line1",
                      "City", "Email", "Phone", "HomePhone", "DateOfBirth", "Docket",
                      "PaymentReference"})


def personal_values(documents: list[bytes]) -> set[str]:
    """Every personal value (see :data:`PERSONAL`) in ``documents``."""
    found: set[str] = set()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    for data in documents:
        found |= values_in(etree.fromstring(data, parser), set(PERSONAL))
    return found


def leaks(text: str, values: set[str]) -> list[str]:
    """The personal values that occur in ``text`` (metrics, log lines, alert bodies),
    for an assertion message that says which kind leaked, not the value."""
    return sorted(v for v in values if v in text)
