"""What the privacy scans look for (the personal values in synthetic documents) and how they
read what they scan.

A scan reads text the way someone holding a copy would. A value counts wherever it occurs
literally, except inside base64 text: base64 is an encoding, not something anyone reads, so
every base64 block is decoded and the value is looked for in what it decodes to instead.
That both finds a document kept base64-encoded in the clear (a real leak the literal search
alone misses) and stops 4-letter values such as ``LIMA`` from being "found" by chance in the
base64 of an encrypted envelope: any given 4 letters occur at a position of random base64
with probability 64**-4, so in the ~1.5 MB of envelope base64 a three-node run keeps they
did, in about one run in three. In what a block decodes to, the encrypted content of a
CMS ``EnvelopedData``/``AuthEnvelopedData`` is left out (ciphertext, after checking the
structure says so); in binary, any given 4 bytes occur with probability 2**-32 per position.
"""

from __future__ import annotations

import base64
import binascii
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

from asn1crypto import cms
from lxml import etree

from gateway.store.sealing import MAGIC
from tests.support.postgres import find_bin

__all__ = ["PERSONAL", "base64_blocks", "leaks", "personal_values", "readable", "store_copy",
           "values_in"]


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


# A base64 block: a run of the base64 alphabet, possibly over several lines, with at least
# 64 characters (PEM's line length; MIME and the envelope use 76) and upper case, lower case
# and digits in it (which no hex digest, CSENet record, number or word has). Over several
# lines, the lines between the first and the last are all one length, a multiple of 4.
_BLOCK = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}(?:\r?\n[A-Za-z0-9+/]+={0,2})*")
_MIN_BLOCK = 64


def _is_base64(block: str) -> bool:
    lines = block.split()
    chars = "".join(lines)
    if len(chars) < _MIN_BLOCK or not all(re.search(c, chars) for c in ("[a-z]", "[A-Z]",
                                                                         "[0-9]")):
        return False
    if len(lines) < 3:
        return True
    width = len(lines[1])
    return (width % 4 == 0 and all(len(line) == width for line in lines[1:-1])
            and len(lines[0]) <= width and len(lines[-1]) <= width)


def base64_blocks(text: str) -> list[tuple[int, int]]:
    """(start, end) of every base64 block in ``text``."""
    return [(m.start(), m.end()) for m in _BLOCK.finditer(text) if _is_base64(m.group())]


def _decode(block: str) -> bytes:
    chars = re.sub(r"[^A-Za-z0-9+/]", "", block)
    chars = chars[:len(chars) - len(chars) % 4]
    try:
        return base64.b64decode(chars)
    except (binascii.Error, ValueError):
        return b""


def _without_ciphertext(der: bytes) -> bytes:
    """``der`` less the encrypted content when it is a CMS EnvelopedData or
    AuthEnvelopedData (checked by parsing it), else ``der`` unchanged."""
    try:
        info = cms.ContentInfo.load(der)
        kind = info["content_type"].native
        if kind == "authenticated_enveloped_data":
            encrypted = info["content"]["auth_encrypted_content_info"]["encrypted_content"]
        elif kind == "enveloped_data":
            encrypted = info["content"]["encrypted_content_info"]["encrypted_content"]
        else:
            return der
        ciphertext = encrypted.contents
    except (ValueError, TypeError, KeyError):
        return der
    if not ciphertext or len(ciphertext) < 64:
        return der
    return der.replace(ciphertext, b"", 1)


def readable(text: str) -> str:
    """``text`` (bytes read as latin-1) as a reader without keys reads it: every base64
    block replaced by what it decodes to (less any CMS encrypted content), recursively."""
    parts, at = [], 0
    for start, end in base64_blocks(text):
        parts.append(text[at:start])
        decoded = _without_ciphertext(_decode(text[start:end])).decode("latin-1")
        parts.append(" " + readable(decoded) + " ")
        at = end
    parts.append(text[at:])
    return "".join(parts)


def leaks(text: str, values: Iterable[str]) -> list[str]:
    """The personal values a reader of ``text`` finds (see :func:`readable`), for an
    assertion message that says which kind leaked."""
    view = readable(text)
    return sorted(v for v in set(values) if v in view)


def store_copy(kind: str, where: str) -> str:
    """What someone who copies a store gets, as text (bytes read as latin-1): the SQLite file
    ``where`` and its write-ahead log, or a plain-text dump (``pg_dump``) of the PostgreSQL
    store at URL ``where`` (its own schema) with every bytea value in place of its hex.
    In the dump, a sealed payload (``GWSEAL1``, naming a data key the store has) is shown
    without its AES-GCM ciphertext."""
    if kind == "sqlite":
        parts = [Path(where), Path(where + "-wal")]
        return "".join(p.read_bytes().decode("latin-1") for p in parts if p.exists())
    pg_dump = find_bin("pg_dump")
    assert pg_dump is not None
    schema = where.rsplit("%3D", 1)[1]  # the test's own schema (see tests/conftest.py)
    dump = subprocess.run([str(pg_dump), "--data-only", "--inserts", "-n", schema,
                           where.split("?", maxsplit=1)[0]],
                          check=True, capture_output=True, timeout=120).stdout.decode("latin-1")
    key_ids = set(re.findall(r"INSERT INTO [^ ]*store_keys VALUES \('([0-9a-f]{32})'", dump))

    def bytea(m: re.Match[str]) -> str:
        blob = bytes.fromhex(m.group(1))
        if blob.startswith(MAGIC) and blob[7:23].hex() in key_ids:
            return f"'{blob[:35].decode('latin-1')}[sealed: {len(blob) - 35} bytes]'"
        return "'" + blob.decode("latin-1") + "'"

    copy, count = re.subn(r"'\\x([0-9a-f]*)'", bytea, dump)
    assert count, "the dump holds no bytea values"
    return copy
