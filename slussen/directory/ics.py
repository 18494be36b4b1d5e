"""The iCalendar feed (`/aktiviteter.ics`): one VEVENT per activity with its RRULE, RDATE and
EXDATE, local times with TZID Europe/Stockholm and the zone's VTIMEZONE, so calendar programs show
the same occasions as the public calendar. Recurring activities stay rules, never expanded lists.

The text is written here (RFC 5545 escaping, 75-octet line folding, CRLF) rather than through the
icalendar library's object model, which costs about a millisecond an event: the feed of a whole
region's 2,000 activities must build in well under a second. The tests parse every feed with the
icalendar library and expand it with dateutil to check it round-trips the occasions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from slussen.config import local_zone
from slussen.directory.models import Activity
from slussen.directory.services import schedule_of

PRODID = "-//Slussen//Aktivitetskalender//SV"
# The VTIMEZONE below describes this one zone, so the feed names it itself; it must equal
# Settings.timezone (a region elsewhere would need its own VTIMEZONE block).
TZID = "Europe/Stockholm"

#: Sweden's zone with the EU rules (since 1996) as yearly rules: compact and valid after 2038.
VTIMEZONE = (
    "BEGIN:VTIMEZONE",
    f"TZID:{TZID}",
    "BEGIN:DAYLIGHT",
    "TZOFFSETFROM:+0100",
    "TZOFFSETTO:+0200",
    "TZNAME:CEST",
    "DTSTART:19700329T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU",
    "END:DAYLIGHT",
    "BEGIN:STANDARD",
    "TZOFFSETFROM:+0200",
    "TZOFFSETTO:+0100",
    "TZNAME:CET",
    "DTSTART:19701025T030000",
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU",
    "END:STANDARD",
    "END:VTIMEZONE",
)


def escape(text: str) -> str:
    """A TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and newlines escaped."""
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def fold(line: str) -> str:
    """Fold a content line at 75 octets (RFC 5545 3.1) without splitting a UTF-8 character."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    parts: list[str] = []
    start, limit = 0, 75
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1
        parts.append(data[start:end].decode("utf-8"))
        start, limit = end, 74
    return "\r\n ".join(parts)


def _local(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S")


def _until_utc(rule: str) -> str:
    """RFC 5545: with a TZID start, UNTIL must be in UTC. Stored rules end a local day."""
    if ";UNTIL=" not in rule:
        return rule
    head, _, until = rule.partition(";UNTIL=")
    local = dt.datetime.strptime(until, "%Y%m%dT%H%M%S").replace(tzinfo=local_zone())
    return f"{head};UNTIL={local.astimezone(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}"


def activity_lines(
    activity: Activity, url: str, stamp: str, category_names: Mapping[str, str]
) -> list[str]:
    """The VEVENT lines of one published activity (unfolded); its categories by their names
    in `category_names` (a person reads them in their calendar), never by their codes."""
    revision = activity.published
    assert revision is not None
    schedule = schedule_of(revision)
    start = schedule.local_start
    lines = [
        "BEGIN:VEVENT",
        f"UID:{activity.public_id}@slussen",
        f"DTSTAMP:{stamp}",
        f"SUMMARY:{escape(revision.title)}",
        f"DTSTART;TZID={TZID}:{_local(start)}",
        f"DTEND;TZID={TZID}:{_local(start + schedule.duration)}",
    ]
    if revision.rrule:
        lines.append(f"RRULE:{_until_utc(revision.rrule)}")
    if schedule.extra_dates:
        dates = ",".join(
            _local(dt.datetime.combine(d, schedule.start_time)) for d in schedule.extra_dates
        )
        lines.append(f"RDATE;TZID={TZID}:{dates}")
    if schedule.exception_dates:
        dates = ",".join(
            _local(dt.datetime.combine(d, schedule.start_time)) for d in schedule.exception_dates
        )
        lines.append(f"EXDATE;TZID={TZID}:{dates}")
    place = ", ".join(
        p for p in (revision.place_name, revision.street, revision.postcode, revision.town) if p
    )
    if place:
        lines.append(f"LOCATION:{escape(place)}")
    text = [revision.description, f"Arrangör: {activity.organisation.name}"]
    text.append("Kostnadsfritt" if revision.is_free else f"Kostnad: {revision.cost_sek} kr")
    if revision.has_companion:
        text.append("Någon kan möta upp och följa med första gången.")
    if revision.accessibility_notes:
        text.append(f"Tillgänglighet: {revision.accessibility_notes}")
    if revision.contact_name or revision.contact_phone:
        text.append(f"Kontakt: {revision.contact_name} {revision.contact_phone}".strip())
    lines.append("DESCRIPTION:" + escape("\n".join(t for t in text if t)))
    if revision.categories:
        names = (category_names.get(code, code) for code in revision.categories)
        lines.append("CATEGORIES:" + ",".join(escape(name) for name in names))
    if url:
        lines.append(f"URL:{url}")
    lines.append("END:VEVENT")
    return lines


def build_calendar(
    activities: Iterable[Activity],
    url_for_activity: dict[int, str] | None = None,
    category_names: Mapping[str, str] | None = None,
) -> bytes:
    """The iCalendar text of `activities` (published ones; others are skipped), categories
    named by `category_names` (code → name)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    urls = url_for_activity or {}
    names = category_names or {}
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "X-WR-CALNAME:Aktiviteter",
        f"X-WR-TIMEZONE:{TZID}",
        *VTIMEZONE,
    ]
    for activity in activities:
        if activity.published is None or activity.is_withdrawn:
            continue
        lines.extend(activity_lines(activity, urls.get(activity.id, ""), stamp, names))
    lines.append("END:VCALENDAR")
    return ("\r\n".join(fold(line) for line in lines) + "\r\n").encode("utf-8")
