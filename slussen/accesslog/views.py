"""The coordinator's log review page and the patient's log extract."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from slussen.accesslog import services
from slussen.accesslog.forms import LogFilterForm, PersonnummerForm
from slussen.accesslog.markers import render_audited, shows_patient_data
from slussen.accesslog.pdf import render_log_extract
from slussen.accounts.auth import require
from slussen.accounts.models import User
from slussen.accounts.roles import Permission
from slussen.db import db_session
from slussen.keystore import keystore
from slussen.patients.services import LISTED, PatientErased

bp = Blueprint("accesslog", __name__, template_folder="templates")

#: Patients this browser session found by personnummer; only these can be selected by id, so the
#: personnummer stays the key to a patient's log (ids in URLs cannot be guessed through).
SESSION_KEY = "accesslog_patients"

ACTION_LABELS = {
    "read": _l("Read"),
    "search": _l("Search"),
    "create": _l("Create"),
    "update": _l("Change"),
    "print": _l("Print"),
    "export": _l("Export"),
    "login": _l("Login"),
    "login_failed": _l("Failed login"),
    "logout": _l("Logout"),
    "erase": _l("Erase"),
    "key_rotate": _l("Key rotation"),
    "totp_enrol": _l("Two-factor enrolment"),
    "totp_reset": _l("Two-factor reset"),
    "account_disable": _l("Account disabled"),
}
OBJECT_LABELS = {
    "patient": _l("Patient"),
    "access_log": _l("Access log"),
    "patient_log_extract": _l("Log extract"),
    "keyring": _l("Key ring"),
    "user": _l("User"),
    "unit": _l("Unit"),
    "account_link": _l("One-time link"),
    "case": _l("Case"),
    "answer_code": _l("Answer code"),
    "evaluation": _l("Evaluation"),
    "letter": _l("Letter"),
    "patient_correction": _l("Correction of details"),
    "questionnaire_response": _l("Questionnaire answers"),
    "handover": _l("Hand-over request"),
    LISTED: _l("Case in a list"),
}


def _reviewer() -> User:
    user: User = current_user.user
    return user


def _timezone() -> str:
    return str(current_app.extensions["slussen.settings"].timezone)


def _remembered() -> list[int]:
    value = session.get(SESSION_KEY, [])
    return [int(v) for v in value if isinstance(v, int)] if isinstance(value, list) else []


def _remember(patient_id: int) -> None:
    kept = [patient_id, *(p for p in _remembered() if p != patient_id)]
    session[SESSION_KEY] = kept[: services.REMEMBERED_PATIENTS]


def _filter_form(reviewer: User) -> LogFilterForm:
    form = LogFilterForm(request.args)
    form.user.choices = [(None, _("All users"))] + [
        (u.id, f"{u.display_name} ({u.username})")
        for u in services.reviewable_users(db_session(), reviewer)
    ]
    return form


def _page_url(**changes: Any) -> str:
    args: dict[str, Any] = {k: v for k, v in request.args.items() if k not in ("before", "after")}
    args.update({k: v for k, v in changes.items() if v is not None})
    return url_for("accesslog.index", **args)


def _render_index(
    search_form: PersonnummerForm, *, patient_id: int | None = None, status: int = 200
) -> ResponseReturnValue:
    """The review page. With a patient, the review is recorded and committed before the page is
    rendered: no audit row, no page."""
    reviewer = _reviewer()
    form = _filter_form(reviewer)
    page = None
    if form.validate():
        query = services.LogQuery(
            patient_id=patient_id,
            user_id=form.user.data,
            date_from=form.date_from.data,
            date_to=form.date_to.data,
        )
        page = services.review_log(
            keystore(),
            reviewer,
            query,
            timezone=_timezone(),
            before=request.args.get("before", type=int),
            after=request.args.get("after", type=int),
        )
    elif status == 200:
        status = 400
    return render_audited(
        "accesslog/index.html",
        status=status,
        form=form,
        search_form=search_form,
        page=page,
        patient_id=patient_id,
        page_url=_page_url,
        action_labels=ACTION_LABELS,
        object_labels=OBJECT_LABELS,
    )


@bp.route("/atkomstlogg")
@require(Permission.REVIEW_ACCESS_LOG)
@shows_patient_data
def index() -> ResponseReturnValue:
    patient_id = request.args.get("patient", type=int)
    if "patient" in request.args and patient_id not in _remembered():
        abort(404)
    return _render_index(PersonnummerForm(formdata=None), patient_id=patient_id)


@bp.route("/atkomstlogg/patient", methods=["POST"])
@require(Permission.REVIEW_ACCESS_LOG)
@shows_patient_data
def search_patient() -> ResponseReturnValue:
    """Find a patient by personnummer (POSTed, never in a URL) and show their accesses."""
    form = PersonnummerForm()
    if form.validate_on_submit() and form.identifier is not None:
        try:
            patient_id = services.find_patient_for_review(keystore(), _reviewer(), form.identifier)
        except services.PatientNotFound as exc:
            form.pnr.errors = [str(exc)]
        else:
            _remember(patient_id)
            return redirect(url_for("accesslog.index", patient=patient_id))
    return _render_index(form, status=400)


@bp.route("/atkomstlogg/utdrag", methods=["GET", "POST"])
@require(Permission.REVIEW_ACCESS_LOG)
@shows_patient_data
def extract() -> ResponseReturnValue:
    """The patient's log extract as a PDF attachment; the personnummer comes in the POST body."""
    form = PersonnummerForm()
    if form.validate_on_submit() and form.identifier is not None:
        try:
            data = services.build_patient_extract(keystore(), _reviewer(), form.identifier)
        except (services.PatientNotFound, PatientErased) as exc:
            form.pnr.errors = [str(exc)]
        else:
            pdf = render_log_extract(data, timezone=_timezone())
            response = make_response(pdf)
            response.headers["Content-Type"] = "application/pdf"
            response.headers["Content-Disposition"] = 'attachment; filename="loggutdrag.pdf"'
            return response
    status = 400 if request.method == "POST" else 200
    return render_template("accesslog/extract.html", form=form), status
