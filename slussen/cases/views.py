"""Worklists, the coordinator's unit view, the staff view, the case page and its events."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from slussen.accesslog.markers import shows_patient_data
from slussen.accounts.auth import require
from slussen.accounts.models import Membership, User
from slussen.accounts.roles import Permission
from slussen.app import NO_STORE_FLAG
from slussen.cases.access import current_actor, load_case
from slussen.cases.engine import (
    CaseError,
    NotPermitted,
    StaleCase,
    allowed_events,
    current_workflow,
    fire,
    today_local,
)
from slussen.cases.models import CHANNELS, Case
from slussen.cases.services import (
    UnitFilters,
    case_view,
    coach_worklist,
    flagged_cases,
    mark_referrals_seen,
    names_for_list,
    state_counts,
    take_case,
    unit_cases,
    unseen_referrals,
)
from slussen.cases.workflow import localised
from slussen.db import db_session
from slussen.keystore import keystore

bp = Blueprint("cases", __name__, template_folder="templates")

#: Events whose data is a reason or a note, fired from the case page's generic form. Events that
#: need a visit time or a plan have their own pages (slussen.visits).
SPECIAL_EVENTS = {
    "book_mapping_visit": "visits.book",
    "rebook_mapping_visit": "visits.book",
    "record_mapping_visit": "visits.mapping",
    "record_follow_up": "visits.follow_up",
    "record_follow_up_2": "visits.follow_up",
}


def _page() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


@bp.route("/arbetslista")
@require(Permission.WORK_CASES)
@shows_patient_data
def worklist() -> ResponseReturnValue:
    """The coach's cases due today, this week and overdue, grouped; the next action per case."""
    session = db_session()
    actor = current_actor()
    workflow = current_workflow()
    today = today_local()
    page = coach_worklist(session, actor, workflow, today=today, page=_page())
    names = names_for_list(keystore(), actor, page.cases, purpose="arbetslista")
    counts = state_counts(session, actor.unit_ids)
    unseen = unseen_referrals(session, [c.id for c in page.cases])
    next_events = {c.id: next(iter(allowed_events(workflow, c, actor)), None) for c in page.cases}
    session.commit()
    # Nothing below touches the database: the transaction (a lock on SQLite) is already over.
    g.setdefault(NO_STORE_FLAG, True)
    groups: dict[str, list[object]] = {"overdue": [], "today": [], "week": []}
    for case in page.cases:
        key = (
            "overdue"
            if case.next_due_on and case.next_due_on < today
            else "today"
            if case.next_due_on == today
            else "week"
        )
        groups[key].append(case)
    return render_template(
        "cases/worklist.html",
        page=page,
        groups=groups,
        names=names,
        workflow=workflow,
        counts=counts,
        today=today,
        unseen=unseen,
        next_event=lambda case: next_events[case.id],
        special=SPECIAL_EVENTS,
    )


@bp.route("/enhet")
@require(Permission.COORDINATE_UNIT)
@shows_patient_data
def unit() -> ResponseReturnValue:
    """The coordinator's view of the unit with filters (state, coach, overdue, channel)."""
    session = db_session()
    actor = current_actor()
    workflow = current_workflow()
    state = request.args.get("state", "")
    channel = request.args.get("channel", "")
    try:
        coach_id = int(request.args.get("coach", "") or 0) or None
    except ValueError:
        coach_id = None
    filters = UnitFilters(
        state=state if state in workflow.states else "",
        coach_id=coach_id,
        is_overdue=request.args.get("overdue") == "1",
        channel=channel if channel in CHANNELS else "",
    )
    page = unit_cases(session, actor, filters, today=today_local(), page=_page())
    names = names_for_list(keystore(), actor, page.cases, purpose="enhetsöversikt")
    session.commit()
    coaches = session.scalars(
        select(User)
        .join(Membership)
        .where(Membership.unit_id.in_(actor.unit_ids), User.role.in_(("coach", "coordinator")))
        .order_by(User.display_name)
    ).unique()
    return render_template(
        "cases/unit.html",
        page=page,
        names=names,
        workflow=workflow,
        filters=filters,
        coaches=list(coaches),
        channels=CHANNELS,
        counts=state_counts(session, actor.unit_ids),
        today=today_local(),
    )


@bp.route("/mina-flaggningar")
@require(Permission.FLAG_PATIENT)
def flagged() -> ResponseReturnValue:
    """Cases this user flagged: state and next date only (no clinical notes, no names)."""
    page = flagged_cases(db_session(), current_actor(), page=_page())
    return render_template("cases/flagged.html", page=page, workflow=current_workflow())


@bp.route("/arenden/<int:case_id>")
@require(Permission.WORK_CASES)
@shows_patient_data
def show(case_id: int) -> ResponseReturnValue:
    """The case page: identity (decrypted, audited), timeline, due dates, letters, and the
    buttons for the events this user may fire now."""
    return render_case(load_case(case_id))


def render_case(case: Case, *, typed: str = "", status: int = 200) -> ResponseReturnValue:
    """Render the case page (audited read), optionally keeping text the user typed."""
    from slussen.questionnaires.views import questionnaire_panel
    from slussen.visits.views import visit_panel

    session = db_session()
    actor = current_actor()
    workflow = current_workflow()
    view = case_view(keystore(), actor, case)
    panel = visit_panel(keystore(), case)
    questionnaires = questionnaire_panel(case)
    mark_referrals_seen(session, case)
    session.commit()
    return render_template(
        "cases/show.html",
        case=case,
        workflow=workflow,
        events=allowed_events(workflow, case, actor),
        special=SPECIAL_EVENTS,
        typed=typed,
        **view,
        **panel,
        **questionnaires,
    ), status


@bp.route("/arenden/<int:case_id>/ta", methods=["POST"])
@require(Permission.WORK_CASES)
def take(case_id: int) -> ResponseReturnValue:
    """A coach takes responsibility for an unassigned case."""
    case = load_case(case_id)
    if take_case(current_actor(), case):
        db_session().commit()
        flash(_("The case is yours now."), "success")
    return redirect(url_for("cases.show", case_id=case.id))


@bp.route("/arenden/<int:case_id>/handelse/<event>", methods=["POST"])
@require(Permission.WORK_CASES)
def fire_event(case_id: int, event: str) -> ResponseReturnValue:
    """Fire a simple event (data: a reason or a note). A refused event changes nothing and says
    why; a case changed by someone else meanwhile answers 409 and keeps what was typed."""
    case = load_case(case_id)
    workflow = current_workflow()
    if event not in workflow.transitions or event in SPECIAL_EVENTS:
        abort(404)
    session = db_session()
    text = (request.form.get("text") or "").strip()[:4000]
    try:
        version = int(request.form.get("version", ""))
    except ValueError:
        version = -1
    transition = workflow.transitions[event]
    try:
        fire(
            keystore(),
            case,
            event,
            current_actor(),
            workflow=workflow,
            expected_version=version,
            reason=text if "reason" in transition.requires else None,
            note=text if "reason" not in transition.requires and text else None,
        )
    except StaleCase as exc:
        session.rollback()
        return render_template(
            "cases/conflict.html", case=case, message=str(exc), typed=text, event=transition
        ), 409
    except NotPermitted:
        session.rollback()
        abort(404)
    except CaseError as exc:
        session.rollback()
        flash(str(exc), "error")
        return render_case(load_case(case_id), typed=text, status=422)
    session.commit()
    flash(_("Done: %(what)s.", what=localised(transition.label)), "success")
    return redirect(url_for("cases.show", case_id=case.id))
