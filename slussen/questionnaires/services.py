"""Answers: store a response (answers and scores sealed with the patient's data key, the scores'
research records beside them), the drafts kept with an answer code (the codes themselves live in
`codes.py`), paper entry with optional double keying, and the workflow events the answers fire
(the events playing `registers_baseline`, `registers_evaluation` and `flags_screening` in the
workflow's [parts]).

Services take the Keystore and the acting person explicitly, raise `Invalid` (Swedish
message) and only flush; views and commands commit.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from slussen import audit
from slussen.audit import Actor
from slussen.cases.engine import fire, may_act_on, screening_of
from slussen.cases.models import Case
from slussen.cases.services import case_by_reference
from slussen.cases.workflow import Workflow, needs_event, needs_states
from slussen.db import utcnow
from slussen.errors import Invalid, NotFound
from slussen.keystore import Keystore
from slussen.patients.services import seal, unseal
from slussen.questionnaires import fhir
from slussen.questionnaires.codes import check_code
from slussen.questionnaires.definitions import FormDef
from slussen.questionnaires.models import (
    OCCASIONS,
    AnswerCode,
    QuestionnaireResponse,
    QuestionnaireScore,
)
from slussen.questionnaires.scoring import Answer, Checked, ScoreResult, check_answers, score_form
from slussen.research import services as research

#: The patient answering online, as the audit log and the case history name them.
PATIENT = Actor(None, "(patient)", "patient")
#: The event each occasion's answers fire when they are all in.
REGISTERED_BY = {
    "baseline": needs_event("registers_baseline"),
    "six_month": needs_event("registers_evaluation"),
}
#: The states in which each occasion's answers are expected.
EXPECTED_IN = {
    "baseline": needs_states("baseline_expected"),
    "six_month": needs_states("six_month_expected"),
}
FLAGS_SCREENING = needs_event("flags_screening")


# --- which forms ---------------------------------------------------------------------------------


def occasion_forms(
    workflow: Workflow, forms: Mapping[str, FormDef], occasion: str, *, demo_forms: bool
) -> list[FormDef]:
    """The usable forms of an occasion, in workflow order: baseline = baseline + screening."""
    lists = ("baseline", "screening") if occasion == "baseline" else ("six_month",)
    ids: list[str] = []
    for name in lists:
        ids.extend(i for i in workflow.questionnaires.get(name, ()) if i not in ids)
    return [forms[i] for i in ids if i in forms and forms[i].usable(demo_forms=demo_forms)]


def screening_ids(workflow: Workflow) -> set[str]:
    return set(workflow.questionnaires.get("screening", ()))


# --- drafts kept with an answer code ----------------------------------------------------------


def _code_cipher_args(row: AnswerCode) -> tuple[str, str, int]:
    return "answer_codes", "draft", row.id


def load_draft(store: Keystore, row: AnswerCode) -> dict[str, dict[str, Answer]]:
    """The answers saved so far with this code: {form_id: {item_id: answer}}."""
    case = store.session.get(Case, row.case_id)
    assert case is not None
    text = unseal(store, case.patient_id, *_code_cipher_args(row), row.draft_enc)
    if not text:
        return {}
    loaded: dict[str, dict[str, Answer]] = json.loads(text)
    return loaded


def save_draft(
    store: Keystore, row: AnswerCode, form: FormDef, answers: Mapping[str, Answer]
) -> None:
    """Keep one step's answers with the code (encrypted), so a patient can stop and go on later."""
    case = store.session.get(Case, row.case_id)
    assert case is not None
    draft = load_draft(store, row)
    draft.setdefault(form.id, {}).update(answers)
    row.draft_enc = seal(
        store, case.patient_id, *_code_cipher_args(row), json.dumps(draft, sort_keys=True)
    )
    store.session.flush()


# --- responses -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredResponse:
    response: QuestionnaireResponse
    results: list[ScoreResult]


def _seal_answers(
    store: Keystore, case: Case, row_id: int, column: str, answers: Mapping[str, Answer]
) -> bytes:
    return seal(
        store,
        case.patient_id,
        "questionnaire_responses",
        column,
        row_id,
        json.dumps(dict(answers), sort_keys=True, ensure_ascii=False),
    )


def read_answers(
    store: Keystore, case: Case, response: QuestionnaireResponse, *, column: str = "answers"
) -> dict[str, Answer]:
    """Decrypt a response's answers (the caller writes the audit row)."""
    blob = response.answers_enc if column == "answers" else response.second_answers_enc
    text = unseal(store, case.patient_id, "questionnaire_responses", column, response.id, blob)
    loaded: dict[str, Answer] = json.loads(text) if text else {}
    return loaded


#: Where a score's value is sealed (table, column; the row is the score's id).
SCORE_FIELD = ("questionnaire_scores", "score")


@dataclass(frozen=True)
class StoredScore:
    """A stored score, unsealed: what the case page and the response page show."""

    score_id: str
    value: float | None
    is_positive: bool | None


def _seal_score(store: Keystore, case: Case, row: QuestionnaireScore, result: ScoreResult) -> bytes:
    text = json.dumps({"value": result.value, "is_positive": result.is_positive})
    return seal(store, case.patient_id, *SCORE_FIELD, row.id, text)


def read_score(store: Keystore, case: Case, row: QuestionnaireScore) -> StoredScore:
    """Unseal one stored score (no value when it could not be sealed: see the model)."""
    text = unseal(store, case.patient_id, *SCORE_FIELD, row.id, row.score_enc)
    loaded: dict[str, Any] = json.loads(text) if text else {}
    return StoredScore(row.score_id, loaded.get("value"), loaded.get("is_positive"))


def _store_answers(
    store: Keystore,
    case: Case,
    form: FormDef,
    response: QuestionnaireResponse,
    answers: Mapping[str, Answer],
) -> list[ScoreResult]:
    """Seal checked answers into the response, (re)write its scores sealed beside them, and the
    scores' research records; the caller audits."""
    response.answers_enc = _seal_answers(store, case, response.id, "answers", answers)
    results = score_form(form, answers)
    session = store.session
    existing = {
        s.score_id: s
        for s in session.scalars(
            select(QuestionnaireScore).where(QuestionnaireScore.response_id == response.id)
        )
    }
    rows = []
    for result in results:
        row = existing.get(result.score_id)
        if row is None:
            row = QuestionnaireScore(
                response_id=response.id,
                case_id=case.id,
                form_id=response.form_id,
                score_id=result.score_id,
                occasion=response.occasion,
            )
            session.add(row)
        rows.append((row, result))
    session.flush()  # new rows get the ids their seals are bound to
    for row, result in rows:
        row.score_enc = _seal_score(store, case, row, result)
    research.record(
        store,
        case.id,
        *(
            research.Scored(response.form_id, r.score_id, response.occasion, r.value, r.is_positive)
            for r in results
        ),
    )
    return results


def find_response(
    session: Session, case: Case, form_id: str, occasion: str
) -> QuestionnaireResponse | None:
    return session.scalar(
        select(QuestionnaireResponse)
        .where(
            QuestionnaireResponse.case_id == case.id,
            QuestionnaireResponse.form_id == form_id,
            QuestionnaireResponse.occasion == occasion,
        )
        .order_by(QuestionnaireResponse.id.desc())
        .limit(1)
    )


def record_response(
    store: Keystore,
    actor: Actor,
    case: Case,
    form: FormDef,
    occasion: str,
    checked: Checked,
    *,
    source: str,
) -> StoredResponse:
    """Store one answered form: answers sealed with the patient's data key under the form's
    version, scores beside them, an audit row. Refuses answers with errors, an unknown occasion,
    and a form already answered on this occasion (key it a second time instead)."""
    session = store.session
    if occasion not in OCCASIONS:
        raise Invalid(f"Okänt tillfälle {occasion!r}.")
    _refuse_errors(checked)
    if find_response(session, case, form.id, occasion) is not None:
        raise Invalid(
            f"”{form.title.sv}” är redan registrerat för det här tillfället. "
            "En andra person kan mata in det igen för att kontrollera."
        )
    response = QuestionnaireResponse(
        case_id=case.id,
        form_id=form.id,
        form_version=form.version,
        occasion=occasion,
        source=source,
        answers_enc=b"",
        keyed_by_id=actor.user_id if source == "paper" else None,
        is_verified=True,
    )
    session.add(response)
    session.flush()
    results = _store_answers(store, case, form, response, checked.answers)
    audit.record(
        session,
        store.ring,
        actor,
        "create",
        "questionnaire_response",
        response.id,
        purpose=f"{form.id} ({occasion}, {'papper' if source == 'paper' else 'webb'})",
        patient_id=case.patient_id,
        unit_id=case.unit_id,
    )
    session.flush()
    return StoredResponse(response, results)


def _has_all(session: Session, case: Case, occasion: str, forms: list[FormDef]) -> bool:
    answered = set(
        session.scalars(
            select(QuestionnaireResponse.form_id).where(
                QuestionnaireResponse.case_id == case.id,
                QuestionnaireResponse.occasion == occasion,
            )
        )
    )
    return all(f.id in answered for f in forms)


def advance_case(
    store: Keystore,
    actor: Actor,
    case: Case,
    occasion: str,
    *,
    workflow: Workflow,
    forms: list[FormDef],
    results: Mapping[str, list[ScoreResult]],
) -> str | None:
    """After answers came in: flag a screen-positive screening for the coach (never an exclusion;
    a case flagged or resolved already is not flagged again), and when every form of the occasion
    is in, fire the event registering the occasion's answers (baseline: invited → assessed; six
    months: evaluation_sent → evaluated) through the engine. Returns the last event fired, if
    any. A case in a state where an event may not fire keeps its state and flag: the answers
    are stored all the same."""
    fired = None
    screening = screening_ids(workflow)
    if screening_of(store, case) is None and any(
        form_id in screening and any(r.is_positive for r in found)
        for form_id, found in results.items()
    ):
        fired = _fire_if_open(store, actor, case, workflow, workflow.event_for(FLAGS_SCREENING))
    if not _has_all(store.session, case, occasion, forms):
        return fired
    event = workflow.event_for(REGISTERED_BY[occasion])
    return _fire_if_open(store, actor, case, workflow, event) or fired


def _fire_if_open(
    store: Keystore, actor: Actor, case: Case, workflow: Workflow, event: str
) -> str | None:
    """Fire `event` when the case's state and the actor's role allow it (the answers' events
    follow the answers; they do not refuse them); returns the event if it fired."""
    transition = workflow.transitions[event]
    if case.state not in transition.from_states or actor.role not in transition.roles:
        return None
    fire(store, case, event, actor, workflow=workflow)
    return event


def submit_online(
    store: Keystore,
    row: AnswerCode,
    *,
    workflow: Workflow,
    forms: list[FormDef],
    now: dt.datetime | None = None,
) -> list[StoredResponse]:
    """Send the answers saved with an answer code: every form of the occasion is checked (a
    required item left empty refuses the whole send, naming the form), stored as `online`, the
    code and every other code of the case and occasion are used up, and the case moves on."""
    session = store.session
    check_code(row, now=now)
    case = session.get(Case, row.case_id)
    assert case is not None
    draft = load_draft(store, row)
    checked_forms: list[tuple[FormDef, Checked]] = []
    for form in forms:
        if find_response(session, case, form.id, row.occasion) is not None:
            continue  # keyed in from paper already; the paper answers stand
        checked = check_answers(form, draft.get(form.id, {}), require=True)
        if not checked.is_valid:
            raise Invalid(f"Svara på frågorna i ”{form.title.sv}” först.")
        checked_forms.append((form, checked))
    stored = [
        record_response(store, PATIENT, case, form, row.occasion, checked, source="online")
        for form, checked in checked_forms
    ]
    used_at = now or utcnow()
    session.execute(
        update(AnswerCode)
        .where(
            AnswerCode.case_id == case.id,
            AnswerCode.occasion == row.occasion,
            AnswerCode.used_at.is_(None),
        )
        .values(used_at=used_at, draft_enc=None)
        .execution_options(synchronize_session="fetch")
    )
    advance_case(
        store,
        PATIENT,
        case,
        row.occasion,
        workflow=workflow,
        forms=forms,
        results={s.response.form_id: s.results for s in stored},
    )
    session.flush()
    return stored


def key_in_paper(
    store: Keystore,
    actor: Actor,
    case: Case,
    form: FormDef,
    occasion: str,
    raw: Mapping[str, object],
    *,
    workflow: Workflow,
    forms: list[FormDef],
) -> StoredResponse:
    """A coach keys in a returned paper form: out-of-range answers are refused (named per item),
    missing items are allowed (the missing-item rule decides the score), the response records
    source = paper and who keyed it, and the case moves on when the occasion is complete."""
    if not may_act_on(actor, case):
        raise NotFound("Ärendet finns inte.")
    checked = check_answers(form, raw, require=False)
    stored = record_response(store, actor, case, form, occasion, checked, source="paper")
    advance_case(
        store,
        actor,
        case,
        occasion,
        workflow=workflow,
        forms=forms,
        results={form.id: stored.results},
    )
    return stored


@dataclass(frozen=True)
class Mismatch:
    item_id: str
    first: Answer | None
    second: Answer | None


def compare_answers(
    form: FormDef, first: Mapping[str, Answer], second: Mapping[str, Answer]
) -> list[Mismatch]:
    """Items where two keyings of the same paper disagree, in form order."""
    return [
        Mismatch(item.id, first.get(item.id), second.get(item.id))
        for item in form.items
        if first.get(item.id) != second.get(item.id)
    ]


def key_in_second(
    store: Keystore,
    actor: Actor,
    case: Case,
    form: FormDef,
    response: QuestionnaireResponse,
    raw: Mapping[str, object],
) -> list[Mismatch]:
    """Double entry: another person keys the same paper again. Agreement verifies the response;
    disagreement keeps both keyings and marks it unverified until someone resolves it. Refuses the
    person who keyed it first, an online response, and a response keyed twice already."""
    session = store.session
    if response.source != "paper":
        raise Invalid("Svar som kommit via webben matas inte in en gång till.")
    if response.second_keyed_by_id is not None:
        raise Invalid("Formuläret är redan inmatat två gånger.")
    if actor.user_id is None or actor.user_id == response.keyed_by_id:
        raise Invalid("Den andra inmatningen ska göras av en annan person.")
    checked = check_answers(form, raw, require=False)
    _refuse_errors(checked)
    first = read_answers(store, case, response)
    mismatches = compare_answers(form, first, checked.answers)
    response.second_keyed_by_id = actor.user_id
    if mismatches:
        response.is_verified = False
        response.second_answers_enc = _seal_answers(
            store, case, response.id, "second_answers", checked.answers
        )
    _audit_response_change(
        store, actor, case, response, f"andra inmatning {form.id}: {len(mismatches)} skillnader"
    )
    session.flush()
    return mismatches


def resolve_mismatch(
    store: Keystore,
    actor: Actor,
    case: Case,
    form: FormDef,
    response: QuestionnaireResponse,
    raw: Mapping[str, object],
) -> list[ScoreResult]:
    """Settle a double-entry mismatch with the answers read off the paper: stores them, scores
    again, marks the response verified. Refuses a response without an open mismatch."""
    session = store.session
    if response.is_verified:
        raise Invalid("Det finns inga skillnader att reda ut.")
    checked = check_answers(form, raw, require=False)
    _refuse_errors(checked)
    response.second_answers_enc = None
    response.is_verified = True
    results = _store_answers(store, case, form, response, checked.answers)
    _audit_response_change(
        store, actor, case, response, f"skillnader i dubbelinmatning utredda ({form.id})"
    )
    session.flush()
    return results


def _refuse_errors(checked: Checked) -> None:
    """Refuses (Invalid) answers with errors, naming each."""
    if not checked.is_valid:
        raise Invalid("Några svar behöver rättas: " + "; ".join(checked.errors.values()))


def _audit_response_change(
    store: Keystore, actor: Actor, case: Case, response: QuestionnaireResponse, purpose: str
) -> None:
    """The access-log row of a change to a stored response."""
    audit.record(
        store.session,
        store.ring,
        actor,
        "update",
        "questionnaire_response",
        response.id,
        purpose=purpose,
        patient_id=case.patient_id,
        unit_id=case.unit_id,
    )


# --- what the case page shows --------------------------------------------------------------------


@dataclass(frozen=True)
class ResponseSummary:
    response: QuestionnaireResponse
    form: FormDef | None
    scores: list[StoredScore]


def case_responses(store: Keystore, case: Case, forms: Mapping[str, FormDef]) -> dict[str, Any]:
    """The case's responses with their scores (unsealed), by occasion; the answers stay sealed.
    The caller's page audits the read."""
    session = store.session
    responses = list(
        session.scalars(
            select(QuestionnaireResponse)
            .where(QuestionnaireResponse.case_id == case.id)
            .order_by(QuestionnaireResponse.id)
        )
    )
    scores: dict[int, list[StoredScore]] = {}
    if responses:
        for score in session.scalars(
            select(QuestionnaireScore)
            .where(QuestionnaireScore.response_id.in_([r.id for r in responses]))
            .order_by(QuestionnaireScore.id)
        ):
            scores.setdefault(score.response_id, []).append(read_score(store, case, score))
    by_occasion: dict[str, list[ResponseSummary]] = {o: [] for o in OCCASIONS}
    for response in responses:
        by_occasion[response.occasion].append(
            ResponseSummary(response, forms.get(response.form_id), scores.get(response.id, []))
        )
    return by_occasion


def export_case_answers(
    store: Keystore,
    actor: Actor,
    reference: str,
    forms: Mapping[str, FormDef],
    *,
    base: str = fhir.DEFAULT_BASE,
) -> list[dict[str, Any]]:
    """Every stored response of the case named by `reference` as a FHIR R4
    QuestionnaireResponse (responses to forms no longer in `forms` are left out), with one audit
    row "export" for the case. Refuses (NotFound) an unknown reference."""
    session = store.session
    case = case_by_reference(session, reference)
    responses = session.scalars(
        select(QuestionnaireResponse)
        .where(QuestionnaireResponse.case_id == case.id)
        .order_by(QuestionnaireResponse.id)
    ).all()
    resources = [
        fhir.questionnaire_response(
            forms[response.form_id],
            response,
            read_answers(store, case, response),
            case_reference=case.reference,
            base=base,
        )
        for response in responses
        if response.form_id in forms
    ]
    audit.record(
        session,
        store.ring,
        actor,
        "export",
        "questionnaire_response",
        case.id,
        purpose=f"FHIR-export av {len(responses)} svar",
        patient_id=case.patient_id,
        unit_id=case.unit_id,
    )
    return resources
