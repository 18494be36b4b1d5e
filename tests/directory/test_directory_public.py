"""The public pages: calendar with filters, activity page, print list and PDF, the iCalendar feed
(parsed by the icalendar library, occasions round-trip), and no server error for any query."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import pytest
from dateutil.rrule import rruleset, rrulestr
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar import Calendar
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.config import local_zone
from slussen.directory.models import ActivityOccasion
from slussen.directory.schedule import WEEKDAY_CODES
from tests.directory.conftest import Directory, today

PARAMS = ["period", "fran", "till", "kategori", "veckodag", "tid", "gratis", "omrade", "alder",
          "foljeslagare", "typ", "sida"]  # fmt: skip


def _weekday_code(offset: int = 0) -> str:
    return WEEKDAY_CODES[(today() + dt.timedelta(days=offset)).weekday()]


def test_calendar_lists_this_weeks_occasions_with_filters(
    backend: str, client: FlaskClient, directory: Directory, publish: Callable[..., Any]
) -> None:
    publish(
        title="Stavgång",
        categories=["sport_exercise"],
        has_companion=True,
        start_time=dt.time(9, 0),
    )
    publish(
        directory.org_b,
        title="Pickleball",
        categories=["sport_exercise"],
        cost_sek=40,
        area="Skarptorp",
        start_time=dt.time(18, 30),
        age_groups=["adults"],
    )
    publish(
        title="Stickcafé", categories=["crafts"], start_time=dt.time(13, 0), age_groups=["seniors"]
    )

    def titles(query: str) -> set[str]:
        page = client.get("/aktiviteter" + query).get_data(as_text=True)
        return {t for t in ("Stavgång", "Pickleball", "Stickcafé") if t in page}

    assert titles("") == {"Stavgång", "Pickleball", "Stickcafé"}
    assert titles("?kategori=crafts") == {"Stickcafé"}
    assert titles("?gratis=1") == {"Stavgång", "Stickcafé"}
    assert titles("?foljeslagare=1") == {"Stavgång"}
    assert titles("?omrade=Skarptorp") == {"Pickleball"}
    assert titles("?tid=evening") == {"Pickleball"}
    assert titles("?tid=morning&tid=afternoon") == {"Stavgång", "Stickcafé"}
    assert titles("?alder=seniors") == {"Stavgång", "Stickcafé"}
    assert titles(f"?veckodag={(today().weekday() + 1) % 7}") == set()
    assert titles(f"?veckodag={today().weekday()}") == {"Stavgång", "Pickleball", "Stickcafé"}
    assert titles("?period=next_week") == {"Stavgång", "Pickleball", "Stickcafé"}
    page = client.get("/aktiviteter").get_data(as_text=True)
    assert 'lang="sv"' in page and '<label for="kategori">' in page
    assert "kl." not in page or "09.00" in page
    assert "09.00–10.30" in page


def test_bad_filters_get_a_message_and_still_a_calendar(client: FlaskClient) -> None:
    response = client.get(
        "/aktiviteter?period=range&fran=igår&till=2026-13-40&kategori=okänd&veckodag=8"
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Skriv datumet som 2026-03-05." in page
    assert "Okänt intresseområde." in page and "Okänd veckodag." in page


def test_activity_page_and_print_list_and_pdf(
    client: FlaskClient, directory: Directory, publish: Callable[..., Any]
) -> None:
    revision = publish(
        title="Språkcafé på biblioteket",
        accessibility_notes="Hiss finns, hörslinga i rummet.",
        contact_name="Åsa Exempel",
        contact_phone="070-000 00 01",
    )
    page = client.get(f"/aktiviteter/{revision.activity_id}").get_data(as_text=True)
    assert "Språkcafé på biblioteket" in page and "Hiss finns" in page
    weekday = ("måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag")
    assert f"Varje {weekday[today().weekday()]}" in page
    printed = client.get("/aktiviteter/utskrift").get_data(as_text=True)
    assert "Språkcafé på biblioteket" in printed and "070-000 00 01" in printed
    pdf = client.get("/aktiviteter/utskrift.pdf")
    assert pdf.mimetype == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.data)).pages)
    assert "Språkcafé på biblioteket" in text and "Åsa Exempel" in text
    assert b"/FontFile2" in pdf.data  # the TrueType font is embedded
    assert client.get("/aktiviteter/99999").status_code == 404


def _expand_event(event: Any, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Expand a VEVENT with dateutil from what the feed says (independent of Slussen's code)."""
    first = event.decoded("dtstart")
    rules = rruleset()
    rules.rdate(first)
    if "RRULE" in event:
        rules.rrule(rrulestr(event["RRULE"].to_ical().decode(), dtstart=first))
    for name, add in (("RDATE", rules.rdate), ("EXDATE", rules.exdate)):
        values = event.get(name)
        for value in values if isinstance(values, list) else [values] if values else []:
            for item in value.dts:
                add(item.dt)
    return list(rules.between(start, end, inc=True))


def test_ics_feed_parses_and_round_trips_the_occasions(
    backend: str,
    session: Session,
    client: FlaskClient,
    directory: Directory,
    publish: Callable[..., Any],
) -> None:
    weekly = publish(
        title="Promenad, varannan vecka",
        rrule="FREQ=WEEKLY;INTERVAL=2;BYDAY=" + _weekday_code(),
        exception_dates=[(today() + dt.timedelta(days=28)).isoformat()],
        extra_dates=[(today() + dt.timedelta(days=3)).isoformat()],
    )
    monthly = publish(
        directory.org_b,
        title="Sconesfrukost",
        first_date=today() + dt.timedelta(days=1),
        rrule="FREQ=MONTHLY;BYDAY=-1"
        + _weekday_code(1)
        + ";UNTIL="
        + (today() + dt.timedelta(days=200)).strftime("%Y%m%d")
        + "T235959",
        cost_sek=30,
    )
    publish(title="Seniorbio", rrule="", first_date=today() + dt.timedelta(days=10))
    response = client.get("/aktiviteter.ics")
    assert response.status_code == 200 and response.mimetype == "text/calendar"
    calendar = Calendar.from_ical(response.data)
    assert calendar.walk("VTIMEZONE")[0]["TZID"] == "Europe/Stockholm"
    events = {str(e["UID"]): e for e in calendar.walk("VEVENT")}
    assert len(events) == 3
    window = (
        dt.datetime.combine(today(), dt.time(0), tzinfo=local_zone()),
        dt.datetime.combine(today() + dt.timedelta(days=300), dt.time(0), tzinfo=local_zone()),
    )
    for revision in (weekly, monthly):
        event = events[f"{revision.activity.public_id}@slussen"]
        from_feed = _expand_event(event, *window)
        stored = [
            o.astimezone(local_zone())
            for o in session.scalars(
                select(ActivityOccasion.starts_at)
                .where(
                    ActivityOccasion.activity_id == revision.activity_id,
                    ActivityOccasion.starts_at >= window[0],
                    ActivityOccasion.starts_at <= window[1],
                )
                .order_by(ActivityOccasion.starts_at)
            )
        ]
        assert from_feed == stored and stored
        assert all(o.hour == 10 for o in stored)  # same clock time across summer time
    assert "RRULE" in events[f"{weekly.activity.public_id}@slussen"]
    free_only = Calendar.from_ical(client.get("/aktiviteter.ics?gratis=1").data)
    assert {str(e["SUMMARY"]) for e in free_only.walk("VEVENT")} == {
        "Promenad, varannan vecka",
        "Seniorbio",
    }


@pytest.mark.parametrize("path", ["/aktiviteter", "/aktiviteter.ics", "/aktiviteter/utskrift"])
@pytest.mark.parametrize("typed", ["²", "³", "٣"])
def test_digits_int_refuses_give_a_page(client: FlaskClient, path: str, typed: str) -> None:
    response = client.get(path, query_string=[("sida", typed), ("veckodag", typed)])
    assert response.status_code == 200


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(PARAMS) | st.text(max_size=8),
            st.text(max_size=30)
            | st.sampled_from(
                ["1", "range", "next_week", "2026-03-05", "-1", "evening", "crafts", "99999999999"]
            ),
        ),
        max_size=6,
    ),
    path=st.sampled_from(["/aktiviteter", "/aktiviteter.ics", "/aktiviteter/utskrift"]),
)
def test_any_query_gives_a_page_never_a_server_error(
    client: FlaskClient, params: list[tuple[str, str]], path: str
) -> None:
    response = client.get(path, query_string=params)
    # A NUL is refused before any view reads it (tests/test_hostile_input.py).
    assert response.status_code == (400 if any("\x00" in v for _, v in params) else 200)


@pytest.mark.settings(public_base_url="https://slussen.example.se")
def test_ics_links_use_the_configured_address_not_the_host_header(
    client: FlaskClient, publish: Callable[..., Any]
) -> None:
    revision = publish(title="Seniorbio", rrule="", first_date=today() + dt.timedelta(days=10))
    response = client.get("/aktiviteter.ics", headers={"Host": "evil.example"})
    events = Calendar.from_ical(response.data).walk("VEVENT")
    assert [str(e["URL"]) for e in events] == [
        f"https://slussen.example.se/aktiviteter/{revision.activity_id}"
    ]
    assert b"evil.example" not in response.data
