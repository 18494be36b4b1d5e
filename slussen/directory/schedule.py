"""Schedules: one-off dates and RFC 5545 recurrence rules, expanded in Stockholm local time.

A schedule is a first date and a start time (local clock time in Europe/Stockholm), a duration, an
optional RRULE (`FREQ=WEEKLY;INTERVAL=2;BYDAY=TU`), extra one-off dates (RDATE) and exception dates
(EXDATE). Expansion works on local wall-clock times and attaches the zone afterwards, so a 10.00
walk stays at 10.00 across the summer-time change. As in RFC 5545, the first date is always an
occasion (unless it is an exception), whether or not the rule would produce it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from dateutil.rrule import rrule, rruleset, rrulestr

from slussen.config import local_zone
from slussen.text import is_digits

#: The rule parts an activity may use; times of day come from the start time, not the rule.
ALLOWED_PARTS = {
    "FREQ",
    "INTERVAL",
    "COUNT",
    "UNTIL",
    "BYDAY",
    "BYMONTHDAY",
    "BYMONTH",
    "BYSETPOS",
    "BYWEEKNO",
    "WKST",
}
FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
MAX_COUNT = 1000
MAX_INTERVAL = 366
#: Occasions further ahead than this are not expanded (the calendar and feed look one year on).
MAX_OCCASIONS = 2000
WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
WEEKDAY_NAMES_SV = ("måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag")
ORDINALS_SV = {1: "första", 2: "andra", 3: "tredje", 4: "fjärde", -1: "sista"}
_UNTIL_RE = re.compile(r"^(\d{8})(T(\d{6})Z?)?$")


class ScheduleError(ValueError):
    """A schedule cannot be used; the message says why in Swedish."""


@dataclass(frozen=True)
class Schedule:
    first_date: dt.date
    start_time: dt.time
    duration_minutes: int = 60
    rrule: str = ""
    extra_dates: tuple[dt.date, ...] = field(default_factory=tuple)
    exception_dates: tuple[dt.date, ...] = field(default_factory=tuple)

    @property
    def duration(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.duration_minutes)

    @property
    def local_start(self) -> dt.datetime:
        """The first occasion as a naive local datetime."""
        return dt.datetime.combine(self.first_date, self.start_time)


@dataclass(frozen=True)
class Occasion:
    """One dated occasion, as aware datetimes in Europe/Stockholm."""

    starts_at: dt.datetime
    ends_at: dt.datetime


def parse_dates(text: str | Iterable[str]) -> tuple[dt.date, ...]:
    """ISO dates from a text (separated by commas, spaces or lines) or a list; sorted, unique."""
    parts = re.split(r"[\s,;]+", text) if isinstance(text, str) else list(text)
    dates: set[dt.date] = set()
    for part in parts:
        part = part.strip()
        if not part:
            continue
        try:
            dates.add(dt.date.fromisoformat(part))
        except ValueError:
            raise ScheduleError(
                f"”{part[:20]}” är inte ett datum. Skriv datum som 2026-03-05."
            ) from None
    return tuple(sorted(dates))


def normalise_rrule(text: str) -> str:
    """Check an RRULE value and return it in a canonical form; raise ScheduleError if unusable.

    Refused: unknown or time-of-day parts (BYHOUR…), frequencies finer than a day, a COUNT over
    1000, an INTERVAL over 366, and anything dateutil cannot read. UNTIL becomes the end of that
    local day (`UNTIL=20260630T235959`), whatever form it was given in.
    """
    value = text.strip().upper()
    if value.startswith("RRULE:"):
        value = value[len("RRULE:") :]
    if not value:
        return ""
    if len(value) > 500:
        raise ScheduleError("Upprepningsregeln är för lång.")
    parts: dict[str, str] = {}
    for chunk in value.split(";"):
        if not chunk:
            continue
        key, sep, part_value = chunk.partition("=")
        if not sep or not part_value:
            raise ScheduleError(f"Delen ”{chunk[:30]}” i upprepningsregeln saknar ett värde.")
        if key not in ALLOWED_PARTS:
            raise ScheduleError(f"Upprepningsregeln får inte innehålla {key[:20]}.")
        if key in parts:
            raise ScheduleError(f"{key} står två gånger i upprepningsregeln.")
        parts[key] = part_value
    freq = parts.get("FREQ")
    if freq not in FREQUENCIES:
        raise ScheduleError(
            "Upprepningsregeln måste börja med FREQ=DAILY, WEEKLY, MONTHLY eller YEARLY."
        )
    if "COUNT" in parts and "UNTIL" in parts:
        raise ScheduleError("Ange antingen COUNT eller UNTIL, inte båda.")
    for key, limit in (("COUNT", MAX_COUNT), ("INTERVAL", MAX_INTERVAL)):
        if key in parts:
            if not is_digits(parts[key]) or not 1 <= int(parts[key]) <= limit:
                raise ScheduleError(f"{key} måste vara ett heltal mellan 1 och {limit}.")
            parts[key] = str(int(parts[key]))
    if "UNTIL" in parts:
        match = _UNTIL_RE.match(parts["UNTIL"])
        if not match:
            raise ScheduleError("UNTIL måste vara ett datum som 20260630.")
        until = _date_or_error(match.group(1))
        if match.group(2) and match.group(2).endswith("Z"):
            moment = dt.datetime.strptime(match.group(1) + match.group(3), "%Y%m%d%H%M%S")
            until = moment.replace(tzinfo=dt.UTC).astimezone(local_zone()).date()
        parts["UNTIL"] = until.strftime("%Y%m%d") + "T235959"
    canonical = ";".join(f"{key}={parts[key]}" for key in _ordered(parts))
    try:
        _parse_rule(canonical, dt.datetime(2026, 1, 1, 10, 0))
    except (ValueError, TypeError, OverflowError, IndexError) as exc:
        raise ScheduleError(f"Upprepningsregeln kunde inte läsas ({exc}).") from None
    return canonical


def _date_or_error(text: str) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise ScheduleError(f"{text} är inte ett giltigt datum.") from None


def _ordered(parts: dict[str, str]) -> list[str]:
    order = ["FREQ", "INTERVAL", "BYMONTH", "BYWEEKNO", "BYMONTHDAY", "BYDAY", "BYSETPOS"]
    order += ["WKST", "COUNT", "UNTIL"]
    return [key for key in order if key in parts]


@lru_cache(maxsize=8192)
def _parse_rule(value: str, dtstart: dt.datetime) -> rrule:
    rule = rrulestr("RRULE:" + value, dtstart=dtstart, forceset=False)
    if not isinstance(rule, rrule):  # pragma: no cover - forceset=False with one RRULE
        raise ValueError("not a single rule")
    return rule


def check_schedule(schedule: Schedule) -> Schedule:
    """Refuse a schedule that cannot be shown: a bad duration, rule or too many extra dates."""
    if not 1 <= schedule.duration_minutes <= 24 * 60:
        raise ScheduleError("Längden måste vara mellan 1 minut och 24 timmar.")
    if len(schedule.extra_dates) > 200 or len(schedule.exception_dates) > 200:
        raise ScheduleError("Ange högst 200 extra datum och 200 undantag.")
    if not dt.date(2000, 1, 1) <= schedule.first_date <= dt.date(2100, 12, 31):
        raise ScheduleError("Första datumet måste ligga mellan år 2000 och 2100.")
    for day in schedule.extra_dates:
        if not dt.date(2000, 1, 1) <= day <= dt.date(2100, 12, 31):
            raise ScheduleError("Extra datum måste ligga mellan år 2000 och 2100.")
    rule = normalise_rrule(schedule.rrule)
    if rule != schedule.rrule:
        raise ScheduleError("Upprepningsregeln är inte normaliserad.")
    return schedule


def _local(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=local_zone())


def occasions(schedule: Schedule, start: dt.datetime, end: dt.datetime) -> list[Occasion]:
    """The occasions that start in [start, end), in order; at most MAX_OCCASIONS.

    `start` and `end` are aware datetimes. The rule is expanded on naive local times and the zone
    attached afterwards, so the clock time stays the same across the summer-time change.
    """
    if end <= start:
        return []
    local_from = start.astimezone(local_zone()).replace(tzinfo=None) - dt.timedelta(days=1)
    local_to = end.astimezone(local_zone()).replace(tzinfo=None) + dt.timedelta(days=1)
    rules = rruleset()
    first = schedule.local_start
    rules.rdate(first)
    if schedule.rrule:
        rules.rrule(_parse_rule(schedule.rrule, first))
    for day in schedule.extra_dates:
        rules.rdate(dt.datetime.combine(day, schedule.start_time))
    for day in schedule.exception_dates:
        rules.exdate(dt.datetime.combine(day, schedule.start_time))
    found: list[Occasion] = []
    for naive in rules.xafter(local_from, inc=True):
        if naive > local_to or len(found) >= MAX_OCCASIONS:
            break
        begins = _local(naive)
        if start <= begins < end:
            found.append(Occasion(begins, _local(naive + schedule.duration)))
    return found


def next_occasions(schedule: Schedule, after: dt.datetime, count: int) -> list[Occasion]:
    """The next `count` occasions starting at or after `after` (looking at most two years on)."""
    found = occasions(schedule, after, after + dt.timedelta(days=731))
    return found[: max(count, 0)]


# --- Building rules from the activity form and describing them in Swedish ------------------

REPEATS = ("none", "weekly", "biweekly", "monthly", "custom")


def nth_weekday(day: dt.date) -> int:
    """Which occurrence of its weekday `day` is in its month: 1–4, or -1 for the last."""
    n = (day.day - 1) // 7 + 1
    last = (day + dt.timedelta(days=7)).month != day.month
    return -1 if n == 5 or (n == 4 and last and day.day > 28) else n


def build_rrule(
    repeat: str,
    first_date: dt.date,
    weekdays: Iterable[int] = (),
    until: dt.date | None = None,
    custom: str = "",
) -> str:
    """The RRULE for the form's choice: none, weekly, every second week, monthly on the same
    weekday of the month (e.g. the second Tuesday), or a custom rule typed by the user."""
    days = sorted(set(weekdays)) or [first_date.weekday()]
    if repeat == "none":
        return ""
    if repeat == "custom":
        rule = normalise_rrule(custom)
        if not rule:
            raise ScheduleError("Skriv en upprepningsregel, till exempel FREQ=WEEKLY;BYDAY=TU.")
    elif repeat in ("weekly", "biweekly"):
        byday = ",".join(WEEKDAY_CODES[d] for d in days)
        interval = ";INTERVAL=2" if repeat == "biweekly" else ""
        rule = f"FREQ=WEEKLY{interval};BYDAY={byday}"
    elif repeat == "monthly":
        rule = f"FREQ=MONTHLY;BYDAY={nth_weekday(first_date)}{WEEKDAY_CODES[first_date.weekday()]}"
    else:
        raise ScheduleError("Välj hur ofta aktiviteten återkommer.")
    if until is not None and "UNTIL=" not in rule and "COUNT=" not in rule:
        if until < first_date:
            raise ScheduleError("Slutdatumet ligger före första datumet.")
        rule += f";UNTIL={until.strftime('%Y%m%d')}"
    return normalise_rrule(rule)


_SIMPLE_WEEKLY = re.compile(
    r"^FREQ=WEEKLY(;INTERVAL=2)?;BYDAY=((?:MO|TU|WE|TH|FR|SA|SU)(?:,(?:MO|TU|WE|TH|FR|SA|SU))*)$"
)
_SIMPLE_MONTHLY = re.compile(r"^FREQ=MONTHLY;BYDAY=(-1|1|2|3|4)(MO|TU|WE|TH|FR|SA|SU)$")


def split_rrule(rule: str) -> tuple[str, list[int], dt.date | None, str]:
    """The form's view of a stored rule: (repeat, weekdays, until, custom text)."""
    if not rule:
        return "none", [], None, ""
    body, until = rule, None
    match = re.search(r";UNTIL=(\d{8})T235959$", rule)
    if match:
        body = rule[: match.start()]
        until = dt.datetime.strptime(match.group(1), "%Y%m%d").date()
    weekly = _SIMPLE_WEEKLY.match(body)
    if weekly:
        days = [WEEKDAY_CODES.index(code) for code in weekly.group(2).split(",")]
        return ("biweekly" if weekly.group(1) else "weekly"), days, until, ""
    if _SIMPLE_MONTHLY.match(body):
        return "monthly", [], until, ""
    return "custom", [], None, rule


def describe(schedule: Schedule) -> str:
    """The schedule in plain Swedish: "Varannan tisdag", "Andra torsdagen i månaden"…"""
    rule = schedule.rrule
    if not rule:
        return "Enstaka tillfälle" if not schedule.extra_dates else "Enstaka tillfällen"
    repeat, days, until, _custom = split_rrule(rule)
    if repeat in ("weekly", "biweekly"):
        names = [WEEKDAY_NAMES_SV[d] for d in days]
        joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " och " + names[-1]
        text = ("Varje " if repeat == "weekly" else "Varannan ") + joined
    elif repeat == "monthly":
        match = _SIMPLE_MONTHLY.match(rule.split(";UNTIL=")[0])
        assert match is not None
        weekday = WEEKDAY_NAMES_SV[WEEKDAY_CODES.index(match.group(2))]
        text = f"{ORDINALS_SV[int(match.group(1))].capitalize()} {weekday}en i månaden"
    else:
        text = "Återkommande, se tillfällena"
    if until is not None:
        text += f" till och med {until.day}/{until.month} {until.year}"
    return text


def time_of_day(minute: int) -> str:
    """morning (before 12.00), afternoon (12.00–16.59) or evening (17.00 and later)."""
    if minute < 12 * 60:
        return "morning"
    if minute < 17 * 60:
        return "afternoon"
    return "evening"


TIME_OF_DAY_MINUTES = {
    "morning": (0, 12 * 60),
    "afternoon": (12 * 60, 17 * 60),
    "evening": (17 * 60, 24 * 60),
}
