"""Postal letters: every letter type printed and read back, the envelope window, no personnummer,
Swedish characters, plain Swedish (LIX), batches, the forwarding queue, broken templates."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import pypdf
import pytest
from flask import Flask
from reportlab.pdfbase.pdfmetrics import stringWidth
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen import vault
from slussen.audit import Actor, AuditEvent
from slussen.capabilities import check_content
from slussen.cases.engine import fire
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.config import ConfigError, load_settings
from slussen.content import ContentError
from slussen.errors import Invalid, NotFound
from slussen.keystore import Keystore
from slussen.letterqueue import QueuedLetter
from slussen.letters import services
from slussen.letters.definitions import LIX_LIMIT, demo_body, lix
from slussen.letters.models import LetterBatch
from slussen.letters.render import RenderContext
from slussen.patients.models import Patient
from slussen.pdf import REGULAR, register_fonts
from slussen.questionnaires import codes
from slussen.questionnaires.models import AnswerCode
from slussen.visits.services import book_follow_up, request_handover, update_handover
from tests.builders import FUTURE, make_case, publish_activity, sample_pnr

TODAY = dt.date(2026, 11, 23)
TODAY_TEXT = "23 november 2026"
APPOINTMENT_TEXT = "tisdag 5 mars 2030 kl. 10.00"


@pytest.fixture
def context(app: Flask) -> RenderContext:
    result: RenderContext = services.render_context(
        app.extensions["slussen.content"], app.extensions["slussen.settings"]
    )
    return result


@pytest.fixture
def settings(app: Flask) -> Any:
    return app.extensions["slussen.settings"]


def pages_text(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def fragments(pdf: bytes, page: int = 0) -> list[tuple[str, float, float, float]]:
    """(text, x, y, font size) of every text run on a page, from the PDF's own positions."""
    found: list[tuple[str, float, float, float]] = []

    def visit(text: str, cm: list[float], tm: list[float], _font: Any, size: float) -> None:
        if not text.strip():
            return
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        found.append((text.strip(), x, y, size * tm[0]))

    pypdf.PdfReader(io.BytesIO(pdf)).pages[page].extract_text(visitor_text=visit)
    return found


def letters_of(session: Session, case: Case, letter: str | None = None) -> list[QueuedLetter]:
    query = select(QueuedLetter).where(QueuedLetter.case_id == case.id)
    if letter:
        query = query.where(QueuedLetter.letter == letter)
    return list(session.scalars(query.order_by(QueuedLetter.id)))


def case_with_letter(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    letter: str,
    **identity: Any,
) -> tuple[Case, QueuedLetter]:
    """A case whose events (the real ones) queued `letter`."""
    store = Keystore(session, ring)
    state = {
        "kallelse": "invited",
        "reminder": "invited",
        "appointment": "mapping_booked",
        "action_plan": "plan_active",
        "handover": "plan_active",
        "follow_up": "plan_active",
        "evaluation": "evaluation_sent",
        "referred_elsewhere": "closed_referred_elsewhere",
        "closing_thanks": "closed_completed",
    }[letter]
    case = make_case(session, ring, workflow, coach, unit.id, state, **identity)
    if letter == "reminder":
        fire(store, case, "remind", coach, workflow=workflow)
    elif letter == "handover":
        handover = request_handover(
            store, coach, case, workflow=workflow, organisation_name="Röda Korset"
        )
        update_handover(
            store,
            coach,
            case,
            handover,
            workflow=workflow,
            status="accepted",
            companion_name="Eva",
            meeting_at=FUTURE + dt.timedelta(days=2),
            meeting_place="Träffpunkten, Storgatan 2",
        )
    elif letter == "follow_up":
        book_follow_up(
            store, coach, case, workflow=workflow, starts_at=FUTURE, place="Vårdcentralen, rum 3"
        )
    session.flush()
    return case, letters_of(session, case, letter)[-1]


ALL_LETTERS = [
    "kallelse",
    "reminder",
    "appointment",
    "action_plan",
    "handover",
    "follow_up",
    "evaluation",
    "referred_elsewhere",
    "closing_thanks",
]
#: What each letter must say besides name, address and date.
EXPECTED = {
    "appointment": [APPOINTMENT_TEXT, "Vårdcentralen, rum 3", "Test coach"],
    "follow_up": [APPOINTMENT_TEXT, "Vårdcentralen, rum 3"],
    "action_plan": ["Träffa andra en gång i veckan", "Gå med i promenadgruppen"],
    "handover": ["Eva", "Röda Korset", "torsdag 7 mars 2030 kl. 10.00", "Träffpunkten"],
    "kallelse": ["Tre frågor om gemenskap", "Svara på nätet"],
    "evaluation": ["Tre frågor om gemenskap", "Svara på nätet"],
}


def pnr_forms(pnr12: str) -> list[str]:
    """Every way a personnummer can be written."""
    ten = pnr12[2:]
    return [pnr12, ten, f"{ten[:6]}-{ten[6:]}", f"{ten[:6]}+{ten[6:]}", f"{pnr12[:8]}-{pnr12[8:]}"]


@pytest.mark.parametrize("letter", ALL_LETTERS)
def test_each_letter_prints_name_address_date_and_appointment(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
    letter: str,
) -> None:
    case, queued = case_with_letter(session, ring, workflow, coach, unit, letter)
    pdf = services.preview_letter(
        Keystore(session, ring), coach, queued.id, context=context, settings=settings, today=TODAY
    )
    pages = pages_text(pdf)
    first = pages[0]
    patient = session.get(Patient, case.patient_id)
    assert patient is not None
    name = re.search(r"Testperson \d+", first)
    assert name is not None, first
    # The window's last line has the postort in capitals; the letterhead's town keeps its case.
    assert "Provgatan" in first and "722 15 VÄSTERÅS" in first and "722 15 Västerås" in first
    assert TODAY_TEXT in first and case.reference in first
    assert unit.name in first and unit.phone in first
    whole = "\n".join(pages)
    for expected in EXPECTED.get(letter, []):
        assert expected in whole, (expected, whole)
    # No personnummer in any form on any page; no 10- or 12-digit run that could be one.
    number = int(name.group(0).split()[1])
    for form in pnr_forms(sample_pnr(number)):
        assert form not in whole
    assert not re.search(r"\b(\d{2})?\d{6}[-+]?\d{4}\b", whole.replace(" ", ""))
    # Every enclosure page names the case and a form; every enclosed form is there.
    template = context.templates[letter]
    enclosure_pages = [p for p in pages if "Formulär " in p]
    for page in enclosure_pages:
        assert case.reference in page
    for form_id in template.enclose:
        assert any(f"Formulär {form_id} " in p for p in enclosure_pages), form_id


def test_a_handover_letter_waits_for_an_agreed_place_without_decrypting_it(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    context: RenderContext,
) -> None:
    """The meeting place is sealed; whether one is agreed is whether a sealed value is stored,
    so the hold check needs no key (here: a ring that opens nothing of this patient's)."""
    store = Keystore(session, ring)
    case = make_case(session, ring, workflow, coach, unit.id, "plan_active")
    handover = request_handover(
        store, coach, case, workflow=workflow, organisation_name="Röda Korset"
    )
    update_handover(
        store, coach, case, handover, workflow=workflow, status="accepted", meeting_at=FUTURE
    )
    template = context.templates["handover"]
    blind = Keystore(session, vault.KeyRing.generate())
    assert services.check_needs(blind, case, template) == "Överlämningen saknar tid eller plats."
    update_handover(
        store,
        coach,
        case,
        handover,
        workflow=workflow,
        status="accepted",
        meeting_at=FUTURE,
        meeting_place="Kafét",
    )
    assert services.check_needs(blind, case, template) is None


def test_the_same_letter_renders_to_the_same_bytes(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
) -> None:
    _case, queued = case_with_letter(session, ring, workflow, coach, unit, "kallelse")
    store = Keystore(session, ring)
    first = services.preview_letter(
        store, coach, queued.id, context=context, settings=settings, today=TODAY
    )
    again = services.preview_letter(
        store, coach, queued.id, context=context, settings=settings, today=TODAY
    )
    assert first == again
    assert b"ReportLab" not in first.split(b"\n", 3)[-1][:0]  # sanity: bytes, not text
    assert len(pypdf.PdfReader(io.BytesIO(first)).pages) >= 2


@pytest.mark.parametrize("letter", ["appointment", "kallelse", "action_plan"])
def test_the_address_sits_inside_the_window_and_nothing_else_does(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
    letter: str,
) -> None:
    _case, queued = case_with_letter(session, ring, workflow, coach, unit, letter)
    pdf = services.preview_letter(
        Keystore(session, ring), coach, queued.id, context=context, settings=settings, today=TODAY
    )
    x0, y0, x1, y1 = context.layout.window()
    assert (x0, y1) == pytest.approx((20 / 25.4 * 72, (297 - 45) / 25.4 * 72), abs=0.5)
    inside, outside = [], []
    for text, x, y, size in fragments(pdf):
        right = x + stringWidth(text, REGULAR, size)
        top = y + size * 0.8
        overlaps = x < x1 and right > x0 and y < y1 and top > y0
        contained = x >= x0 and right <= x1 and y >= y0 and top <= y1
        if overlaps:
            assert contained, f"{text!r} crosses the window's edge"
            inside.append(text)
        else:
            outside.append(text)
    assert len(inside) == 3
    assert inside[0].startswith("Testperson") and inside[1].startswith("Provgatan")
    assert inside[2] == "722 15 VÄSTERÅS"
    # The lower-right 150 × 30 mm stays free for PostNord.
    register_fonts()
    for text, x, y, size in fragments(pdf):
        right = x + stringWidth(text, REGULAR, size)
        assert not (right > (210 - 150) / 25.4 * 72 and y < 30 / 25.4 * 72), text


def test_a_moved_window_moves_the_address(
    app: Flask,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
) -> None:
    moved = settings.replace(letter_window_top_mm=50, letter_window_left_mm=110)
    moved_context = services.render_context(app.extensions["slussen.content"], moved)
    _case, queued = case_with_letter(session, ring, workflow, coach, unit, "closing_thanks")
    pdf = services.preview_letter(
        Keystore(session, ring),
        coach,
        queued.id,
        context=moved_context,
        settings=moved,
        today=TODAY,
    )
    x0, y0, x1, y1 = moved_context.layout.window()
    inside = [t for t, x, y, _s in fragments(pdf) if x0 <= x <= x1 and y0 <= y <= y1]
    assert len(inside) == 3 and inside[2] == "722 15 VÄSTERÅS"
    for text, x, _y, size in fragments(pdf):
        assert x + stringWidth(text, REGULAR, size) <= 210 / 25.4 * 72, text
    with pytest.raises(ConfigError, match="below the letterhead"):
        settings.replace(letter_window_top_mm=20)


def test_swedish_characters_survive_render_and_extract(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
) -> None:
    name = "Åsa Öberg-Ängström Émile Müller"
    _case, queued = case_with_letter(
        session,
        ring,
        workflow,
        coach,
        unit,
        "kallelse",
        name=name,
        street="Källvägen 5 lgh 1102",
        town="Ärla",
        postcode="635 02",
    )
    pdf = services.preview_letter(
        Keystore(session, ring), coach, queued.id, context=context, settings=settings, today=TODAY
    )
    first = pages_text(pdf)[0]
    whole = "\n".join(pages_text(pdf))
    for text in (name, "Källvägen 5 lgh 1102", "635 02 ÄRLA", "Hej Åsa", "frågor", "vänliga"):
        assert text in whole
    assert name in first and "635 02 ÄRLA" in first
    assert b"/Helvetica" not in pdf.split(b"stream")[0] or b"FontFile2" in pdf  # embedded TTF
    assert b"/FontFile2" in pdf


def test_english_patients_get_the_english_variant(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
) -> None:
    _case, queued = case_with_letter(
        session, ring, workflow, coach, unit, "appointment", preferred_language="en"
    )
    pdf = services.preview_letter(
        Keystore(session, ring), coach, queued.id, context=context, settings=settings, today=TODAY
    )
    first = pages_text(pdf)[0]
    assert "Your appointment" in first and "Tuesday, 5 March 2030 at 10.00" in first
    assert "23 November 2026" in first


def test_answer_code_is_printed_once_per_letter_and_only_its_hash_is_stored(
    backend: str,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    coordinator: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
) -> None:
    case, queued = case_with_letter(session, ring, workflow, coach, unit, "kallelse")
    store = Keystore(session, ring)
    code = codes.letter_code(store.ring, queued.id)
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{2}", code)
    assert code != codes.letter_code(store.ring, queued.id + 1)
    out = io.BytesIO()
    services.print_batch(
        store, coordinator, unit.id, out, context=context, settings=settings, today=TODAY
    )
    text = "\n".join(pages_text(out.getvalue()))
    assert code in text
    assert f"/svar/{code.replace('-', '')}" not in text  # the URL is in the QR code, not text
    row = session.scalars(select(AnswerCode).where(AnswerCode.letter_id == queued.id)).one()
    assert row.code_hash == codes.code_hash(ring, code) and row.case_id == case.id
    assert row.occasion == "baseline" and row.used_at is None
    assert code.replace("-", "") not in row.code_hash
    assert (row.expires_at - row.created_at).days == 59 or (
        row.expires_at - row.created_at
    ).days == 60


def test_every_shipped_letter_is_plain_swedish(context: RenderContext) -> None:
    assert set(ALL_LETTERS) <= set(context.templates)
    for template in context.templates.values():
        score = lix(demo_body(template))
        assert score <= LIX_LIMIT, f"{template.id}: LIX {score:.1f}"
        assert "en" in template.variants


def test_lix_is_words_per_sentence_plus_share_of_long_words() -> None:
    # 8 words in 2 sentences; 3 have more than six letters (promenader, tillsammans, efteråt).
    text = "Vi går promenader. Vi fikar tillsammans sedan efteråt."
    assert lix(text) == pytest.approx(8 / 2 + 100 * 3 / 8)
    # "kl. 10.00" ends no sentence; numbers are never long words.
    assert lix("Vi ses kl. 10.00 i dag.") == pytest.approx(6 / 1)


# --- broken templates ---------------------------------------------------------------------------


def content_dir_with(tmp_path: Path, **letters: str) -> Path:
    """A deployer content directory: the shipped letters, some replaced or added."""
    shipped = Path(__file__).resolve().parents[2] / "letters"
    target = tmp_path / "content" / "letters"
    target.mkdir(parents=True)
    for path in shipped.glob("*.toml"):
        (target / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    for stem, text in letters.items():
        (target / f"{stem}.toml").write_text(text, encoding="utf-8")
    return tmp_path / "content"


BROKEN = '''id = "closing_thanks"
title = { sv = "Tack", en = "Thanks" }
enclose = ["not_a_form"]

subject = "Tack"
body = """
Hej {patient_nmae}!

Vi ses {appointment_time}.
"""
'''


def test_broken_templates_give_file_and_line_and_stop_the_app(tmp_path: Path) -> None:
    directory = content_dir_with(tmp_path, closing_thanks=BROKEN)
    settings = load_settings({"env": "testing"}, environ={})
    _content, problems = check_content(settings, directory)
    messages = [str(p) for p in problems if not p.is_warning]
    path = directory / "letters" / "closing_thanks.toml"
    assert f"{path}:3: error: enclosure 'not_a_form' is not a form in forms/" in "\n".join(messages)
    assert any(
        m.startswith(f"{path}:7: error: unknown placeholder {{patient_nmae}}") for m in messages
    )
    assert any("missing variant" in m and str(path) in m for m in messages)
    with pytest.raises(ContentError, match=r"closing_thanks\.toml"):
        from slussen.app import create_app

        create_app(
            {
                "env": "testing",
                "instance_dir": str(tmp_path / "instance"),
                "content_dir": str(directory),
            }
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('body = """\nHej {patient_name!\n"""', "literal brace"),
        ('body = """\nHej {answer_code}.\n"""', "needs asks_for_answers = true"),
        ('body = """\nHej ☺ {patient_name}.\n"""', "cannot print"),
        ('body = """\nSe här: {plan_steps} och mer.\n"""', "stand alone"),
        ('colour = "blå"\nbody = """\nHej.\n"""', "unknown key 'colour'"),
    ],
)
def test_each_template_mistake_is_named(tmp_path: Path, text: str, message: str) -> None:
    template = (
        'id = "closing_thanks"\ntitle = { sv = "Tack", en = "Thanks" }\nsubject = "Tack"\n'
        + text
        + '\n\n[en]\nsubject = "Thanks"\nbody = """\nHello.\n"""\n'
    )
    directory = content_dir_with(tmp_path, closing_thanks=template)
    _content, problems = check_content(load_settings({"env": "testing"}, environ={}), directory)
    errors = [str(p) for p in problems if not p.is_warning]
    assert any(message in e and "closing_thanks.toml:" in e for e in errors), errors


LONG_WINDED = '''id = "closing_thanks"
title = { sv = "Tack", en = "Thanks" }
subject = "Tack"
body = """
Vårdcentralens samordningsfunktion överlämnar härmed information angående avslutningsrutinerna.
"""

[en]
subject = "Thanks"
body = """
Thanks.
"""
'''


def test_a_deployer_template_above_lix_40_gets_a_warning(
    tmp_path: Path, cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from slussen.cli import cli

    directory = content_dir_with(tmp_path, closing_thanks=LONG_WINDED)
    result = CliRunner().invoke(cli, ["content", "check", str(directory)])
    assert result.exit_code == 0, result.output
    assert re.search(
        r"closing_thanks\.toml:4: warning: the Swedish body scores LIX \d+", result.output
    )
    assert "Content is valid" in result.output


# --- batches ------------------------------------------------------------------------------------


def count(session: Session, model: Any, *where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_a_batch_is_in_postcode_order_marks_exactly_its_letters_and_is_idempotent(
    backend: str,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    coordinator: Actor,
    unit: Any,
    make_user: Any,
    context: RenderContext,
    settings: Any,
) -> None:
    store = Keystore(session, ring)
    postcodes = ["933 33", "114 18", "722 15", "441 96"]
    cases = [
        case_with_letter(session, ring, workflow, coach, unit, "appointment", postcode=p)[0]
        for p in postcodes
    ]
    # A letter of another unit is never part of this unit's batch.
    from slussen.accounts.models import Unit

    other_unit = Unit(
        name="Annan vårdcentral",
        hsa_id="SE2321000016-OTH1",
        street="Annangatan 1",
        postcode="111 11",
        town="Stockholm",
        phone="08-00 00 00",
    )
    session.add(other_unit)
    session.flush()
    other_coach = Actor.of(make_user("coach", "coach2", units=[other_unit]))
    other_case, other_letter = case_with_letter(
        session, ring, workflow, other_coach, other_unit, "kallelse"
    )
    audits_before = count(session, AuditEvent, AuditEvent.action == "print")
    out = io.BytesIO()
    result = services.print_batch(
        store, coordinator, unit.id, out, context=context, settings=settings, today=TODAY
    )
    pdf = out.getvalue()
    # Each case has its invitation and its appointment letter queued: eight letters.
    assert result.batch is not None and result.printed == 8 and not result.held
    pages = pages_text(pdf)
    assert "Utskrift av brev" in pages[0] and "Tid för samtal\n4" in pages[0]
    assert "Kallelse\n4" in pages[0] and "Totalt\n8" in pages[0]
    assert not re.search(r"Testperson|Provgatan", pages[0])
    x0, y0, x1, y1 = context.layout.window()
    order = []
    for number in range(1, len(pages)):
        if "Datum" not in pages[number]:
            continue  # not a letter's first page
        window = [t for t, x, y, _s in fragments(pdf, number) if x0 <= x <= x1 and y0 <= y <= y1]
        order.append(window[-1][:6])
    assert order == sorted(postcodes * 2)
    queued = [letters_of(session, case, "appointment")[-1] for case in cases]
    assert {q.status for q in queued} == {"printed"}
    assert {q.batch_id for q in queued} == {result.batch.id}
    # Same postcode: the older letter (the invitation) first.
    assert sorted(q.batch_position or 0 for q in queued) == [2, 4, 6, 8]
    assert other_letter.status == "queued" and other_case.unit_id == other_unit.id
    # Earlier letters of these cases (kallelse) were printed too, exactly once.
    assert count(session, QueuedLetter, QueuedLetter.status == "queued") == 1
    assert (
        count(session, AuditEvent, AuditEvent.action == "print") == audits_before + result.printed
    )
    batch = session.get(LetterBatch, result.batch.id)
    assert batch is not None and batch.page_count == len(pages)
    assert batch.letter_count == result.printed
    # Printing again: the same bytes, nothing changes.
    statuses = [(q.id, q.status, q.batch_id, q.printed_at) for q in queued]
    again = io.BytesIO()
    reprint = services.reprint_batch(
        store, coordinator, batch.id, again, context=context, settings=settings
    )
    assert again.getvalue() == pdf and reprint.is_identical
    assert [(q.id, q.status, q.batch_id, q.printed_at) for q in queued] == statuses
    assert count(session, LetterBatch) == 1
    # Nothing left to print for the unit.
    empty = services.print_batch(
        store, coordinator, unit.id, io.BytesIO(), context=context, settings=settings, today=TODAY
    )
    assert empty.batch is None and empty.printed == 0


def test_selected_letters_only(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    coordinator: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
) -> None:
    _a, first = case_with_letter(session, ring, workflow, coach, unit, "kallelse")
    _b, second = case_with_letter(session, ring, workflow, coach, unit, "kallelse")
    result = services.print_batch(
        Keystore(session, ring),
        coordinator,
        unit.id,
        io.BytesIO(),
        context=context,
        settings=settings,
        letter_ids=[second.id],
        today=TODAY,
    )
    assert result.printed == 1
    assert (first.status, second.status) == ("queued", "printed")


def test_incomplete_letters_are_held_back_with_a_reason(
    backend: str,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    coordinator: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
) -> None:
    _case, no_address = case_with_letter(
        session, ring, workflow, coach, unit, "kallelse", street="", postcode="", town=""
    )
    _case2, fine = case_with_letter(session, ring, workflow, coach, unit, "kallelse")
    result = services.print_batch(
        Keystore(session, ring),
        coordinator,
        unit.id,
        io.BytesIO(),
        context=context,
        settings=settings,
        today=TODAY,
    )
    assert result.printed == 1 and fine.status == "printed"
    assert no_address.status == "held" and no_address.hold_reason == "Adress saknas."
    assert result.held == [(no_address.id, "Adress saknas.")]
    with pytest.raises(services.LetterIncomplete, match="Adress saknas"):
        services.preview_letter(
            Keystore(session, ring),
            coach,
            no_address.id,
            context=context,
            settings=settings,
        )


def test_protected_identity_goes_to_the_forwarding_queue_without_address(
    backend: str,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    coordinator: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
) -> None:
    store = Keystore(session, ring)
    case, protected = case_with_letter(
        session, ring, workflow, coach, unit, "kallelse", is_protected_identity=True
    )
    normal = services.print_batch(
        store, coordinator, unit.id, io.BytesIO(), context=context, settings=settings, today=TODAY
    )
    assert normal.batch is None and protected.status == "queued"
    assert [
        letter.id for letter, _c in services.pending_letters(store, unit.id, forwarding=True)
    ] == [protected.id]
    out = io.BytesIO()
    result = services.print_batch(
        store,
        coordinator,
        unit.id,
        out,
        context=context,
        settings=settings,
        forwarding=True,
        today=TODAY,
    )
    assert result.batch is not None and result.batch.is_forwarding
    pages = pages_text(out.getvalue())
    assert "vidarebefordra" in pages[0]
    assert "Provgatan" not in "\n".join(pages)
    assert case.reference in pages[1]
    x0, y0, x1, y1 = context.layout.window()
    assert not [f for f in fragments(out.getvalue(), 1) if x0 <= f[1] <= x1 and y0 <= f[2] <= y1]


def test_an_older_duplicate_is_cancelled_and_a_closed_case_s_letters_are_not_sent(
    backend: str,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    coordinator: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
) -> None:
    store = Keystore(session, ring)
    case, first = case_with_letter(session, ring, workflow, coach, unit, "reminder")
    fire(store, case, "remind", coach, workflow=workflow)
    second = letters_of(session, case, "reminder")[-1]
    declined, kallelse = case_with_letter(session, ring, workflow, coach, unit, "kallelse")
    fire(store, declined, "decline", coach, workflow=workflow, reason="Vill inte", confirmed=True)
    services.print_batch(
        store, coordinator, unit.id, io.BytesIO(), context=context, settings=settings, today=TODAY
    )
    assert first.status == "cancelled" and second.status == "printed"
    assert kallelse.status == "cancelled" and "avslutades" in (kallelse.hold_reason or "")


def test_only_a_coordinator_of_the_unit_prints(
    session: Session,
    ring: vault.KeyRing,
    coach: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
) -> None:
    with pytest.raises(NotFound):  # 404: another unit's letters are not shown
        services.print_batch(
            Keystore(session, ring),
            coach,
            unit.id,
            io.BytesIO(),
            context=context,
            settings=settings,
        )


def test_the_action_plan_prints_the_chosen_activitys_next_occasions_place_and_contact(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    context: RenderContext,
    settings: Any,
    make_user: Any,
) -> None:
    from slussen.visits.services import StepInput, save_action_plan

    case, queued = case_with_letter(session, ring, workflow, coach, unit, "action_plan")
    store = Keystore(session, ring)
    # A choir every Tuesday at 18.00 from Tuesday 1 December 2026; the letter is dated the
    # 23 November 2026 (a Monday), so it lists 1, 8 and 15 December.
    choir = publish_activity(
        session,
        make_user("coordinator", "katalogen"),
        title="Kör för alla",
        first_date=dt.date(2026, 12, 1),
        start_time=dt.time(18, 0),
        rrule="FREQ=WEEKLY;BYDAY=TU",
        place_name="Kyrkans församlingshem",
        street="Kyrkgatan 3",
        postcode="722 12",
        town="Västerås",
        contact_name="Maja Ek",
        contact_phone="070-123 45 67",
        cost_sek=20,
        cost_note="kaffe ingår",
        bring="Bekväma skor",
    )
    save_action_plan(
        store,
        coach,
        case,
        workflow=workflow,
        goals="Sjunga med andra",
        steps=[
            StepInput(text="", activity_id=choir.activity_id, due_on=dt.date(2026, 12, 15)),
            StepInput(text="Ringa systern"),
        ],
    )
    whole = "\n".join(
        pages_text(
            services.preview_letter(
                store, coach, queued.id, context=context, settings=settings, today=TODAY
            )
        )
    )
    for expected in (
        "Sjunga med andra",
        "Kör för alla",  # the step took the activity's title
        "senast 15 december 2026",
        "Nästa tillfällen:",
        "tisdag 1 december 2026 kl. 18.00",
        "tisdag 8 december 2026 kl. 18.00",
        "tisdag 15 december 2026 kl. 18.00",
        "Plats: Kyrkans församlingshem, Kyrkgatan 3, 722 12 Västerås",
        "Kontakt: Maja Ek, 070-123 45 67",
        "Ta med: Bekväma skor",
        "Kostnad: 20 kr (kaffe ingår)",
        "Ringa systern",
    ):
        assert expected in whole, expected
    assert "tisdag 22 december" not in whole  # three occasions, not more


def test_a_step_refuses_an_activity_the_directory_never_published(
    session: Session, ring: vault.KeyRing, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    from slussen.visits.services import StepInput, save_action_plan

    case, _queued = case_with_letter(session, ring, workflow, coach, unit, "action_plan")
    with pytest.raises(Invalid, match="finns inte i aktivitetskatalogen"):
        save_action_plan(
            Keystore(session, ring),
            coach,
            case,
            workflow=workflow,
            goals="Sjunga med andra",
            steps=[StepInput(text="Kören", activity_id=999_999)],
        )


def test_enclosed_forms_have_a_large_print_option(
    app: Flask,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    settings: Any,
) -> None:
    _case, queued = case_with_letter(session, ring, workflow, coach, unit, "kallelse")
    sizes = {}
    for large in (False, True):
        ctx = services.render_context(
            app.extensions["slussen.content"], settings, large_print=large
        )
        pdf = services.preview_letter(
            Keystore(session, ring), coach, queued.id, context=ctx, settings=settings, today=TODAY
        )
        reader = pypdf.PdfReader(io.BytesIO(pdf))
        ucla = next(
            i for i, page in enumerate(reader.pages) if "Formulär ucla3" in page.extract_text()
        )
        sizes[large] = max(s for t, _x, _y, s in fragments(pdf, ucla) if t.startswith("Ibland"))
    assert sizes[False] == 12 and sizes[True] == 16


def test_the_qr_code_points_at_the_configured_address() -> None:
    from slussen.config import Settings

    configured = Settings(public_base_url="https://slussen.example.se/")
    assert services.answer_url(configured, "ACDE-FGHJ-KM") == (
        "https://slussen.example.se/svar/ACDEFGHJKM"
    )
    local = Settings(serve_host="127.0.0.1", serve_port=5001)
    assert services.answer_url(local, "ACDEFGHJKM") == "http://127.0.0.1:5001/svar/ACDEFGHJKM"
