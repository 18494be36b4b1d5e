"""Demo directory: organisations and activities modelled on a real social-prescribing project's examples.

The listings are invented: contact persons are made-up names and every phone number is from the
range PTS keeps for fiction (070-174 06 05 – 070-174 06 99). Schedules start in the current week
so the calendar has something to show whenever the demo is loaded.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dateutil.rrule import rrulestr
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.accounts.models import User
from slussen.config import today_local
from slussen.demo.context import DemoContext
from slussen.directory.categories import categories_from
from slussen.directory.models import Organisation
from slussen.directory.schedule import WEEKDAY_CODES
from slussen.directory.services import (
    ActivityData,
    add_representative,
    create_organisation,
    submit_activity,
    submit_revision,
)

MO, TU, WE, TH, FR, SA, SU = range(7)

#: (name, sector, area, description, contact person, phone, website)
ORGANISATIONS = [
    ("Frivilligcentralen", "ideburen", "Centrum",
     "Volontärer som ordnar promenader, fika, språkträning, ledsagning och vänkontakter.",
     "Maja Lindqvist", "070-174 06 11", "https://example.org/frivilligcentralen"),
    ("Korpen", "ideburen", "Bäckby",
     "Motion för alla: stavgång, promenadgrupper och pickleball för nybörjare.",
     "Tomas Berg", "070-174 06 12", "https://example.org/korpen"),
    ("Cityfiske", "ideburen", "Centrum",
     "Öppen fiskestuga vid ån med fikahäng. Här möts nya och gamla i staden.",
     "Samir Nasser", "070-174 06 13", "https://example.org/cityfiske"),
    ("STF Västerås", "ideburen", "Bäckby",
     "Svenska Turistföreningens lokala avdelning: promenader med start i Bäckby.",
     "Karin Holm", "070-174 06 14", "https://example.org/stf-vasteras"),
    ("Hemgården", "ideburen", "Råby",
     "Mötesplats med berättarcafé, seniorgymnastik och hantverkskurser.",
     "Birgitta Ek", "070-174 06 15", "https://example.org/hemgarden"),
    ("Kunskapens hus", "kommun", "Centrum",
     "Kommunens mötesplats för seniorer: bio, skaparverkstad och frukost med sällskap.",
     "Lena Sjöström", "070-174 06 16", "https://example.org/kunskapens-hus"),
    ("Stadsbiblioteket", "kommun", "Centrum",
     "Språkcafé, teknikhjälp med DigiDel, stickcafé och sagostund.",
     "Per Nyberg", "070-174 06 17", "https://example.org/stadsbiblioteket"),
]  # fmt: skip

PLACES = {
    "Frivilligcentralen": ("Frivilligcentralen", "Stora gatan 10", "722 12", "Västerås", "Centrum"),
    "Korpen": ("Bäckby idrottsplats", "Bäckbyvägen 40", "724 65", "Västerås", "Bäckby"),
    "Cityfiske": ("Fiskestugan vid Svartån", "Svartågatan 2", "722 11", "Västerås", "Centrum"),
    "STF Västerås": ("Bäckby centrum, vid busshållplatsen", "Bäckby torg 1", "724 65", "Västerås", "Bäckby"),
    "Hemgården": ("Hemgården", "Råbyvägen 5", "724 77", "Västerås", "Råby"),
    "Kunskapens hus": ("Kunskapens hus", "Kopparbergsvägen 20", "722 13", "Västerås", "Centrum"),
    "Stadsbiblioteket": ("Stadsbiblioteket", "Biskopsgatan 2", "722 14", "Västerås", "Centrum"),
}  # fmt: skip

ACCESS_LEVEL = "Entré i gatuplan, hiss och tillgänglig toalett. Hörslinga finns."


def _activities(week: dt.date) -> list[tuple[str, dict[str, Any]]]:
    """(organisation, fields) for each demo activity; `week` is this week's Monday."""

    def day(weekday: int, weeks: int = 0) -> dt.date:
        return week + dt.timedelta(days=weekday + 7 * weeks)

    def weekly(*days: int, interval: int = 1) -> str:
        every = f";INTERVAL={interval}" if interval > 1 else ""
        return f"FREQ=WEEKLY{every};BYDAY=" + ",".join(WEEKDAY_CODES[d] for d in days)

    def monthly(nth: int, weekday: int) -> str:
        return f"FREQ=MONTHLY;BYDAY={nth}{WEEKDAY_CODES[weekday]}"

    def first_of(rule: str) -> dt.date:
        """The rule's first date in this month (the first date must be one of its occasions)."""
        month = week.replace(day=1)
        found = rrulestr("RRULE:" + rule, dtstart=dt.datetime.combine(month, dt.time(0)))
        first = found.after(dt.datetime.combine(month, dt.time(0)), inc=True)
        assert isinstance(first, dt.datetime)
        return first.date()

    return [
        ("Frivilligcentralen", dict(
            title="Promenadgrupp med fika", first_date=day(TH), start_time=dt.time(10, 0),
            duration_minutes=90, rrule=weekly(TH), categories=["nature_walks", "fika_conversation"],
            description="Vi går en lugn runda på ungefär en halvtimme och fikar sedan tillsammans. "
            "Alla är välkomna, du behöver inte anmäla dig.",
            has_companion=True, age_groups=[], accessibility_notes="Flack väg, vi går i lugn takt.",
            bring="Bekväma skor och kläder efter väder.")),
        ("Frivilligcentralen", dict(
            title="Språkpromenad", first_date=day(TU), start_time=dt.time(17, 0),
            duration_minutes=60, rrule=weekly(TU), categories=["language_cafe", "nature_walks"],
            description="Träna svenska medan vi promenerar. Vi går i små grupper med en "
            "volontär som har svenska som modersmål.", languages=["sv", "ar", "en"],
            has_companion=True)),
        ("Frivilligcentralen", dict(
            title="Öppen fikatorsdag", first_date=day(TH), start_time=dt.time(14, 0),
            duration_minutes=120, rrule=weekly(TH), categories=["fika_conversation"],
            description="Kom in på en kopp kaffe och ett samtal. Fikat kostar inget.",
            has_companion=True, accessibility_notes=ACCESS_LEVEL)),
        ("Korpen", dict(
            title="Stavgång", first_date=day(MO), start_time=dt.time(9, 30),
            duration_minutes=60, rrule=weekly(MO, WE), categories=["sport_exercise", "nature_walks"],
            description="Stavgång i skogen runt Bäckby. Stavar finns att låna.", cost_sek=20,
            cost_note="första gången gratis", age_groups=["adults", "seniors"])),
        ("Korpen", dict(
            title="Pickleball för nybörjare", first_date=day(SA), start_time=dt.time(11, 0),
            duration_minutes=90, rrule=weekly(SA), categories=["sport_exercise", "board_games"],
            description="Ett lätt racketspel. Vi lär dig reglerna och lånar ut racket.",
            cost_sek=40, capacity=16, place_name="Bäckbyhallen")),
        ("Cityfiske", dict(
            title="Öppen fiskestuga med fikahäng", first_date=day(WE), start_time=dt.time(16, 0),
            duration_minutes=180, rrule=weekly(WE), categories=["outdoor_life", "fika_conversation"],
            description="Prova att fiska eller sitt med vid elden och fika. Vi lånar ut spön.",
            languages=["sv", "ar", "en"], has_companion=True,
            exception_dates=[day(WE, 3).isoformat()])),
        ("STF Västerås", dict(
            title="Söndagspromenad från Bäckby", first_date=day(SU), start_time=dt.time(10, 0),
            duration_minutes=120, rrule=weekly(SU, interval=2), categories=["nature_walks", "outdoor_life"],
            description="En promenad på 5–7 kilometer i naturen. Ta med fika.",
            accessibility_notes="Stigar med rötter och backar; kraftiga skor behövs.")),
        ("Hemgården", dict(
            title="Berättarcafé", first_date=first_of(monthly(2, TU)), start_time=dt.time(14, 0),
            duration_minutes=90, rrule=monthly(2, TU), categories=["fika_conversation", "culture"],
            description="Vi berättar om hur det var förr och lyssnar på varandra. Kaffe och bulle ingår.",
            cost_sek=20, age_groups=["seniors"], accessibility_notes=ACCESS_LEVEL)),
        ("Hemgården", dict(
            title="Seniorgymnastik", first_date=day(MO), start_time=dt.time(10, 0),
            duration_minutes=45, rrule=weekly(MO, TH), categories=["sport_exercise"],
            description="Lugn gympa till musik, sittande eller stående.", cost_sek=30,
            age_groups=["seniors"], accessibility_notes=ACCESS_LEVEL)),
        ("Hemgården", dict(
            title="Hantverkskurs: vävning", first_date=day(WE, 1), start_time=dt.time(18, 0),
            duration_minutes=120, rrule="", categories=["crafts"],
            extra_dates=[day(WE, 2).isoformat(), day(WE, 3).isoformat()],
            description="Tre kvällar med vävning för nybörjare.", cost_sek=150, capacity=8)),
        ("Kunskapens hus", dict(
            title="Seniorbio", first_date=first_of(monthly(-1, WE)), start_time=dt.time(13, 0),
            duration_minutes=150, rrule=monthly(-1, WE), categories=["culture"],
            description="Vi ser en film tillsammans och pratar om den efteråt.", cost_sek=60,
            age_groups=["seniors"], accessibility_notes=ACCESS_LEVEL)),
        ("Kunskapens hus", dict(
            title="Sconesfrukost med tidningsläsning", first_date=day(FR), start_time=dt.time(9, 30),
            duration_minutes=90, rrule=weekly(FR), categories=["fika_conversation", "reading"],
            description="Frukost med nybakade scones och dagens tidningar. Sällskap finns.",
            cost_sek=30, has_companion=True, accessibility_notes=ACCESS_LEVEL)),
        ("Kunskapens hus", dict(
            title="Skaparverkstad", first_date=day(TU), start_time=dt.time(13, 0),
            duration_minutes=120, rrule=weekly(TU), categories=["crafts"],
            description="Måla, sy eller pyssla. Material finns.", accessibility_notes=ACCESS_LEVEL)),
        ("Stadsbiblioteket", dict(
            title="Språkcafé", first_date=day(WE), start_time=dt.time(16, 0),
            duration_minutes=90, rrule=weekly(WE), categories=["language_cafe", "fika_conversation"],
            description="Prata svenska i lugn takt med andra. Alla nivåer är välkomna.",
            languages=["sv"], accessibility_notes=ACCESS_LEVEL)),
        ("Stadsbiblioteket", dict(
            title="Teknikhjälp med DigiDel", first_date=day(TH), start_time=dt.time(10, 0),
            duration_minutes=120, rrule=weekly(TH), categories=["digital_help"],
            description="Få hjälp med mobilen, datorn, BankID eller 1177. Ta med din egen telefon.",
            accessibility_notes=ACCESS_LEVEL)),
        ("Stadsbiblioteket", dict(
            title="Stickcafé", first_date=day(MO), start_time=dt.time(14, 0),
            duration_minutes=120, rrule=weekly(MO, interval=2), categories=["crafts", "fika_conversation"],
            description="Ta med ditt handarbete. Vi har garn och stickor om du vill börja.",
            accessibility_notes=ACCESS_LEVEL)),
        ("Stadsbiblioteket", dict(
            title="Sagostund för föräldralediga och små barn", first_date=day(FR), start_time=dt.time(10, 30),
            duration_minutes=45, rrule=weekly(FR), categories=["parents_children", "reading"],
            description="Sagor och ramsor för barn 0–3 år. Efteråt fikar föräldrarna.",
            age_groups=["children", "adults"], accessibility_notes=ACCESS_LEVEL)),
    ]  # fmt: skip


def seed_directory(session: Session, ctx: DemoContext) -> None:
    if session.scalar(select(Organisation.id).limit(1)) is not None:
        ctx.report.append("Demo directory exists already.")
        return
    coordinator = session.scalar(select(User).where(User.username == "koordinator"))
    rep = session.scalar(select(User).where(User.username == "forening"))
    if coordinator is None or rep is None:
        ctx.report.append("Demo directory skipped: the demo users are missing.")
        return
    today = today_local()
    week = today - dt.timedelta(days=today.weekday())
    categories = [c.id for c in categories_from(ctx.app.extensions["slussen.content"])]
    organisations: dict[str, Organisation] = {}
    for name, sector, area, description, contact, phone, website in ORGANISATIONS:
        organisations[name] = create_organisation(
            session,
            coordinator,
            name=name,
            sector=sector,
            area=area,
            description=description,
            contact_name=contact,
            phone=phone,
            website=website,
            email="",
        )
    add_representative(session, coordinator, organisations["Frivilligcentralen"], rep)
    count = 0
    for org_name, fields in _activities(week):
        org = organisations[org_name]
        place, street, postcode, town, area = PLACES[org_name]
        values: dict[str, Any] = {
            "place_name": place,
            "street": street,
            "postcode": postcode,
            "town": town,
            "area": area,
            "languages": ["sv"],
            "contact_name": dict((o[0], o[4]) for o in ORGANISATIONS)[org_name],
            "contact_phone": dict((o[0], o[5]) for o in ORGANISATIONS)[org_name],
            "kind": "leisure",
        }
        values.update(fields)
        submit_activity(
            session,
            coordinator,
            org,
            ActivityData(**values),
            known_categories=categories,
            today=today,
        )
        count += 1
    # One activity not checked for seven months, and one change waiting for review.
    walk = organisations["Korpen"].activities[0]
    walk.last_verified_on = today - dt.timedelta(days=215)
    language_walk = organisations["Frivilligcentralen"].activities[1]
    assert language_walk.published is not None
    change = ActivityData.from_revision(language_walk.published)
    change.description += " Nu även på lördagar."
    change.rrule = "FREQ=WEEKLY;BYDAY=TU,SA"
    submit_revision(session, rep, language_walk, change, known_categories=categories, today=today)
    ctx.report.append(
        f"Demo directory: {len(organisations)} organisations, {count} activities "
        "(one change waits for the coordinator)."
    )
