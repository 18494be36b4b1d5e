"""The association's pages (sluss 2): the requests addressed to one's organisations, one request
with its answer, the meeting and the outcome of the first occasion."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from flask import Blueprint, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from slussen.accesslog.markers import render_audited, shows_patient_data
from slussen.accounts.auth import require
from slussen.accounts.roles import Permission
from slussen.associations import services
from slussen.cases.access import current_actor
from slussen.cases.engine import current_workflow
from slussen.config import local_zone
from slussen.db import attempt, db_session
from slussen.errors import Invalid
from slussen.keystore import keystore
from slussen.visits.services import ASSOCIATION_OUTCOMES

bp = Blueprint("associations", __name__, template_folder="templates")


def _outcome_labels() -> dict[str, str]:
    return {
        "went": _("The patient came"),
        "did_not_go": _("The patient did not come"),
        "will_continue": _("The patient came and will continue"),
    }


@bp.route("/forening")
@require(Permission.ANSWER_HANDOVERS)
@shows_patient_data
def index() -> ResponseReturnValue:
    """The association's start page: the requests addressed to its organisations."""
    requests = services.list_requests(keystore(), current_actor())
    return render_audited(
        "associations/index.html", requests=requests, outcome_labels=_outcome_labels()
    )


@bp.route("/forening/forfragningar/<int:handover_id>")
@require(Permission.ANSWER_HANDOVERS)
@shows_patient_data
def show(handover_id: int) -> ResponseReturnValue:
    """One request: what the patient agreed to share, and the forms for the next step."""
    shown = services.show_request(keystore(), current_actor(), handover_id)
    return render_audited(
        "associations/request.html",
        request_=shown,
        outcomes=ASSOCIATION_OUTCOMES,
        outcome_labels=_outcome_labels(),
    )


def _apply(handover_id: int, action: Callable[[], object], done: str) -> ResponseReturnValue:
    """Run one answer: say `done`, or undo it and say why (404 outside one's organisations:
    the error handler)."""
    try:
        with attempt():
            action()
    except Invalid as exc:
        flash(str(exc), "error")
    else:
        flash(done, "success")
    return redirect(url_for("associations.show", handover_id=handover_id))


@bp.route("/forening/forfragningar/<int:handover_id>/svar", methods=["POST"])
@require(Permission.ANSWER_HANDOVERS)
def answer(handover_id: int) -> ResponseReturnValue:
    """Accept the request, or decline it with a reason."""
    # Authorise first: another organisation's request is 404 whatever the form says.
    services.load_request(db_session(), current_actor(), handover_id)
    is_accepted = request.form.get("answer") == "yes"
    if request.form.get("answer") not in ("yes", "no"):
        flash(_("Choose whether you can take the patient on."), "error")
        return redirect(url_for("associations.show", handover_id=handover_id))
    return _apply(
        handover_id,
        lambda: services.accept_request(
            keystore(),
            current_actor(),
            handover_id,
            workflow=current_workflow(),
            is_accepted=is_accepted,
            reason=request.form.get("reason", "")[:1000],
        ),
        _("Thank you: the coach sees your answer.")
        if is_accepted
        else _("The request is declined."),
    )


def _meeting_at(day: str, time: str) -> dt.datetime | None:
    """The meeting's moment from a date (YYYY-MM-DD) and a time ("14.00" or "14:00")."""
    try:
        moment = dt.datetime.strptime(
            f"{day.strip()} {time.strip().replace('.', ':')}", "%Y-%m-%d %H:%M"
        )
    except ValueError:
        return None
    return moment.replace(tzinfo=local_zone()).astimezone(dt.UTC)


@bp.route("/forening/forfragningar/<int:handover_id>/mote", methods=["POST"])
@require(Permission.ANSWER_HANDOVERS)
def meeting(handover_id: int) -> ResponseReturnValue:
    """Name the companion and confirm the meeting: date, time and place."""
    return _apply(
        handover_id,
        lambda: services.arrange_meeting(
            keystore(),
            current_actor(),
            handover_id,
            companion_name=request.form.get("companion_name", "")[:200],
            meeting_at=_meeting_at(
                request.form.get("meeting_day", "")[:20], request.form.get("meeting_time", "")[:10]
            ),
            meeting_place=request.form.get("meeting_place", "")[:300],
        ),
        _("The meeting is confirmed."),
    )


@bp.route("/forening/forfragningar/<int:handover_id>/utfall", methods=["POST"])
@require(Permission.ANSWER_HANDOVERS)
def outcome(handover_id: int) -> ResponseReturnValue:
    """Afterwards: how the first occasion went."""
    return _apply(
        handover_id,
        lambda: services.record_outcome(
            keystore(),
            current_actor(),
            handover_id,
            workflow=current_workflow(),
            outcome=request.form.get("outcome", "")[:20],
        ),
        _("Thank you: the coach sees how it went."),
    )
