"""Letter rules: what a queued letter prints, previews, print batches, reprints, answer codes.

Every function takes the Keystore (session + key ring) and the acting user. Reading a patient's
identity goes through slussen.patients.services.read_patient (an audit row "read"); printing writes
an audit row "print" per letter. Functions only flush; the view or command commits once. The one
exception is `print_batch` given a `commit` callable (the CLI): it commits a slice of letters at a
time, and a run that stops half way is finished by the next one.

A batch is never stored as a PDF (it would be patient data at rest): it is rendered again from the
same letters in the same order with the batch's date, which gives the same bytes (`LetterBatch.
sha256` tells whether it did).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVarTuple

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from slussen import audit
from slussen.accounts.models import Unit, User
from slussen.accounts.roles import Permission, grants
from slussen.audit import Actor
from slussen.cases.engine import may_act_on
from slussen.cases.models import Case
from slussen.config import Settings, local_zone, today_local
from slussen.db import SLICE_SIZE, in_slices, utcnow
from slussen.directory.models import Activity
from slussen.directory.services import next_occasions
from slussen.errors import Invalid, NotFound
from slussen.identifiers import IdentifierError, format_postal_line
from slussen.keystore import Keystore
from slussen.letterqueue import ADDRESS_TOO_LONG, BAD_POSTAL_LINE, NO_ADDRESS, QueuedLetter
from slussen.letters.definitions import LetterTemplate
from slussen.letters.models import LetterBatch
from slussen.letters.render import (
    Cover,
    Layout,
    LetterData,
    Letterhead,
    RenderContext,
    StepText,
    address_font_size,
    format_letter_date,
    format_letter_moment,
    render_letter,
    write_batch,
)
from slussen.patients.models import Patient
from slussen.patients.services import PatientIdentity, read_patient
from slussen.questionnaires import codes
from slussen.questionnaires.models import AnswerCode
from slussen.visits.models import ActionPlan, Handover, Visit
from slussen.visits.services import current_plan, handover_details, visit_place

REPLY_DAYS = 14
#: Ids from a URL above this are refused before they reach the database (integer columns).
MAX_ID = 2**31
# The row type of a query narrowed by `_in_queue` (it keeps what the query selects).
Row = TypeVarTuple("Row")


#: Writes a batch's cover and letters as one PDF: (out, cover, letters, context, progress=)
#: -> (pages, sha256), as `render.write_batch` does.
BatchWriter = Callable[..., tuple[int, str]]


class LetterIncomplete(Invalid):
    """The letter cannot be printed correctly now; the message is the hold reason."""


# --- hooks the lead connects at merge -----------------------------------------------------------


#: How many of an activity's next occasions the action plan letter lists.
PLAN_LETTER_OCCASIONS = 3


def activity_details(
    session: Session, activity_id: int, after: dt.date, language: str
) -> dict[str, str] | None:
    """A directory activity's printable details for the action plan letter: {"title", "when"
    (its next PLAN_LETTER_OCCASIONS occasions from the letter's date on, one a line, "tisdag 12
    januari 2027 kl. 14.00", so a reprint gives the same text), "place" (the place's name and
    address), "contact" (name, phone, e-mail), "bring" (what to bring), "cost" (price and note;
    "" when free of charge)}; None when the activity is gone, withdrawn or has no occasion
    ahead (the letter then prints the step's own text)."""
    activity = session.get(Activity, activity_id)
    if activity is None or activity.published is None:
        return None
    start = dt.datetime.combine(after, dt.time(0), tzinfo=local_zone())
    occasions = next_occasions(activity, start, PLAN_LETTER_OCCASIONS)
    if not occasions:
        return None
    version = activity.published
    when = "\n".join(format_letter_moment(o.starts_at, language) for o in occasions)
    postal = " ".join(p for p in (version.postcode, version.town) if p)
    place = ", ".join(p for p in (version.place_name, version.street, postal) if p)
    contact = ", ".join(
        p for p in (version.contact_name, version.contact_phone, version.contact_email) if p
    )
    cost = "" if version.is_free else f"{version.cost_sek} kr"
    if version.cost_note:
        cost = f"{cost} ({version.cost_note})" if cost else version.cost_note
    return {
        "title": version.title,
        "when": when,
        "place": place,
        "contact": contact,
        "bring": version.bring,
        "cost": cost,
    }


def create_answer_code(
    store: Keystore,
    case: Case,
    occasion: str,
    letter: QueuedLetter,
    *,
    settings: Settings,
    now: dt.datetime,
) -> str:
    """Make the letter's derived code (codes.letter_code) valid for answering at /svar, through
    the one answer-code service (hash only, expiry, single use). Idempotent: a letter printed
    again keeps its one code. A preview makes it too, so the code a coach reads out from a
    queued letter works at once; each later call (the print) moves its expiry to a full
    `answer_code_days` from `now`, so the printed letter's code runs as long as any."""
    code = codes.create_answer_code(
        store.session,
        store.ring,
        case,
        occasion,
        letter_id=letter.id,
        days=settings.answer_code_days,
        now=now,
        code=codes.letter_code(store.ring, letter.id),
    )
    expires = now + dt.timedelta(days=settings.answer_code_days)
    for row in store.session.scalars(
        select(AnswerCode).where(
            AnswerCode.letter_id == letter.id,
            AnswerCode.used_at.is_(None),
            AnswerCode.expires_at < expires,
        )
    ):
        row.expires_at = expires
    return code


def answer_url(settings: Settings, code: str) -> str:
    """Where the QR code points: <public_base_url>/svar/<code>, the code ungrouped."""
    return codes.answer_url(code, settings.base_url, grouped=False)


def printing_unit(session: Session, hsa_id: str | None) -> int:
    """The id of the unit whose letters are to be printed: the one with `hsa_id`, or the only
    unit when none is named. Refuses (Invalid) an unknown HSA-id, and no name among several
    units, naming the known ones."""
    units = list(session.scalars(select(Unit).order_by(Unit.id)))
    chosen = [u for u in units if hsa_id is None or u.hsa_id == hsa_id]
    if len(chosen) != 1:
        known = ", ".join(u.hsa_id for u in units) or "inga"
        raise Invalid(f"Ange enhetens HSA-id (kända: {known}).")
    return chosen[0].id


# --- what a letter needs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """The parts of the identity a letter prints: name, window lines, language, sort key."""

    name: str
    address: tuple[str, ...]
    language: str
    postcode: str
    is_protected: bool


_SEP = "\x1f"


def _pack(recipient: Recipient) -> str:
    """One string per planned letter (a batch of thousands holds these until it is rendered)."""
    flags = ("p" if recipient.is_protected else "-") + recipient.language
    return _SEP.join((flags, recipient.postcode, recipient.name, *recipient.address))


def _unpack(packed: str) -> Recipient:
    flags, postcode, name, *address = packed.split(_SEP)
    return Recipient(name, tuple(address), flags[1:], postcode, flags[0] == "p")


def recipient_of(identity: PatientIdentity, layout: Layout) -> Recipient:
    """The window lines for a patient; refuses (LetterIncomplete) an address that is missing,
    malformed or too long for the window. A protected identity gets no address at all."""
    if identity.is_protected_identity:
        return Recipient(identity.name, (), identity.preferred_language, "", True)
    if not identity.has_postal_address:
        raise LetterIncomplete(NO_ADDRESS)
    try:
        postal_line = format_postal_line(identity.postcode, identity.town)
    except IdentifierError:
        raise LetterIncomplete(BAD_POSTAL_LINE) from None
    lines = (identity.name.strip(), identity.street.strip(), postal_line)
    if address_font_size(lines, layout) is None:
        raise LetterIncomplete(ADDRESS_TOO_LONG)
    digits = postal_line[:6].replace(" ", "")
    return Recipient(identity.name.strip(), lines, identity.preferred_language, digits, False)


def _template(templates: dict[str, LetterTemplate], letter: QueuedLetter) -> LetterTemplate:
    template = templates.get(letter.letter)
    if template is None:
        raise LetterIncomplete(f"Brevmallen {letter.letter} finns inte.")
    return template


def _visit(session: Any, case: Case | _CaseRef, template: LetterTemplate) -> Visit | None:
    kinds = ("mapping",) if template.visit == "mapping" else ("follow_up_1", "follow_up_2")
    visit: Visit | None = session.scalar(
        select(Visit)
        .where(Visit.case_id == case.id, Visit.kind.in_(kinds), Visit.status == "booked")
        .order_by(Visit.starts_at.desc(), Visit.id.desc())
        .limit(1)
    )
    return visit


def _handover(session: Any, case: Case | _CaseRef) -> Handover | None:
    handover: Handover | None = session.scalar(
        select(Handover)
        .where(Handover.case_id == case.id, Handover.status.in_(("accepted", "done")))
        .order_by(Handover.id.desc())
        .limit(1)
    )
    return handover


@dataclass(frozen=True)
class _CaseRef:
    """What check_needs needs of a case (a row, not an ORM object)."""

    id: int
    coach_id: int | None


def check_needs(store: Keystore, case: Case | _CaseRef, template: LetterTemplate) -> str | None:
    """Why the letter cannot be printed now (a hold reason), or None. Reads no patient data."""
    session = store.session
    needs = template.needs
    if "coach" in needs and (case.coach_id is None or session.get(User, case.coach_id) is None):
        return "Ingen hälsocoach är utsedd för ärendet."
    if "visit" in needs and _visit(session, case, template) is None:
        return "Det finns ingen bokad tid att skriva i brevet."
    if "plan" in needs and not current_plan_exists(store, case):
        return "Ärendet har ingen handlingsplan."
    if "handover" in needs:
        handover = _handover(session, case)
        # The place is sealed: whether one was agreed is whether it has a sealed value.
        if handover is None or handover.meeting_at is None or handover.meeting_place_enc is None:
            return "Överlämningen saknar tid eller plats."
    return None


def current_plan_exists(store: Keystore, case: Case | _CaseRef) -> bool:
    return (
        store.session.scalar(select(ActionPlan.id).where(ActionPlan.case_id == case.id).limit(1))
        is not None
    )


def letter_data(
    store: Keystore,
    letter: QueuedLetter,
    recipient: Recipient,
    *,
    templates: dict[str, LetterTemplate],
    settings: Settings,
    letter_date: dt.date,
) -> LetterData:
    """Everything the letter prints, in clear text (plan and visit text decrypted here; the
    caller has audited the patient read). Refuses (LetterIncomplete) what check_needs refuses."""
    session = store.session
    case = session.get(Case, letter.case_id)
    unit = session.get(Unit, letter.unit_id)
    assert case is not None and unit is not None
    template = _template(templates, letter)
    reason = check_needs(store, case, template)
    if reason:
        raise LetterIncomplete(reason)
    language = recipient.language if recipient.language in template.variants else "sv"
    values: dict[str, str] = {
        "patient_name": recipient.name,
        "unit_name": unit.name,
        "unit_street": unit.street,
        "unit_postal_line": f"{unit.postcode} {unit.town}",
        "unit_phone": unit.phone,
        "unit_phone_hours": unit.phone_hours
        or ("när vi har öppet" if language == "sv" else "during opening hours"),
        "case_reference": case.reference,
        "letter_date": format_letter_date(letter_date, language),
        "reply_by": format_letter_date(letter_date + dt.timedelta(days=REPLY_DAYS), language),
        "enclosures": "",
        "plan_steps": "",
        "answer_box": "",
    }
    needs = template.needs
    if case.coach_id is not None:
        coach = session.get(User, case.coach_id)
        values["coach_name"] = coach.display_name if coach else ""
    if "visit" in needs:
        visit = _visit(session, case, template)
        assert visit is not None
        values["appointment_time"] = format_letter_moment(visit.starts_at, language)
        if visit.mode == "phone":
            values["appointment_place"] = (
                "per telefon – vi ringer dig" if language == "sv" else "by phone – we will call you"
            )
        else:
            values["appointment_place"] = visit_place(store, case.patient_id, visit)
        values["appointment_minutes"] = str(visit.duration_minutes)
    steps: tuple[StepText, ...] = ()
    if "plan" in needs:
        plan = current_plan(store, case)
        assert plan is not None
        values["plan_goals"] = plan.goals
        steps = tuple(
            StepText(
                text=step.text,
                actor=step.actor,
                due_on=step.due_on,
                activity=activity_details(session, step.activity_id, letter_date, language)
                if step.activity_id
                else None,
            )
            for step in plan.steps
        )
    if "handover" in needs:
        row = _handover(session, case)
        assert row is not None
        handover = handover_details(store, case.patient_id, row)
        assert handover.meeting_at is not None
        values["handover_organisation"] = handover.organisation_name
        values["handover_companion"] = handover.companion_name or (
            "en person" if language == "sv" else "a person"
        )
        values["handover_time"] = format_letter_moment(handover.meeting_at, language)
        values["handover_place"] = handover.meeting_place
    code = url = None
    if template.asks_for_answers:
        code = codes.letter_code(store.ring, letter.id)
        url = answer_url(settings, code)
    return LetterData(
        letter_id=letter.id,
        template_id=template.id,
        language=language,
        letter_date=letter_date,
        case_reference=case.reference,
        letterhead=Letterhead(
            name=unit.name,
            street=unit.street,
            postal_line=f"{unit.postcode} {unit.town}",
            phone=unit.phone,
            phone_hours=unit.phone_hours,
        ),
        address=recipient.address,
        values=values,
        plan_steps=steps,
        answer_code=code,
        answer_url=url,
        postcode=recipient.postcode,
    )


def render_context(content: Any, settings: Settings, *, large_print: bool | None = None) -> Any:
    """The RenderContext from the loaded content and the settings."""
    return RenderContext(
        templates=content.compiled["letters"],
        forms=content.documents.get("forms", {}),
        layout=Layout.from_settings(settings, large_print=large_print),
    )


# --- preview ------------------------------------------------------------------------------------


def load_letter(store: Keystore, actor: Actor, letter_id: int) -> QueuedLetter:
    """The letter if the actor may act on its case, else NotFound (404, never a hint)."""
    if not 0 < letter_id < MAX_ID:
        raise NotFound("Brevet finns inte.")
    letter = store.session.get(QueuedLetter, letter_id)
    case = store.session.get(Case, letter.case_id) if letter else None
    if letter is None or case is None or not may_act_on(actor, case):
        raise NotFound("Brevet finns inte.")
    if actor.role not in ("coach", "coordinator", "system"):
        raise NotFound("Brevet finns inte.")
    return letter


def preview_letter(
    store: Keystore,
    actor: Actor,
    letter_id: int,
    *,
    context: RenderContext,
    settings: Settings,
    today: dt.date | None = None,
) -> bytes:
    """The letter as it will print (a printed letter as it was printed: its batch's date).

    An audited read of the patient. A letter that asks for answers gets its answer code
    (`create_answer_code`), so the code on the preview works before the letter is printed.
    Refuses a letter outside the actor's units (NotFound) and one that cannot be printed
    correctly now (LetterIncomplete, with the reason)."""
    letter = load_letter(store, actor, letter_id)
    session = store.session
    case = session.get(Case, letter.case_id)
    patient = session.get(Patient, case.patient_id) if case else None
    assert case is not None and patient is not None
    letter_date = today or today_local()
    if letter.batch_id is not None:
        batch = session.get(LetterBatch, letter.batch_id)
        if batch is not None:
            letter_date = batch.letter_date
    data = _addressed_letter_data(
        store,
        actor,
        letter,
        patient,
        purpose=f"förhandsvisning av brev {letter.id}",
        unit_id=case.unit_id,
        context=context,
        settings=settings,
        letter_date=letter_date,
    )
    template = context.templates[letter.letter]
    if template.asks_for_answers and template.occasion and letter.status != "cancelled":
        # The code the preview shows works from the letter's queueing on, not from its print.
        create_answer_code(store, case, template.occasion, letter, settings=settings, now=utcnow())
    return render_letter(data, context)


def _addressed_letter_data(
    store: Keystore,
    actor: Actor,
    letter: QueuedLetter,
    patient: Patient,
    *,
    purpose: str,
    unit_id: int,
    context: RenderContext,
    settings: Settings,
    letter_date: dt.date,
) -> LetterData:
    """One letter's printable data: reads the patient (an audited read with `purpose`), addresses
    the letter to them and fills it. Refuses (LetterIncomplete) a letter without a usable address
    or with what `letter_data` refuses."""
    identity = read_patient(store, actor, patient, purpose=purpose, unit_id=unit_id)
    recipient = recipient_of(identity, context.layout)
    return letter_data(
        store,
        letter,
        recipient,
        templates=context.templates,
        settings=settings,
        letter_date=letter_date,
    )


# --- batches ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchResult:
    batch: LetterBatch | None
    printed: int
    held: list[tuple[int, str]]
    #: False when a reprint's PDF differs from the first print (the data changed since).
    is_identical: bool = True


def _check_coordinator(actor: Actor, unit_id: int) -> None:
    if actor.role == "system":
        return
    if not grants(actor.role, Permission.COORDINATE_UNIT) or unit_id not in actor.unit_ids:
        raise NotFound("Du samordnar inte den enheten.")


def _check_printer(actor: Actor, unit_id: int, *, own_cases: bool) -> int | None:
    """Who may print the unit's letters: its coordinators all of them, a coach (`own_cases`)
    those of the cases they are the coach of. Returns the coach whose cases the print is
    narrowed to (None: the whole unit); refuses (NotFound) anyone else."""
    if not own_cases:
        _check_coordinator(actor, unit_id)
        return None
    if (
        actor.user_id is None
        or not grants(actor.role, Permission.PRINT_OWN_LETTERS)
        or unit_id not in actor.unit_ids
    ):
        raise NotFound("Du arbetar inte på den enheten.")
    return actor.user_id


def _refuse_others_letters(store: Keystore, coach_id: int, letter_ids: list[int]) -> None:
    """Refuse (NotFound, as if they did not exist) letters that are not of the coach's cases."""
    wanted = {i for i in letter_ids if 0 < i < MAX_ID}
    own = set(
        store.session.scalars(
            select(QueuedLetter.id)
            .join(Case, Case.id == QueuedLetter.case_id)
            .where(QueuedLetter.id.in_(sorted(wanted)), Case.coach_id == coach_id)
        )
    )
    if wanted != own or len(wanted) != len(set(letter_ids)):
        raise NotFound("Brevet finns inte.")


def pending_letters(
    store: Keystore, unit_id: int, *, forwarding: bool, coach_id: int | None = None
) -> list[tuple[QueuedLetter, Case]]:
    """Queued and held letters of the unit (of the cases `coach_id` is the coach of, when
    given): to patients with protected identity (the forwarding queue) or to everyone else.
    Reads no patient data."""
    rows = store.session.execute(
        _in_queue(select(QueuedLetter, Case), unit_id, forwarding=forwarding, coach_id=coach_id)
    )
    return [(letter, case) for letter, case in rows]


def _in_queue(
    query: Select[*Row], unit_id: int, *, forwarding: bool, coach_id: int | None = None
) -> Select[*Row]:
    """`query` narrowed to the letters waiting in one of the unit's two print queues (queued or
    held; to patients with protected identity or to everyone else), oldest first; with
    `coach_id`, to the letters of the cases they are the coach of."""
    query = (
        query.join(Case, Case.id == QueuedLetter.case_id)
        .join(Patient, Patient.id == Case.patient_id)
        .where(
            QueuedLetter.unit_id == unit_id,
            QueuedLetter.status.in_(("queued", "held")),
            Patient.is_protected_identity.is_(forwarding),
        )
        .order_by(QueuedLetter.id)
    )
    if coach_id is not None:
        query = query.where(Case.coach_id == coach_id)
    return query


def unfinished_batch(session: Session, unit_id: int, *, forwarding: bool) -> LetterBatch | None:
    """The unit's batch whose print run stopped half way (its letters so far committed, no PDF
    fingerprint yet), which the next print of the same queue finishes; None when there is none."""
    batch: LetterBatch | None = session.scalar(
        select(LetterBatch)
        .where(
            LetterBatch.unit_id == unit_id,
            LetterBatch.is_forwarding.is_(forwarding),
            LetterBatch.sha256 == "",
        )
        .order_by(LetterBatch.id)
        .limit(1)
    )
    return batch


def print_batch(
    store: Keystore,
    actor: Actor,
    unit_id: int,
    out: BinaryIO,
    *,
    context: RenderContext,
    settings: Settings,
    letter_ids: list[int] | None = None,
    forwarding: bool = False,
    own_cases: bool = False,
    today: dt.date | None = None,
    progress: Callable[[int, int], None] | None = None,
    commit: Callable[[], None] | None = None,
    slice_size: int = SLICE_SIZE,
    write_pdf: BatchWriter = write_batch,
) -> BatchResult:
    """Print the unit's queued letters (or the selected ones) as one PDF written to `out`: a
    cover sheet, then every letter with its enclosures in postcode order. The printed letters
    get status printed and the batch, each letter gets an audit row "print", and letters asking
    for answers get their answer code.

    In slices: `slice_size` letters at a time are checked (an audited read of each patient),
    then marked printed with their audit rows, and `commit()` ends each slice's transaction, so
    a run of thousands holds the write lock and the audit chain head for one slice at a time and
    other units' pages do not wait for it (the PDF is rendered between slices, outside any
    transaction). A run that stops half way leaves an unfinished batch (`unfinished_batch`)
    whose letters so far are committed with their audit rows; the next print of the same queue
    finishes it: its earlier letters come first in the new PDF (read again, an audited read, but
    neither marked nor audited as printed twice), then the rest, in postcode order among
    themselves. Without `commit` (a web request) everything stays in the caller's transaction.
    `write_pdf` turns the letters into the PDF (`render.write_batch`; a test may pass a faster
    one, the slices, marks and audit rows stay the same).

    Letters that cannot be printed correctly are held back with a reason (no address, no booked
    time, no coach…) and are tried again in the next batch; an older duplicate of a newer queued
    letter of the same kind, and a letter queued before its case was closed, are cancelled.
    `forwarding` prints the letters to patients with protected identity (no address).
    `own_cases` prints only the letters of the cases the actor is the coach of (a coach's own
    print, audited the same way); it never finishes another run's unfinished batch.
    Refuses an actor who does not coordinate the unit (NotFound; with `own_cases`, one who
    does not work in it or may not print), a selected letter that is not of the coach's cases
    (NotFound), and a letter of an unfinished batch that can no longer be printed (Invalid).
    With nothing to print, returns a result without batch and writes nothing to `out`."""
    coach_id = _check_printer(actor, unit_id, own_cases=own_cases)
    if coach_id is not None and letter_ids:
        _refuse_others_letters(store, coach_id, letter_ids)
    session = store.session
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound("Enheten finns inte.")
    now = utcnow()
    batch = None if own_cases else unfinished_batch(session, unit_id, forwarding=forwarding)
    letter_date = batch.letter_date if batch else today or today_local()
    # Plain rows, not ORM objects: a batch of thousands keeps only ids and window lines.
    query = _in_queue(
        select(
            QueuedLetter.id,
            QueuedLetter.case_id,
            QueuedLetter.letter,
            QueuedLetter.queued_at,
            Case.closed_at,
            Case.coach_id,
            Case.patient_id,
        ),
        unit_id,
        forwarding=forwarding,
        coach_id=coach_id,
    )
    if letter_ids is not None:
        query = query.where(QueuedLetter.id.in_(letter_ids))
    candidates = list(session.execute(query))
    newest: dict[tuple[int, str], int] = {}
    for row in candidates:
        newest[(row.case_id, row.letter)] = row.id
    held: list[tuple[int, str]] = []
    counts: dict[str, int] = {}

    def set_status(letter_id: int, status: str, reason: str) -> None:
        letter = session.get(QueuedLetter, letter_id)
        assert letter is not None
        letter.status = status
        letter.hold_reason = reason[:200]

    def plan(row: Any) -> Iterator[tuple[str, int, str]]:
        """A letter of the queue: cancel, hold back, or read the patient for the window."""
        if newest[(row.case_id, row.letter)] != row.id:
            set_status(row.id, "cancelled", "Ersatt av ett nyare brev av samma slag.")
            return
        if row.closed_at is not None and row.queued_at < row.closed_at:
            set_status(row.id, "cancelled", "Ärendet avslutades innan brevet skrevs ut.")
            return
        try:
            template = context.templates.get(row.letter)
            if template is None:
                raise LetterIncomplete(f"Brevmallen {row.letter} finns inte.")
            reason = check_needs(store, _CaseRef(row.case_id, row.coach_id), template)
            if reason:
                raise LetterIncomplete(reason)
            patient = session.get(Patient, row.patient_id)
            assert patient is not None
            if patient.erased_at is not None:
                raise LetterIncomplete("Patientens uppgifter är raderade.")
            # A fresh Keystore per patient: its key cache would otherwise grow with the batch.
            identity = read_patient(
                Keystore(session, store.ring),
                actor,
                patient,
                purpose="brevutskrift",
                unit_id=unit_id,
            )
            recipient = recipient_of(identity, context.layout)
        except LetterIncomplete as exc:
            set_status(row.id, "held", str(exc))
            held.append((row.id, str(exc)))
            return
        counts[row.letter] = counts.get(row.letter, 0) + 1
        yield recipient.postcode, row.id, _pack(recipient)

    planned = list(in_slices(candidates, plan, commit=commit, size=slice_size))
    del candidates
    # The letters an interrupted run already printed into the batch, in their order.
    earlier: list[tuple[int, str]] = []
    if batch is not None:
        earlier = [
            (row.id, row.letter)
            for row in session.execute(
                select(QueuedLetter.id, QueuedLetter.letter)
                .where(QueuedLetter.batch_id == batch.id)
                .order_by(QueuedLetter.batch_position)
            )
        ]
    if not planned and not earlier:
        return BatchResult(None, 0, held)
    planned.sort(key=lambda item: (item[0], item[1]))
    for _letter_id, kind in earlier:
        counts[kind] = counts.get(kind, 0) + 1
    if batch is None:
        batch = LetterBatch(
            unit_id=unit_id,
            created_by_id=actor.user_id,
            letter_date=letter_date,
            letter_count=0,
            page_count=0,
            sha256="",  # unfinished until the PDF is written
            is_forwarding=forwarding,
        )
        session.add(batch)
    batch.letter_count = len(earlier)
    session.flush()
    printing = batch
    position = len(earlier)

    def reread(item: tuple[int, str]) -> Iterator[LetterData]:
        """Earlier letters of the batch again, for this run's PDF: already marked and audited as
        printed, so only the patient read is recorded."""
        letter_id, _kind = item
        letter = session.get(QueuedLetter, letter_id)
        case = session.get(Case, letter.case_id) if letter else None
        patient = session.get(Patient, case.patient_id) if case else None
        assert letter is not None and case is not None and patient is not None
        try:
            yield _addressed_letter_data(
                Keystore(session, store.ring),  # no key cache growing with the batch
                actor,
                letter,
                patient,
                purpose="brevutskrift",
                unit_id=unit_id,
                context=context,
                settings=settings,
                letter_date=letter_date,
            )
        except LetterIncomplete as exc:
            raise Invalid(
                f"Brev {letter.id} i den avbrutna utskriftsomgången {printing.id} kan inte "
                f"skrivas ut: {exc}".rstrip(".")
                + "."
            ) from None

    def mark(item: tuple[str, int, str]) -> Iterator[LetterData]:
        """A letter of the batch: its data, marked printed with its audit row."""
        nonlocal position
        _postcode, letter_id, packed = item
        # Locked and read afresh: a letter another run printed meanwhile is not printed twice.
        letter = session.get(QueuedLetter, letter_id, with_for_update=True, populate_existing=True)
        assert letter is not None
        if letter.status not in ("queued", "held"):
            return
        data = letter_data(
            Keystore(session, store.ring),  # no key cache growing with the batch
            letter,
            _unpack(packed),
            templates=context.templates,
            settings=settings,
            letter_date=letter_date,
        )
        template = context.templates[letter.letter]
        case = session.get(Case, letter.case_id)
        assert case is not None
        if template.asks_for_answers and template.occasion:
            create_answer_code(store, case, template.occasion, letter, settings=settings, now=now)
        # The batch row locked for the slice: a second run on the same batch takes the next
        # positions, not the same ones.
        locked = session.get(LetterBatch, printing.id, with_for_update=True, populate_existing=True)
        assert locked is not None
        position = locked.letter_count + 1
        letter.status = "printed"
        letter.hold_reason = None
        letter.printed_at = now
        letter.batch_id = printing.id
        letter.batch_position = position
        _audit_print(store, actor, letter, case, printing)
        printing.letter_count = position
        yield data

    def letters() -> Iterator[LetterData]:
        yield from in_slices(earlier, reread, commit=commit, size=slice_size)
        yield from in_slices(planned, mark, commit=commit, size=slice_size)

    if commit is not None:
        commit()  # the batch exists before its first slice
    cover = Cover(batch.id, unit.name, letter_date, _count_rows(context, counts), forwarding)
    total = len(earlier) + len(planned)
    pages, fingerprint = _write_pdf(out, cover, letters(), context, total, progress, write_pdf)
    # Marks not yet flushed when there is no commit between slices (a web request).
    session.flush()
    batch.page_count = pages
    batch.sha256 = fingerprint
    session.flush()
    return BatchResult(batch, position, held)


def _audit_print(
    store: Keystore,
    actor: Actor,
    letter: QueuedLetter,
    case: Case,
    batch: LetterBatch,
    *,
    again: bool = False,
) -> None:
    """The audit row of one printed letter: printing patient data, the first time or again."""
    purpose = f"brev {letter.letter}, utskriftsomgång {batch.id}" + (" igen" if again else "")
    audit.record(
        store.session,
        store.ring,
        actor,
        "print",
        "letter",
        letter.id,
        purpose=purpose,
        patient_id=case.patient_id,
        unit_id=batch.unit_id,
    )


def _write_pdf(
    out: BinaryIO,
    cover: Cover,
    letters: Iterator[LetterData],
    context: RenderContext,
    total: int,
    progress: Callable[[int, int], None] | None,
    write_pdf: BatchWriter = write_batch,
) -> tuple[int, str]:
    """Write a batch's PDF (pages, SHA-256), telling `progress` how many of `total` are done."""
    return write_pdf(
        out,
        cover,
        letters,
        context,
        progress=(lambda done: progress(done, total)) if progress else None,
    )


def _count_rows(context: RenderContext, counts: dict[str, int]) -> list[tuple[str, int]]:
    rows = []
    for letter_id, count in sorted(counts.items()):
        template = context.templates.get(letter_id)
        rows.append((template.title["sv"] if template else letter_id, count))
    return rows


def reprint_batch(
    store: Keystore,
    actor: Actor,
    batch_id: int,
    out: BinaryIO,
    *,
    context: RenderContext,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Print a batch again: the same letters in the same order with the batch's date. Changes no
    letter and no batch; writes an audited read and a "print" audit row per letter (printing
    patient data again is an access). `is_identical` says whether the bytes equal the first
    print. Refuses a batch of a unit the actor does not coordinate, unless it is a coach's own
    batch whose cases are all still theirs (NotFound), and one whose print stopped half way
    (Invalid: the next print of the unit's letters finishes it)."""
    session = store.session
    batch = session.get(LetterBatch, batch_id) if 0 < batch_id < MAX_ID else None
    if batch is None:
        raise NotFound("Utskriftsomgången finns inte.")
    if not may_reprint(store, actor, batch):
        raise NotFound("Utskriftsomgången finns inte.")
    if not batch.sha256:
        raise Invalid(
            f"Utskriftsomgång {batch.id} avbröts innan den var klar: skriv ut enhetens brev igen "
            "så slutförs den."
        )
    unit = session.get(Unit, batch.unit_id)
    assert unit is not None
    ids = list(
        session.scalars(
            select(QueuedLetter.id)
            .where(QueuedLetter.batch_id == batch.id)
            .order_by(QueuedLetter.batch_position)
        )
    )
    counts: dict[str, int] = {}

    def letters() -> Iterator[LetterData]:
        for letter_id in ids:
            letter = session.get(QueuedLetter, letter_id)
            case = session.get(Case, letter.case_id) if letter else None
            patient = session.get(Patient, case.patient_id) if case else None
            assert letter is not None and case is not None and patient is not None
            try:
                data = _addressed_letter_data(
                    Keystore(session, store.ring),  # no key cache growing with the batch
                    actor,
                    letter,
                    patient,
                    purpose="brevutskrift igen",
                    unit_id=batch.unit_id,
                    context=context,
                    settings=settings,
                    letter_date=batch.letter_date,
                )
            except LetterIncomplete as exc:
                raise Invalid(
                    f"Brev {letter.id} kan inte skrivas ut igen: {exc}".rstrip(".") + "."
                ) from None
            _audit_print(store, actor, letter, case, batch, again=True)
            yield data

    for letter_id in ids:
        kind = session.scalar(select(QueuedLetter.letter).where(QueuedLetter.id == letter_id))
        counts[str(kind)] = counts.get(str(kind), 0) + 1
    cover = Cover(
        batch.id, unit.name, batch.letter_date, _count_rows(context, counts), batch.is_forwarding
    )
    total = len(ids)
    _pages, fingerprint = _write_pdf(out, cover, letters(), context, total, progress)
    session.flush()
    return BatchResult(batch, total, [], is_identical=fingerprint == batch.sha256)


def may_reprint(store: Keystore, actor: Actor, batch: LetterBatch) -> bool:
    """A batch may be printed again by the unit's coordinators, and by the coach who printed it
    while every letter in it is still of a case they are the coach of."""
    if actor.role == "system" or (
        grants(actor.role, Permission.COORDINATE_UNIT) and batch.unit_id in actor.unit_ids
    ):
        return True
    if (
        actor.user_id is None
        or batch.created_by_id != actor.user_id
        or batch.unit_id not in actor.unit_ids
        or not grants(actor.role, Permission.PRINT_OWN_LETTERS)
    ):
        return False
    others = store.session.scalar(
        select(QueuedLetter.id)
        .join(Case, Case.id == QueuedLetter.case_id)
        .where(
            QueuedLetter.batch_id == batch.id,
            (Case.coach_id != actor.user_id) | Case.coach_id.is_(None),
        )
        .limit(1)
    )
    return others is None


def unit_batches(
    store: Keystore, unit_id: int, limit: int = 20, *, created_by_id: int | None = None
) -> list[LetterBatch]:
    """The unit's latest batches (those `created_by_id` printed, when given), newest first."""
    query = select(LetterBatch).where(LetterBatch.unit_id == unit_id)
    if created_by_id is not None:
        query = query.where(LetterBatch.created_by_id == created_by_id)
    return list(store.session.scalars(query.order_by(LetterBatch.id.desc()).limit(limit)))
