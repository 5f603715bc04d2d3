"""Our AS4 signatures checked by a verifier we did not write: the JDK's XML Signature API
(javax.xml.crypto) driven by tests/protocol/as4/java/VerifyAs4.java. The MIME parts are
split with Python's standard ``email`` package, not with our parser."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.protocol.as4 import ebms, receipt
from gateway.protocol.as4.message import build_user_message, new_message_id, timestamp
from tests.support.as4_keys import fixture, load, make_identity

pytestmark = pytest.mark.integration

JAVA_SOURCE = Path(__file__).parent / "java" / "VerifyAs4.java"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def verifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("javac") is None or shutil.which("java") is None:
        pytest.fail("a JDK (javac, java) is needed for the independent AS4 verifier; "
                    "scripts/os-deps.sh installs default-jdk-headless")
    out = tmp_path_factory.mktemp("jdk-verifier")
    subprocess.run(["javac", "-d", str(out), str(JAVA_SOURCE)], check=True, timeout=120)
    return out


def run(verifier: Path, workdir: Path, content_type: str, body: bytes,
        signer_pem: bytes) -> subprocess.CompletedProcess[str]:
    """Split the MIME message with the standard library and run the JDK verifier."""
    head = f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n".encode()
    message = email.message_from_bytes(head + body, policy=email.policy.compat32)
    if message.is_multipart():
        parts = message.get_payload()
        assert isinstance(parts, list)
        soap = parts[0].get_payload(decode=True)
        attachments = parts[1:]
    else:
        soap, attachments = body, []
    (workdir / "soap.xml").write_bytes(soap)
    (workdir / "signer.pem").write_bytes(signer_pem)
    args = []
    for index, part in enumerate(attachments):
        path = workdir / f"part{index}"
        path.write_bytes(part.get_payload(decode=True))
        args.append(f"{part['Content-ID'].strip('<>')}={path}")
    return subprocess.run(
        ["java", "-cp", str(verifier), "VerifyAs4", str(workdir / "soap.xml"),
         str(workdir / "signer.pem"), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def _header() -> ebms.UserMessage:
    return ebms.UserMessage(
        message_id=new_message_id(), timestamp=timestamp(NOW),
        sender=ebms.Party("fips:0600000", "urn:cse:party", ebms.ROLE_SENDER),
        receiver=ebms.Party("iso3166:NL", "urn:cse:party", ebms.ROLE_RECEIVER),
        service="urn:cse:hague2007", service_type="urn:cse:service", action="Application",
        conversation_id="c-1",
    )


def test_jdk_verifies_our_message_and_receipt(verifier: Path, tmp_path: Path) -> None:
    key, cert = make_identity("sender")
    pem = cert.public_bytes(serialization.Encoding.PEM)
    out = build_user_message(
        _header(),
        [(b"<doc>one</doc>", "application/xml"), (bytes(range(256)) * 40, "application/pdf")],
        sign_key=key, sign_cert=cert, recipient_cert=None,
    )
    result = run(verifier, tmp_path, out.content_type, out.body, pem)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" ok\n") == 5  # Messaging, Body, 2 attachments, SignatureValue
    assert "cid:" in result.stdout

    data = receipt.build_receipt(out.message_id, [], key=key, certificate=cert, now=NOW)
    result = run(verifier, tmp_path, "application/soap+xml", data, pem)
    assert result.returncode == 0, result.stdout + result.stderr


def test_jdk_refuses_our_message_when_tampered(verifier: Path, tmp_path: Path) -> None:
    key, cert = make_identity("sender")
    out = build_user_message(_header(), [(b"\x01\x02\x03" * 100, "application/pdf")],
                             sign_key=key, sign_cert=cert, recipient_cert=None)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    boundary_at = out.body.rindex(b"\r\n--MIMEBoundary")
    body = out.body[: boundary_at - 3] + b"\x00" + out.body[boundary_at - 2:]
    result = run(verifier, tmp_path, out.content_type, body, pem)
    assert result.returncode == 1
    assert "BAD" in result.stdout
    _other_key, other = make_identity("other")
    result = run(verifier, tmp_path, out.content_type, out.body,
                 other.public_bytes(serialization.Encoding.PEM))
    assert result.returncode == 1


def test_jdk_verifier_agrees_on_a_holodeck_message(verifier: Path, tmp_path: Path) -> None:
    """The same tool accepts a message Holodeck B2B made: it is a fair judge."""
    _key, cert = load("AccessPointB.pfx")
    data = fixture("holodeck/signed_holodeck_message.as4")
    boundary = data.split(b"\r\n", 1)[0][2:].decode()
    result = run(verifier, tmp_path, f'multipart/related; boundary="{boundary}"', data,
                 cert.public_bytes(serialization.Encoding.PEM))
    assert result.returncode == 0, result.stdout + result.stderr
