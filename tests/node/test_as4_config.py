"""``protocol = "as4"`` partners in gateway.toml: the PMode is read, and every mistake is
reported with its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.node.config import load_config

BASE = """
[node]
party = "fips:0600000"
keys_dir = "keys"
[[outbox]]
path = "outbox"
[inbox]
path = "inbox"
[rejected]
path = "rejected"
[[partners]]
party = "iso3166:NL"
protocol = "as4"
[[partners.transports]]
url = "{url}"
client_cert = "c.crt"
client_key = "c.key"
ca_file = "ca.crt"
key_file = "k"
known_hosts = "kh"
[partners.as4]
{as4}
"""
PMODE = """party_id = "nl-ap"
party_type = "urn:oasis:names:tc:ebcore:partyid-type:unregistered"
our_party_id = "us-ca"
service = "urn:cse:hague2007"
signing_cert = "nl-sign.crt"
encryption_cert = "nl-enc.crt"
allow_sha1 = true
[[partners.as4.actions]]
document = "MaintenanceApplication"
action = "Submit"
"""


def load(tmp_path: Path, *, url: str = "https://nl.example:8443/as4", as4: str = PMODE):
    path = tmp_path / "gateway.toml"
    path.write_text(BASE.format(url=url, as4=as4), encoding="utf-8")
    return load_config(path)


def test_pmode_is_read(tmp_path: Path) -> None:
    config = load(tmp_path)
    partner = config.partner("iso3166:NL")
    assert partner.protocol == "as4"
    pmode = partner.as4
    assert pmode is not None
    assert pmode.party_id == "nl-ap"
    assert pmode.action("MaintenanceApplication") == "Submit"
    assert pmode.document_type("Submit") == "MaintenanceApplication"
    assert pmode.action("StatusReport") == "StatusReport"
    assert pmode.allow_sha1
    assert not pmode.allow_cbc
    assert pmode.compress
    assert pmode.signing_cert == tmp_path / "nl-sign.crt"
    assert pmode.role.endswith("/responder")


@pytest.mark.parametrize(("as4", "url", "key"), [
    (PMODE.replace('party_id = "nl-ap"\n', ""), "https://nl.example/as4",
     "partners[0].as4.party_id"),
    (PMODE.replace("allow_sha1 = true", 'allow_sha1 = "yes"'), "https://nl.example/as4",
     "partners[0].as4.allow_sha1"),
    (PMODE.replace("allow_sha1 = true", 'allow_sha1 = true\ncolour = "blue"'),
     "https://nl.example/as4", "partners[0].as4.colour"),
    (PMODE, "sftp://nl@nl.example/inbox", "partners[0].transports"),
    (PMODE.replace('action = "Submit"', ""), "https://nl.example/as4",
     "partners[0].as4.actions[0].action"),
])
def test_mistakes_name_their_key(tmp_path: Path, as4: str, url: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, url=url, as4=as4)
    keys = [p["key"] for p in info.value.details["problems"]]
    assert key in keys, keys
