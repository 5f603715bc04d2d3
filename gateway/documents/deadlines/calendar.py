"""Working days and periods: the US federal holidays computed by rule, plus configured ones.

Federal holidays are those of 5 U.S.C. 6103(a): New Year's Day, Birthday of Martin Luther
King Jr. (third Monday in January), Washington's Birthday (third Monday in February),
Memorial Day (last Monday in May), Juneteenth National Independence Day (June 19, from
2021), Independence Day, Labor Day (first Monday in September), Columbus Day (second Monday
in October), Veterans Day (November 11), Thanksgiving Day (fourth Thursday in November) and
Christmas Day. A fixed-date holiday on a Saturday is observed the Friday before, on a Sunday
the Monday after (5 U.S.C. 6103(b) and Executive Order 11582), so New Year's Day 2022 (a
Saturday) was observed on Friday 2021-12-31.

A :class:`WorkCalendar` adds the holidays a state (or a partner) configures: a fixed
``MM-DD`` every year (observed as federal ones are) or a single ``YYYY-MM-DD``.
Pure: dates in, dates out.
"""

from __future__ import annotations

import calendar as _cal
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

__all__ = ["Period", "WorkCalendar", "federal_holidays", "parse_holiday", "parse_period"]

_MON, _THU, _SAT, _SUN = 0, 3, 5, 6
_FIXED = ((1, 1), (7, 4), (11, 11), (12, 25))


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> date:
    """The ``nth`` (1-based; -1 = last) ``weekday`` of a month."""
    if nth > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (nth - 1))
    last = date(year, month, _cal.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    if day.weekday() == _SAT:
        return day - timedelta(days=1)
    if day.weekday() == _SUN:
        return day + timedelta(days=1)
    return day


@lru_cache(maxsize=256)
def federal_holidays(year: int) -> frozenset[date]:
    """The federal holidays *observed* in ``year`` (a Saturday New Year's Day of the next
    year is observed on December 31 of this one and is included here)."""
    fixed = [*_FIXED]
    if year >= 2021:
        fixed.append((6, 19))
    days = {_observed(date(year, m, d)) for m, d in fixed}
    days |= {
        _nth_weekday(year, 1, _MON, 3),    # Martin Luther King Jr.
        _nth_weekday(year, 2, _MON, 3),    # Washington's Birthday
        _nth_weekday(year, 5, _MON, -1),   # Memorial Day
        _nth_weekday(year, 9, _MON, 1),    # Labor Day
        _nth_weekday(year, 10, _MON, 2),   # Columbus Day
        _nth_weekday(year, 11, _THU, 4),   # Thanksgiving Day
    }
    next_new_year = _observed(date(year + 1, 1, 1))
    if next_new_year.year == year:
        days.add(next_new_year)
    return frozenset(d for d in days if d.year == year)


_MMDD = re.compile(r"(\d{2})-(\d{2})")
_YMD = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def parse_holiday(text: str) -> tuple[int, int] | date:
    """``MM-DD`` (every year, observed like a federal holiday) or ``YYYY-MM-DD`` (once).
    Raises ValueError naming the expected forms."""
    if m := _MMDD.fullmatch(text):
        month, day = int(m.group(1)), int(m.group(2))
        date(2024, month, day)  # a leap year: 02-29 is allowed, 02-30 is not
        return (month, day)
    if m := _YMD.fullmatch(text):
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    raise ValueError("a holiday is MM-DD (every year) or YYYY-MM-DD (once)")


@dataclass(frozen=True)
class WorkCalendar:
    """Monday to Friday, minus the federal holidays (unless ``federal`` is False) and the
    extra ``annual`` (month, day) and ``dates`` holidays."""

    annual: tuple[tuple[int, int], ...] = ()
    dates: frozenset[date] = frozenset()
    federal: bool = True
    _years: dict[int, frozenset[date]] = field(default_factory=dict, compare=False,
                                                repr=False)

    @classmethod
    def build(cls, holidays: Iterable[str] = (), *, federal: bool = True) -> WorkCalendar:
        annual: list[tuple[int, int]] = []
        once: set[date] = set()
        for text in holidays:
            value = parse_holiday(text)
            if isinstance(value, date):
                once.add(value)
            else:
                annual.append(value)
        return cls(tuple(annual), frozenset(once), federal)

    def holidays(self, year: int) -> frozenset[date]:
        cached = self._years.get(year)
        if cached is None:
            days = set(federal_holidays(year)) if self.federal else set()
            for month, day in self.annual:
                if month == 2 and day == 29 and not _cal.isleap(year):
                    continue
                days.add(_observed(date(year, month, day)))
            days |= {d for d in self.dates if d.year == year}
            cached = frozenset(days)
            self._years[year] = cached
        return cached

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < _SAT and day not in self.holidays(day.year)

    def add_working_days(self, start: date, count: int) -> date:
        """The ``count``-th working day after ``start`` (``start`` itself is day 0, whether
        or not it is a working day)."""
        day = start
        done = 0
        while done < count:
            day += timedelta(days=1)
            if self.is_working_day(day):
                done += 1
        return day

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in (start, end]: how many of a period's days have been used by
        ``end``; negative when ``end`` is before ``start``."""
        if end < start:
            return -self.working_days_between(end, start)
        day, count = start, 0
        while day < end:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return count


_PERIOD = re.compile(r"\s*([1-9][0-9]{0,3})\s+(working\s+days?|days?|weeks?|months?)\s*")
_UNIT = {"working": "working_days", "day": "days", "days": "days", "week": "weeks",
         "weeks": "weeks", "month": "months", "months": "months"}


@dataclass(frozen=True)
class Period:
    """A deadline period: ``count`` ``unit`` (working_days, days, weeks or months)."""

    count: int
    unit: str

    def __str__(self) -> str:
        word = self.unit.replace("_", " ")
        return f"{self.count} {word[:-1] if self.count == 1 else word}"

    def due(self, start: date, calendar: WorkCalendar) -> date:
        """The last day on which an answer is on time, for a clock started on ``start``.
        Calendar periods may end on a weekend or holiday (they are not moved)."""
        if self.unit == "working_days":
            return calendar.add_working_days(start, self.count)
        if self.unit == "days":
            return start + timedelta(days=self.count)
        if self.unit == "weeks":
            return start + timedelta(days=7 * self.count)
        months = start.month - 1 + self.count
        year, month = start.year + months // 12, months % 12 + 1
        return date(year, month, min(start.day, _cal.monthrange(year, month)[1]))


def parse_period(text: str) -> Period:
    """``"10 working days"``, ``"75 days"``, ``"6 weeks"``, ``"3 months"``."""
    m = _PERIOD.fullmatch(text.lower())
    if m is None:
        raise ValueError("a period is N working days, N days, N weeks or N months")
    unit = _UNIT[m.group(2).split()[0]]
    return Period(int(m.group(1)), unit)
