"""The service layer the CLI and the console share: search with filters, paging and
sorting; a message's detail; resend and cancel with a reason; status; partner health;
certificates. Fixed data (tests/support/opsdata.py) on a real SQLite spool."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gateway.errors import UsageError
from gateway.service import messages as svc
from gateway.service.context import NodeContext
from gateway.service.status import certificates, node_status, partner_health
from gateway.store.query import MessageQuery
from gateway.store.states import Direction, State
from tests.support.opsdata import HUB, NOW, B, Fixed, ops_node, populate


@pytest.fixture
def ctx(tmp_path: Path, key_cache: Path) -> NodeContext:
    node = ops_node(tmp_path, key_cache)
    context = NodeContext.open(node.config_path)
    yield context  # type: ignore[misc]
    context.close()


@pytest.fixture
def fixed(ctx: NodeContext) -> Fixed:
    return populate(ctx.spool, NOW, bulk=12)  # type: ignore[arg-type]


def test_search_pages_newest_first_and_counts_all(ctx: NodeContext, fixed: Fixed) -> None:
    page = svc.search(ctx.spool, MessageQuery(limit=5))
    assert page.total == 17
    assert [m.id for m in page.items] == [17, 16, 15, 14, 13]
    assert page.cut
    assert page.has_next
    assert (page.first, page.last) == (1, 5)
    last = svc.search(ctx.spool, MessageQuery(limit=5, offset=15))
    assert [m.id for m in last.items] == [2, 1]
    assert last.cut
    assert not last.has_next
    oldest = svc.search(ctx.spool, MessageQuery(limit=3, descending=False))
    assert [m.id for m in oldest.items] == [1, 2, 3]
    whole = svc.search(ctx.spool, MessageQuery(limit=100))
    assert not whole.cut
    assert len(whole.items) == 17


def test_search_filters(ctx: NodeContext, fixed: Fixed) -> None:
    def ids(**kw: object) -> list[int]:
        query = MessageQuery(limit=100, **kw)  # type: ignore[arg-type]
        return [m.id for m in svc.search(ctx.spool, query).items]

    assert ids(states=[State.FAILED]) == [fixed.failed]
    assert ids(partner=HUB) == [fixed.retrying]
    assert ids(direction=Direction.IN) == [fixed.inbound]
    assert ids(error_code="ConnectionRefused") == [fixed.retrying]
    assert ids(message_id="msg-00013") == [fixed.delivered_after_breaker]
    assert ids(case_id="CASE-IN-1") == [fixed.inbound]
    assert ids(action="Acknowledgement") == [fixed.inbound]
    assert ids(since=NOW - timedelta(minutes=2)) == [fixed.inbound, fixed.sealed]
    assert ids(until=NOW - timedelta(hours=1), sort="id", descending=False) == list(range(1, 13))
    assert ids(sort="attempts")[0] == fixed.delivered_after_breaker  # the one tried twice
    with pytest.raises(ValueError, match="cannot sort"):
        MessageQuery(sort="data; DROP TABLE messages")


def test_current_error_only_in_error_states(ctx: NodeContext, fixed: Fixed) -> None:
    delivered = ctx.spool.get(fixed.delivered_after_breaker)
    assert delivered.state is State.DELIVERED
    assert delivered.error_code == "BreakerOpen"  # the spool keeps the last error ...
    assert svc.current_error(delivered) == (None, None)  # ... but it is not current
    assert svc.view(delivered)["error_code"] is None
    assert svc.view(delivered)["last_error_code"] == "BreakerOpen"
    assert svc.current_error(ctx.spool.get(fixed.failed))[0] == "TlsHandshakeFailed"
    assert svc.current_error(ctx.spool.get(fixed.retrying))[0] == "ConnectionRefused"


def test_detail_timeline_attempts_route_next(ctx: NodeContext, fixed: Fixed) -> None:
    d = svc.message_detail(ctx, str(fixed.delivered_after_breaker), NOW)
    assert d.payloads == ["document", "envelope"]
    assert d.timeline is not None
    codes = [e.event.code for e in d.timeline.events]
    assert codes[:2] == ["intake", "sealed"]
    assert codes.count("send_failed") == 1
    assert codes[-1] == "delivered"
    assert [(a.number, a.outcome, a.error_code) for a in d.attempts] == [
        (1, "failed", "BreakerOpen"), (2, "delivered", None)]
    assert d.route is not None
    assert "partner fips:4800000" in d.route
    assert d.transports == ["memory://ops-b", "file:///nonexistent"]
    assert d.next_attempt is None
    assert d.next_reason.startswith("none")
    assert d.actions == []
    r = svc.message_detail(ctx, "msg-00015", NOW)
    assert r.message.id == fixed.retrying
    assert r.next_attempt is not None
    assert "ConnectionRefused" in r.next_reason
    assert r.actions == ["cancel"]
    assert "default" in (r.route or "")
    f = svc.message_detail(ctx, str(fixed.failed), NOW)
    assert f.actions == ["resend"]
    assert "resend" in f.next_reason


def test_resend_and_cancel_need_a_reason_and_name_the_operator(
        ctx: NodeContext, fixed: Fixed) -> None:
    with pytest.raises(UsageError, match="reason is required"):
        svc.resend(ctx, str(fixed.failed), operator="alice", reason="because I said so",
                   now=NOW)
    with pytest.raises(UsageError, match="ticket"):
        svc.resend(ctx, str(fixed.failed), operator="alice", reason="partner-recovered",
                   ticket="has spaces", now=NOW)
    with pytest.raises(UsageError, match="cannot resend"):
        svc.resend(ctx, str(fixed.retrying), operator="alice", reason="test", now=NOW)
    done = svc.resend(ctx, str(fixed.failed), operator="alice", reason="partner-recovered",
                      ticket="INC-42", now=NOW)
    assert done.message.state is State.SEALED
    assert done.message.error_code is None
    assert ctx.spool.payload(fixed.failed, "failure_report") is None
    svc.cancel(ctx, "msg-00015", operator="bob", reason="sent-in-error", now=NOW)
    assert ctx.spool.get(fixed.retrying).state is State.CANCELLED
    with ctx.audit() as log:
        resent = [e.event for e in log.query(code="resent_by_operator")]
        cancelled = [e.event for e in log.query(code="cancelled_by_operator")]
    assert [(e.actor, dict(e.detail)) for e in resent] == [
        ("alice", {"reason": "partner-recovered", "ticket": "INC-42"})]
    assert [(e.actor, dict(e.detail)) for e in cancelled] == [
        ("bob", {"reason": "sent-in-error"})]


def test_status_health_certificates(ctx: NodeContext, fixed: Fixed) -> None:
    status = node_status(ctx, NOW)
    assert status["failed_last_24h"] == 1
    assert {"direction": "out", "state": "retrying", "partner": HUB, "count": 1} in \
        status["counts"]
    assert status["oldest_pending_seconds"] == 7199  # the first bulk one
    with ctx.audit() as log:
        health = {h.party: h for h in partner_health(ctx, log, NOW)}
    assert health[B].last_success is not None
    # its failures came before its last success
    assert health[B].breaker == "closed"
    assert health[B].failures_since_success == 0
    assert health[HUB].last_success is None
    assert health[HUB].breaker == "failing"
    assert any("fips:48" in r for r in health[B].routes)
    assert health[B].pending == 14  # 12 bulk, the sealed one, the inbound one
    certs = certificates(ctx.keys_dir, NOW)
    roles = {c["role"] for c in certs}
    assert {"sign", "encrypt", "node-ca", "partner"} <= roles
    assert all(len(c["fingerprint"]) == 64 for c in certs)
