"""CSENet 2000: the fixed-width interstate transaction format every state child support
system writes for the federal CSENet server (OCSE's Interface Guidance Document, Appendices B
and C, shipped as ``data/layout.csv`` and ``data/transactions.csv``).

- :mod:`.layout`: the record layouts; :mod:`.table`: the Valid Transactions Table;
- :mod:`.records`: typed values (headers, the seven data blocks, the error record, a
  transaction), lossless: bytes -> value -> bytes is identical;
- :mod:`.codec`: file framing (a setting), reading and writing;
- :mod:`.edits`: the federal edits (the per-field rules, compiled per layout, in
  :mod:`.fields`); :mod:`.issues`: what they report (never values);
- :mod:`.errorfile`: the 145-byte error records for rejected transactions.

Pure: no clock (``today`` is an argument), no disk, no network.
"""

from gateway.documents.csenet.codec import (
    NEWLINES,
    Checked,
    Framing,
    check_file,
    decode,
    encode_file,
    read_file,
)
from gateway.documents.csenet.edits import check
from gateway.documents.csenet.issues import RULES, CsenetIssue
from gateway.documents.csenet.records import (
    CaseBlock,
    CollectionBlock,
    ErrorRecord,
    Header,
    HeaderFromServer,
    HeaderToServer,
    InformationBlock,
    NcpIdentificationBlock,
    NcpLocateBlock,
    OrderBlock,
    ParticipantBlock,
    Record,
    Transaction,
)

__all__ = [
    "NEWLINES",
    "RULES",
    "CaseBlock",
    "Checked",
    "CollectionBlock",
    "CsenetIssue",
    "ErrorRecord",
    "Framing",
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
    "check",
    "check_file",
    "decode",
    "encode_file",
    "read_file",
]
