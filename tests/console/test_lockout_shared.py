"""The per-account lockout is one for every console on a store: two nodes, each with its
own accounts file and its own ``alice`` (another password, another TOTP secret), on one
store (a SQLite spool two console processes share, or a PostgreSQL store two nodes
share). Failed logins on either count together, a lock made on one refuses the right
password on the other, it ends by time, a login resets the count, and ``gateway
operators list`` and ``unlock`` on either node see and clear the shared state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.console import totp
from gateway.console.accounts import Accounts, lock_key
from gateway.console.pages import Console
from gateway.console.web import Request, Response
from gateway.service.context import NodeContext
from gateway.store.console_lockouts import AccountLocks
from tests.console.conftest import FAST_ARGON2, Clock

T0 = 1_800_000_000.0


@dataclass
class Node:
    config: Path
    ctx: NodeContext
    accounts: Accounts
    app: Console
    password: str
    secret: str


@dataclass
class Pair:
    nodes: list[Node]
    clock: Clock

    def login(self, i: int, *, password: str | None = None, client: str = "10.0.0.1",
              step: int = 0) -> Response:
        node = self.nodes[i]
        good = totp.code_at(node.secret, totp.step_of(self.clock.now) + step)
        form = {"name": ["alice"], "password": [password or node.password], "code": [good]}
        return node.app.handle(Request("POST", "/login", form=form, client=client))

    def events(self, code: str) -> list[tuple[str, dict[str, object]]]:
        with self.nodes[0].ctx.audit() as log:
            return [(e.event.actor, dict(e.event.detail)) for e in log.query(code=code)]


def _node(root: Path, name: str, store: str, clock: Clock) -> Node:
    folder = root / name
    (folder / "keys").mkdir(parents=True)
    config = folder / "gateway.toml"
    config.write_text(f'[node]\nparty = "fips:0600000"\n{store}\n[inbox]\npath = "in"\n'
                      '[rejected]\npath = "rej"\n[console]\nmax_failures = 3\n'
                      'lockout = "5m"\nlogin_rate = 100\n', encoding="utf-8")
    ctx = NodeContext.open(config)
    console = ctx.config.console
    assert console is not None
    accounts = Accounts(console.accounts, AccountLocks(ctx.spool),
                        max_failures=console.max_failures, lockout=console.lockout,
                        hasher=FAST_ARGON2)
    creds = accounts.add("alice", "operator", T0)  # each node's own account file
    return Node(config, ctx, accounts, Console(ctx, console, accounts, clock=clock),
                creds.password, creds.totp_secret)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    if request.param == "sqlite":  # two console processes on one node's spool
        store = f'[spool]\ndatabase = "{tmp_path / "spool.db"}"'
    else:  # two nodes on one PostgreSQL store
        store = f'[store]\nurl = "{request.getfixturevalue("pg_url")}"'
    clock = Clock(T0 + 3600)
    nodes = [_node(tmp_path, name, store, clock) for name in ("node1", "node2")]
    yield Pair(nodes, clock)
    for node in nodes:
        node.accounts.close()
        node.ctx.close()


def test_locked_on_one_console_is_locked_on_the_other(pair: Pair) -> None:
    # failures on both consoles count together: 2 + 1 lock the account (max_failures 3)
    assert pair.login(0, password="wrong").status == 401
    assert pair.login(1, password="wrong").status == 401
    assert pair.events("console_lockout") == []
    resp = pair.login(0, password="wrong", client="10.0.0.2")
    assert resp.status == 401
    assert b"Login refused: check the name, password and code." in resp.body
    assert pair.events("console_lockout") == [("alice", {"seconds": 300})]
    # the right password and code on the other node: refused, the same page as ever
    refused = pair.login(1)
    assert refused.status == 401
    assert b"Login refused: check the name, password and code." in refused.body
    assert ("alice", {"reason": "locked", "client": "10.0.0.1"}) in \
        pair.events("console_login_failed")
    assert pair.login(0, step=1).status == 401  # and on the node that locked it
    # the lock ends by time, for both
    pair.clock.now += 301
    assert pair.login(1).status == 303
    assert pair.login(0).status == 303
    assert len(pair.events("console_lockout")) == 1


def test_a_login_on_either_console_resets_the_count(pair: Pair) -> None:
    for i in (0, 1):
        assert pair.login(i, password="wrong").status == 401
    assert pair.login(1).status == 303  # resets the count on the store
    for i in (1, 0):  # two more failures do not lock (the count started again)
        assert pair.login(i, password="wrong").status == 401
    pair.clock.now += 31
    assert pair.login(0).status == 303
    assert pair.events("console_lockout") == []


def test_operators_list_and_unlock_act_on_the_shared_state(
        pair: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    for i in (0, 1, 0):
        pair.login(i, password="wrong")
    assert pair.login(1).status == 401  # locked
    capsys.readouterr()
    # the store knows the account by a hash of its name only
    assert set(AccountLocks(pair.nodes[0].ctx.spool).all()) == {lock_key("alice")}
    # node 2's CLI sees the lock made through node 1's console
    assert main(["--config", str(pair.nodes[1].config), "operators", "list",
                 "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [{"name": "alice", "role": "operator", "status": "locked",
                       "failed_logins": 0}]
    # and unlocks it for node 1's console too
    assert main(["--config", str(pair.nodes[1].config), "operators", "unlock",
                 "alice"]) == 0
    assert "operator alice unlocked" in capsys.readouterr().out
    assert pair.login(0).status == 303
    assert pair.events("operator_unlocked")[0][1] == {"operator": "alice"}
    assert main(["--config", str(pair.nodes[0].config), "operators", "unlock",
                 "alice"]) == 0
    assert "was not locked" in capsys.readouterr().out
    assert main(["--config", str(pair.nodes[0].config), "operators", "unlock",
                 "nobody"]) != 0
    # reset unlocks on every console too
    for i in (0, 1, 0):
        pair.login(i, password="wrong", step=1)
    assert pair.login(1, step=1).status == 401
    assert main(["--config", str(pair.nodes[0].config), "operators", "reset",
                 "alice"]) == 0
    assert pair.login(1, step=1).status == 303
