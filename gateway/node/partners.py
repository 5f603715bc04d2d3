"""Partner bundles: what one node sends another to become its partner, as one file.

``gateway partner export`` writes a JSON file::

    {"format": "cse-gateway-partner/1", "party": "fips:0600000", "name": "...",
     "endpoint": "https://gw.ca.example:8443/v1/messages",
     "certificates": {"node_ca": PEM, "sign": PEM, "encrypt": PEM, "tls_ca": PEM}}

(``node_ca`` is absent when the node's certificates come from the agency's own CA: its
CA certificates are then in ``trust`` as a list). Nothing secret is in it. The receiver
runs ``gateway partner import FILE``: it shows every fingerprint for comparison over a
second channel, registers the message certificates (as ``gateway keys import-partner``),
pins the TLS CA for our server and adds it to its listener's accepted client CAs, and adds
a ``[[partners]]`` table with its ``[[routes]]`` to its ``gateway.toml`` (comments kept).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.errors import ConfigError, FileUnreadable, GatewayError, UsageError
from gateway.node.config import Config
from gateway.node.config_edit import add_partner, commit_config, discard_config, stage_config
from gateway.node.keystore import Keystore
from gateway.node.tlsca import san_names
from gateway.protocol import certs
from gateway.protocol.party import Party, PartyInvalid

__all__ = ["FORMAT", "Bundle", "ImportPlan", "build_bundle", "default_routes", "parse_bundle",
           "plan_import"]

log = logging.getLogger("gateway.node.partners")

FORMAT = "cse-gateway-partner/1"
_LOCAL = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Bundle:
    party: Party
    name: str
    endpoint: str
    message_certs: tuple[tuple[str, x509.Certificate], ...]  # (role, cert): node_ca, sign...
    tls_ca: x509.Certificate

    def to_bytes(self) -> bytes:
        found: dict[str, Any] = {}
        for role, cert in self.message_certs:
            text = certs.pem(cert).decode("ascii")
            if role == "trust":
                found.setdefault("trust", []).append(text)
            else:
                found[role] = text
        found["tls_ca"] = certs.pem(self.tls_ca).decode("ascii")
        doc = {"format": FORMAT, "party": str(self.party), "name": self.name,
               "endpoint": self.endpoint, "certificates": found}
        return (json.dumps(doc, indent=2) + "\n").encode("utf-8")

    def fingerprints(self) -> list[tuple[str, x509.Certificate]]:
        return [*self.message_certs, ("tls_ca", self.tls_ca)]


def _one(path: Path) -> x509.Certificate:
    return certs.load_certificates_file(path)[0]


def _endpoint(config: Config) -> str:
    if config.https is None:
        raise UsageError("this node has no [listeners.https]: give --endpoint URL (how "
                         "partners reach it)", where=str(config.path))
    names = san_names(_one(config.https.cert))
    public = [n for n in names if n not in _LOCAL] or names
    if not public:
        raise UsageError("the server certificate names no host: give --endpoint URL",
                         where=str(config.https.cert))
    host = f"[{public[0]}]" if ":" in public[0] else public[0]
    return f"https://{host}:{config.https.port}/v1/messages"


def build_bundle(config: Config, *, endpoint: str | None = None, tls_ca: Path | None = None,
                 name: str | None = None) -> Bundle:
    """This node's bundle: its message certificates (node CA, or the trust store's CAs
    when the certificates come from an agency CA), its listener's endpoint and TLS CA."""
    keys = config.node.keys_dir
    party = Party.parse(config.node.party)
    chosen: list[tuple[str, x509.Certificate]] = []
    if (keys / "ca.crt").is_file():
        chosen.append(("node_ca", _one(keys / "ca.crt")))
    else:
        trust = Keystore(keys).trust()
        chosen += [("trust", c) for c in trust if certs.is_ca(c)]
    chosen += [("sign", _one(keys / "sign.crt")), ("encrypt", _one(keys / "encrypt.crt"))]
    tls_file = tls_ca or config.path.parent / "tls" / "ca.crt"
    if not tls_file.is_file():
        raise UsageError("no TLS CA certificate: give --tls-ca FILE (the CA that issued "
                         "this node's server and client certificates)", where=str(tls_file))
    tls = _one(tls_file)
    if config.https is not None and not certs.issued_by(_one(config.https.cert), tls):
        log.warning("the listener's certificate %s was not issued by %s: partners will not "
                    "trust it", config.https.cert, tls_file)
    url = endpoint or _endpoint(config)
    if not url.startswith("https://"):
        raise UsageError("--endpoint must be an https:// URL")
    return Bundle(party, name or str(party), url, tuple(chosen), tls)


def parse_bundle(data: bytes, *, where: str) -> Bundle:
    """Read a bundle file; :class:`FileUnreadable` names what is wrong in it."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FileUnreadable("not a partner bundle (expected JSON from `gateway partner "
                             "export`)", where=where) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise FileUnreadable(f"not a partner bundle: format must be {FORMAT!r}", where=where)
    found = doc.get("certificates")
    if not isinstance(found, dict):
        raise FileUnreadable("certificates: expected an object", where=where)
    try:
        party = Party.parse(str(doc.get("party", "")))
    except PartyInvalid as exc:
        raise FileUnreadable(f"party: {exc.message}", where=where) from None
    endpoint = doc.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith("https://"):
        raise FileUnreadable("endpoint: expected an https:// URL", where=where)

    def cert(key: str, text: object) -> x509.Certificate:
        if not isinstance(text, str):
            raise FileUnreadable(f"certificates.{key}: expected PEM text", where=where)
        return certs.load_certificates(text.encode("ascii", "replace"),
                                       source=f"{where}: certificates.{key}")[0]

    chosen: list[tuple[str, x509.Certificate]] = []
    if "node_ca" in found:
        chosen.append(("node_ca", cert("node_ca", found["node_ca"])))
    trust = found.get("trust", [])
    if not isinstance(trust, list):
        raise FileUnreadable("certificates.trust: expected a list", where=where)
    chosen += [("trust", cert(f"trust[{i}]", t)) for i, t in enumerate(trust)]
    for role in ("sign", "encrypt", "tls_ca"):
        if role not in found:
            raise FileUnreadable(f"certificates.{role}: missing", where=where)
    chosen += [("sign", cert("sign", found["sign"])), ("encrypt", cert("encrypt",
                                                                       found["encrypt"]))]
    name = doc.get("name") if isinstance(doc.get("name"), str) else str(party)
    return Bundle(party, str(name), endpoint, tuple(chosen), cert("tls_ca", found["tls_ca"]))


def default_routes(party: Party) -> list[str]:
    """What a partner serves by default: a state gateway (``fips:SS00000``) every agency
    of its state (``fips:SS``); a country's Central Authority (``iso3166:CC``) the whole
    country; anything else only itself (its implicit exact route)."""
    if party.is_fips and party.value.endswith("00000"):
        return [f"fips:{party.state}"]
    if not party.is_fips and party.value == party.country:
        return [f"iso3166:{party.country}"]
    return []


def _rel(config: Config, path: Path) -> str:
    try:
        return str(path.relative_to(config.path.parent))
    except ValueError:
        return str(path)


@dataclass
class ImportPlan:
    """What ``partner import`` will do, checked before anything is written."""

    config: Config
    bundle: Bundle
    routes: list[str]
    skipped_routes: list[str]
    client_cert: Path
    client_key: Path
    tls_ca_file: Path
    done: list[str] = field(default_factory=list)

    def apply(self, now: datetime) -> list[str]:
        """Register, pin, edit the configuration; all or (as far as files allow) nothing."""
        config, bundle = self.config, self.bundle
        self.tls_ca_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = certs.pem(bundle.tls_ca)
        if self.tls_ca_file.exists() and self.tls_ca_file.read_bytes() != pem:
            raise UsageError("a different TLS CA is already pinned for this party; remove "
                             "it first", where=str(self.tls_ca_file))
        new_pin = not self.tls_ca_file.exists()
        if new_pin:
            self.tls_ca_file.write_bytes(pem)
        staged: Path | None = None
        try:
            text = config.path.read_text(encoding="utf-8")
            edited = add_partner(
                text, {"party": str(bundle.party), "name": bundle.name},
                [{"url": bundle.endpoint, "client_cert": _rel(config, self.client_cert),
                  "client_key": _rel(config, self.client_key),
                  "ca_file": _rel(config, self.tls_ca_file)}],
                self.routes, where=str(config.path),
                comment=f"added by `gateway partner import` on {now:%Y-%m-%d}")
            staged, _ = stage_config(config.path, edited)
            store = Keystore(config.node.keys_dir)
            registered = store.import_partner(
                bundle.party, [c for _, c in bundle.message_certs], now=now)
        except GatewayError:
            if staged is not None:
                discard_config(staged)
            if new_pin:
                self.tls_ca_file.unlink(missing_ok=True)
            raise
        self.done += [f"registered {what} certificate {certs.fingerprint(c)[:16]} -> {p}"
                      for what, c, p in registered]
        self.done.append(f"pinned the partner's TLS CA for its server: {self.tls_ca_file}")
        if config.https is not None:
            bundle_file = config.https.client_ca
            have = {certs.fingerprint(c) for c in certs.load_certificates_file(bundle_file)}
            if certs.fingerprint(bundle.tls_ca) not in have:
                with bundle_file.open("ab") as f:
                    f.write(pem)
                    f.flush()
                    os.fsync(f.fileno())
                self.done.append(f"accepting its client certificates: added its TLS CA to "
                                 f"{bundle_file}")
        commit_config(staged, config.path)
        self.done.append(f"added [[partners]] {bundle.party} ({bundle.endpoint})"
                         + (f" and [[routes]] {', '.join(self.routes)}" if self.routes else "")
                         + f" to {config.path}")
        log.info("partner %s imported", bundle.party)
        return self.done


def _client_pair(config: Config, cert: Path | None, key: Path | None) -> tuple[Path, Path]:
    if (cert is None) != (key is None):
        raise UsageError("give both --client-cert and --client-key, or neither")
    if cert is not None and key is not None:
        return cert.absolute(), key.absolute()
    for partner in config.partners:
        for t in partner.transports:
            if t.scheme == "https" and t.client_cert and t.client_key:
                return t.client_cert, t.client_key
    tls = config.path.parent / "tls"
    if (tls / "client.crt").is_file() and (tls / "client.key").is_file():
        return tls / "client.crt", tls / "client.key"
    raise UsageError("no TLS client certificate found (tls/client.crt): give --client-cert "
                     "and --client-key", where=str(config.path))


def _check_self_contained(bundle: Bundle, now: datetime) -> None:
    """The bundle's signing and encryption certificates must chain to the CAs in the
    bundle itself (or be self-signed): a bundle speaks only for its own PKI, never for a
    certificate that merely chains to something this node already trusts (its own node
    CA, another partner's)."""
    cas = [c for role, c in bundle.message_certs if role in ("node_ca", "trust")]
    for role, cert in bundle.message_certs:
        usage: certs.Usage
        if role == "sign":
            usage = "sign"
        elif role == "encrypt":
            usage = "encrypt"
        else:
            continue
        self_signed = cert.issuer == cert.subject and certs.issued_by(cert, cert)
        certs.validate_chain(cert, trust=[*cas, *([cert] if self_signed else [])],
                             intermediates=cas, at=[now], usage=usage)


def plan_import(config: Config, bundle: Bundle, *, now: datetime,
                routes: list[str] | None = None, client_cert: Path | None = None,
                client_key: Path | None = None) -> ImportPlan:
    """Check that ``bundle`` can be imported into ``config`` and say how."""
    _check_self_contained(bundle, now)
    party = str(bundle.party)
    if party == config.node.party:
        raise UsageError(f"this bundle is this node's own ({party}): import it at the partner")
    if any(p.party == party for p in config.partners):
        raise ConfigError(f"{party} is already a partner; to add certificates (a rollover) "
                          "use `gateway keys import-partner`", where=str(config.path))
    wanted = default_routes(bundle.party) if routes is None else list(routes)
    taken = {r.to for r in config.routes}
    chosen = [r for r in wanted if r not in taken]
    skipped = [r for r in wanted if r in taken]
    if routes is not None and skipped:
        raise ConfigError(f"already routed: {', '.join(skipped)}", where=str(config.path))
    cert, key = _client_pair(config, client_cert, client_key)
    tls_dir = config.path.parent / "tls" / "partners"
    return ImportPlan(config, bundle, chosen, skipped, cert, key,
                      tls_dir / f"{bundle.party.dirname}.crt")
