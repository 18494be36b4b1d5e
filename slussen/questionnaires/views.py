"""Answering online at /svar (public, with the letter's code) and keying in paper forms.

The public pages show one question group per screen, save each step on the server (encrypted with
the patient's data key, kept with the code), and never show anything of the patient's identity.
Wrong codes are counted per client address: after five the address waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask.wrappers import Response
from flask_babel import gettext as _

from slussen import audit
from slussen.accesslog.markers import render_audited
from slussen.accounts import sessions
from slussen.accounts.auth import public, require
from slussen.accounts.roles import Permission
from slussen.accounts.throttle import limiter
from slussen.cases.access import current_actor, load_case
from slussen.cases.engine import current_workflow
from slussen.cases.models import Case
from slussen.db import attempt, db_session, load_authorised
from slussen.errors import Conflict, Invalid
from slussen.i18n import ui_language
from slussen.keystore import keystore
from slussen.questionnaires import codes, services
from slussen.questionnaires.definitions import FormDef, Group, forms
from slussen.questionnaires.models import OCCASIONS, AnswerCode, QuestionnaireResponse
from slussen.questionnaires.scoring import check_answers, score_form

bp = Blueprint("questionnaires", __name__, template_folder="templates")

#: Wrong answer codes per client address; the sixth try within the window waits (429).
CODE_LIMIT = "5 per 15 minutes"
_SESSION_KEY = "answer_code_id"


def _wrong_code(response: Response) -> bool:
    return response.status_code == 422 and bool(getattr(response, "wrong_code", False))


_code_throttle = limiter.shared_limit(
    CODE_LIMIT, scope="answer-code", methods=["GET", "POST"], deduct_when=_wrong_code
)


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    return {"occasion_label": occasion_label, "source_label": source_label}


def occasion_label(occasion: str) -> str:
    labels = {"baseline": _("Baseline"), "six_month": _("Six-month evaluation")}
    return str(labels.get(occasion, occasion))


def source_label(source: str) -> str:
    labels = {"online": _("answered online"), "paper": _("keyed in from paper")}
    return str(labels.get(source, source))


def _demo_forms() -> bool:
    return bool(current_app.extensions["slussen.settings"].use_demo_forms)


def _occasion_forms(occasion: str) -> list[FormDef]:
    return services.occasion_forms(current_workflow(), forms(), occasion, demo_forms=_demo_forms())


@dataclass(frozen=True)
class Step:
    form: FormDef
    group: Group


def _steps(row: AnswerCode) -> list[Step]:
    case = db_session().get(Case, row.case_id)
    assert case is not None
    steps: list[Step] = []
    for form in _occasion_forms(row.occasion):
        if services.find_response(db_session(), case, form.id, row.occasion) is not None:
            continue
        steps.extend(Step(form, group) for group in form.groups)
    return steps


# --- the public pages ----------------------------------------------------------------------------


def _wrong_code_page(message: str, code: str = "") -> ResponseReturnValue:
    response = current_app.make_response(
        (render_template("questionnaires/code.html", error=message, code=code[:40]), 422)
    )
    response.wrong_code = True  # type: ignore[attr-defined]
    return response


def _start(code_text: str) -> ResponseReturnValue:
    try:
        row = codes.redeem_code(db_session(), keystore().ring, code_text)
    except codes.AnswerCodeError as exc:
        return _wrong_code_page(str(exc), code_text)
    sessions.regenerate()
    session[_SESSION_KEY] = row.id
    return redirect(url_for("questionnaires.step", number=1))


@bp.route("/svar", methods=["GET", "POST"])
@public
@_code_throttle
def answer() -> ResponseReturnValue:
    """The patient types the code from their letter."""
    if request.method == "POST":
        return _start(str(request.form.get("code", "")))
    return render_template("questionnaires/code.html", error="", code="")


@bp.route("/svar/<code>")
@public
@_code_throttle
def answer_with_code(code: str) -> ResponseReturnValue:
    """The QR code on the letter opens this address with the code in it."""
    return _start(code)


def _current_code() -> AnswerCode | None:
    code_id = session.get(_SESSION_KEY)
    if not isinstance(code_id, int):
        return None
    row = db_session().get(AnswerCode, code_id)
    if row is None:
        return None
    try:
        return codes.check_code(row)
    except codes.AnswerCodeError as exc:
        session.pop(_SESSION_KEY, None)
        flash(str(exc), "error")
        return None


@bp.route("/svar/fraga/<int:number>", methods=["GET", "POST"])
@public
def step(number: int) -> ResponseReturnValue:
    """One question group per screen; "Nästa" saves the step on the server."""
    row = _current_code()
    if row is None:
        return redirect(url_for("questionnaires.answer"))
    steps = _steps(row)
    if not steps:
        return redirect(url_for("questionnaires.review"))
    if not 1 <= number <= len(steps):
        abort(404)
    current = steps[number - 1]
    store = keystore()
    draft = services.load_draft(store, row).get(current.form.id, {})
    errors: dict[str, str] = {}
    if request.method == "POST":
        posted = {item_id: request.form.get(f"item-{item_id}") for item_id in current.group.items}
        going_back = request.form.get("go") == "back"
        checked = check_answers(current.form, posted, require=not going_back)
        if going_back:  # keep what is valid, ask for nothing
            valid = {
                k: v
                for k, v in checked.answers.items()
                if k in current.group.items and k not in checked.errors
            }
            services.save_draft(store, row, current.form, valid)
            return redirect(url_for("questionnaires.step", number=max(number - 1, 1)))
        errors = {k: v for k, v in checked.errors.items() if k in current.group.items}
        answers = {k: v for k, v in checked.answers.items() if k in current.group.items}
        if not errors:
            services.save_draft(store, row, current.form, answers)
            if number == len(steps):
                return redirect(url_for("questionnaires.review"))
            return redirect(url_for("questionnaires.step", number=number + 1))
        draft = {**draft, **answers, **{k: str(v) for k, v in posted.items() if k in errors}}
    return render_template(
        "questionnaires/step.html",
        step=current,
        number=number,
        total=len(steps),
        values=draft,
        errors=errors,
        lang=ui_language(),
    ), (422 if errors else 200)


@bp.route("/svar/skicka", methods=["GET", "POST"])
@public
def review() -> ResponseReturnValue:
    """The last screen: send the answers. Nothing is shown of who the patient is."""
    row = _current_code()
    if row is None:
        return redirect(url_for("questionnaires.answer"))
    error = ""
    if request.method == "POST":
        try:
            services.submit_online(
                keystore(),
                row,
                workflow=current_workflow(),
                forms=_occasion_forms(row.occasion),
            )
        except (Invalid, Conflict) as exc:
            error = str(exc)
        else:
            session.pop(_SESSION_KEY, None)
            return redirect(url_for("questionnaires.thanks"))
    return render_template("questionnaires/review.html", error=error, steps=len(_steps(row))), (
        422 if error else 200
    )


@bp.route("/svar/tack")
@public
def thanks() -> ResponseReturnValue:
    return render_template("questionnaires/thanks.html")


# --- staff: paper entry, answers, double keying -------------------------------------------------


def _form_or_404(form_id: str, occasion: str) -> FormDef:
    form = forms().get(form_id)
    if form is None or occasion not in OCCASIONS or not form.usable(demo_forms=_demo_forms()):
        abort(404)
    return form


def _posted_items(form: FormDef) -> dict[str, Any]:
    return {item.id: request.form.get(f"item-{item.id}") for item in form.items}


@bp.route("/arenden/<int:case_id>/formular/<occasion>/<form_id>", methods=["GET", "POST"])
@require(Permission.WORK_CASES)
def key_in(case_id: int, occasion: str, form_id: str) -> ResponseReturnValue:
    """Key in a returned paper form: a digit per item, the score as you type (static JS), out-of
    -range answers named per item, missing items allowed and listed."""
    case = load_case(case_id)
    form = _form_or_404(form_id, occasion)
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    error = ""
    if request.method == "POST":
        values = _posted_items(form)
        checked = check_answers(form, values, require=False)
        errors = checked.errors
        if not errors:
            try:
                stored = services.key_in_paper(
                    keystore(),
                    current_actor(),
                    case,
                    form,
                    occasion,
                    values,
                    workflow=current_workflow(),
                    forms=_occasion_forms(occasion),
                )
            except (Invalid, Conflict) as exc:
                error = str(exc)
            else:
                flash(_("The answers are saved."), "success")
                return redirect(
                    url_for(
                        "questionnaires.show_response",
                        case_id=case.id,
                        response_id=stored.response.id,
                    )
                )
    return render_template(
        "questionnaires/key_in.html",
        case=case,
        form=form,
        occasion=occasion,
        values=values,
        errors=errors,
        error=error,
        lang=ui_language(),
        action=url_for(
            "questionnaires.key_in", case_id=case.id, occasion=occasion, form_id=form.id
        ),
    ), (422 if errors or error else 200)


@bp.route("/arenden/<int:case_id>/formular/<occasion>/<form_id>/poang", methods=["POST"])
@require(Permission.WORK_CASES)
def preview_score(case_id: int, occasion: str, form_id: str) -> ResponseReturnValue:
    """The score of what has been typed so far (for entry.js); stores nothing."""
    load_case(case_id)
    form = _form_or_404(form_id, occasion)
    checked = check_answers(form, _posted_items(form), require=False)
    lang = ui_language()
    return jsonify(
        errors=checked.errors,
        missing=checked.missing,
        scores=[
            {
                "label": r.score.label.get(lang),
                "value": r.value,
                "positive": r.is_positive,
                "text": _score_text(r.value, r.is_positive, r.score.cutoff is not None),
            }
            for r in score_form(form, checked.answers)
        ],
    )


def _score_text(value: float | None, positive: bool | None, has_cutoff: bool) -> str:
    if value is None:
        return str(_("no score: too many items missing"))
    text = f"{value:g}"
    if has_cutoff and positive:
        text += " – " + _("at or beyond the cut-off")
    return text


def _load_response(case: Case, response_id: int) -> tuple[QuestionnaireResponse, FormDef]:
    response = load_authorised(
        db_session(), QuestionnaireResponse, response_id, allowed=lambda r: r.case_id == case.id
    )
    form = forms().get(response.form_id)
    if form is None:
        abort(404)
    return response, form


@bp.route("/arenden/<int:case_id>/svar/<int:response_id>")
@require(Permission.WORK_CASES)
def show_response(case_id: int, response_id: int) -> ResponseReturnValue:
    """One response: answers (decrypted, audited), scores, double keying."""
    case = load_case(case_id)
    response, form = _load_response(case, response_id)
    return _render_response(case, response, form)


def _render_response(
    case: Case,
    response: QuestionnaireResponse,
    form: FormDef,
    *,
    mismatches: list[services.Mismatch] | None = None,
    error: str = "",
    status: int = 200,
) -> ResponseReturnValue:
    store = keystore()
    actor = current_actor()
    answers = services.read_answers(store, case, response)
    second = (
        services.read_answers(store, case, response, column="second_answers")
        if response.second_answers_enc
        else {}
    )
    if second and mismatches is None:
        mismatches = services.compare_answers(form, answers, second)
    audit.record(
        store.session,
        store.ring,
        actor,
        "read",
        "questionnaire_response",
        response.id,
        purpose=f"svar {form.id}",
        patient_id=case.patient_id,
        unit_id=case.unit_id,
    )
    summary = services.case_responses(store, case, forms())
    scores: list[Any] = next(
        (s.scores for s in summary[response.occasion] if s.response.id == response.id), []
    )
    return render_audited(
        "questionnaires/response.html",
        status=status,
        case=case,
        response=response,
        form=form,
        answers=answers,
        scores={s.score_id: s for s in scores},
        mismatches=mismatches or [],
        may_key_again=(
            response.source == "paper"
            and response.second_keyed_by_id is None
            and actor.user_id != response.keyed_by_id
        ),
        error=error,
        lang=ui_language(),
    )


@bp.route("/arenden/<int:case_id>/svar/<int:response_id>/andra", methods=["POST"])
@require(Permission.WORK_CASES)
def key_in_again(case_id: int, response_id: int) -> ResponseReturnValue:
    """Double entry: a second person keys the same paper; differences are listed."""
    case = load_case(case_id)
    response, form = _load_response(case, response_id)
    try:
        # A refusal shows the response again, whose audited read is committed: undo the step.
        with attempt():
            mismatches = services.key_in_second(
                keystore(), current_actor(), case, form, response, _posted_items(form)
            )
    except Invalid as exc:
        return _render_response(case, response, form, error=str(exc), status=422)
    if mismatches:
        flash(_("The two keyings differ: check the paper and settle each item."), "error")
    else:
        flash(_("Both keyings agree. The answers are verified."), "success")
    return redirect(
        url_for("questionnaires.show_response", case_id=case.id, response_id=response.id)
    )


@bp.route("/arenden/<int:case_id>/svar/<int:response_id>/los", methods=["POST"])
@require(Permission.WORK_CASES)
def resolve(case_id: int, response_id: int) -> ResponseReturnValue:
    """Settle a double-entry mismatch with the answers on the paper."""
    case = load_case(case_id)
    response, form = _load_response(case, response_id)
    try:
        with attempt():
            services.resolve_mismatch(
                keystore(), current_actor(), case, form, response, _posted_items(form)
            )
    except Invalid as exc:
        return _render_response(case, response, form, error=str(exc), status=422)
    flash(_("The answers are verified."), "success")
    return redirect(
        url_for("questionnaires.show_response", case_id=case.id, response_id=response.id)
    )


@bp.route("/arenden/<int:case_id>/svarskod", methods=["POST"])
@require(Permission.WORK_CASES)
def new_code(case_id: int) -> ResponseReturnValue:
    """A new answer code, e.g. to read out on the phone: shown once on the page this answers,
    stored only as its keyed hash. Not as a flash message, which would keep the code in the
    session's row (and in SQLite's WAL after the message was shown)."""
    case = load_case(case_id)
    occasion = request.form.get("occasion", "")
    if occasion not in OCCASIONS:
        abort(404)
    code = codes.create_answer_code(
        db_session(),
        keystore().ring,
        case,
        occasion,
        days=current_app.extensions["slussen.settings"].answer_code_days,
    )
    audit.record(
        db_session(),
        keystore().ring,
        current_actor(),
        "create",
        "answer_code",
        case.id,
        purpose=f"svarskod {occasion}",
        patient_id=case.patient_id,
        unit_id=case.unit_id,
    )
    return render_template(
        "questionnaires/new_code.html",
        case=case,
        code=code,
        url=codes.answer_url(code, current_app.extensions["slussen.settings"].base_url),
    )


def questionnaire_panel(case: Case) -> dict[str, Any]:
    """What the case page shows of questionnaires: scores per occasion (unsealed; the answers
    stay sealed) and the forms still missing; the case page's own audit row covers it."""
    store = keystore()
    session_db = store.session
    by_occasion = services.case_responses(store, case, forms())
    missing = {}
    for occasion in OCCASIONS:
        answered = {s.response.form_id for s in by_occasion[occasion]}
        missing[occasion] = [f for f in _occasion_forms(occasion) if f.id not in answered]
    workflow = current_workflow()
    return {
        "questionnaires": by_occasion,
        # Occasions whose answers the case's state asks for (the workflow's parts).
        "questionnaires_expected": {
            occasion: case.state in workflow.states_for(part)
            for occasion, part in services.EXPECTED_IN.items()
        },
        "questionnaires_missing": missing,
        "questionnaire_forms": forms(),
        "open_answer_codes": codes.open_codes(session_db, case),
    }
