"""``gateway as4 inspect | open | verify-receipt`` on real third-party messages and ours."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.cli import main
from gateway.protocol.as4 import ebms, mime, receipt
from gateway.protocol.as4.message import build_user_message, new_message_id, timestamp
from tests.support.as4_keys import AS4_FIXTURES, load, make_identity

HOLODECK = AS4_FIXTURES / "holodeck" / "as4-encrypted-signed-issuerserial.as4"
AT = "2024-01-01T00:00:00Z"


def _pem_key(tmp: Path, name: str, key: rsa.RSAPrivateKey) -> Path:
    path = tmp / f"{name}.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _pem_cert(tmp: Path, name: str, cert: x509.Certificate) -> Path:
    path = tmp / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_inspect_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["as4", "inspect", str(HOLODECK)]) == 0
    text = capsys.readouterr().out
    assert "org:holodeckb2b:example:company:A" in text
    assert "StoreMessage" in text
    assert "rsa-sha384" in text
    assert "rsa-oaep-mgf1p" in text
    assert "aes128-gcm" in text
    assert "IssuerSerial" in text
    assert main(["as4", "inspect", "--format", "json",
                 str(AS4_FIXTURES / "receipts" / "governikus.as4in")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "Receipt"
    assert len(info["nri"]) == 3
    assert info["algorithms"]["token"] == "BinarySecurityToken"
    # a message we would refuse can still be described
    assert main(["as4", "inspect", str(AS4_FIXTURES / "negative" / "WrongCompression.mime")]) == 0
    assert "application/rar" in capsys.readouterr().out


def test_open_writes_every_payload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_b, _ = load("AccessPointB.pfx")
    _, cert_a = load("AccessPointA.pfx")
    out_dir = tmp_path / "out"
    code = main(["as4", "open", str(HOLODECK), "--decrypt-key", str(_pem_key(tmp_path, "b", key_b)),
                 "--trust", str(_pem_cert(tmp_path, "a", cert_a)), "-o", str(out_dir),
                 "--at", AT])
    assert code == 0, capsys.readouterr().err
    files = sorted(out_dir.iterdir())
    assert [f.suffix for f in files] == [".jpg", ".xml"]
    assert files[0].read_bytes()[:3] == b"\xff\xd8\xff"
    assert "signed by" in capsys.readouterr().out


def _refused(argv: list[str], out_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 1
    assert not out_dir.exists()  # nothing written
    assert not any(p.name.startswith(".as4-open") for p in out_dir.parent.iterdir())
    return capsys.readouterr().err


def test_open_refuses_and_writes_nothing(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    key_b, cert_b = load("AccessPointB.pfx")
    key_c, cert_c = load("partyC.p12")
    out_dir = tmp_path / "out"
    b_key = str(_pem_key(tmp_path, "b", key_b))
    # signed by A; trusting only B
    err = _refused(["as4", "open", str(HOLODECK), "--decrypt-key", b_key,
                    "--trust", str(_pem_cert(tmp_path, "b", cert_b)), "-o", str(out_dir),
                    "--at", AT], out_dir, capsys)
    assert "EBMS:0101" in err
    # unsigned (AS4.NET's encrypted-only message)
    err = _refused(["as4", "open", str(AS4_FIXTURES / "holodeck" /
                                       "as4-encrypted-compressed-message.as4"),
                    "--decrypt-key", str(_pem_key(tmp_path, "c", key_c)),
                    "--trust", str(_pem_cert(tmp_path, "c", cert_c)), "-o", str(out_dir),
                    "--at", "2017-06-01T00:00:00Z"], out_dir, capsys)
    assert "not signed" in err


def test_open_refuses_a_missing_part(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    key, cert = make_identity("sender")
    now = datetime.now(UTC)
    header = ebms.UserMessage(
        message_id=new_message_id(), timestamp=timestamp(now),
        sender=ebms.Party("a", None, ebms.ROLE_SENDER),
        receiver=ebms.Party("b", None, ebms.ROLE_RECEIVER),
        service="s", service_type=None, action="a", conversation_id="c")
    sent = build_user_message(header, [(b"<a/>", "application/xml"), (b"x", "text/plain")],
                              sign_key=key, sign_cert=cert, recipient_cert=None)
    parsed = mime.parse_message(sent.body, sent.content_type)
    content_type, body = mime.build_multipart(parsed.soap, list(parsed.attachments[:1]),
                                              soap_content_id="soap")
    capture = tmp_path / "capture.http"
    capture.write_bytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    trust = str(_pem_cert(tmp_path, "s", cert))
    out_dir = tmp_path / "out"
    err = _refused(["as4", "open", str(capture), "--trust", trust, "-o", str(out_dir)],
                   out_dir, capsys)
    assert "missing" in err
    whole = tmp_path / "whole.http"
    whole.write_bytes(b"Content-Type: " + sent.content_type.encode() + b"\r\n\r\n" + sent.body)
    assert main(["as4", "open", str(whole), "--trust", trust, "-o", str(out_dir)]) == 0
    assert len(list(out_dir.iterdir())) == 2
    # opening again would overwrite: refused, and the folder is left as it was
    assert main(["as4", "open", str(whole), "--trust", trust, "-o", str(out_dir)]) == 2
    assert len(list(out_dir.iterdir())) == 2


def test_verify_receipt_third_party(capsys: pytest.CaptureFixture[str]) -> None:
    governikus = str(AS4_FIXTURES / "receipts" / "governikus.as4in")
    assert main(["as4", "verify-receipt", governikus, "--at", "2022-03-07T18:00:00Z"]) == 0
    assert "certificate the receipt carries" in capsys.readouterr().out
    tampered = str(AS4_FIXTURES / "negative" / "dataport1-tampered.as4in")
    assert main(["as4", "verify-receipt", tampered, "--at", "2022-03-07T18:00:00Z"]) == 1
    assert "EBMS:0302" in capsys.readouterr().err


def test_verify_receipt_with_request(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    key, cert = make_identity("sender")
    rkey, rcert = make_identity("receiver")
    now = datetime.now(UTC)

    def send() -> tuple[Path, bytes]:
        header = ebms.UserMessage(
            message_id=new_message_id(), timestamp=timestamp(now),
            sender=ebms.Party("a", None, ebms.ROLE_SENDER),
            receiver=ebms.Party("b", None, ebms.ROLE_RECEIVER),
            service="s", service_type=None, action="a", conversation_id="c")
        sent = build_user_message(header, [(b"<a/>", "application/xml")], sign_key=key,
                                  sign_cert=cert, recipient_cert=rcert)
        path = tmp_path / f"{sent.message_id}.http"
        path.write_bytes(b"Content-Type: " + sent.content_type.encode() + b"\r\n\r\n"
                         + sent.body)
        from gateway.protocol.as4.message import open_user_message
        opened = open_user_message(sent.body, content_type=sent.content_type,
                                   decrypt_key=rkey, trusted=[cert], now=now)
        return path, receipt.build_receipt(sent.message_id, opened.signature.reference_xml,
                                           key=rkey, certificate=rcert, now=now)

    request, answer = send()
    other_request, _ = send()
    receipt_file = tmp_path / "receipt.xml"
    receipt_file.write_bytes(answer)
    trust = str(_pem_cert(tmp_path, "r", rcert))
    assert main(["as4", "verify-receipt", str(receipt_file), "--request", str(request),
                 "--trust", trust]) == 0
    output = capsys.readouterr().out
    assert "trusted by --trust" in output
    assert "3 references match" in output
    assert main(["as4", "verify-receipt", str(receipt_file), "--request", str(other_request),
                 "--trust", trust]) == 1
    assert "EBMS:0302" in capsys.readouterr().err
    assert main(["as4", "verify-receipt", str(receipt_file), "--trust",
                 str(_pem_cert(tmp_path, "s", cert))]) == 1


def test_gunzip_is_done(tmp_path: Path) -> None:
    """The written XML payload is the decompressed document, not gzip."""
    key_b, _ = load("AccessPointB.pfx")
    _, cert_a = load("AccessPointA.pfx")
    out_dir = tmp_path / "o"
    assert main(["as4", "open", str(HOLODECK), "--decrypt-key",
                 str(_pem_key(tmp_path, "b", key_b)), "--trust",
                 str(_pem_cert(tmp_path, "a", cert_a)), "-o", str(out_dir), "--at", AT]) == 0
    xml = next(p for p in out_dir.iterdir() if p.suffix == ".xml").read_bytes()
    assert xml.lstrip().startswith(b"<")
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(xml)
