"""Schedule expansion against known dates: weekly, every second week, monthly on the nth
weekday, exceptions, extra dates, and the summer-time change; bad rules get a clear message."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slussen.config import local_zone
from slussen.directory.schedule import (
    Schedule,
    ScheduleError,
    build_rrule,
    describe,
    next_occasions,
    normalise_rrule,
    nth_weekday,
    occasions,
    split_rrule,
)


def local(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=local_zone())


def starts(schedule: Schedule, start: dt.datetime, end: dt.datetime) -> list[str]:
    return [o.starts_at.strftime("%Y-%m-%d %H:%M%z") for o in occasions(schedule, start, end)]


def test_weekly_keeps_the_local_clock_time_across_the_spring_change() -> None:
    # Summer time starts on Sunday 29 March 2026 (02.00 → 03.00).
    walk = Schedule(dt.date(2026, 3, 17), dt.time(10, 0), 90, "FREQ=WEEKLY;BYDAY=TU")
    assert starts(walk, local(2026, 3, 1), local(2026, 4, 15)) == [
        "2026-03-17 10:00+0100",
        "2026-03-24 10:00+0100",
        "2026-03-31 10:00+0200",
        "2026-04-07 10:00+0200",
        "2026-04-14 10:00+0200",
    ]
    first_summer = occasions(walk, local(2026, 3, 30), local(2026, 4, 1))[0]
    assert first_summer.starts_at.astimezone(dt.UTC).hour == 8
    assert first_summer.ends_at - first_summer.starts_at == dt.timedelta(minutes=90)


def test_an_occasion_on_the_autumn_change_night_keeps_its_clock_time() -> None:
    # Winter time starts on Sunday 25 October 2026 (03.00 → 02.00).
    cafe = Schedule(dt.date(2026, 10, 11), dt.time(14, 0), 120, "FREQ=WEEKLY;BYDAY=SU")
    assert starts(cafe, local(2026, 10, 17), local(2026, 11, 2)) == [
        "2026-10-18 14:00+0200",
        "2026-10-25 14:00+0100",
        "2026-11-01 14:00+0100",
    ]


def test_every_second_week_with_an_exception() -> None:
    fishing = Schedule(
        dt.date(2026, 1, 8),
        dt.time(17, 30),
        120,
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=TH",
        exception_dates=(dt.date(2026, 2, 5),),
    )
    assert [
        o.starts_at.date().isoformat()
        for o in occasions(fishing, local(2026, 1, 1), local(2026, 3, 1))
    ] == [
        "2026-01-08",
        "2026-01-22",
        "2026-02-19",
    ]


def test_monthly_on_the_second_tuesday_and_the_last_friday() -> None:
    second_tuesday = Schedule(dt.date(2026, 1, 13), dt.time(13, 0), 60, "FREQ=MONTHLY;BYDAY=2TU")
    assert [
        o.starts_at.date().isoformat()
        for o in occasions(second_tuesday, local(2026, 1, 1), local(2026, 5, 1))
    ] == [
        "2026-01-13",
        "2026-02-10",
        "2026-03-10",
        "2026-04-14",
    ]
    last_friday = Schedule(dt.date(2026, 1, 30), dt.time(18, 0), 60, "FREQ=MONTHLY;BYDAY=-1FR")
    assert [
        o.starts_at.date().isoformat()
        for o in occasions(last_friday, local(2026, 1, 1), local(2026, 4, 1))
    ] == [
        "2026-01-30",
        "2026-02-27",
        "2026-03-27",
    ]


def test_until_is_inclusive_of_the_last_day_and_extra_dates_are_added() -> None:
    rule = build_rrule("weekly", dt.date(2026, 5, 4), [0], dt.date(2026, 5, 18))
    assert rule == "FREQ=WEEKLY;BYDAY=MO;UNTIL=20260518T235959"
    course = Schedule(
        dt.date(2026, 5, 4), dt.time(18, 0), 60, rule, extra_dates=(dt.date(2026, 6, 1),)
    )
    assert [
        o.starts_at.date().isoformat()
        for o in occasions(course, local(2026, 5, 1), local(2026, 7, 1))
    ] == [
        "2026-05-04",
        "2026-05-11",
        "2026-05-18",
        "2026-06-01",
    ]


def test_one_off_date_and_next_occasions() -> None:
    cinema = Schedule(dt.date(2026, 3, 5), dt.time(14, 0), 120)
    assert starts(cinema, local(2026, 3, 1), local(2026, 4, 1)) == ["2026-03-05 14:00+0100"]
    assert next_occasions(cinema, local(2026, 3, 6), 3) == []
    weekly = Schedule(dt.date(2026, 3, 2), dt.time(9, 0), 60, "FREQ=WEEKLY;BYDAY=MO,TH")
    assert [o.starts_at.day for o in next_occasions(weekly, local(2026, 3, 4), 3)] == [5, 9, 12]


def test_monthly_form_choice_uses_the_weekday_of_the_month() -> None:
    assert nth_weekday(dt.date(2026, 3, 10)) == 2
    assert nth_weekday(dt.date(2026, 3, 31)) == -1
    assert build_rrule("monthly", dt.date(2026, 3, 10)) == "FREQ=MONTHLY;BYDAY=2TU"
    assert describe(Schedule(dt.date(2026, 3, 10), dt.time(10), 60, "FREQ=MONTHLY;BYDAY=2TU")) == (
        "Andra tisdagen i månaden"
    )
    assert split_rrule("FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH") == ("biweekly", [1, 3], None, "")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("FREQ=HOURLY", "FREQ=DAILY"),
        ("FREQ=WEEKLY;BYHOUR=10", "BYHOUR"),
        ("FREQ=WEEKLY;COUNT=5000", "COUNT"),
        ("FREQ=WEEKLY;COUNT=²", "COUNT"),
        ("FREQ=WEEKLY;INTERVAL=³", "INTERVAL"),
        ("FREQ=WEEKLY;BYDAY=XX", "kunde inte läsas"),
        ("FREQ=WEEKLY;UNTIL=2026", "UNTIL"),
        ("BYDAY=MO", "FREQ"),
        ("FREQ=WEEKLY;COUNT=3;UNTIL=20260101", "antingen"),
    ],
)
def test_bad_rules_get_a_swedish_message(rule: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        normalise_rrule(rule)


def test_until_in_utc_becomes_the_local_day() -> None:
    assert normalise_rrule("rrule:freq=weekly;until=20260630T220000Z") == (
        "FREQ=WEEKLY;UNTIL=20260701T235959"
    )


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=80)
    | st.builds(
        lambda parts: ";".join(parts),
        st.lists(
            st.sampled_from(
                [
                    "FREQ=WEEKLY",
                    "FREQ=MONTHLY",
                    "FREQ=DAILY",
                    "FREQ=YEARLY",
                    "INTERVAL=2",
                    "INTERVAL=0",
                    "BYDAY=MO,WE",
                    "BYDAY=2TU",
                    "BYDAY=-1FR",
                    "BYDAY=9XX",
                    "BYMONTHDAY=31",
                    "BYMONTHDAY=-1",
                    "BYMONTH=2",
                    "BYSETPOS=-1",
                    "COUNT=3",
                    "UNTIL=20270101",
                    "UNTIL=20200101",
                    "WKST=SU",
                    "BYWEEKNO=53",
                ]
            ),
            max_size=5,
        ),
    ),
    first=st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31)),
    at=st.times(),
)
def test_any_rule_gives_a_message_or_valid_occasions(
    text: str, first: dt.date, at: dt.time
) -> None:
    try:
        rule = normalise_rrule(text)
    except ScheduleError as exc:
        assert str(exc)
        return
    schedule = Schedule(first, at.replace(microsecond=0, tzinfo=None), 60, rule)
    window_start = dt.datetime.combine(first, dt.time(0), tzinfo=local_zone())
    found = occasions(schedule, window_start, window_start + dt.timedelta(days=120))
    assert all(window_start <= o.starts_at for o in found)
    assert found == sorted(found, key=lambda o: o.starts_at)
