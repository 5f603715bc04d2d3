"""Operator accounts: argon2id hashes with the library's defaults, TOTP (RFC 6238 test
vectors), a code works once, lockout (counted in the node's spool), disable and reset;
the operators CLI."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.console import totp
from gateway.console.accounts import Accounts
from gateway.errors import LoginRefused, UsageError
from gateway.store.console_lockouts import AccountLocks
from gateway.store.sqlite import SqliteSpool
from tests.console.conftest import FAST_ARGON2

T0 = 1_800_000_000.0


@pytest.fixture
def locks(tmp_path: Path) -> Iterator[AccountLocks]:
    """The lockout's table in a node's (SQLite) spool."""
    spool = SqliteSpool(tmp_path / "spool.db")
    yield AccountLocks(spool)
    spool.close()


def test_totp_matches_rfc6238_vectors() -> None:
    # RFC 6238 appendix B, SHA-1 key "12345678901234567890", 8 digits there: we use the
    # last 6 of each (the same truncation, modulo 10^6)
    secret = base64.b32encode(b"12345678901234567890").decode()
    for at, eight in ((59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924"),
                      (2000000000, "69279037")):
        assert totp.code_at(secret, totp.step_of(at)) == eight[-6:]
    step = totp.verify(secret, "287082", 59)
    assert step == 1
    assert totp.verify(secret, "287082", 59, last_step=1) is None  # used once already
    assert totp.verify(secret, "287082", 59 + 90) is None  # out of the window
    assert totp.verify(secret, "28708", 59) is None


def test_hashes_are_argon2id_with_default_cost(tmp_path: Path, locks: AccountLocks) -> None:
    accounts = Accounts(tmp_path / "a.db", locks)
    creds = accounts.add("alice", "operator", T0)
    stored = sqlite3.connect(tmp_path / "a.db").execute(
        "SELECT password FROM operators").fetchone()[0]
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert creds.password not in stored
    assert (tmp_path / "a.db").stat().st_mode & 0o077 == 0
    done = accounts.authenticate("alice", creds.password,
                                 totp.code_at(creds.totp_secret, totp.step_of(T0)), T0)
    assert done.account.role == "operator"
    assert done.factor == "totp"
    accounts.close()


def test_lockout_disable_reset_and_certificate_factor(tmp_path: Path,
                                                      locks: AccountLocks) -> None:
    accounts = Accounts(tmp_path / "a.db", locks, max_failures=2, lockout=60,
                        hasher=FAST_ARGON2)
    creds = accounts.add("bob", "viewer", T0)
    with pytest.raises(UsageError):
        accounts.add("bob", "viewer", T0)
    with pytest.raises(UsageError):
        accounts.add("Bob Smith", "viewer", T0)
    with pytest.raises(LoginRefused) as first:
        accounts.authenticate("bob", "wrong", "000000", T0)
    assert first.value.details == {"reason": "password", "locked": 0}
    with pytest.raises(LoginRefused) as second:
        accounts.authenticate("bob", "wrong", "000000", T0)
    assert second.value.details == {"reason": "password", "locked": 1}
    good = totp.code_at(creds.totp_secret, totp.step_of(T0))
    with pytest.raises(LoginRefused, match="refused") as locked:
        accounts.authenticate("bob", creds.password, good, T0 + 10)
    assert locked.value.details["reason"] == "locked"
    # a verified client certificate naming the account stands in for the code
    later = T0 + 61
    assert accounts.authenticate("bob", creds.password, "", later,
                                 certificate_name="bob").factor == "certificate"
    with pytest.raises(LoginRefused):  # another account's certificate does not
        accounts.authenticate("bob", creds.password, "", later, certificate_name="eve")
    accounts.disable("bob")
    with pytest.raises(LoginRefused) as off:
        accounts.authenticate("bob", creds.password, "", later, certificate_name="bob")
    assert off.value.details["reason"] == "disabled"
    new = accounts.reset("bob")
    assert new.password != creds.password
    assert accounts.authenticate("bob", new.password, totp.code_at(
        new.totp_secret, totp.step_of(later)), later).factor == "totp"
    accounts.close()


def test_operators_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keys").mkdir()
    config = tmp_path / "gateway.toml"
    config.write_text('[node]\nparty = "fips:0600000"\n[spool]\ndatabase = "spool.db"\n'
                      '[inbox]\npath = "in"\n[rejected]\npath = "rej"\n[console]\n')
    cfg = ["--config", str(config)]
    assert main([*cfg, "operators", "add", "carol", "--role", "admin", "--format",
                 "json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["otpauth"].startswith("otpauth://totp/CSE%20Gateway:carol?secret=")
    assert main([*cfg, "operators", "list"]) == 0
    assert "carol  admin  active" in capsys.readouterr().out
    assert main([*cfg, "operators", "disable", "carol"]) == 0
    assert main([*cfg, "operators", "list", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])[0]["status"] == "disabled"
    assert main([*cfg, "operators", "reset", "carol"]) == 0
    assert "password:" in capsys.readouterr().out
    secret = tmp_path / "secret"
    secret.write_text(made["totp_secret"])
    assert main([*cfg, "operators", "code", "--secret-file", str(secret)]) == 0
    assert capsys.readouterr().out.strip().isdigit()
    db = sqlite3.connect(tmp_path / "spool.db")
    events = [r[0] for r in db.execute("SELECT code FROM audit_events ORDER BY seq")]
    assert events == ["operator_added", "operator_disabled", "operator_reset"]
