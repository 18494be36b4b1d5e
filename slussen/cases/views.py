"""Worklists, the coordinator's unit view, the staff view, the case page and its events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from slussen.accesslog.markers import NO_STORE_FLAG, render_audited, shows_patient_data
from slussen.accounts.auth import require
from slussen.accounts.models import Membership, User
from slussen.accounts.roles import Permission
from slussen.audit import Actor
from slussen.cases.access import current_actor, load_case
from slussen.cases.corrections import (
    Corrected,
    accept_offered_details,
    correct_details,
    decline_offered_details,
    details_view,
)
from slussen.cases.engine import (
    SCREENING_FIELD,
    StaleCase,
    allowed_events,
    asks_confirmation,
    current_workflow,
    fire,
)
from slussen.cases.forms import CorrectionForm
from slussen.cases.labels import labels as case_labels
from slussen.cases.models import CHANNELS, Case
from slussen.cases.services import (
    CASELOAD_SORTS,
    CaseloadFilters,
    Found,
    UnitFilters,
    case_view,
    coach_caseload,
    coach_worklist,
    find_cases_by_identifier,
    find_cases_by_name,
    flagged_cases,
    mark_referrals_seen,
    state_counts,
    take_case,
    unit_cases,
)
from slussen.cases.workflow import EventPart, Transition, Workflow, needs_event
from slussen.config import today_local
from slussen.db import attempt, db_session
from slussen.errors import Invalid
from slussen.i18n import format_day, localised, ui_language
from slussen.identifiers import IdentifierError, parse_identifier
from slussen.keystore import keystore
from slussen.patients.services import (
    IDENTITY_FIELDS,
    PatientIdentity,
    has_pending_offer,
    names_for_list,
    record_shown,
    unseal_listed,
)

bp = Blueprint("cases", __name__, template_folder="templates")


@bp.app_context_processor
def _labels() -> dict[str, object]:
    return dict(case_labels(ui_language()))


#: Events whose data is a reason or a note are fired from the case page's generic form. Events
#: that need a visit time or a plan have their own pages (slussen.visits): part -> endpoint. The
#: screening's events have no button: the answers flag it, and the coach resolves it with the
#: choice the visit panel shows.
SPECIAL_EVENTS: dict[EventPart, str | None] = {
    needs_event("books_mapping_visit"): "visits.book",
    needs_event("rebooks_mapping_visit"): "visits.book",
    needs_event("records_mapping_visit"): "visits.mapping",
    needs_event("records_follow_up_1"): "visits.follow_up",
    needs_event("records_follow_up_2"): "visits.follow_up",
    needs_event("flags_screening"): None,
    needs_event("resolves_screening"): None,
}


def special_events(workflow: Workflow) -> dict[str, str | None]:
    """The workflow's events that have their own page (event -> endpoint) or none (None)."""
    return {workflow.event_for(part): endpoint for part, endpoint in SPECIAL_EVENTS.items()}


def offered_events(workflow: Workflow, case: Any, actor: Actor) -> list[Transition]:
    """The events the case page and the worklist offer this actor now: those allowed (state and
    role), less those that no button fires."""
    special = special_events(workflow)
    return [
        t
        for t in allowed_events(workflow, case, actor)
        if t.event not in special or special[t.event] is not None
    ]


def _page() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


class WorkItem(NamedTuple):
    """One worklist row, with everything the template shows already worked out."""

    case_id: int
    url: str
    name: str
    reference: str
    state: str
    state_label: str
    due: str
    is_unseen: bool
    is_screening: bool
    #: The next step: None (just "Open"), or its label, URL and whether it is a POST form.
    action: tuple[str, str, bool] | None
    version: int


def case_urls(endpoint: str, **values: Any) -> Callable[[int], str]:
    """`url_for(endpoint, case_id=…, **values)` for a whole page of cases at the cost of one
    url_for."""
    built = url_for(endpoint, case_id=_URL_MARKER, **values)
    head, _sep, tail = built.partition(str(_URL_MARKER))
    return lambda case_id: f"{head}{case_id}{tail}"


_URL_MARKER = 987654321


def _work_items(
    rows: list[Any], names: dict[int, str], screenings: dict[int, str], actor: Actor
) -> list[WorkItem]:
    """The worklist's rows; labels, dates, URLs and the next step are worked out once per
    distinct value, not per row (a page has 50 rows but few states and days)."""
    workflow = current_workflow()
    special = special_events(workflow)
    show = case_urls("cases.show")
    labels = {name: localised(state.label) for name, state in workflow.states.items()}
    days: dict[Any, str] = {}
    # The next step depends only on the state (every row is in the actor's units).
    actions: dict[str, tuple[str, Callable[[int], str], bool] | None] = {}
    for row in rows:
        if row.state not in actions:
            t = next(iter(offered_events(workflow, row, actor)), None)
            endpoint = special.get(t.event) if t is not None else None
            if t is not None and endpoint is not None:
                actions[row.state] = (localised(t.label), case_urls(endpoint), False)
            elif t is not None and asks_confirmation(t, actor.role):
                url = case_urls("cases.confirm_event", event=t.event)
                actions[row.state] = (localised(t.label), url, False)
            elif t is not None and not t.requires:
                url = case_urls("cases.fire_event", event=t.event)
                actions[row.state] = (localised(t.label), url, True)
            else:
                actions[row.state] = None
        if row.next_due_on not in days:
            days[row.next_due_on] = format_day(row.next_due_on, "long")
    items = []
    for row in rows:
        action = actions[row.state]
        items.append(
            WorkItem(
                row.id,
                show(row.id),
                names[row.id],
                row.reference,
                row.state,
                labels[row.state],
                days[row.next_due_on],
                bool(row.has_unseen_referral),
                screenings.get(row.id) == "positive",
                (action[0], action[1](row.id), action[2]) if action else None,
                row.version,
            )
        )
    return items


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
    counts = state_counts(session, actor.unit_ids)
    store = keystore()
    names = names_for_list(store, actor, page.cases, shown_in="worklist")
    screenings = unseal_listed(store, page.cases, *SCREENING_FIELD, lambda row: row.screening_enc)
    # Nothing below touches the database: render_audited ends the transaction.
    g.setdefault(NO_STORE_FLAG, True)
    groups: dict[str, list[WorkItem]] = {"overdue": [], "today": [], "week": []}
    for row, item in zip(
        page.cases, _work_items(page.cases, names, screenings, actor), strict=True
    ):
        due = row.next_due_on
        groups["overdue" if due and due < today else "today" if due == today else "week"].append(
            item
        )
    for items in groups.values():
        items.sort(key=lambda item: item.state)
    return render_audited(
        "cases/worklist.html",
        page=page,
        groups=groups,
        # Each count links to the unit's list of the cases in that state (none for an empty one).
        state_counts=[
            (
                counts.get(name, 0),
                localised(workflow.states[name].label),
                url_for("cases.unit", state=name) if counts.get(name) else None,
            )
            for name in workflow.active_states
        ],
    )


@bp.route("/enhet")
@require(Permission.VIEW_UNIT)
@shows_patient_data
def unit() -> ResponseReturnValue:
    """Every case of the user's units with filters (state, coach, overdue, channel): the
    coordinator's view, and the coach's way to a case that is not due this week."""
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
    coaches = session.scalars(
        select(User)
        .join(Membership)
        .where(Membership.unit_id.in_(actor.unit_ids), User.role.in_(("coach", "coordinator")))
        .order_by(User.display_name)
    ).unique()
    coach_list = list(coaches)
    counts = state_counts(session, actor.unit_ids)
    # The audited read comes last: from there to the commit is a write transaction.
    names = names_for_list(keystore(), actor, page.cases, shown_in="unit")
    return render_audited(
        "cases/unit.html",
        page=page,
        names=names,
        workflow=workflow,
        filters=filters,
        coaches=coach_list,
        channels=CHANNELS,
        counts=counts,
        today=today_local(),
    )


@bp.route("/mina-flaggningar")
@require(Permission.FLAG_PATIENT)
def flagged() -> ResponseReturnValue:
    """Cases this user flagged: state and next date only (no clinical notes, no names). Each
    case shown is recorded in its patient's access log all the same (it tells that the person is
    a patient here)."""
    actor = current_actor()
    page = flagged_cases(db_session(), actor, page=_page())
    shown = [(case.id, case.unit_id, case.patient_id) for case in page.cases]
    record_shown(keystore(), actor, shown, shown_in="flagged")
    return render_template("cases/flagged.html", page=page, workflow=current_workflow())


@bp.route("/arenden/<int:case_id>")
@require(Permission.WORK_CASES)
@shows_patient_data
def show(case_id: int) -> ResponseReturnValue:
    """The case page: identity (decrypted, audited), timeline, due dates, letters, and the
    buttons for the events this user may fire now."""
    return render_case(load_case(case_id))


#: What another capability adds to the case page (visits, questionnaires): template variables for
#: one case. The capabilities sit above cases, so create_app registers their panels in
#: `app.extensions["slussen.case_panels"]` instead of this module importing them.
CasePanel = Callable[[Case], dict[str, Any]]


def case_panels() -> Sequence[CasePanel]:
    """The case page's panels, in the order create_app registered them."""
    panels: Sequence[CasePanel] = current_app.extensions["slussen.case_panels"]
    return panels


def render_case(case: Case, *, typed: str = "", status: int = 200) -> ResponseReturnValue:
    """Render the case page (audited read), optionally keeping text the user typed."""
    actor = current_actor()
    workflow = current_workflow()
    panels: dict[str, Any] = {}
    for panel in (*case_panels(), details_panel):
        panels.update(panel(case))
    events = offered_events(workflow, case, actor)
    # The audited read comes last: from there to the commit is a write transaction.
    view = case_view(keystore(), actor, case)
    mark_referrals_seen(view["referrals"])
    return render_audited(
        "cases/show.html",
        status=status,
        case=case,
        workflow=workflow,
        events=events,
        special=special_events(workflow),
        typed=typed,
        **view,
        **panels,
    )


@bp.route("/arenden/<int:case_id>/ta", methods=["POST"])
@require(Permission.WORK_CASES)
def take(case_id: int) -> ResponseReturnValue:
    """A coach takes responsibility for an unassigned case."""
    case = load_case(case_id)
    if take_case(current_actor(), case):
        flash(_("The case is yours now."), "success")
    return redirect(url_for("cases.show", case_id=case.id))


@bp.route("/arenden/<int:case_id>/handelse/<event>", methods=["POST"])
@require(Permission.WORK_CASES)
def fire_event(case_id: int, event: str) -> ResponseReturnValue:
    """Fire a simple event (data: a reason or a note). A refused event changes nothing and says
    why; a case changed by someone else meanwhile answers 409 and keeps what was typed."""
    case = load_case(case_id)
    workflow = current_workflow()
    if event not in workflow.transitions or event in special_events(workflow):
        abort(404)
    text = (request.form.get("text") or "").strip()[:4000]
    try:
        version = int(request.form.get("version", ""))
    except ValueError:
        version = -1
    transition = workflow.transitions[event]
    is_reason = "reason" in transition.requires or transition.is_confirmed_step
    try:
        # A refused event shows the case page again, whose audited read is committed: undo it.
        with attempt():
            fire(
                keystore(),
                case,
                event,
                current_actor(),
                workflow=workflow,
                expected_version=version,
                reason=text if is_reason else None,
                note=text if not is_reason and text else None,
                confirmed=request.form.get("confirmed") == "1",
            )
    except StaleCase as exc:
        # The 409 rolls the request back; the page keeps what the user typed.
        return render_template(
            "cases/conflict.html", case=case, message=str(exc), typed=text, event=transition
        ), 409
    except Invalid as exc:
        flash(str(exc), "error")
        return render_case(load_case(case_id), typed=text, status=422)
    flash(_("Done: %(what)s.", what=localised(transition.label)), "success")
    return redirect(url_for("cases.show", case_id=case.id))


# --- correcting a patient's details (issue #18) ---------------------------------------------------


def _correction_form(identity: PatientIdentity, case: Case) -> CorrectionForm:
    """The correction form, filled from the record on a GET and from the post on a POST."""
    if request.method == "POST":
        return CorrectionForm()
    return CorrectionForm(
        data={
            "name": identity.name,
            "street": identity.street,
            "postcode": identity.postcode,
            "town": identity.town,
            "phone": identity.phone,
            "contact_channel": case.contact_channel,
        }
    )


def details_panel(case: Case) -> dict[str, Any]:
    """The case page's part of the correction: whether a later referral's details wait for the
    coach (read without decrypting anything)."""
    return {"has_offered_details": has_pending_offer(db_session(), case.patient_id)}


def _flash_corrected(message: str, done: Corrected) -> None:
    flash(message, "success")
    if done.released:
        flash(_("Held letters released for the next batch: %(num)s.", num=done.released), "success")


@bp.route("/arenden/<int:case_id>/uppgifter", methods=["GET", "POST"])
@require(Permission.WORK_CASES)
@shows_patient_data
def details(case_id: int) -> ResponseReturnValue:
    """Correct the patient's name, address, phone and contact channel with a reason (history
    kept); shows the details a later referral offered and the earlier corrections. A refusal
    shows the form again with everything typed and the reason why."""
    case = load_case(case_id)
    store = keystore()
    actor = current_actor()
    view = details_view(store, actor, case)
    form = _correction_form(view.identity, case)
    status = 200
    if request.method == "POST":
        status = 422
        if form.validate_on_submit():
            fields: tuple[str, ...] = IDENTITY_FIELDS
            if view.identity.is_protected_identity:
                # The address is not on the form: keep it as it is.
                fields = tuple(f for f in fields if f not in ("street", "postcode", "town"))
            changes = {field: form[field].data or "" for field in fields}
            try:
                with attempt():
                    done = correct_details(
                        store,
                        actor,
                        case,
                        changes,
                        contact_channel=form.contact_channel.data,
                        reason=form.reason.data or "",
                    )
            except Invalid as exc:
                flash(str(exc), "error")
            else:
                _flash_corrected(_("The details are corrected."), done)
                return redirect(url_for("cases.show", case_id=case.id))
    return render_audited("cases/details.html", status=status, case=case, form=form, view=view)


@bp.route("/arenden/<int:case_id>/uppgifter/forslag/<int:offer_id>", methods=["POST"])
@require(Permission.WORK_CASES)
def decide_offer(case_id: int, offer_id: int) -> ResponseReturnValue:
    """Accept (a correction, history kept) or decline the details a later referral offered."""
    case = load_case(case_id)
    store = keystore()
    decision = request.form.get("decision")
    # "use" or "keep" (not the workflow's words accept/decline, which name events).
    if decision not in ("use", "keep"):
        abort(400)
    try:
        with attempt():
            if decision == "use":
                done = accept_offered_details(store, current_actor(), case, offer_id)
            else:
                decline_offered_details(store, current_actor(), case, offer_id)
    except Invalid as exc:
        flash(str(exc), "error")
        return redirect(url_for("cases.details", case_id=case.id))
    if decision == "keep":
        flash(_("The details from the referral were declined."), "info")
        return redirect(url_for("cases.details", case_id=case.id))
    _flash_corrected(_("The details from the referral are in the record now."), done)
    return redirect(url_for("cases.details", case_id=case.id))


# --- confirming an irreversible step -------------------------------------------------------------


@bp.route("/arenden/<int:case_id>/handelse/<event>/bekrafta")
@require(Permission.WORK_CASES)
def confirm_event(case_id: int, event: str) -> ResponseReturnValue:
    """The question before a step that cannot be undone (`confirm = true`): what it does, a
    reason, and the button that fires it. Shows the case's reference and state, nothing about
    the patient."""
    case = load_case(case_id)
    workflow = current_workflow()
    transition = workflow.transitions.get(event)
    if transition is None or event in special_events(workflow):
        abort(404)
    if transition not in offered_events(workflow, case, current_actor()):
        flash(_("That step is not open in the case's state."), "error")
        return redirect(url_for("cases.show", case_id=case.id))
    return render_template(
        "cases/confirm.html",
        case=case,
        event=transition,
        state_label=localised(workflow.states[case.state].label),
        is_closing=workflow.states[transition.target(case.state)].is_terminal,
    )


# --- finding any case ----------------------------------------------------------------------------

#: A name search needs this many letters, so a search does not list a whole unit.
_MIN_NAME_LENGTH = 2


@bp.route("/sok", methods=["GET", "POST"])
@require(Permission.WORK_CASES)
@shows_patient_data
def search() -> ResponseReturnValue:
    """Find a case in the user's units: by personnummer, samordningsnummer or the region's
    reservnummer (blind index), or by the patient's name (case and accents folded). Every
    patient shown is recorded in the access log (`names_for_list`, "search"). The search is
    posted, so what was typed (an identifier, a name) is never in a URL: not in the server's
    request log, the browser's history or an error page's links."""
    query = (request.form.get("q") or "").strip()[:200]
    is_reserve = request.form.get("reserve") == "1"
    store = keystore()
    actor = current_actor()
    error = ""
    found = Found([], False)
    settings = current_app.extensions["slussen.settings"]
    if query and (is_reserve or any(char.isdigit() for char in query)):
        try:
            identifier = parse_identifier(
                query, reserve=settings.reserve_format, is_reserve=is_reserve
            )
        except IdentifierError as exc:
            error = str(exc)
        else:
            found = find_cases_by_identifier(store, actor, identifier)
    elif query and len(query) < _MIN_NAME_LENGTH:
        error = _("Type at least two letters of the name.")
    elif query:
        found = find_cases_by_name(store, actor, query)
    workflow = current_workflow()
    # The audited read comes last: from there to the commit is a write transaction.
    names = names_for_list(store, actor, found.cases, shown_in="search")
    return render_audited(
        "cases/search.html",
        query=query,
        is_reserve=is_reserve,
        error=error,
        found=found,
        names=names,
        workflow=workflow,
        today=today_local(),
    )


@bp.route("/mina-arenden")
@require(Permission.WORK_CASES)
@shows_patient_data
def caseload() -> ResponseReturnValue:
    """The coach's whole caseload: every case they are responsible for, in every state (closed
    ones too), filtered by state and sorted."""
    session = db_session()
    actor = current_actor()
    workflow = current_workflow()
    state = request.args.get("state", "")
    sort = request.args.get("sort", "due")
    filters = CaseloadFilters(
        state=state if state in ("open", "closed") or state in workflow.states else "",
        sort=sort if sort in CASELOAD_SORTS else "due",
    )
    page = coach_caseload(session, actor, workflow, filters, page=_page())
    # The audited read comes last: from there to the commit is a write transaction.
    names = names_for_list(keystore(), actor, page.cases, shown_in="caseload")
    return render_audited(
        "cases/caseload.html",
        page=page,
        names=names,
        workflow=workflow,
        filters=filters,
        today=today_local(),
    )
