"""A node with fixed data and a console over it, for the page and browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type

from gateway.console.accounts import Accounts
from gateway.console.pages import Console
from gateway.node.console_config import ConsoleConfig
from gateway.service.context import NodeContext
from gateway.store.console_lockouts import AccountLocks
from tests.support.opsdata import NOW, Fixed, ops_node, populate

#: Still argon2id, at a cost a loaded test machine can afford 30 times per test (the
#: product uses argon2-cffi's defaults: test_accounts checks that).
FAST_ARGON2 = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    ctx: NodeContext
    accounts: Accounts
    config: ConsoleConfig
    clock: Clock
    fixed: Fixed
    secrets: dict[str, tuple[str, str]]  # name -> (password, totp secret)
    root: Path

    def app(self) -> Console:
        return Console(self.ctx, self.config, self.accounts, clock=self.clock)


@pytest.fixture(scope="module")
def key_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture
def setup(tmp_path: Path, key_cache: Path) -> Iterator[Setup]:
    node = ops_node(tmp_path, key_cache)
    ctx = NodeContext.open(node.config_path)
    fixed = populate(ctx.spool, NOW, bulk=3)  # type: ignore[arg-type]
    config = ConsoleConfig(port=0, accounts=tmp_path / "accounts.db", idle_timeout=600,
                           absolute_timeout=3600, max_failures=3, lockout=300, login_rate=20)
    accounts = Accounts(config.accounts, AccountLocks(ctx.spool), max_failures=3, lockout=300,
                        hasher=FAST_ARGON2)
    secrets: dict[str, tuple[str, str]] = {}
    for name, role in (("olga", "operator"), ("vic", "viewer"), ("ada", "admin")):
        creds = accounts.add(name, role, NOW.timestamp())
        secrets[name] = (creds.password, creds.totp_secret)
    clock = Clock(NOW.timestamp() + 3600)
    yield Setup(ctx, accounts, config, clock, fixed, secrets, tmp_path)
    accounts.close()
    ctx.close()
