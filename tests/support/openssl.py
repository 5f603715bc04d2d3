"""Run stock ``openssl`` for the cross-implementation tests: a CA and leaf certificates made
by ``openssl req``/``openssl x509``, and the exact ``openssl cms`` commands of the protocol's
"Independent check" section."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from gateway.node.keystore import load_private_key
from gateway.protocol.identity import NodeIdentity
from gateway.protocol.party import Party

#: what the cross-implementation tests seal: CRLF, a non-ASCII byte, a synthetic SSN
DOC = b'<?xml version="1.0"?>\n<Note xmlns="urn:x">TESTPERSON 987654322\r\n\xc3\xa9</Note>'
#: the sending and the receiving party
A, B = Party.parse("fips:0600000"), Party.parse("iso3166:NL")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class OpenSSLError(AssertionError):
    pass


def openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise OpenSSLError("the openssl command is required for these tests "
                           "(apt-get install openssl)")
    return found


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([openssl(), *map(str, args)], cwd=cwd, capture_output=True,
                          check=False, timeout=60)
    if proc.returncode != 0:
        raise OpenSSLError(f"openssl {' '.join(map(str, args))} failed "
                           f"({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return proc


def _newkey(ec: bool) -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if ec \
        else ["-newkey", "rsa:3072"]


def make_ca(directory: Path, name: str = "ca", *, ec: bool = False) -> tuple[Path, Path]:
    """A self-signed CA made with ``openssl req -x509`` (RSA-3072, or P-256 with ``ec``);
    returns (cert, key)."""
    run("req", "-x509", *_newkey(ec), "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.pem", "-days", "30", "-subj", f"/CN=OpenSSL Test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return directory / f"{name}.pem", directory / f"{name}.key"


def make_leaf(directory: Path, ca: tuple[Path, Path], name: str, *, usage: str,
              party: str | None = None, ec: bool = False) -> tuple[Path, Path]:
    """A leaf key and certificate issued by ``ca`` (``usage``: sign | encrypt), RSA-3072
    or with ``ec`` P-256 (an encryption certificate then has keyAgreement)."""
    ku = ("digitalSignature,nonRepudiation" if usage == "sign"
          else "keyAgreement" if ec else "keyEncipherment")
    ext = [f"keyUsage=critical,{ku}", "subjectKeyIdentifier=hash",
           "basicConstraints=critical,CA:FALSE"]
    if party:
        ext.append(f"subjectAltName=URI:urn:cse-gateway:party:{party}")
    (directory / f"{name}.ext").write_text("\n".join(ext) + "\n")
    run("req", "-new", *_newkey(ec), "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", f"/CN=OpenSSL Test {name}", cwd=directory)
    run("x509", "-req", "-in", f"{name}.csr", "-CA", ca[0], "-CAkey", ca[1],
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "20",
        "-extfile", f"{name}.ext", cwd=directory)
    (directory / f"{name}.key").chmod(0o600)
    return directory / f"{name}.pem", directory / f"{name}.key"


def decrypt(directory: Path, payload: Path, recip: Path, key: Path, out: Path) -> None:
    run("cms", "-decrypt", "-inform", "DER", "-in", payload, "-recip", recip,
        "-inkey", key, "-out", out, cwd=directory)


def verify(directory: Path, signed: Path, trust: Path, out: Path) -> None:
    run("cms", "-verify", "-inform", "DER", "-in", signed, "-CAfile", trust,
        "-purpose", "any", "-out", out, cwd=directory)


def sign(directory: Path, content: Path, cert: Path, key: Path, out: Path,
         *, pss: bool = False, keyid: bool = False) -> None:
    extra = ["-keyopt", "rsa_padding_mode:pss"] if pss else []
    extra += ["-keyid"] if keyid else []
    run("cms", "-sign", "-in", content, "-signer", cert, "-inkey", key, "-nodetach",
        "-binary", "-outform", "DER", *extra, "-out", out, cwd=directory)


def encrypt_ec(directory: Path, content: Path, recip: Path, out: Path,
               *, keyopts: tuple[str, ...] = ("ecdh_kdf_md:sha256",),
               cipher: str = "-aes-256-gcm", keyid: bool = False) -> None:
    """``openssl cms -encrypt`` to a P-256 recipient (ECDH key agreement), by default as the
    protocol's EC suite: ``-aes-256-gcm -keyopt ecdh_kdf_md:sha256``."""
    opts = [arg for opt in keyopts for arg in ("-keyopt", opt)]
    run("cms", "-encrypt", "-binary", "-in", content, "-outform", "DER", cipher,
        "-recip", recip, *opts, *(["-keyid"] if keyid else []), "-out", out, cwd=directory)


def encrypt(directory: Path, content: Path, recip: Path, out: Path,
            *, legacy: bool = False, keyid: bool = False) -> None:
    if legacy:
        run("cms", "-encrypt", "-binary", "-in", content, "-outform", "DER", "-aes256",
            "-recip", recip, "-out", out, cwd=directory)
        return
    run("cms", "-encrypt", "-binary", "-in", content, "-outform", "DER", "-aes-256-gcm",
        "-recip", recip, "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256",
        "-keyopt", "rsa_mgf1_md:sha256", *(["-keyid"] if keyid else []), "-out", out,
        cwd=directory)


def make_node(directory: Path, party: Party, *, ec: bool = False) -> tuple[NodeIdentity, Path]:
    """A node whose CA, signing and encryption keys were all made by openssl (RSA, or
    P-256 with ``ec``): its identity and its CA certificate file."""
    directory.mkdir()
    ca = make_ca(directory, ec=ec)
    sign_cert, sign_key = make_leaf(directory, ca, "sign", usage="sign", ec=ec,
                                    party=str(party).replace("urn:", ""))
    enc_cert, enc_key = make_leaf(directory, ca, "enc", usage="encrypt", ec=ec)
    key = load_private_key(enc_key)
    expected = EllipticCurvePrivateKey if ec else RSAPrivateKey
    assert isinstance(key, expected)
    identity = NodeIdentity(party, load_private_key(sign_key), load_cert(sign_cert), key,
                            load_cert(enc_cert))
    return identity, ca[0]


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())

