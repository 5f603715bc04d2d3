"""The working-day calendar: federal holidays by rule with observed-day shifts, configured
holidays, and the four kinds of period."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.documents.deadlines import (
    Period,
    WorkCalendar,
    federal_holidays,
    parse_holiday,
    parse_period,
)


def test_federal_holidays_2026() -> None:
    assert sorted(federal_holidays(2026)) == [
        date(2026, 1, 1), date(2026, 1, 19), date(2026, 2, 16), date(2026, 5, 25),
        date(2026, 6, 19), date(2026, 7, 3),   # July 4 is a Saturday: Friday observed
        date(2026, 9, 7), date(2026, 10, 12), date(2026, 11, 11), date(2026, 11, 26),
        date(2026, 12, 25)]


def test_observed_shifts_and_the_new_year_of_the_next_year() -> None:
    h2021 = federal_holidays(2021)
    assert date(2021, 6, 18) in h2021       # Juneteenth on a Saturday
    assert date(2021, 7, 5) in h2021        # Independence Day on a Sunday
    assert date(2021, 12, 24) in h2021      # Christmas on a Saturday
    assert date(2021, 12, 31) in h2021      # New Year's Day 2022 (a Saturday)
    assert date(2022, 1, 1) not in federal_holidays(2022)
    assert date(2023, 1, 2) in federal_holidays(2023)   # New Year's Day on a Sunday
    assert date(2023, 1, 1) not in federal_holidays(2023)


def test_juneteenth_only_from_2021() -> None:
    assert date(2020, 6, 19) not in federal_holidays(2020)
    assert len(federal_holidays(2020)) == 10
    assert len(federal_holidays(2026)) == 11
    # 2027 has twelve: New Year's Day 2028 is a Saturday, observed on 2027-12-31
    assert len(federal_holidays(2027)) == 12
    assert date(2027, 12, 31) in federal_holidays(2027)


def test_working_days_skip_weekends_and_holidays() -> None:
    cal = WorkCalendar()
    # Friday 2025-12-19 + 10 working days: Christmas and New Year's Day do not count.
    assert cal.add_working_days(date(2025, 12, 19), 10) == date(2026, 1, 6)
    # a start on a Saturday: day 1 is the Monday
    assert cal.add_working_days(date(2026, 3, 7), 1) == date(2026, 3, 9)
    assert cal.working_days_between(date(2025, 12, 19), date(2026, 1, 6)) == 10
    assert cal.working_days_between(date(2026, 1, 6), date(2025, 12, 19)) == -10
    assert not cal.is_working_day(date(2026, 7, 3))
    assert cal.is_working_day(date(2026, 7, 6))


def test_configured_holidays_every_year_and_once() -> None:
    cal = WorkCalendar.build(["03-31", "2026-11-27"])
    assert not cal.is_working_day(date(2026, 3, 31))    # a Tuesday
    assert not cal.is_working_day(date(2024, 4, 1))     # 2024-03-31 is a Sunday
    assert not cal.is_working_day(date(2026, 11, 27))
    assert cal.is_working_day(date(2027, 11, 26))       # the one-off date does not repeat
    assert WorkCalendar().is_working_day(date(2026, 3, 31))
    no_federal = WorkCalendar.build([], federal=False)
    assert no_federal.is_working_day(date(2026, 12, 25))


@pytest.mark.parametrize(("text", "error"), [
    ("3-31", "MM-DD"), ("02-30", "day is out of range"), ("2026-13-01", "month must be"),
    ("tomorrow", "MM-DD")])
def test_bad_holidays_are_refused(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_holiday(text)


def test_periods() -> None:
    cal = WorkCalendar()
    assert parse_period("10 working days") == Period(10, "working_days")
    assert parse_period("75 days").due(date(2026, 3, 2), cal) == date(2026, 5, 16)
    assert parse_period("6 weeks").due(date(2026, 11, 20), cal) == date(2027, 1, 1)
    # months keep the day of the month, clamped to the month's end
    assert parse_period("3 months").due(date(2026, 11, 30), cal) == date(2027, 2, 28)
    assert parse_period("1 month").due(date(2028, 1, 31), cal) == date(2028, 2, 29)
    assert parse_period("12 months").due(date(2026, 5, 4), cal) == date(2027, 5, 4)
    assert str(parse_period("1 working day")) == "1 working day"
    assert str(parse_period("3 Months")) == "3 months"


@pytest.mark.parametrize("text", ["", "10", "ten days", "0 days", "10 fortnights", "-1 days"])
def test_bad_periods_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="N working days"):
        parse_period(text)
