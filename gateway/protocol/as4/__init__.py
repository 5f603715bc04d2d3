"""The eDelivery AS4 profile (OASIS ebMS 3.0 / AS4, eDelivery AS4 common profile 1.x).

A second protocol profile beside the CMS envelope, for partners that run an AS4 access
point (Domibus, phase4, Holodeck B2B). Pure: keys, certificates, bytes and the time come in
as arguments. Built on lxml and cryptography only:

- ``ns``: namespaces and algorithm URIs, and the policy of which are allowed;
- ``mime``: multipart/related parsing and building, parts kept byte-exact;
- ``ebms``: eb:Messaging (UserMessage, Receipt, Error) build, parse and profile checks;
- ``soap``: the SOAP envelope, IDs, the Security header and signature-wrapping checks;
- ``dsig``: WS-Security XML signature (exclusive C14N, Attachment-Content-Signature-
  Transform), token resolution;
- ``xenc``: attachment encryption (AES-GCM, RSA-OAEP key transport);
- ``message``: the whole message: compress, sign, encrypt, and the reverse;
- ``receipt``: signed receipts with NonRepudiationInformation, and their check.
"""
