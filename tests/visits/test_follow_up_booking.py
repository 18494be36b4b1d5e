"""Booking follow-ups: the letter (or a phone time without one), rebooking replacing the letter
not yet printed, each refusal with its Swedish message; the opening-hours and holiday warnings
(Sweden's public holidays from `holidays`) and the booking pages that show them and book once
the coach confirms."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

import slussen.cli
from slussen.accounts.services import set_opening_hours
from slussen.audit import Actor
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.config import local_zone
from slussen.errors import Invalid
from slussen.keystore import Keystore
from slussen.letterqueue import QueuedLetter
from slussen.visits.models import Visit
from slussen.visits.services import (
    book_follow_up,
    book_mapping_visit,
    booked_visit,
    record_follow_up,
    visit_time_warnings,
)
from tests.builders import FUTURE, make_case
from tests.conftest import TEST_PASSWORD
from tests.visits.test_visits import ready_to_book

NOW = dt.datetime(2030, 1, 2, 8, 0, tzinfo=dt.UTC)
OUTSIDE = "ligger utanför vårdcentralens öppettider 08.00–17.00."
NO_WEEKDAYS = "Ange öppna veckodagar som siffror 1–7 (1 är måndag), till exempel 12345."


def local(day: str, time: str) -> dt.datetime:
    """A moment in the unit's time zone (Stockholm), as the booking pages read it."""
    return dt.datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=local_zone())


def active_case(store: Keystore, workflow: Workflow, coach: Actor, unit: Any) -> Case:
    return make_case(store.session, store.ring, workflow, coach, unit.id, "plan_active")


def queued_letters(store: Keystore, case: Case, letter: str = "follow_up") -> list[QueuedLetter]:
    return list(
        store.session.scalars(
            select(QueuedLetter)
            .where(QueuedLetter.case_id == case.id, QueuedLetter.letter == letter)
            .order_by(QueuedLetter.id)
        )
    )


# --- the letter and rebooking -------------------------------------------------------------------


def test_booking_queues_the_letter_and_rebooking_replaces_it_while_unprinted(
    backend: str, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = active_case(store, workflow, coach, unit)
    first = book_follow_up(
        store, coach, case, workflow=workflow, starts_at=FUTURE, place="Rum 3", now=NOW
    )
    store.session.flush()
    assert [letter.status for letter in queued_letters(store, case)] == ["queued"]

    later = FUTURE + dt.timedelta(days=1)
    second = book_follow_up(
        store, coach, case, workflow=workflow, starts_at=later, place="Rum 3", now=NOW
    )
    store.session.flush()
    store.session.expire_all()
    # One letter waits, with the time that holds; the earlier one will never print.
    assert [letter.status for letter in queued_letters(store, case)] == [
        "cancelled",
        "queued",
    ]
    assert store.session.get(Visit, first.id).status == "cancelled"  # type: ignore[union-attr]
    booked = booked_visit(store, case, "follow_up_1")
    assert booked is not None and booked.id == second.id


def test_rebooking_the_mapping_visit_replaces_its_unprinted_appointment_letter(
    store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = ready_to_book(store, workflow, coach, unit)
    for starts_at in (FUTURE, FUTURE + dt.timedelta(days=1)):
        book_mapping_visit(
            store, coach, case, workflow=workflow, starts_at=starts_at, place="Rum 3", now=NOW
        )
        store.session.flush()
    store.session.expire_all()
    statuses = [letter.status for letter in queued_letters(store, case, "appointment")]
    assert statuses == ["cancelled", "queued"]


def test_rebooking_after_the_letter_was_printed_sends_a_new_one(
    store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = active_case(store, workflow, coach, unit)
    book_follow_up(store, coach, case, workflow=workflow, starts_at=FUTURE, place="Rum 3", now=NOW)
    store.session.flush()
    (sent,) = queued_letters(store, case)
    sent.status = "printed"
    store.session.flush()
    book_follow_up(
        store,
        coach,
        case,
        workflow=workflow,
        starts_at=FUTURE + dt.timedelta(days=2),
        place="Rum 3",
        now=NOW,
    )
    store.session.flush()
    store.session.expire_all()
    assert [letter.status for letter in queued_letters(store, case)] == ["printed", "queued"]


def test_a_phone_time_may_go_without_a_letter_a_visit_at_the_unit_never_does(
    store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = active_case(store, workflow, coach, unit)
    visit = book_follow_up(
        store,
        coach,
        case,
        workflow=workflow,
        starts_at=FUTURE,
        mode="phone",
        send_letter=False,
        now=NOW,
    )
    store.session.flush()
    assert (visit.mode, visit.status) == ("phone", "booked")
    assert queued_letters(store, case) == []

    book_follow_up(
        store,
        coach,
        case,
        workflow=workflow,
        starts_at=FUTURE,
        place="Rum 3",
        send_letter=False,
        now=NOW,
    )
    store.session.flush()
    assert [letter.status for letter in queued_letters(store, case)] == ["queued"]


def test_the_phone_follow_up_2_is_booked_after_follow_up_1_with_its_letter(
    store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = active_case(store, workflow, coach, unit)
    record_follow_up(store, coach, case, workflow=workflow, how_it_went="Går på kören")
    visit = book_follow_up(
        store, coach, case, workflow=workflow, starts_at=FUTURE, mode="phone", now=NOW
    )
    store.session.flush()
    assert (visit.kind, visit.mode) == ("follow_up_2", "phone")
    assert [letter.status for letter in queued_letters(store, case)] == ["queued"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"starts_at": NOW - dt.timedelta(minutes=1)}, "Tiden har redan passerat."),
        ({"starts_at": FUTURE.replace(tzinfo=None)}, "Tiden saknar tidszon."),
        ({"mode": "video"}, "Okänt sätt för uppföljningen."),
        ({"place": "  "}, "Skriv var uppföljningen är."),
        ({"duration_minutes": 5}, "Uppföljningen ska vara 10–90 minuter."),
        ({"duration_minutes": 120}, "Uppföljningen ska vara 10–90 minuter."),
    ],
)
def test_a_follow_up_booking_is_refused_with_the_reason(
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    changes: dict[str, Any],
    message: str,
) -> None:
    case = active_case(store, workflow, coach, unit)
    values: dict[str, Any] = {"starts_at": FUTURE, "place": "Rum 3"} | changes
    with pytest.raises(Invalid) as refused:
        book_follow_up(store, coach, case, workflow=workflow, now=NOW, **values)
    assert str(refused.value) == message
    assert queued_letters(store, case) == []


def test_no_follow_up_is_booked_before_the_plan_has_begun(
    store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = ready_to_book(store, workflow, coach, unit)
    with pytest.raises(Invalid) as refused:
        book_follow_up(
            store, coach, case, workflow=workflow, starts_at=FUTURE, place="Rum 3", now=NOW
        )
    assert str(refused.value) == "Uppföljning bokas när handlingsplanen har börjat."


# --- opening hours and holidays -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "time", "minutes", "expected"),
    [
        # Tuesday 5 March 2030, in the middle of the day: nothing to say.
        ("2030-03-05", "10:00", 30, []),
        ("2030-03-05", "08:00", 45, []),
        ("2030-03-05", "16:30", 30, []),
        ("2030-03-05", "07:30", 30, [f"Tiden 07.30–08.00 {OUTSIDE}"]),
        ("2030-03-05", "16:45", 30, [f"Tiden 16.45–17.15 {OUTSIDE}"]),
        ("2030-03-09", "10:00", 30, ["Vårdcentralen har stängt på lördagar."]),
        ("2030-03-10", "10:00", 30, ["Vårdcentralen har stängt på söndagar."]),
        ("2030-12-25", "10:00", 30, ["Onsdag 25 december 2030 är en helgdag (Juldagen)."]),
        ("2030-12-24", "10:00", 30, ["Tisdag 24 december 2030 är en helgdag (Julafton)."]),
        ("2030-06-06", "10:00", 30, ["Torsdag 6 juni 2030 är en helgdag (Nationaldagen)."]),
        ("2030-04-19", "10:00", 30, ["Fredag 19 april 2030 är en helgdag (Långfredagen)."]),
        ("2030-05-30", "10:00", 30, [
            "Torsdag 30 maj 2030 är en helgdag (Kristi himmelsfärdsdag).",
        ]),
        # The day before julafton is a working day (closing early is the unit's own matter).
        ("2030-12-23", "10:00", 30, []),
        # Alla helgons dag falls on a Saturday: both are said.
        ("2030-11-02", "10:00", 30, [
            "Lördag 2 november 2030 är en helgdag (Alla helgons dag).",
            "Vårdcentralen har stängt på lördagar.",
        ]),
    ],
)  # fmt: skip
def test_a_time_outside_the_opening_hours_or_on_a_holiday_warns(
    session: Any, unit: Any, day: str, time: str, minutes: int, expected: list[str]
) -> None:
    assert visit_time_warnings(session, unit.id, local(day, time), minutes) == expected


def test_the_warnings_follow_the_unit_s_own_opening_hours(session: Any, unit: Any) -> None:
    unit.opens_at, unit.closes_at, unit.open_weekdays = dt.time(7, 0), dt.time(19, 0), "123456"
    session.flush()
    saturday = local("2030-03-09", "07:30")
    assert visit_time_warnings(session, unit.id, saturday, 30) == []
    assert visit_time_warnings(session, unit.id, local("2030-03-05", "18:45"), 30) == [
        "Tiden 18.45–19.15 ligger utanför vårdcentralens öppettider 07.00–19.00."
    ]
    assert visit_time_warnings(session, unit.id, local("2030-03-10", "10:00"), 30) == [
        "Vårdcentralen har stängt på söndagar."
    ]


# --- the booking pages --------------------------------------------------------------------------


def test_the_follow_up_page_warns_on_a_holiday_and_books_when_confirmed(
    client: FlaskClient, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = active_case(store, workflow, coach, unit)
    client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    assert "Boka uppföljning 1" in client.get(f"/arenden/{case.id}").get_data(as_text=True)
    page = client.get(f"/arenden/{case.id}/uppfoljning/boka")
    assert page.status_code == 200
    form = {"day": "2030-12-25", "time": "10:00", "place": "Rum 3", "mode": "at_unit"}
    warned = client.post(f"/arenden/{case.id}/uppfoljning/boka", data=form)
    html = warned.get_data(as_text=True)
    assert warned.status_code == 200
    assert "Onsdag 25 december 2030 är en helgdag (Juldagen)." in html
    assert "Boka ändå" in html and 'value="2030-12-25"' in html
    assert booked_visit(store, case, "follow_up_1") is None
    assert queued_letters(store, case) == []

    booked = client.post(f"/arenden/{case.id}/uppfoljning/boka", data={**form, "confirm": "1"})
    assert booked.status_code == 302, booked.get_data(as_text=True)
    visit = booked_visit(store, case, "follow_up_1")
    assert visit is not None
    assert visit.starts_at.astimezone(local_zone()) == local("2030-12-25", "10:00")
    assert [letter.status for letter in queued_letters(store, case)] == ["queued"]
    case_page = client.get(f"/arenden/{case.id}").get_data(as_text=True)
    assert "Uppföljningen är bokad och brevet ligger i kön." in case_page


def test_the_follow_up_page_books_a_phone_time_without_a_letter(
    client: FlaskClient, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = active_case(store, workflow, coach, unit)
    client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    response = client.post(
        f"/arenden/{case.id}/uppfoljning/boka",
        data={"day": "2030-03-05", "time": "10:00", "mode": "phone"},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    visit = booked_visit(store, case, "follow_up_1")
    assert visit is not None and visit.mode == "phone"
    assert queued_letters(store, case) == []
    shown = client.get(f"/arenden/{case.id}").get_data(as_text=True)
    assert "Telefontiden är bokad, utan brev." in shown


def test_the_follow_up_page_refuses_with_the_reason_and_keeps_what_was_typed(
    client: FlaskClient, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = active_case(store, workflow, coach, unit)
    client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    response = client.post(
        f"/arenden/{case.id}/uppfoljning/boka",
        data={"day": "2030-03-05", "time": "10:00", "mode": "at_unit", "duration": "200"},
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Uppföljningen ska vara 10–90 minuter." in html
    assert 'value="2030-03-05"' in html and 'value="200"' in html
    assert booked_visit(store, case, "follow_up_1") is None


def test_the_mapping_visit_page_warns_on_a_saturday_and_books_when_confirmed(
    client: FlaskClient, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = ready_to_book(store, workflow, coach, unit)
    client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    form = {
        "day": "2030-03-09",
        "time": "10:00",
        "place": "Vårdcentralen, rum 3",
        "duration": "45",
        "version": str(case.version),
    }
    warned = client.post(f"/arenden/{case.id}/boka", data=form)
    assert warned.status_code == 200
    assert "Vårdcentralen har stängt på lördagar." in warned.get_data(as_text=True)
    assert booked_visit(store, case) is None
    booked = client.post(f"/arenden/{case.id}/boka", data={**form, "confirm": "1"})
    assert booked.status_code == 302, booked.get_data(as_text=True)
    assert booked_visit(store, case) is not None


# --- the unit's opening hours -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opens", "closes", "weekdays", "message"),
    [
        ("8", "17.00", "12345", "Öppningstiden ska vara en tid, till exempel 08.00."),
        ("08.00", "25.00", "12345", "Stängningstiden ska vara en tid, till exempel 08.00."),
        ("17.00", "08.00", "12345", "Vårdcentralen måste stänga senare än den öppnar."),
        ("08.00", "17.00", "", NO_WEEKDAYS),
        ("08.00", "17.00", "1-5", NO_WEEKDAYS),
    ],
)  # fmt: skip
def test_opening_hours_that_cannot_be_used_are_refused(
    session: Any, unit: Any, opens: str, closes: str, weekdays: str, message: str
) -> None:
    with pytest.raises(Invalid) as refused:
        set_opening_hours(session, unit, opens=opens, closes=closes, weekdays=weekdays)
    assert str(refused.value) == message
    assert (unit.opens_at, unit.closes_at, unit.open_weekdays) == (
        dt.time(8, 0),
        dt.time(17, 0),
        "12345",
    )


def test_slussen_unit_hours_shows_and_sets_a_unit_s_opening_hours(
    app: Flask, unit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slussen.cli, "_app", lambda: app)
    runner = CliRunner()
    shown = runner.invoke(slussen.cli.cli, ["unit", "hours", unit.hsa_id])
    assert shown.exit_code == 0, shown.output
    assert "open 08.00–17.00 on weekdays 12345" in shown.output
    changed = runner.invoke(
        slussen.cli.cli, ["unit", "hours", unit.hsa_id, "--close", "19.30", "--days", "654321"]
    )
    assert changed.exit_code == 0, changed.output
    assert "open 08.00–19.30 on weekdays 123456" in changed.output
    refused = runner.invoke(slussen.cli.cli, ["unit", "hours", unit.hsa_id, "--open", "20.00"])
    assert refused.exit_code == 1
    assert "Vårdcentralen måste stänga senare än den öppnar." in refused.output
    missing = runner.invoke(slussen.cli.cli, ["unit", "hours", "SE0000000000-X"])
    assert missing.exit_code == 1 and "There is no unit SE0000000000-X." in missing.output
