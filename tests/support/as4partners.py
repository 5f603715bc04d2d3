"""``[[partners]]`` entries for AS4 access points in test configurations: the transport,
and a PMode (``[partners.as4]``) naming the other side's PartyIds and certificates."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PARTY_TYPE", "as4_partner"]

PARTY_TYPE = "urn:oasis:names:tc:ebcore:partyid-type:unregistered"


def as4_partner(party: str, url: str, options: dict[str, str], *, their_id: str,
                our_id: str, their_keys: Path, signing_keys: Path | None = None) -> str:
    """The TOML of an AS4 partner ``party`` reached at ``url``; its certificates are read
    from ``their_keys`` (``sign.crt``, ``encrypt.crt``), the signing one from
    ``signing_keys`` when given (a wrong registration, for tests that expect a refusal)."""
    sign = (signing_keys or their_keys) / "sign.crt"
    lines = ["[[partners]]", f'party = "{party}"', 'protocol = "as4"',
             "[[partners.transports]]", f'url = "{url}"']
    lines += [f'{k} = "{v}"' for k, v in options.items()]
    lines += ["[partners.as4]", f'party_id = "{their_id}"', f'party_type = "{PARTY_TYPE}"',
              f'our_party_id = "{our_id}"', f'our_party_type = "{PARTY_TYPE}"',
              'service = "urn:cse:hague2007"', 'service_type = "urn:cse:service"',
              'agreement = "urn:cse:agreement:test"',
              f'signing_cert = "{sign}"',
              f'encryption_cert = "{their_keys / "encrypt.crt"}"',
              "[[partners.as4.actions]]", 'document = "MaintenanceApplication"',
              'action = "SubmitApplication"', ""]
    return "\n".join(lines)
