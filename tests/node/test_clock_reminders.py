"""Draft CSENet M reminders for overdue answers (``[clocks.reminders]``), through two
gateways in one process (in-memory transport, real validation, sealing, receipts, spool
and audit trail) on a fixed clock: California sends Texas an enforcement request (ENF R),
a second one that Texas acknowledges in time, and a status inquiry (CSI R, which has no
reminder row in the Valid Transactions Table). Exactly one draft appears, at the exact
moment the acknowledgement becomes overdue; it passes every federal edit and holds the
request's keys and nothing else; a second run, a restarted daemon and a crash between the
file and its audit event make no second draft; a partner not named gets none."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from lxml import etree

from gateway.demo.samples import interstate_transaction
from gateway.documents.csenet import check, decode
from gateway.documents.csenet.table import lookup
from gateway.documents.deadlines import Facts, observe, shipped_rules
from gateway.errors import ConfigError
from gateway.node.clocks import ClockKeeper, ClocksConfig, ClockWatch
from gateway.node.config import load_config
from gateway.node.daemon import Gateway
from gateway.node.reminder_config import RemindersConfig
from gateway.node.reminders import DRAFTED, ReminderDrafter
from gateway.store.sqlite import SqliteSpool
from tests.support.gwnodes import NodeSpec, PartnerSpec, write_config
from tests.support.privacy import PERSONAL, values_in
from transports.memory import MemoryNetwork, http_responder

CA, TX = "fips:0600000", "fips:4800000"
# a Monday soon (the test keys are made now and are valid from now on), 15:00 UTC
_TODAY = datetime.now(UTC).replace(hour=15, minute=0, second=0, microsecond=0)
T0 = _TODAY + timedelta(days=7 - _TODAY.weekday())
REMINDERS = f"""
[clocks.reminders]
folder = "reminders"
partners = ["{TX}"]
"""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now



def transaction(route: str, code: str, case: str, other_case: str) -> bytes:
    local, other = route.split("->")
    function, action, reason = code.split()
    data = interstate_transaction(local, other, function=function, action=action,
                                  reason=reason.strip("-"), case_id=case, seed=7,
                                  on=T0.date())
    root = etree.fromstring(data)
    [element] = root.xpath("*[local-name()='Header']/*[local-name()='OtherCaseID']")
    element.text = other_case
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class Pair:
    def __init__(self, root: Path, cache: Path, clock: Clock) -> None:
        self.clock = clock
        self.network = MemoryNetwork()
        self.ca = NodeSpec("ca", CA, root / "ca", extra=REMINDERS)
        self.tx = NodeSpec("tx", TX, root / "tx")
        self.ca.partners = [PartnerSpec(TX, [("memory://tx-https", {})])]
        self.tx.partners = [PartnerSpec(CA, [("memory://ca-https", {})])]
        for spec in (self.ca, self.tx):
            write_config(spec, cache, [self.ca, self.tx])
        self.gw: dict[str, Gateway] = {}
        for spec in (self.ca, self.tx):
            self.start(spec)

    def start(self, spec: NodeSpec) -> Gateway:
        """A gateway for ``spec`` (again: a restarted daemon on the same folders)."""
        old = self.gw.get(spec.name)
        if old is not None:
            old.stop()
        gw = Gateway(load_config(spec.config_path), clock=self.clock,
                     transport_options={"memory": {"network": self.network}})
        self.network.serve(f"{spec.name}-https", http_responder(gw.handle_https))
        self.gw[spec.name] = gw
        return gw

    def send(self, spec: NodeSpec, name: str, data: bytes) -> None:
        spec.outbox.mkdir(parents=True, exist_ok=True)
        (spec.outbox / name).write_bytes(data)
        (spec.outbox / f"{name}.ready").write_bytes(b"")
        gw = self.gw[spec.name]
        gw.scan()
        gw.send_all(timeout=30)

    def close(self) -> None:
        for gw in self.gw.values():
            gw.stop()


@pytest.fixture
def pair(tmp_path: Path, key_cache: Path) -> Iterator[Pair]:
    p = Pair(tmp_path, key_cache, Clock())
    yield p
    p.close()


def drafts(pair: Pair) -> dict[str, bytes]:
    folder = pair.ca.root / "reminders"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*"))} if folder.exists() \
        else {}


def drafted_events(gw: Gateway) -> list[dict[str, object]]:
    return [{**dict(e.event.detail), "message_id": e.event.message_id,
             "partner": e.event.partner} for e in gw.spool.audit_after(0, [DRAFTED])]


def test_one_valid_draft_per_overdue_clock_and_never_two(pair: Pair) -> None:
    request = transaction("0600000->4800000", "ENF R ERARR", "CA0000000000002",
                          "TX0000000000002")
    pair.send(pair.ca, "request.xml", request)
    pair.send(pair.ca, "answered.xml", transaction(
        "0600000->4800000", "EST R SRORD", "CA0000000000003", "TX0000000000003"))
    pair.send(pair.ca, "inquiry.xml", transaction(
        "0600000->4800000", "CSI R FRINF", "CA0000000000001", "TX0000000000001"))
    pair.clock.now = T0 + timedelta(days=2)  # Texas acknowledges the second request
    pair.send(pair.tx, "ack.xml", transaction(
        "4800000->0600000", "EST A AADIN", "TX0000000000003", "CA0000000000003"))
    ca = pair.gw["ca"]
    assert ca.reminders is not None
    assert pair.gw["tx"].reminders is None  # not configured there

    # the acknowledgement of the request is due in 10 working days: overdue from the
    # midnight (UTC, the default clocks.timezone) after the due date
    [ack] = [c for c in ca.clock_watch.clocks(ca.spool, T0 + timedelta(days=3)).open()
             if c.rule.name == "cfr-303.7b2-registry-ack"]
    assert ack.start.our_case == "CA0000000000002"
    overdue = ack.overdue_at
    assert overdue == datetime.combine(ack.due + timedelta(days=1), time(0), tzinfo=UTC)
    assert timedelta(days=14) <= overdue - T0 < timedelta(days=21)

    # not overdue yet (the inquiry is: 5 working days, but CSI has no reminder row)
    pair.clock.now = overdue - timedelta(microseconds=1)
    assert ca.reminders.run_once() == 0
    assert drafts(pair) == {}
    # overdue: exactly one draft, for the enforcement request's acknowledgement
    pair.clock.now = overdue
    assert ca.reminders.run_once() == 1
    [(name, data)] = drafts(pair).items()
    [event] = drafted_events(ca)
    assert event["rule"] == "cfr-303.7b2-registry-ack"
    assert event["partner"] == TX
    assert event["file"] == name
    assert name == f"Reminder-cfr-303.7b2-registry-ack-{event['message_id']}.txt"
    with ca.spool.audit_log() as log:
        [started] = [e for e in log.query(code="clock_started")
                     if e.event.message_id == event["message_id"]
                     and e.event.detail["rule"] == "cfr-303.7b2-registry-ack"]
    assert started.event.detail["case"] == "CA0000000000002"

    # a valid CSENet 2000 transaction: one line, the Valid Transactions Table's ENF M row
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    txn = decode(data[:-1])
    assert check(txn, today=overdue.date()) == []
    h = txn.header
    assert (h.function, h.action, h.reason) == ("ENF", "M", "")
    assert lookup("ENF", "M", "") is not None
    assert (h.local_fips, h.other_fips) == ("0600000", "4800000")
    assert (h.case_id, h.other_case_id) == ("CA0000000000002", "TX0000000000002")
    assert h.counts() == (0, 0, 0, 0, 0, 0, 0)  # the header alone: no data block
    assert h.raw("Transaction-Date") == overdue.strftime("%Y%m%d")  # its first day overdue
    assert h.serial == event["serial"]
    assert h.serial.startswith("9")
    # nothing of the request but its keys
    personal = values_in(etree.fromstring(request), set(PERSONAL))
    assert len(personal) > 5
    assert not [v for v in personal if v.encode() in data]

    # again, later, and in a restarted daemon: nothing new
    assert ca.reminders.run_once() == 0
    pair.clock.now = overdue + timedelta(days=3)
    ca = pair.start(pair.ca)
    assert ca.reminders is not None
    assert ca.reminders.run_once() == 0
    assert drafts(pair) == {name: data}
    assert len(drafted_events(ca)) == 1

    # a partner not named in `partners` gets no reminder
    other = ReminderDrafter(RemindersConfig(pair.ca.root / "elsewhere", ("fips:1200000",)),
                            ca.clock_watch, ca.spool, node=CA, clock=pair.clock)  # type: ignore[arg-type]
    pair.clock.now = overdue + timedelta(days=100)
    assert other.due(pair.clock.now) == []
    assert other.run_once() == 0
    assert not (pair.ca.root / "elsewhere").exists()


class Crash(Exception):
    pass


class CrashingSpool:
    """The daemon's spool, except that the next transaction dies (a crash after the
    draft was written and before its audit event was committed)."""

    def __init__(self, spool: object) -> None:
        self.spool = spool

    def transaction(self, now: datetime) -> object:
        raise Crash

    def __getattr__(self, name: str) -> object:
        return getattr(self.spool, name)


def test_a_crash_between_the_draft_and_its_event_makes_the_same_draft(pair: Pair) -> None:
    pair.send(pair.ca, "request.xml", transaction(
        "0600000->4800000", "PAT R -", "CA0000000000004", "TX0000000000004"))
    ca = pair.gw["ca"]
    assert ca.reminders is not None
    pair.clock.now = T0 + timedelta(days=30)  # every clock of the request overdue but one
    ca.reminders.spool = CrashingSpool(ca.spool)  # type: ignore[assignment]
    with pytest.raises(Crash):
        ca.reminders.run_once()
    [(name, data)] = drafts(pair).items()  # the file is there, durably
    assert drafted_events(ca) == []
    (pair.ca.root / "reminders" / name).unlink()  # the state system took it meanwhile
    ca = pair.start(pair.ca)  # restarted
    assert ca.reminders is not None
    assert ca.reminders.run_once() == 1
    assert drafts(pair) == {name: data}  # the same name, the same bytes
    assert len(drafted_events(ca)) == 1
    assert ca.reminders.run_once() == 0
    assert decode(data[:-1]).header.function == "PAT"


def test_reminders_config_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[node]\nparty = "fips:0600000"\n[clocks.reminders]\n'
                      'partners = ["texas", "*"]\nnewline = "cr"\ncolour = 1\n',
                      encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    keys = {p["key"] for p in caught.value.details["problems"]}
    assert keys == {"clocks.reminders.partners[0]", "clocks.reminders.folder",
                    "clocks.reminders.newline", "clocks.reminders.colour"}
    config.write_text('[node]\nparty = "fips:0600000"\n[clocks.reminders]\n'
                      'folder = "drafts"\npartners = ["*"]\n', encoding="utf-8")
    reminders = load_config(config).clocks.reminders
    assert reminders.folder == tmp_path / "drafts"
    assert reminders.wanted("iso3166:NL")
    assert reminders.wanted(CA)
    assert not RemindersConfig(tmp_path, ()).enabled


def test_the_daemon_schedules_the_reminders_where_configured(pair: Pair) -> None:
    ca, tx = pair.gw["ca"], pair.gw["tx"]
    for gw in (ca, tx):
        gw.start(listen=False)
    job = ca.scheduler.get_job("clock-reminders")
    assert job is not None
    assert job.trigger.interval == timedelta(minutes=5)  # clocks.reminders.interval
    assert tx.scheduler.get_job("clock-reminders") is None
    assert tx.scheduler.get_job("send") is not None


def test_a_draft_the_edits_refuse_is_recorded_once_and_not_written(tmp_path: Path) -> None:
    """A request whose keys cannot make a valid CSENet reminder (a case ID longer than
    15 characters, one of zeros only): no file, one ``reminder_refused`` event naming the
    edit (never the value), and no second try."""
    spool = SqliteSpool(tmp_path / "gateway.db")
    clock = Clock()
    start = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    for mid, case in (("m-long", "CA-2026-000000000001"), ("m-zero", "000000000000000")):
        facts = Facts("InterstateTransaction", "ENF", "R", "ERARR", case, None,
                      "0600000", "4800000")
        with spool.transaction(start) as txn:
            for code, detail in observe(facts, shipped_rules(), outbound=True):
                txn.audit(code, None, message_id=mid, from_party=CA, to_party=TX,
                          detail=detail)
    folder = tmp_path / "reminders"
    drafter = ReminderDrafter(RemindersConfig(folder, (TX,)),
                              ClockWatch(ClockKeeper(ClocksConfig()), refresh=0), spool,
                              node=CA, clock=clock)
    clock.now = start + timedelta(days=30)
    try:
        assert drafter.run_once() == 0
        assert drafter.run_once() == 0
        refused = {e.event.message_id: dict(e.event.detail)
                   for e in spool.audit_after(0, ["reminder_refused"])}
        assert len(spool.audit_after(0, ["reminder_refused"])) == 2
        assert refused["m-long"]["issues"] == "field.length"
        assert refused["m-zero"]["issues"] == "header.case-id"
        assert all("0000000000" not in str(d) for d in refused.values())
        assert not folder.exists()
    finally:
        spool.close()
