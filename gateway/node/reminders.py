"""Draft CSENet M (reminder) transactions for answers a partner owes and is late with
(``[clocks.reminders]``): the daemon drops each draft into the configured folder for the
state system to review and send. The gateway never sends one itself.

For every open clock that a partner named in ``partners`` owes, that is overdue, and that
was started by a request or update we sent whose function has a reminder row in the Valid
Transactions Table (ENF, EST, PAT: :func:`gateway.documents.deadlines.remindable`), one
draft is written (:func:`gateway.documents.deadlines.reminder.draft_reminder`: the header's
keys only, checked by the federal edits) and recorded:

1. the file ``Reminder-RULE-MESSAGEID.txt`` is written durably (temporary file, fsync,
   rename, fsync of the folder) unless it is there already;
2. then a ``reminder_drafted`` audit event (the rule, the file, the serial number) marks
   the clock as reminded.

Exactly once per clock: a clock with a ``reminder_drafted`` (or ``reminder_refused``)
event is never drafted again, and after a crash between 1 and 2 the draft is made again
with the same name and the same bytes (its serial number and date come from the clock,
not from the moment), so the state system never sees two different drafts for one clock.
A draft the edits refuse (a case ID CSENet does not allow) is not written: a
``reminder_refused`` event names the edits it broke (rule ids, never values). On a shared
store one node drafts (the ``clock-reminders`` lease).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from gateway.documents.csenet import Framing, encode_file
from gateway.documents.deadlines import Clock
from gateway.documents.deadlines.reminder import draft_reminder, remindable, serial_for
from gateway.errors import GatewayError, SpoolError
from gateway.node.clocks import ClockWatch
from gateway.node.reminder_config import RemindersConfig
from gateway.store.fsutil import durable_write
from gateway.store.spool import Spool

__all__ = ["DRAFTED", "REFUSED", "ReminderDrafter", "draft_name"]

log = logging.getLogger("gateway.node.reminders")

DRAFTED, REFUSED = "reminder_drafted", "reminder_refused"


def draft_name(clock: Clock) -> str:
    """The draft's file name: one per clock, the same every time."""
    return f"Reminder-{clock.rule.name}-{clock.start.message_id}.txt"


def _key(clock: Clock) -> str:
    return f"{clock.rule.name}:{clock.start.message_id}"


def _fips(party: str) -> str | None:
    return party[5:] if party.startswith("fips:") else None


class ReminderDrafter:
    """:meth:`run_once` is the scheduled job (thread-safe through the caller's
    scheduler: one run at a time)."""

    def __init__(self, config: RemindersConfig, watch: ClockWatch, spool: Spool, *,
                 node: str, clock: Callable[[], datetime]) -> None:
        if config.folder is None:
            raise ValueError("reminders need a folder")
        self.config = config
        self.folder = config.folder
        self.watch = watch
        self.spool = spool
        self.node = node
        self.clock = clock
        self.framing = Framing(config.newline)
        self._seq = 0
        self._done: set[str] = set()

    def due(self, now: datetime) -> list[Clock]:
        """The clocks a reminder is drafted for now (not yet drafted)."""
        self._read_done()
        out = []
        for clock in self.watch.clocks(self.spool, now).open():
            start = clock.start
            if (clock.owed_by_us or not start.outbound or not clock.overdue(now)
                    or not start.message_id or not self.config.wanted(clock.partner)):
                continue
            if remindable(start.code) is None or _key(clock) in self._done:
                continue
            out.append(clock)
        return out

    def _read_done(self) -> None:
        while True:
            page = self.spool.audit_after(self._seq, (DRAFTED, REFUSED), 5000)
            for stored in page:
                self._seq = stored.seq
                key = stored.event.detail.get("key")
                if isinstance(key, str):
                    self._done.add(key)
            if len(page) < 5000:
                return

    def run_once(self) -> int:
        """Draft what is due; returns how many drafts were written."""
        now = self.clock()
        if not self.spool.leader("clock-reminders", now):
            return 0  # another node of a shared store drafts them
        written = 0
        for clock in self.due(now):
            try:
                written += self._draft(clock, now)
            except GatewayError as exc:
                log.error("reminder for %s (rule %s) not drafted: %s: %s",
                          clock.start.message_id, clock.rule.name, exc.code, exc)
        return written

    def _draft(self, clock: Clock, now: datetime) -> int:
        start, key = clock.start, _key(clock)
        function = remindable(start.code)
        assert function is not None  # noqa: S101 - due() keeps only these
        our_fips = start.our_fips or _fips(self.node)
        their_fips = start.their_fips or _fips(clock.partner)
        serial = serial_for(key)
        on = clock.overdue_at.date()  # the first day it is overdue, local: deterministic
        problems: list[str] = []
        if our_fips is None or their_fips is None:
            problems.append("header.fips")
        elif not start.our_case:
            problems.append("header.case-id-missing")
        else:
            try:
                txn, issues = draft_reminder(
                    function=function, our_fips=our_fips, their_fips=their_fips,
                    our_case=start.our_case, their_case=start.their_case, serial=serial,
                    on=on)
            except ValueError:
                problems.append("field.length")
            else:
                problems += sorted({issue.rule for issue in issues})
        event = {"message_id": start.message_id, "case_id": start.our_case,
                 "to_party": clock.partner, "partner": clock.partner}
        if problems:
            with self.spool.transaction(now) as t:
                t.audit(REFUSED, None, **event, detail={
                    "rule": clock.rule.name, "key": key[:128],
                    "issues": ",".join(problems)[:128]})
            self._done.add(key)
            log.warning("no reminder drafted for %s (rule %s): the draft breaks %s",
                        start.message_id, clock.rule.name, ", ".join(problems),
                        extra={"event": REFUSED, "message_id": start.message_id,
                               "partner": clock.partner})
            return 0
        name = draft_name(clock)
        target = self.folder / name
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create the reminders folder ({exc.strerror})",
                             where=str(self.folder)) from None
        if not target.exists():
            try:
                durable_write(target, encode_file([txn], framing=self.framing),
                              exclusive=True)
            except SpoolError:
                if not target.exists():
                    raise
        with self.spool.transaction(now) as t:
            t.audit(DRAFTED, None, **event, detail={
                "rule": clock.rule.name, "key": key[:128], "file": name[:128],
                "serial": serial, "code": f"{function}-M"})
        self._done.add(key)
        log.info("CSENet reminder drafted for %s (rule %s, overdue since %s): %s",
                 start.message_id, clock.rule.name, on.isoformat(), name,
                 extra={"event": DRAFTED, "message_id": start.message_id,
                        "partner": clock.partner})
        return 1
