"""Where the gateway's shipped files live, installed (wheel) or from a source checkout."""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["xsd_root"]


@cache
def xsd_root() -> Path:
    """The directory holding the shipped schemas, Schematron rules (``*.sch``) and code
    tables (``xsd/`` in a checkout, ``gateway/_xsd`` in a wheel: pyproject force-includes
    the whole directory, so rule files travel with their schemas)."""
    here = Path(__file__).resolve().parent
    installed = here / "_xsd"
    if installed.is_dir():
        return installed
    checkout = here.parent / "xsd"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("the gateway's xsd/ directory is missing from this installation")
