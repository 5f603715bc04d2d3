"""Namespaces, algorithm URIs and the algorithm policy of the AS4 profile."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_NAMESPACES = (SOAP12, SOAP11)
EB = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/"
EBBP = "http://docs.oasis-open.org/ebxml-bp/ebbp-signals-2.0"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSSE11 = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
XENC11 = "http://www.w3.org/2009/xmlenc11#"
EC = "http://www.w3.org/2001/10/xml-exc-c14n#"

NSMAP = {
    "env": SOAP12,
    "eb": EB,
    "ebbp": EBBP,
    "wsse": WSSE,
    "wsse11": WSSE11,
    "wsu": WSU,
    "ds": DS,
    "xenc": XENC,
    "xenc11": XENC11,
    "ec": EC,
}

WSU_ID = f"{{{WSU}}}Id"

# Token types and encodings (WS-Security X.509 token profile)
X509V3 = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
)
BASE64_BINARY = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0"
    "#Base64Binary"
)
SKI_VALUE_TYPE = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0"
    "#X509SubjectKeyIdentifier"
)
THUMBPRINT_VALUE_TYPE = (
    "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1#ThumbprintSHA1"
)
ENCRYPTED_KEY_TOKEN = (  # a token type URI, not a secret
    "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1#EncryptedKey"  # noqa: S105
)

# Canonicalisation and transforms
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
SWA = "http://docs.oasis-open.org/wss/oasis-wss-SwAProfile-1.1"
ATTACHMENT_CONTENT_SIGNATURE = f"{SWA}#Attachment-Content-Signature-Transform"
ATTACHMENT_COMPLETE_SIGNATURE = f"{SWA}#Attachment-Complete-Signature-Transform"
ATTACHMENT_CIPHERTEXT = f"{SWA}#Attachment-Ciphertext-Transform"
ATTACHMENT_CONTENT_ONLY = f"{SWA}#Attachment-Content-Only"
ATTACHMENT_COMPLETE = f"{SWA}#Attachment-Complete"

# Digests
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"

# Signatures
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"

# Encryption
AES128_GCM = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
AES192_GCM = "http://www.w3.org/2009/xmlenc11#aes192-gcm"
AES256_GCM = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
AES128_CBC = "http://www.w3.org/2001/04/xmlenc#aes128-cbc"
AES256_CBC = "http://www.w3.org/2001/04/xmlenc#aes256-cbc"
RSA_OAEP = "http://www.w3.org/2009/xmlenc11#rsa-oaep"
RSA_OAEP_MGF1P = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
RSA_1_5 = "http://www.w3.org/2001/04/xmlenc#rsa-1_5"
MGF1_SHA1 = "http://www.w3.org/2009/xmlenc11#mgf1sha1"
MGF1_SHA256 = "http://www.w3.org/2009/xmlenc11#mgf1sha256"
MGF1_SHA384 = "http://www.w3.org/2009/xmlenc11#mgf1sha384"
MGF1_SHA512 = "http://www.w3.org/2009/xmlenc11#mgf1sha512"

GZIP = "application/gzip"

DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    SHA1: hashes.SHA1,
    SHA256: hashes.SHA256,
    SHA384: hashes.SHA384,
    SHA512: hashes.SHA512,
}
SIGNATURES: dict[str, type[hashes.HashAlgorithm]] = {
    RSA_SHA1: hashes.SHA1,
    RSA_SHA256: hashes.SHA256,
    RSA_SHA384: hashes.SHA384,
    RSA_SHA512: hashes.SHA512,
}
MGFS: dict[str, type[hashes.HashAlgorithm]] = {
    MGF1_SHA1: hashes.SHA1,
    MGF1_SHA256: hashes.SHA256,
    MGF1_SHA384: hashes.SHA384,
    MGF1_SHA512: hashes.SHA512,
}
GCM_KEY_BYTES = {AES128_GCM: 16, AES192_GCM: 24, AES256_GCM: 32}
CBC_KEY_BYTES = {AES128_CBC: 16, AES256_CBC: 32}


@dataclass(frozen=True)
class AlgorithmPolicy:
    """Which algorithms a message may use. Safe by default: SHA-1 and CBC only when a
    partner's configuration explicitly allows them (``allow_sha1``, ``allow_cbc``)."""

    allow_sha1: bool = False
    allow_cbc: bool = False

    def digest_allowed(self, uri: str) -> bool:
        return uri in DIGESTS and (uri != SHA1 or self.allow_sha1)

    def signature_allowed(self, uri: str) -> bool:
        return uri in SIGNATURES and (uri != RSA_SHA1 or self.allow_sha1)

    def content_cipher_allowed(self, uri: str) -> bool:
        return uri in GCM_KEY_BYTES or (self.allow_cbc and uri in CBC_KEY_BYTES)

    def key_transport_allowed(self, uri: str) -> bool:
        return uri in (RSA_OAEP, RSA_OAEP_MGF1P)

    def oaep_digest_allowed(self, uri: str) -> bool:
        # The OAEP digest is a mask parameter, not a signature: SHA-1 there (the default
        # of rsa-oaep-mgf1p, which peers still send) is not the weakness SHA-1 signatures are.
        return uri in DIGESTS


DEFAULT_POLICY = AlgorithmPolicy()
