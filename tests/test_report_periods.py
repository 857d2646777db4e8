"""The period shortcuts every report with a period offers: today, this week, this month,
last month, this quarter and this year, as the dates its period fields take."""

from __future__ import annotations

import datetime as dt

from crmkit.reports import SINCE_UNTIL, PeriodFields, Report, period_shortcuts

D = dt.date
START_END = PeriodFields("start", "end", end_inclusive=True)


def _periods(today, first_weekday=0, fields=SINCE_UNTIL):
    return {s.label: s.params(fields) for s in period_shortcuts(today, first_weekday)}


def test_on_new_years_day_last_month_is_december_and_the_week_began_in_december():
    """1 January 2026 is a Thursday: a Russian week (from Monday) began on 29 December."""
    periods = _periods(D(2026, 1, 1))
    assert list(periods) == [
        "Today",
        "This week",
        "This month",
        "Last month",
        "This quarter",
        "This year",
    ]
    assert periods["Today"] == {"since": "2026-01-01", "until": "2026-01-02"}
    assert periods["This week"] == {"since": "2025-12-29", "until": "2026-01-05"}
    assert periods["This month"] == {"since": "2026-01-01", "until": "2026-02-01"}
    assert periods["Last month"] == {"since": "2025-12-01", "until": "2026-01-01"}
    assert periods["This quarter"] == {"since": "2026-01-01", "until": "2026-04-01"}
    assert periods["This year"] == {"since": "2026-01-01", "until": "2027-01-01"}


def test_an_inclusive_end_is_the_last_day_of_the_period():
    """A report whose end day counts (finance's ``start``/``end``) gets the last day."""
    periods = _periods(D(2026, 1, 1), fields=START_END)
    assert periods["Today"] == {"start": "2026-01-01", "end": "2026-01-01"}
    assert periods["Last month"] == {"start": "2025-12-01", "end": "2025-12-31"}
    assert periods["This year"] == {"start": "2026-01-01", "end": "2026-12-31"}
    # the leap day ends February 2028
    assert _periods(D(2028, 3, 31), fields=START_END)["Last month"] == {
        "start": "2028-02-01",
        "end": "2028-02-29",
    }


def test_the_week_starts_on_the_locales_first_day():
    """Monday 23 November 2026: a Monday week starts that day, a Sunday week the day
    before; on Sunday 29 November a Monday week is the one of the 23rd, a Sunday week
    starts that Sunday."""
    monday, sunday = D(2026, 11, 23), D(2026, 11, 29)
    assert _periods(monday, 0)["This week"] == {"since": "2026-11-23", "until": "2026-11-30"}
    assert _periods(monday, 6)["This week"] == {"since": "2026-11-22", "until": "2026-11-29"}
    assert _periods(sunday, 0)["This week"] == {"since": "2026-11-23", "until": "2026-11-30"}
    assert _periods(sunday, 6)["This week"] == {"since": "2026-11-29", "until": "2026-12-06"}


def test_on_the_last_day_of_the_year():
    periods = _periods(D(2026, 12, 31))
    assert periods["This month"] == {"since": "2026-12-01", "until": "2027-01-01"}
    assert periods["Last month"] == {"since": "2026-11-01", "until": "2026-12-01"}
    assert periods["This quarter"] == {"since": "2026-10-01", "until": "2027-01-01"}
    assert periods["This week"] == {"since": "2026-12-28", "until": "2027-01-04"}


def test_a_report_with_since_and_until_has_the_cores_period_others_declare_theirs():
    def build(work, params):
        raise AssertionError

    assert Report("a", "A", build, params={"since": "", "until": ""}).period == SINCE_UNTIL
    assert Report("b", "B", build, params={"weeks": ""}).period is None
    declared = Report("c", "C", build, params={"start": "date", "end": "date"}, period=START_END)
    assert declared.period == START_END
