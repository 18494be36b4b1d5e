"""Seed a region-sized Slussen database fast: 50 units, one coach each, 100,000 encrypted cases.

Run: python bench/seed_region.py [--database-url URL] [--cases 100000] [--units 50]

`slussen demo --cases N` brings every case to its state through the real services (about 20 ms a
case: hours for a region). This script writes the same rows directly, with SQLAlchemy Core
executemany in committed batches, and uses the real cryptography and helpers so that the app
reads them as its own:

* `slussen init-db` and `slussen demo --password P` first (bench.harness.seed_database), so the
  demo units, users (coach, koordinator…) and demo patients exist; the bulk data comes on top.
* units up to `--units` (slussen.cases.demo._demo_units, as `slussen demo --units` makes them)
  and a coach `coach<unit id>` per unit, created with `create_user` and one shared argon2 hash.
* per case a patient with its own data key (`vault.wrap_data_key` under the ring's active master
  key), the six identity fields encrypted with `vault.FieldCipher` bound to
  patients/<column>/<patient id> exactly as slussen.patients.services does, the blind index row
  (`slussen.patients.services._lookup_digest`), a personnummer from Skatteverket's test series
  (`slussen.cases.demo.test_series_personnummer`, birth numbers 980–999).
* the case's path to its state (`STATE_WEIGHTS` and `PATHS` of slussen.cases.demo) is replayed
  against the loaded workflow: history rows (`open` plus every event), due dates set and cleared
  as the engine's transitions say, `next_due_on` = the earliest, queued/printed letters, the
  mapping visit, action plan and follow-up visit with their encrypted texts, the referral (its
  reason encrypted), `reference` as the engine writes it (`S26-000123`). The path's dates are
  shifted so that open cases' next due dates spread around today (overdue, today, this week,
  later); due dates a timer acts on (`slussen tick`) are never overdue.
* ids are assigned in Python so the associated data of every ciphertext can be computed before
  inserting; PostgreSQL sequences are moved past them afterwards.

The audit chain is left alone (the bulk rows were not "accessed"); it stays valid. The run is
resumable: it seeds `--cases` minus the cases already present, one transaction per batch. At the
end it opens one bulk case through the real code path (Keystore, `case_view`, `visit_panel`) and
checks the decrypted identity, notes and blind index, then rolls that read back.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask import Flask
from sqlalchemy import Connection, Table, func, insert, select, text
from sqlalchemy.orm import Session

from bench.harness import (
    BENCH_PASSWORD,
    DATA_DIR,
    BenchError,
    safe_url,
    seed_database,
    server_env,
)

#: The default database of the cases benchmark (its own file: bench/run.py keeps its own).
DEFAULT_SQLITE = DATA_DIR / "slussen-bench-cases.sqlite3"
PNR_ISSUER = "1.2.752.129.2.1.3.1"
REASONS = (
    "Vill gärna träffa fler människor.",
    "Känner sig ensam sedan flytten.",
    "Har svårt att komma ut efter sjukskrivningen.",
    "Saknar sammanhang efter pensionen.",
)
STEP_NOTES = {
    "decline": "Vill inte delta just nu.",
    "close_other": "Flyttar till annan ort.",
    "refer_elsewhere": "Behöver kontakt med psykiatrin.",
    "record_follow_up": "Har varit med två gånger.",
}
#: What the demo's path steps fire (the visit services fire these events).
STEP_EVENTS = {"book": "book_mapping_visit", "follow_up": "record_follow_up"}
#: Days between the previous event and this one (low, high), roughly when each is due.
GAPS = {
    "invite": (0, 3),
    "register_baseline": (5, 25),
    "book_mapping_visit": (1, 7),
    "send_evaluation": (0, 2),  # after the 6-month evaluation due date
    "register_evaluation": (5, 25),
    "complete": (1, 14),
    "decline": (1, 20),
    "close_no_response": (0, 1),  # after the 28-day no_response due date
    "close_other": (1, 20),
    "refer_elsewhere": (1, 10),
}
SYSTEM_EVENTS = {"close_no_response", "send_evaluation"}


def default_url() -> str:
    return f"sqlite:///{DEFAULT_SQLITE}"


# --------------------------------------------------------------------------------------------
# The app and the static parts
# --------------------------------------------------------------------------------------------


def build_app(url: str) -> Flask:
    """Slussen's app configured exactly as the benchmark servers are (same instance folder)."""
    from slussen.app import create_app
    from slussen.config import load_settings

    return create_app(load_settings(environ=server_env(url)))


@dataclass(frozen=True)
class Coach:
    user_id: int
    username: str


def ensure_units_and_coaches(app: Flask, units: int, password: str) -> dict[int, Coach]:
    """Units up to `units` and a coach `coach<unit id>` in each (one argon2 hash for all)."""
    from slussen.accounts.models import User
    from slussen.accounts.passwords import hash_password
    from slussen.accounts.services import create_user
    from slussen.cases.demo import _demo_units

    settings = app.extensions["slussen.settings"]
    factory = app.extensions["slussen.sessionmaker"]
    coaches: dict[int, Coach] = {}
    shared_hash: str | None = None
    with factory() as session, session.begin():
        for unit in _demo_units(session, units):
            username = f"coach{unit.id}"
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                shared_hash = shared_hash or hash_password(settings, password)
                user = create_user(
                    session,
                    settings,
                    username=username,
                    display_name=f"Hälsocoach {unit.name}",
                    role="coach",
                    password=password,
                    unit_ids=[unit.id],
                    password_hash=shared_hash,
                )
            coaches[unit.id] = Coach(user.id, user.username)
    return coaches


# --------------------------------------------------------------------------------------------
# One case's path
# --------------------------------------------------------------------------------------------


@dataclass
class PathEvent:
    event: str
    day: dt.date
    system: bool = False
    note: str | None = None


@dataclass
class Timeline:
    opened: dt.date
    events: list[PathEvent]
    #: Due dates left when the case reached its state (name -> day).
    due: dict[str, dt.date]
    #: Day the mapping visit was booked for (mapping_booked and later), else None.
    visit_day: dt.date | None = None
    #: Day the action plan was written (the mapping visit), else None.
    plan_day: dt.date | None = None


def _steps(state: str) -> list[str]:
    from slussen.cases.demo import PATHS

    return list(PATHS[state])


@functools.lru_cache(maxsize=65536)
def _add(day: dt.date, duration: str) -> dt.date:
    """slussen.cases.workflow.add_duration, memoised (the same days and durations recur)."""
    from slussen.cases.workflow import add_duration

    result: dt.date = add_duration(day, duration)
    return result


def replay(
    workflow: Any, state: str, opened: dt.date, gaps: Sequence[int], visit_lead: int
) -> Timeline:
    """Walk the demo's path to `state` from `opened`, applying each transition's due dates and
    clears as the engine does (slussen.cases.engine._apply_due_dates), with `gaps[i]` days
    before the i-th event (events that happen when a due date falls use that date)."""
    due = {name: _add(opened, d) for name, d in workflow.opening_due.items()}
    day = opened
    events: list[PathEvent] = []
    visit_day: dt.date | None = None
    plan_day: dt.date | None = None
    index = 0
    for step in _steps(state):
        if step == "plan":
            plan_day = visit_day or day
            continue
        event = STEP_EVENTS.get(step, step)
        gap = gaps[index % len(gaps)]
        index += 1
        if event == "record_mapping_visit":
            day = visit_day or day
        elif event == "record_follow_up":
            day = due.get("follow_up_1", day) + dt.timedelta(days=gap % 4)
        elif event == "send_evaluation":
            day = due.get("evaluation", day) + dt.timedelta(days=gap % 3)
        elif event == "close_no_response":
            day = due.get("no_response", day) + dt.timedelta(days=gap % 2)
        else:
            day = day + dt.timedelta(days=gap)
        transition = workflow.transitions[event]
        extra: dict[str, dt.date] = {}
        if event == "book_mapping_visit":
            visit_day = day + dt.timedelta(days=visit_lead)
            extra["mapping_visit"] = visit_day
        events.append(
            PathEvent(event, day, system=event in SYSTEM_EVENTS, note=STEP_NOTES.get(event))
        )
        if workflow.states[transition.to].is_terminal or "*" in transition.clear:
            due = {}
        else:
            due = {k: v for k, v in due.items() if k not in transition.clear}
        if not workflow.states[transition.to].is_terminal:
            due.update({name: _add(day, d) for name, d in transition.due.items()})
            due.update(extra)
    return Timeline(opened, events, due, visit_day, plan_day)


def plan_timeline(workflow: Any, state: str, today: dt.date, rng: random.Random) -> Timeline:
    """The path to `state`, dated so an open case's next due date lands around today."""
    gaps = [rng.randint(*GAPS.get(STEP_EVENTS.get(s, s), (1, 10))) for s in _steps(state)] or [0]
    visit_lead = rng.randint(7, 21)
    probe = replay(workflow, state, today, gaps, visit_lead)
    last = probe.events[-1].day if probe.events else probe.opened
    timer_dues = {timer.due for timer in workflow.timers}
    if probe.due:
        name, first_due = min(probe.due.items(), key=lambda item: item[1])
        roll = rng.random()
        # overdue 12 %, today 4 %, the rest of the week 14 %, later 70 %
        if roll < 0.12 and name not in timer_dues:
            target = rng.randint(-21, -1)
        elif roll < 0.16:
            target = 0
        elif roll < 0.30:
            target = rng.randint(1, 7)
        else:
            target = rng.randint(8, 120)
        shift = (today + dt.timedelta(days=target) - first_due).days
        # Nothing may have happened in the future: the last event is today at the latest.
        latest = (today - last).days
        if shift > latest:
            shift = latest - rng.randint(0, 2)
    else:
        # Closed (or evaluated, which has no due dates): the last event some time in the past.
        shift = (today - dt.timedelta(days=rng.randint(0, 400)) - last).days
    return replay(workflow, state, today + dt.timedelta(days=shift), gaps, visit_lead)


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def _at(day: dt.date, rng: random.Random) -> dt.datetime:
    """A working-hours moment (UTC) on `day`."""
    return dt.datetime(
        day.year, day.month, day.day, rng.randint(6, 15), rng.randint(0, 59), tzinfo=dt.UTC
    )


@dataclass
class Ids:
    """The next id of every table written; read once from the database (max + 1)."""

    next: dict[str, int] = field(default_factory=dict)

    def take(self, table: str) -> int:
        value = self.next[table]
        self.next[table] = value + 1
        return value


TABLES = (
    "data_keys",
    "patients",
    "patient_lookups",
    "cases",
    "case_events",
    "case_due_dates",
    "referrals",
    "visits",
    "action_plans",
    "plan_steps",
    "letter_queue",
)


def _tables() -> dict[str, Table]:
    from slussen.db import Base

    return {name: Base.metadata.tables[name] for name in TABLES}


@dataclass
class Expected:
    """What one seeded case should decrypt to (checked after seeding)."""

    case_id: int
    patient_id: int
    unit_id: int
    pnr: str
    name: str
    reason: str
    notes: list[str]


class Batch:
    """Rows of one batch of cases, per table, in insert order."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}

    def add(self, table: str, row: dict[str, Any]) -> None:
        self.rows[table].append(row)


class Generator:
    """Builds the rows of bulk cases with the app's own cryptography and helpers."""

    def __init__(
        self,
        ring: Any,
        workflow: Any,
        coaches: dict[int, Coach],
        ids: Ids,
        taken_digests: set[str],
        today: dt.date,
        rng: random.Random,
    ) -> None:
        from slussen.cases.demo import (
            FIRST_NAMES,
            LAST_NAMES,
            STREETS,
            TOWNS,
            test_series_personnummer,
        )
        from slussen.identifiers import PersonIdentifier
        from slussen.patients.services import _lookup_digest

        self.ring = ring
        self.workflow = workflow
        self.coaches = coaches
        self.unit_ids = sorted(coaches)
        self.ids = ids
        self.taken = taken_digests
        self.today = today
        self.rng = rng
        self._pnr = test_series_personnummer
        self._ident = PersonIdentifier
        self._digest = _lookup_digest
        self._names = (FIRST_NAMES, LAST_NAMES, STREETS, TOWNS)
        self.number = 0
        self.master_id = ring.active_master_id

    def _next_identifier(self) -> tuple[Any, str]:
        for _ in range(1_000_000):
            value = self._pnr(self.number)
            self.number += 1
            identifier = self._ident(kind="pnr", value=value, issuer=PNR_ISSUER)
            digest = self._digest(self.ring, identifier)
            if digest not in self.taken:
                self.taken.add(digest)
                return identifier, digest
        raise BenchError("ran out of test-series personnummer")

    def case(self, batch: Batch, position: int, state: str) -> Expected:
        from slussen import vault

        rng, workflow = self.rng, self.workflow
        unit_id = self.unit_ids[position % len(self.unit_ids)]
        coach = self.coaches[unit_id]
        timeline = plan_timeline(workflow, state, self.today, rng)
        now = dt.datetime.now(dt.UTC)
        opened_at = min(_at(timeline.opened, rng), now)

        # Patient, data key, blind index.
        identifier, digest = self._next_identifier()
        first, last, streets, towns = self._names
        postcode, town = towns[self.number % len(towns)]
        clear = {
            "identifier": identifier.value,
            "name": f"{rng.choice(first)} {rng.choice(last)}",
            "street": f"{rng.choice(streets)} {rng.randint(1, 60)}",
            "postcode": postcode,
            "town": town,
            "phone": f"070-{rng.randint(100, 999)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
        }
        key_id = self.ids.take("data_keys")
        raw = vault.new_data_key()
        cipher = vault.FieldCipher(raw, key_id)
        batch.add(
            "data_keys",
            {
                "id": key_id,
                "wrapped": vault.wrap_data_key(self.ring, raw, data_key_id=key_id),
                "master_key_id": self.master_id,
                "created_at": opened_at,
                "destroyed_at": None,
            },
        )
        patient_id = self.ids.take("patients")
        patient: dict[str, Any] = {
            "id": patient_id,
            "data_key_id": key_id,
            "registered_unit_id": unit_id,
            "identifier_kind": "pnr",
            "identifier_issuer": PNR_ISSUER,
            "preferred_language": "en" if self.number % 17 == 0 else "sv",
            "is_protected_identity": False,
            "birth_year": identifier.birth_year(),
            "sex": identifier.sex(),
            "created_at": opened_at,
            "erased_at": None,
        }
        for column, value in clear.items():
            patient[f"{column}_enc"] = cipher.encrypt(
                value, table="patients", column=column, row_id=patient_id
            )
        batch.add("patients", patient)
        batch.add(
            "patient_lookups",
            {
                "id": self.ids.take("patient_lookups"),
                "patient_id": patient_id,
                "kind": "id",
                "digest": digest,
            },
        )

        # The case.
        case_id = self.ids.take("cases")
        channel = rng.choice(("staff_flag", "self_referral", "phone", "message_1177"))
        events = timeline.events
        is_terminal = workflow.states[state].is_terminal
        moments = [_at(e.day, rng) for e in events]
        moments = [min(max(m, opened_at), now) for m in moments]
        for i in range(1, len(moments)):
            moments[i] = max(moments[i], moments[i - 1])
        entered = opened_at
        current = workflow.initial
        for event, moment in zip(events, moments, strict=True):
            to = workflow.transitions[event.event].to
            if to != current:
                entered = moment
            current = to
        booked = any(e.event == "book_mapping_visit" for e in events)
        batch.add(
            "cases",
            {
                "id": case_id,
                "reference": f"S{opened_at:%y}-{case_id:06d}",
                "unit_id": unit_id,
                "patient_id": patient_id,
                "state": state,
                "coach_id": coach.user_id if booked else None,
                "flagged_by_id": coach.user_id if channel == "staff_flag" else None,
                "channel": channel,
                "contact_channel": rng.choices(("post", "phone", "1177"), (70, 20, 10))[0],
                "is_consent_to_contact": True,
                "screening_flag": None,
                "opened_at": opened_at,
                "state_entered_at": entered,
                "closed_at": moments[-1] if is_terminal else None,
                "next_due_on": min(timeline.due.values(), default=None),
                "version": 2 + len(events),
            },
        )
        for name, due_on in sorted(timeline.due.items()):
            due_row = {"case_id": case_id, "name": name, "due_on": due_on}
            batch.add("case_due_dates", {"id": self.ids.take("case_due_dates"), **due_row})

        # The opening referral (and, now and then, a later one the coach has not seen yet).
        reason = rng.choice(REASONS)
        referrals = [(channel, opened_at, True, reason)]
        if not is_terminal and rng.random() < 0.03:
            referrals.append(("phone", moments[-1] if moments else opened_at, False, REASONS[0]))
        for ref_channel, created, seen, ref_reason in referrals:
            ref_id = self.ids.take("referrals")
            batch.add(
                "referrals",
                {
                    "id": ref_id,
                    "case_id": case_id,
                    "channel": ref_channel,
                    "created_by_id": None if ref_channel == "self_referral" else coach.user_id,
                    "created_at": created,
                    "reason_enc": cipher.encrypt(
                        ref_reason, table="referrals", column="reason", row_id=ref_id
                    ),
                    "is_seen": seen,
                },
            )

        # History: "open", then every event of the path, with their letters.
        coach_name = coach.username
        history: list[tuple[str, str | None, str, dt.datetime, bool, str | None]] = [
            ("open", None, workflow.initial, opened_at, False, None)
        ]
        current = workflow.initial
        for event, moment in zip(events, moments, strict=True):
            to = workflow.transitions[event.event].to
            history.append((event.event, current, to, moment, event.system, event.note))
            current = to
        notes: list[str] = []
        last_index = len(history) - 1
        for index, (name, from_state, to_state, moment, system, note) in enumerate(history):
            event_id = self.ids.take("case_events")
            note_enc = None
            if note:
                notes.append(note)
                note_enc = cipher.encrypt(note, table="case_events", column="note", row_id=event_id)
            batch.add(
                "case_events",
                {
                    "id": event_id,
                    "case_id": case_id,
                    "event": name,
                    "from_state": from_state,
                    "to_state": to_state,
                    "actor_id": None if system else coach.user_id,
                    "actor_name": "(system)" if system else coach_name,
                    "actor_role": "system" if system else "coach",
                    "occurred_at": moment,
                    "note_enc": note_enc,
                },
            )
            if name == "open":
                continue
            for letter in workflow.transitions[name].letters:
                printed = index < last_index or is_terminal
                batch.add(
                    "letter_queue",
                    {
                        "id": self.ids.take("letter_queue"),
                        "case_id": case_id,
                        "unit_id": unit_id,
                        "letter": letter,
                        "event": name,
                        "status": "printed" if printed else "queued",
                        "hold_reason": None,
                        "queued_at": moment,
                        "printed_at": moment + dt.timedelta(days=1) if printed else None,
                        "batch_id": None,
                    },
                )

        # Visits and the action plan, as the visit services write them.
        by_event = {e.event: m for e, m in zip(events, moments, strict=True)}
        if timeline.visit_day is not None and "book_mapping_visit" in by_event:
            held = "record_mapping_visit" in by_event
            visit = self._visit(case_id, coach, "mapping", "done" if held else "booked")
            visit.update(
                starts_at=_at(timeline.visit_day, rng),
                duration_minutes=45,
                place="Vårdcentralen, samtalsrum 2",
                created_at=by_event["book_mapping_visit"],
            )
            batch.add("visits", visit)
        if timeline.plan_day is not None and "record_mapping_visit" in by_event:
            plan_id = self.ids.take("action_plans")
            planned = by_event["record_mapping_visit"]
            batch.add(
                "action_plans",
                {
                    "id": plan_id,
                    "case_id": case_id,
                    "revision": 1,
                    "goals_enc": cipher.encrypt(
                        "Träffa andra varje vecka.",
                        table="action_plans",
                        column="goals",
                        row_id=plan_id,
                    ),
                    "created_by_id": coach.user_id,
                    "created_at": planned,
                },
            )
            step_id = self.ids.take("plan_steps")
            batch.add(
                "plan_steps",
                {
                    "id": step_id,
                    "plan_id": plan_id,
                    "position": 1,
                    "activity_id": None,
                    "text_enc": cipher.encrypt(
                        "Prova promenadgruppen på tisdagar.",
                        table="plan_steps",
                        column="text",
                        row_id=step_id,
                    ),
                    "actor": "patient",
                    "due_on": None,
                    "outcome": "pending",
                    "outcome_note_enc": None,
                },
            )
        if "record_follow_up" in by_event:
            moment = by_event["record_follow_up"]
            visit = self._visit(case_id, coach, "follow_up_1", "done")
            visit.update(starts_at=moment, duration_minutes=30, created_at=moment)
            visit["notes_enc"] = cipher.encrypt(
                STEP_NOTES["record_follow_up"], table="visits", column="notes", row_id=visit["id"]
            )
            batch.add("visits", visit)
        return Expected(
            case_id, patient_id, unit_id, clear["identifier"], clear["name"], reason, notes
        )

    def _visit(self, case_id: int, coach: Coach, kind: str, status: str) -> dict[str, Any]:
        """A visit row; the caller sets starts_at, duration_minutes, created_at (and place)."""
        return {
            "id": self.ids.take("visits"),
            "case_id": case_id,
            "kind": kind,
            "status": status,
            "mode": "at_unit",
            "starts_at": None,
            "duration_minutes": 45,
            "place": "Vårdcentralen",
            "coach_id": coach.user_id,
            "notes_enc": None,
            "created_at": None,
        }


# --------------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------------


def _batches(total: int, size: int) -> Iterator[range]:
    for start in range(0, total, size):
        yield range(start, min(start + size, total))


def _read_ids(conn: Connection, tables: dict[str, Table]) -> Ids:
    ids = Ids()
    for name, table in tables.items():
        ids.next[name] = int(conn.scalar(select(func.max(table.c.id))) or 0) + 1
    return ids


def _fix_sequences(conn: Connection, tables: dict[str, Table]) -> None:
    """PostgreSQL: move each id sequence past the ids written explicitly."""
    if conn.dialect.name != "postgresql":
        return
    for name in tables:
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "  # noqa: S608 - fixed names
                f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {name}), false)"
            )
        )


@dataclass
class SeedResult:
    seeded: int
    existing: int
    seconds: float
    sample: Expected | None
    coaches: dict[int, Coach]


def bulk_seed(
    app: Flask,
    cases: int,
    coaches: dict[int, Coach],
    *,
    batch_size: int = 5000,
    seed: int = 20261124,
    quiet: bool = False,
) -> SeedResult:
    """Add cases until the database holds `cases`; one committed transaction per batch."""
    from slussen.cases.demo import plan_states
    from slussen.cases.engine import today_local
    from slussen.cases.models import Case
    from slussen.keystore import open_key_ring
    from slussen.patients.models import PatientLookup

    engine = app.extensions["slussen.engine"]
    settings = app.extensions["slussen.settings"]
    workflow = app.extensions["slussen.content"].compiled["workflow"]
    ring = open_key_ring(settings)
    tables = _tables()
    with engine.connect() as conn:
        existing = int(conn.scalar(select(func.count()).select_from(Case)) or 0)
        ids = _read_ids(conn, tables)
        taken = set(conn.scalars(select(PatientLookup.digest)))
    todo = max(0, cases - existing)
    started = time.perf_counter()
    if not todo:
        return SeedResult(0, existing, 0.0, None, coaches)
    rng = random.Random(seed + existing)
    states = plan_states(todo, rng)
    generator = Generator(ring, workflow, coaches, ids, taken, today_local(), rng)
    sample: Expected | None = None
    done = 0
    for chunk in _batches(todo, batch_size):
        batch = Batch()
        for offset in chunk:
            expected = generator.case(batch, existing + offset, states[offset])
            if sample is None and states[offset] == "followed_up":
                sample = expected
        with engine.begin() as conn:
            for name in TABLES:
                if batch.rows[name]:
                    conn.execute(insert(tables[name]), batch.rows[name])
        done += len(chunk)
        if not quiet:
            elapsed = time.perf_counter() - started
            print(
                f"  {existing + done:>7}/{cases} cases ({done / elapsed:,.0f} cases/s, "
                f"{sum(len(r) for r in batch.rows.values()):,} rows in the last batch)",
                flush=True,
            )
    with engine.begin() as conn:
        _fix_sequences(conn, tables)
    if engine.dialect.name == "postgresql":
        # What autovacuum would do shortly anyway: planner statistics for the new rows.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    return SeedResult(done, existing, time.perf_counter() - started, sample, coaches)


def verify_case(app: Flask, expected: Expected) -> str:
    """Open a bulk case through the real code path and check what it decrypts to; the reads
    (and their audit rows) are rolled back. Returns a one-line summary; raises BenchError."""
    from slussen.audit import Actor
    from slussen.cases.models import Case
    from slussen.cases.services import case_view
    from slussen.identifiers import PersonIdentifier
    from slussen.keystore import Keystore, open_key_ring
    from slussen.patients.services import find_patient_id
    from slussen.visits.views import visit_panel

    settings = app.extensions["slussen.settings"]
    factory = app.extensions["slussen.sessionmaker"]
    ring = open_key_ring(settings)
    # visit_panel translates labels, which needs a request (the locale comes from the session).
    with app.test_request_context():
        session: Session = factory()
        try:
            store = Keystore(session, ring)
            case = session.get(Case, expected.case_id)
            if case is None:
                raise BenchError(f"case {expected.case_id} is missing")
            actor = Actor(None, "bench-verify", "coach", frozenset({case.unit_id}))
            view = case_view(store, actor, case)
            identity = view["identity"]
            panel = visit_panel(store, case)
            problems = []
            if identity.identifier.value != expected.pnr or identity.name != expected.name:
                problems.append("identity differs")
            if [text for _ref, text in view["referrals"]][:1] != [expected.reason]:
                problems.append("referral reason differs")
            if [e.note for e in view["timeline"] if e.note] != expected.notes:
                problems.append("event notes differ")
            if panel["plan"] is None or not panel["plan"].goals:
                problems.append("no readable action plan")
            found = find_patient_id(
                store, PersonIdentifier(kind="pnr", value=expected.pnr, issuer=PNR_ISSUER)
            )
            if found != expected.patient_id:
                problems.append(f"blind index finds {found}, not {expected.patient_id}")
            if problems:
                raise BenchError(f"case {expected.case_id}: " + "; ".join(problems))
            return (
                f"case {case.reference} (id {case.id}, {case.state}): identity, "
                f"{len(view['timeline'])} history rows, {len(view['referrals'])} referral(s), "
                f"plan and {len(panel['visits'])} visit(s) decrypt; blind index finds patient "
                f"{found}"
            )
        finally:
            session.rollback()
            session.close()


def seed_region(
    url: str,
    cases: int,
    units: int,
    password: str = BENCH_PASSWORD,
    *,
    batch_size: int = 5000,
    quiet: bool = False,
) -> SeedResult:
    """init-db + demo (real CLI), units and coaches, then the bulk cases; verifies one case."""
    if seed_database(url, 0, password):
        print("slussen init-db + slussen demo done.")
    app = build_app(url)
    coaches = ensure_units_and_coaches(app, units, password)
    print(f"{len(coaches)} units, one coach each (coach<unit id>).")
    result = bulk_seed(app, cases, coaches, batch_size=batch_size, quiet=quiet)
    if result.seeded:
        print(
            f"Seeded {result.seeded} cases in {result.seconds:.1f} s "
            f"({result.seeded / result.seconds:,.0f} cases/s); {result.existing} existed."
        )
        if result.sample is not None:
            print("Verified:", verify_case(app, result.sample))
    else:
        print(f"{result.existing} cases exist already; nothing to seed.")
    app.extensions["slussen.engine"].dispose()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="", help=f"default: {default_url()}")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args(argv)
    if args.cases < 0 or not 3 <= args.units <= 500 or args.batch_size < 1:
        parser.error("--cases ≥ 0, --units 3..500, --batch-size ≥ 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = args.database_url or default_url()
    print(f"Database: {safe_url(url)}; {args.cases} cases over {args.units} units")
    try:
        seed_region(url, args.cases, args.units, batch_size=args.batch_size)
    except BenchError as exc:
        print(f"bench/seed_region.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
