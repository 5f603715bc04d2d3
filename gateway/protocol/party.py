"""Parties: who sends and receives messages, written ``scheme:value``.

- ``fips:SSCCCLL``: a US state, county or tribal IV-D agency (7 digits: state 2, county 3,
  local office 2; a state-level agency is ``SS00000``).
- ``iso3166:CC`` or ``iso3166:CC-ID``: a foreign Central Authority under the 2007 Hague
  Convention, by ISO 3166-1 alpha-2 code (``-ID`` where a country has several).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from gateway.errors import PartyInvalid

__all__ = ["PARTY_PATTERN", "Party", "PartyInvalid"]

_FIPS = re.compile(r"[0-9]{7}")
_ISO = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,8})?")
#: The same rule as the XSD ``PartyType`` pattern (kept in step with xsd/envelope).
PARTY_PATTERN = r"fips:[0-9]{7}|iso3166:[A-Z]{2}(-[A-Z0-9]{1,8})?"


@dataclass(frozen=True, order=True)
class Party:
    """A party, e.g. ``Party("fips", "0600000")``; ``str(party)`` gives ``fips:0600000``."""

    scheme: str
    value: str

    def __post_init__(self) -> None:
        if self.scheme == "fips":
            ok = _FIPS.fullmatch(self.value) is not None
        elif self.scheme == "iso3166":
            ok = _ISO.fullmatch(self.value) is not None
        else:
            raise PartyInvalid(
                f"unknown party scheme {self.scheme!r} (expected 'fips' or 'iso3166')"
            )
        if not ok:
            rule = "7 digits" if self.scheme == "fips" else "CC or CC-ID (upper case)"
            raise PartyInvalid(f"a {self.scheme} party value must be {rule}")

    @classmethod
    def parse(cls, text: str) -> Party:
        """``"fips:0600000"`` -> ``Party("fips", "0600000")``; :class:`PartyInvalid` else."""
        if not isinstance(text, str):
            raise TypeError("Party.parse takes a string")
        if cls is Party and type(text) is str and len(text) <= 32:
            return _parse(text)  # memoised: a handful of parties recur in every message
        return cls._from_text(text)

    @classmethod
    def _from_text(cls, text: str) -> Party:
        scheme, sep, value = text.strip().partition(":")
        if not sep:
            raise PartyInvalid(
                "a party is written scheme:value, e.g. fips:0600000 or iso3166:NL"
            )
        return cls(scheme, value)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.value}"

    @property
    def is_fips(self) -> bool:
        return self.scheme == "fips"

    @property
    def state(self) -> str:
        """The 2-digit state code of a fips party."""
        self._need("fips")
        return self.value[:2]

    @property
    def county(self) -> str:
        """The 5-digit state+county code of a fips party."""
        self._need("fips")
        return self.value[:5]

    @property
    def country(self) -> str:
        """The ISO 3166-1 alpha-2 country code of an iso3166 party."""
        self._need("iso3166")
        return self.value[:2]

    @property
    def dirname(self) -> str:
        """A file-system safe name: ``fips_0600000``, ``iso3166_NL``."""
        return f"{self.scheme}_{self.value}"

    @property
    def uri(self) -> str:
        """The subjectAltName URI naming this party in generated certificates."""
        return f"urn:cse-gateway:party:{self.scheme}:{self.value}"

    def _need(self, scheme: str) -> None:
        if self.scheme != scheme:
            raise PartyInvalid(f"party {self} is not a {scheme} party")


@lru_cache(maxsize=1024)
def _parse(text: str) -> Party:
    """:meth:`Party.parse` for a plain string (a frozen value, so one instance can be
    shared; a refusal raises and is not memoised)."""
    return Party._from_text(text)
