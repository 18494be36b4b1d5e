"""The proof that a copy of the database reveals nothing about a patient (issue #17).

`slussen demo` loads a fresh database; then a whole chain runs through the pages (tests/chain.py)
with a sentinel, a made-up word of capitals such as SNTLPLACEQZ, typed into every free-text field
and every free-text answer, and answers picked so that their facts can be recognised. Then:

* no sentinel, nor the patients' names, personnummer or phone numbers, is in any copy: every file
  of the instance folder (on SQLite the database file and its WAL, read while the WAL still holds
  the chain's pages because automatic checkpoints are off), a `slussen backup`, and on PostgreSQL
  a plain `pg_dump` and the backup read back with `pg_restore`. Each is searched for the text as
  typed, in small and in capital letters, as UTF-16 and as hex (how pg_dump writes bytea);
* no column classified clear (`slussen.sensitivity`) of a table about a case or a patient holds
  a health fact of the chain: a barrier or an interest it ticked, its screening flag or an event
  that set one, or a score of its answers.

A failure lists every finding: the copy and what was in it (with the table.column that holds it
now, when a current row does), or the table.column and the value.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, LargeBinary, String, Table, event, select, text
from sqlalchemy.engine import make_url

from slussen.app import create_app
from slussen.cases.models import Case
from slussen.demo.patients import demo_personnummer_set
from slussen.models import metadata
from slussen.questionnaires.models import QuestionnaireResponse
from slussen.questionnaires.scoring import check_answers, score_form
from slussen.sensitivity import clear_columns
from tests.builders import sample_pnr
from tests.chain import ChainWalk, NetworkRow, PlanStepRow
from tests.conftest import BACKENDS, TEST_PASSWORD
from tests.ops.conftest import Site, make_site

pytestmark = pytest.mark.slow

#: Each free-text field of the chain and the sentinel typed into it.
SENTINELS = {
    key: f"SNTL{key}QZ"
    for key in (
        "REASON",  # the staff flag (/remiss): why
        "STREET",
        "TOWN",
        "WISH",  # the self-referral (/anmalan)
        "SELFSTREET",
        "SELFTOWN",
        "DECLINE",  # the reason the self-referred person's case closes with (decline)
        "COMPLETE",  # the reason the whole chain closes with (complete asks for one)
        "SCREENING",  # the reason field of the screening decision
        "PLACE",  # the mapping visit's place
        "NETONE",  # the network map's rows
        "NETTWO",
        "BARRIERNOTES",
        "NOTES",
        "AREA",
        "GOALS",
        "STEPONE",
        "STEPTWO",
        "STEPNOTE",
        "ORGANISATION",  # the hand-over
        "COMPANION",
        "MEETINGPLACE",
        "HANDOVERNOTE",
        "HOWONE",  # follow-up 1 and 2
        "PROBLEMONE",
        "HOWTWO",
        "PROBLEMTWO",
        "ANSWERSIXMONTH",  # every free-text answer of the six-month forms
    )
}
S = SENTINELS

#: The chain's patient, flagged by staff, and a second person who refers themself.
NAME, SURNAME = "Signe Sntlnamnsson", "Sntlnamnsson"
SELF_NAME, SELF_SURNAME = "Tyra Sntlsjalvsson", "Sntlsjalvsson"
PNR, SELF_PNR = sample_pnr(7777), sample_pnr(7778)
PHONE, SELF_PHONE = "070-555 01 23", "070-555 01 24"

#: What the chain ticks: in the interest form online and at the mapping visit, and as barriers.
#: Chosen to be no clear word of another meaning (the barrier "anxiety" is also the name of an
#: ONS4 score, "other" also a relation type).
INTERESTS = ("faith", "support_groups")
BARRIERS = ("health", "transport")


def baseline_pick(item: Any) -> int:
    """The baseline: the chosen interests ticked, every scale at its highest (screen-positive)."""
    if item.type == "tick":
        return 1 if item.id in INTERESTS else 0
    return int(item.max_code)


def six_month_pick(item: Any) -> int:
    """Six months on: one below the highest code, but at least 2: a second set of scores."""
    return int(item.max_code) - 1 if item.max_code - 1 > 1 else int(item.max_code)


def identifier_forms(pnr: str) -> list[str]:
    """A personnummer as it may be written: 12 or 10 digits, with or without the dash."""
    return [pnr, f"{pnr[:8]}-{pnr[8:]}", pnr[2:], f"{pnr[2:8]}-{pnr[8:]}"]


def needles() -> dict[str, str]:
    """Everything no copy may hold: label → text."""
    found = {f"sentinel {key}": value for key, value in SENTINELS.items()}
    for who, name, surname, pnr, phone in (
        ("patient", NAME, SURNAME, PNR, PHONE),
        ("self-referred", SELF_NAME, SELF_SURNAME, SELF_PNR, SELF_PHONE),
    ):
        found[f"{who} name"] = name
        found[f"{who} surname"] = surname
        for written in identifier_forms(pnr):
            found[f"{who} personnummer {written}"] = written
        found[f"{who} phone"] = phone
        found[f"{who} phone digits"] = re.sub(r"\D", "", phone)
    return found


def encodings(value: str) -> list[bytes]:
    """The byte forms a search looks for: as typed, small letters, capitals, UTF-16, hex."""
    texts = dict.fromkeys([value, value.lower(), value.upper()])
    forms: list[bytes] = []
    for one in texts:
        forms += [one.encode(), one.encode("utf-16-le"), one.encode().hex().encode()]
    return forms


def search(copies: dict[str, bytes], wanted: dict[str, str]) -> dict[str, list[str]]:
    """label → the copies holding it in any of its forms."""
    found: dict[str, list[str]] = {}
    for label, value in wanted.items():
        forms = encodings(value)
        where = [name for name, data in copies.items() if any(f in data for f in forms)]
        if where:
            found[label] = where
    return found


# --- the chain -----------------------------------------------------------------------------------


@dataclass
class Chained:
    """A demo database after the sentinel chain, and the copies taken of it."""

    backend: str
    site: Site
    app: Flask
    case_id: int
    walk: ChainWalk
    #: Copy name → its bytes.
    copies: dict[str, bytes] = field(default_factory=dict)
    #: Every page the chain saw, to show each sentinel was stored and is read back.
    pages: list[str] = field(default_factory=list)

    @property
    def engine(self) -> Engine:
        engine: Engine = self.app.extensions["slussen.engine"]
        return engine


def login(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def unit_id(page: str, name: str) -> str:
    found = re.search(rf'<option[^>]* value="(\d+)"[^>]*>{re.escape(name)}</option>', page)
    assert found, f"no unit {name} to choose"
    return found.group(1)


UNIT = "Vårdcentralen Solgläntan"


def refer(app: Flask) -> None:
    """Staff flag the chain's patient (/remiss); a second person refers themself (/anmalan)."""
    staff = login(app, "personal")
    form = staff.get("/remiss").get_data(as_text=True)
    flagged = staff.post(
        "/remiss",
        data={
            "personnummer": PNR,
            "name": NAME,
            "street": S["STREET"] + " 4",
            "postcode": "72219",
            "town": S["TOWN"],
            "phone": PHONE,
            "unit": unit_id(form, UNIT),
            "channel": "staff_flag",
            "contact_channel": "post",
            "preferred_language": "sv",
            "reason": S["REASON"],
            "consent": "y",
        },
    )
    assert flagged.status_code == 302, flagged.get_data(as_text=True)
    public = app.test_client()
    form = public.get("/anmalan").get_data(as_text=True)
    referred = public.post(
        "/anmalan",
        data={
            "personnummer": SELF_PNR,
            "name": SELF_NAME,
            "street": S["SELFSTREET"] + " 9",
            "postcode": "72219",
            "town": S["SELFTOWN"],
            "phone": SELF_PHONE,
            "unit": unit_id(form, UNIT),
            "wish": S["WISH"],
            "contact_channel": "post",
            "consent": "y",
        },
    )
    assert referred.status_code == 302, referred.get_data(as_text=True)


def case_of(coach: FlaskClient, name: str) -> int:
    worklist = coach.get("/arbetslista").get_data(as_text=True)
    found = re.search(rf'href="/arenden/(\d+)"[^>]*>{re.escape(name)}<', worklist)
    assert found, f"{name} is not on the worklist"
    return int(found.group(1))


def walk_the_chain(app: Flask) -> tuple[ChainWalk, list[str]]:
    """Flag, invite, baseline answers online, screening, booking, mapping visit with network,
    interests, barriers, notes and area, action plan, hand-over, follow-ups 1 and 2, six-month
    answers, completion (and the self-referred person declines): every free-text field with
    its sentinel. Returns the walk and every page it saw."""
    refer(app)
    coach = login(app, "coach")
    walk = ChainWalk(app, coach, app.test_client(), case_of(coach, NAME))
    declined = ChainWalk(app, coach, app.test_client(), case_of(coach, SELF_NAME))
    pages = [declined.confirm("decline", S["DECLINE"])]
    pages.append(walk.fire("invite"))
    walk.answer("baseline", baseline_pick)  # the baseline forms have no free-text item
    pages.append(walk.resolve_screening(S["SCREENING"]))
    pages.append(walk.book(S["PLACE"]))
    pages.append(
        walk.map_and_plan(
            network=[
                NetworkRow(S["NETONE"], "family", 1, "weekly", is_could_deepen=True),
                NetworkRow(S["NETTWO"], "association", 3, "lost", is_could_resume=True),
            ],
            interests=INTERESTS,
            barriers=BARRIERS,
            barrier_notes=S["BARRIERNOTES"],
            notes=S["NOTES"],
            area=S["AREA"],
            goals=S["GOALS"],
            steps=[
                PlanStepRow(S["STEPONE"], "companion", note=S["STEPNOTE"]),
                PlanStepRow(S["STEPTWO"]),
            ],
        )
    )
    pages.append(walk.page("/kartlaggning"))
    pages.append(
        walk.hand_over(
            S["ORGANISATION"],
            companion=S["COMPANION"],
            meeting_place=S["MEETINGPLACE"],
            note=S["HANDOVERNOTE"],
        )
    )
    pages.append(walk.follow_up(S["HOWONE"], S["PROBLEMONE"]))
    pages.append(walk.follow_up(S["HOWTWO"], S["PROBLEMTWO"]))
    pages.append(walk.fire("send_evaluation"))
    walk.answer("six_month", six_month_pick, text=S["ANSWERSIXMONTH"])
    page = walk.confirm("complete", S["COMPLETE"])
    pages.append(page)
    for response in sorted(set(re.findall(rf'href="({walk.url}/svar/\d+)"', page))):
        pages.append(coach.get(response).get_data(as_text=True))
    return walk, pages


def _no_automatic_checkpoint(dbapi_connection: Any, _record: Any) -> None:
    # The WAL keeps every page the chain writes until the test has read it.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def libpq_url(site: Site) -> str:
    return make_url(site.database_url).set(drivername="postgresql").render_as_string(False)


def take_copies(chained: Chained, tmp: Path) -> None:
    """Read every copy: the instance folder's files (the SQLite file and its WAL while a
    connection holds it open), then a `slussen backup` and, on PostgreSQL, a plain pg_dump and
    the backup read back by pg_restore."""
    with chained.engine.connect():
        for path in sorted(chained.site.instance.rglob("*")):
            if path.is_file():
                chained.copies[str(path.relative_to(chained.site.instance))] = path.read_bytes()
    backup = tmp / "slussen.backup"
    chained.site.cli("backup", str(backup))
    if chained.backend == "sqlite":
        wal = chained.copies.get("slussen.sqlite3-wal", b"")
        assert len(wal) > 32, "the WAL holds no page: the search would miss what it keeps"
        chained.copies["slussen backup"] = backup.read_bytes()
        return
    url = libpq_url(chained.site)
    dump = subprocess.run(["pg_dump", "--dbname", url], capture_output=True, check=True)
    chained.copies["pg_dump"] = dump.stdout
    restored = subprocess.run(["pg_restore", "--file", "-", str(backup)], capture_output=True)
    assert restored.returncode == 0, restored.stderr.decode()
    chained.copies["slussen backup (pg_restore)"] = restored.stdout


@pytest.fixture(scope="module", params=BACKENDS)
def chained(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chained]:
    backend = str(request.param)
    tmp = tmp_path_factory.mktemp(f"sentinels_{backend}")
    with make_site(tmp, backend, "sentinels") as site:
        site.cli("init-db")
        site.cli("demo", "--password", TEST_PASSWORD)
        with site.active():  # the screening form (a DEMO placeholder) is answered too
            app = create_app({"use_demo_forms": True, "csrf_enabled": False})
        engine: Engine = app.extensions["slussen.engine"]
        if backend == "sqlite":
            event.listen(engine, "connect", _no_automatic_checkpoint)
            engine.dispose()  # every connection from here on has it
        try:
            walk, pages = walk_the_chain(app)
            result = Chained(backend, site, app, walk.case_id, walk, pages=pages)
            take_copies(result, tmp)
            yield result
        finally:
            engine.dispose()


# --- what a copy holds ---------------------------------------------------------------------------


def _column_holding(engine: Engine, value: str) -> list[str]:
    """table.column of every current row holding `value` as typed (text or bytes)."""
    found = []
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for column in table.columns:
                is_bytes = isinstance(column.type, LargeBinary)
                if not (is_bytes or isinstance(column.type, String)):
                    continue
                name = f'"{table.name}"."{column.name}"'
                if sqlite:
                    condition = f"instr({name}, :v) > 0"
                else:
                    condition = (
                        f"position(:v in {name}) > 0" if is_bytes else f"strpos({name}, :v) > 0"
                    )
                # Names from the models, the value bound.
                query = text(f'SELECT count(*) FROM "{table.name}" WHERE {condition}')  # noqa: S608
                if conn.execute(query, {"v": value.encode() if is_bytes else value}).scalar():
                    found.append(f"{table.name}.{column.name}")
    return found


def test_the_chain_stored_every_sentinel(chained: Chained) -> None:
    """Else a sentinel missing from the copies would prove nothing: each is read back on a page
    (decrypted), or was refused or dropped on purpose (said here)."""
    not_read_back = {
        "SCREENING": "kept only when the coach refers elsewhere; the chain continues",
        "HANDOVERNOTE": "sealed with the hand-over, but no page shows a hand-over's note",
    }
    shown = "\n".join(chained.pages)
    unseen = sorted(key for key, value in SENTINELS.items() if value not in shown)
    assert unseen == sorted(not_read_back)
    assert NAME in shown and SELF_NAME in shown
    assert PNR not in demo_personnummer_set() and SELF_PNR not in demo_personnummer_set()


def test_the_search_finds_what_a_copy_holds_in_clear(chained: Chained) -> None:
    """The copies are real and the search reads them: the chain's case reference (clear: it is
    printed instead of any identifier) is in each copy of the database taken after the chain,
    and a demo unit's name is in the SQLite file the demo wrote."""
    with chained.engine.connect() as conn:
        reference = conn.scalar(select(Case.reference).where(Case.id == chained.case_id))
    assert reference
    if chained.backend == "sqlite":
        expected = {"slussen.sqlite3": UNIT, "slussen.sqlite3-wal": reference}
        expected["slussen backup"] = reference
    else:
        expected = {"pg_dump": reference, "slussen backup (pg_restore)": reference}
    for copy, value in expected.items():
        assert search({copy: chained.copies[copy]}, {value: value}) == {value: [copy]}


def test_no_copy_holds_a_sentinel_a_name_or_a_personnummer(chained: Chained) -> None:
    """... nor an answer code the chain used: only its keyed hash is stored."""
    wanted = needles()
    assert len(chained.walk.codes) == 2
    for code in chained.walk.codes:
        wanted[f"answer code {code}"] = code
        wanted[f"answer code {code} ungrouped"] = code.replace("-", "")
    found = search(chained.copies, wanted)
    report = [
        f"{label} ({wanted[label]!r}) in {', '.join(where)}"
        f" → {', '.join(_column_holding(chained.engine, wanted[label])) or 'no current row'}"
        for label, where in sorted(found.items())
    ]
    assert report == [], "\n".join(report)


# --- what the clear columns hold -----------------------------------------------------------------


RESPONSES = QuestionnaireResponse.__tablename__


def tables_about_cases() -> list[Table]:
    """`cases`, `patients` and every table that refers to one of them, or to such a table."""
    about = {"cases", "patients"}
    grew = True
    while grew:
        grew = False
        for table in metadata.sorted_tables:
            if table.name not in about and any(
                fk.column.table.name in about for fk in table.foreign_keys
            ):
                about.add(table.name)
                grew = True
    return [t for t in metadata.sorted_tables if t.name in about]


def chain_scores(walk: ChainWalk) -> tuple[set[float], set[bool]]:
    """The values and the positive/negative results of every score of the chain's answers."""
    values: set[float] = set()
    positives: set[bool] = set()
    picks: dict[str, Callable[[Any], int]] = {
        "baseline": baseline_pick,
        "six_month": six_month_pick,
    }
    for occasion, pick in picks.items():
        for form in walk.forms(occasion):
            raw = {i.id: ("text" if i.type == "text" else pick(i)) for i in form.items}
            for result in score_form(form, check_answers(form, raw).answers):
                if result.value is not None:
                    values.add(float(result.value))
                if result.is_positive is not None:
                    positives.add(result.is_positive)
    return values, positives


def named_facts(chained: Chained) -> dict[str, str]:
    """The chain's facts a clear text could name: id → what it is."""
    workflow = chained.app.extensions["slussen.content"].compiled["workflow"]
    facts = dict.fromkeys(INTERESTS, "interest") | dict.fromkeys(BARRIERS, "barrier")
    # The chain's screening flag, before and after the coach's decision, and the events that
    # set it: a screening event in a case's history says the screening was positive.
    facts |= dict.fromkeys(("positive", "resolved"), "screening flag")
    for name, transition in workflow.transitions.items():
        if transition.screening is not None:
            facts[name] = "screening event"
    return facts


def clear_texts_naming(conn: Connection, facts: dict[str, str]) -> set[str]:
    """Every clear text column of a table about a case holding one of `facts` as a word."""
    word = re.compile(r"(?<![a-z_])(" + "|".join(map(re.escape, facts)) + r")(?![a-z_])")
    found = set()
    for table in tables_about_cases():
        for name in sorted(clear_columns(table)):
            column = table.c[name]
            if not isinstance(column.type, String):
                continue
            for value in conn.scalars(select(column).distinct()):
                for hit in word.findall(value or ""):
                    found.add(f"{table.name}.{name} = {value!r} ({facts[hit]})")
    return found


def clear_scores(conn: Connection, responses: list[int], walk: ChainWalk) -> set[str]:
    """Every clear number or truth value, other than a row reference, in a row hanging off one
    of the chain's answered forms (`responses`) that equals a score or a screen result of its
    answers: such a row may say which form and score it is, never the result."""
    values, positives = chain_scores(walk)
    found = set()
    for table in tables_about_cases():
        links = [fk.parent for fk in table.foreign_keys if fk.column.table.name == RESPONSES]
        results = [
            table.c[name]
            for name in sorted(clear_columns(table))
            if not (table.c[name].primary_key or table.c[name].foreign_keys)
            and not isinstance(table.c[name].type, String)
        ]
        for link, in_clear in itertools.product(links, results):
            for value in conn.scalars(select(in_clear).where(link.in_(responses)).distinct()):
                if isinstance(value, bool):
                    what = "screen result" if value in positives else ""
                else:
                    is_number = isinstance(value, int | float)
                    what = "score" if is_number and float(value) in values else ""
                if what:
                    found.add(f"{table.name}.{in_clear.name} = {value} ({what})")
    return found


def test_no_clear_column_about_a_case_holds_a_health_fact(chained: Chained) -> None:
    with chained.engine.connect() as conn:
        responses = list(
            conn.scalars(
                select(QuestionnaireResponse.id).where(
                    QuestionnaireResponse.case_id == chained.case_id
                )
            )
        )
        assert len(responses) >= 10  # both occasions' forms came in
        found = clear_texts_naming(conn, named_facts(chained))
        found |= clear_scores(conn, responses, chained.walk)
    assert sorted(found) == [], "\n".join(sorted(found))
