"""Pages for the mapping visit, the action plan, sluss 2 hand-overs and follow-ups."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from markupsafe import Markup, escape
from sqlalchemy import select

from slussen.accesslog.markers import render_audited, shows_patient_data
from slussen.accounts.auth import require
from slussen.accounts.roles import Permission
from slussen.cases.access import current_actor, load_case
from slussen.cases.engine import StaleCase, current_workflow
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.config import local_zone
from slussen.db import attempt, db_session, load_authorised
from slussen.directory.models import Activity, ActivityRevision, Organisation
from slussen.errors import Invalid
from slussen.i18n import ui_language
from slussen.keystore import Keystore, keystore
from slussen.patients.models import Patient
from slussen.patients.services import read_patient
from slussen.questionnaires import definitions as form_definitions
from slussen.visits import services
from slussen.visits.labels import labels as visit_labels
from slussen.visits.models import (
    CONTACT_FREQUENCIES,
    RELATION_TYPES,
    STEP_ACTORS,
    STEP_OUTCOMES,
    Handover,
)

bp = Blueprint("visits", __name__, template_folder="templates")
MAX_NETWORK_ROWS = 12
MAX_STEPS = 8


@bp.app_context_processor
def _labels() -> dict[str, object]:
    return dict(visit_labels(ui_language()))


def interest_areas() -> dict[str, str]:
    """Interest areas (id → text) from forms/interest_mapping.toml."""
    return form_definitions.interest_areas(ui_language())


def barrier_labels() -> dict[str, str]:
    """Barriers (id → text) from forms/barriers.toml, in file order."""
    return form_definitions.barrier_labels(ui_language())


def network_svg(entries: list[services.NetworkInput]) -> Markup:
    """The network as concentric rings around the patient: closest people innermost. Green
    marks a relation that could deepen, amber a lost contact that could resume."""
    size, centre = 360, 180
    radii = {1: 60, 2: 110, 3: 160}
    parts = [
        f'<svg class="network-map" viewBox="0 0 {size} {size}" role="img" '
        f'aria-labelledby="netmap-title"><title id="netmap-title">'
        f"{escape(_('Network map'))}</title>"
    ]
    for ring in (3, 2, 1):
        parts.append(
            f'<circle cx="{centre}" cy="{centre}" r="{radii[ring]}" fill="none" '
            f'stroke="#c9c6bd" stroke-width="1.5"/>'
        )
    parts.append(f'<circle cx="{centre}" cy="{centre}" r="16" fill="#0b5d56"/>')
    parts.append(
        f'<text x="{centre}" y="{centre + 34}" text-anchor="middle" font-size="11" '
        f'fill="#1b1b1b">{escape(_("The patient"))}</text>'
    )
    by_ring: dict[int, list[services.NetworkInput]] = {1: [], 2: [], 3: []}
    for entry in entries:
        by_ring[entry.closeness].append(entry)
    for ring, members in by_ring.items():
        for index, entry in enumerate(members):
            angle = 2 * math.pi * index / max(len(members), 1) - math.pi / 2 + ring * 0.4
            x = centre + radii[ring] * math.cos(angle)
            y = centre + radii[ring] * math.sin(angle)
            colour = (
                "#1d6b2f"
                if entry.is_could_deepen
                else "#b86e00"
                if entry.is_could_resume
                else "#4a4a4a"
            )
            dash = ' stroke-dasharray="4 3"' if entry.contact_frequency == "lost" else ""
            parts.append(
                f'<line x1="{centre}" y1="{centre}" x2="{x:.1f}" y2="{y:.1f}" '
                f'stroke="{colour}" stroke-width="1"{dash}/>'
            )
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="{colour}"/>')
            label = escape(entry.label[:18])
            parts.append(
                f'<text x="{x:.1f}" y="{y - 11:.1f}" text-anchor="middle" '
                f'font-size="11" fill="#1b1b1b">{label}</text>'
            )
    parts.append("</svg>")
    # Every piece of text in the SVG was escaped above.
    return Markup("".join(parts))  # noqa: S704


def case_page_panel(case: Case) -> dict[str, Any]:
    """The visits panel of the case page (registered by create_app; the case page audits)."""
    return visit_panel(keystore(), case, current_workflow())


def visit_panel(store: Keystore, case: Case, workflow: Workflow) -> dict[str, Any]:
    """What the case page shows of visits, mapping, plan and hand-overs (the caller audits)."""
    mapping = services.load_mapping(store, case)
    visits = services.case_visits(store, case)
    handovers = services.case_handovers(store, case)
    plan = services.current_plan(store, case)
    return {
        "mapping": mapping,
        "network_map": network_svg(mapping.network) if mapping.network else None,
        "plan": plan,
        # Revisions are numbered 1, 2, 3… and kept: the newest one's number is their count.
        "plan_revisions": plan.revision if plan else 0,
        "visits": visits,
        "handovers": handovers,
        "interest_names": interest_areas(),
        "barrier_names": barrier_labels(),
        # What the workflow allows in the case's state, so the templates name no state.
        "is_mapping_open": case.state in workflow.states_for(services.MAPPING_OPEN),
        "can_record_mapping_visit": workflow.can_fire(services.RECORDS_MAPPING_VISIT, case.state),
        "is_handover_open": case.state in workflow.states_for(services.HANDOVER_OPEN),
        "handover_organisations": handover_organisations(store.session),
        "handover_activities": handover_activities(store.session),
    }


def handover_organisations(session: Any) -> list[tuple[int, str]]:
    """The directory's organisations (id, name) a hand-over can be addressed to."""
    rows = session.execute(select(Organisation.id, Organisation.name).order_by(Organisation.name))
    return [(row.id, row.name) for row in rows]


def handover_activities(session: Any) -> list[tuple[int, str]]:
    """The directory's published activities (id, "organisation – title") for a hand-over."""
    rows = session.execute(
        select(Activity.id, Organisation.name, ActivityRevision.title)
        .join(Organisation, Organisation.id == Activity.organisation_id)
        .join(ActivityRevision, ActivityRevision.id == Activity.published_revision_id)
        .where(Activity.is_withdrawn.is_(False))
        .order_by(Organisation.name, ActivityRevision.title)
    )
    return [(row.id, f"{row.name} – {row.title}") for row in rows]


def _version() -> int:
    try:
        return int(request.form.get("version", ""))
    except ValueError:
        return -1


def _conflict(case: Case, message: str, typed: str) -> ResponseReturnValue:
    # The 409 rolls the request back; the page keeps what the user typed.
    return render_template("cases/conflict.html", case=case, message=message, typed=typed), 409


def _apply(
    case: Case, action: Callable[[], object], *, done: str, typed: str = ""
) -> ResponseReturnValue:
    """Run a visit service for a small form on the case page: say `done`, or undo it and say
    why; 409 (keeping `typed`) on a stale case (404 outside the user's units: the error
    handler)."""
    try:
        with attempt():
            action()
    except StaleCase as exc:
        return _conflict(case, str(exc), typed)
    except Invalid as exc:
        flash(str(exc), "error")
    else:
        flash(done, "success")
    return redirect(url_for("cases.show", case_id=case.id))


def _local_datetime(day: str, time: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.strptime(f"{day} {time}", "%Y-%m-%d %H:%M")
    except ValueError:
        return None
    return moment.replace(tzinfo=local_zone()).astimezone(dt.UTC)


@bp.route("/arenden/<int:case_id>/boka", methods=["GET", "POST"])
@require(Permission.WORK_CASES)
def book(case_id: int) -> ResponseReturnValue:
    """Book or rebook the 45-minute mapping visit; queues the appointment letter."""
    case = load_case(case_id)
    error = ""
    values = {"day": "", "time": "", "place": "", "duration": "45"}
    if request.method == "POST":
        values = {k: (request.form.get(k) or "").strip()[:200] for k in values}
        starts_at = _local_datetime(values["day"], values["time"])
        try:
            duration = int(values["duration"] or 45)
        except ValueError:
            duration = 0
        try:
            if starts_at is None:
                raise Invalid(_("Give a date (YYYY-MM-DD) and a time (HH:MM)."))
            services.book_mapping_visit(
                keystore(),
                current_actor(),
                case,
                workflow=current_workflow(),
                starts_at=starts_at,
                place=values["place"],
                duration_minutes=duration,
                expected_version=_version(),
            )
        except StaleCase as exc:
            return _conflict(case, str(exc), values["place"])
        except Invalid as exc:
            error = str(exc)
        else:
            flash(_("The visit is booked and the appointment letter is queued."), "success")
            return redirect(url_for("cases.show", case_id=case.id))
    return render_template("visits/book.html", case=case, values=values, error=error), (
        422 if error else 200
    )


def _network_from_form() -> list[services.NetworkInput]:
    entries = []
    for i in range(MAX_NETWORK_ROWS):
        label = (request.form.get(f"net-{i}-label") or "").strip()
        if not label:
            continue
        try:
            closeness = int(request.form.get(f"net-{i}-closeness", "2"))
        except ValueError:
            closeness = 0
        entries.append(
            services.NetworkInput(
                label=label[:200],
                relation_type=request.form.get(f"net-{i}-relation", "other"),
                closeness=closeness,
                contact_frequency=request.form.get(f"net-{i}-frequency", "monthly"),
                is_could_deepen=request.form.get(f"net-{i}-deepen") == "1",
                is_could_resume=request.form.get(f"net-{i}-resume") == "1",
            )
        )
    return entries


def _steps_from_form() -> list[services.StepInput]:
    steps = []
    for i in range(MAX_STEPS):
        text = (request.form.get(f"step-{i}-text") or "").strip()
        if not text:
            continue
        due = request.form.get(f"step-{i}-due") or ""
        try:
            due_on = dt.date.fromisoformat(due) if due else None
        except ValueError as exc:
            raise Invalid(_("A step's date must be YYYY-MM-DD.")) from exc
        # A step chosen from the directory keeps its activity when the plan is saved again; an
        # id no integer column holds is no activity.
        activity = request.form.get(f"step-{i}-activity") or ""
        decimal = activity.isdecimal() and len(activity) <= 10
        activity_id = int(activity) if decimal and 0 < int(activity) < 2**31 else None
        steps.append(
            services.StepInput(
                text=text[:1000],
                actor=request.form.get(f"step-{i}-actor", "patient"),
                due_on=due_on,
                activity_id=activity_id,
                outcome=request.form.get(f"step-{i}-outcome", "pending"),
                outcome_note=(request.form.get(f"step-{i}-note") or "")[:1000],
            )
        )
    return steps


@bp.route("/arenden/<int:case_id>/kartlaggning", methods=["GET", "POST"])
@require(Permission.WORK_CASES)
@shows_patient_data
def mapping(case_id: int) -> ResponseReturnValue:
    """The mapping visit: network, interests, barriers, notes and the action plan; "save" keeps
    working, "save and record the visit" moves the case to the active plan."""
    case = load_case(case_id)
    session = db_session()
    store = keystore()
    actor = current_actor()
    workflow = current_workflow()
    error = ""
    if request.method == "POST":
        form_mapping = services.Mapping(
            network=_network_from_form(),
            interests=request.form.getlist("interest"),
            barriers=request.form.getlist("barrier"),
            barrier_notes=request.form.get("barrier_notes", ""),
            notes=request.form.get("notes", ""),
            area=request.form.get("area", ""),
        )
        goals = request.form.get("goals", "")
        try:
            # A refusal shows the form again with the audited read committed: undo the step.
            with attempt():
                if case.version != _version():
                    raise StaleCase(_("Someone else changed the case while you worked."))
                services.save_mapping(
                    store,
                    actor,
                    case,
                    form_mapping,
                    workflow=workflow,
                    known_interests=set(interest_areas()),
                    known_barriers=set(barrier_labels()),
                )
                steps = _steps_from_form()
                if goals.strip() or steps:
                    services.save_action_plan(
                        store, actor, case, workflow=workflow, goals=goals, steps=steps
                    )
                if request.form.get("record") == "1":
                    services.record_mapping_visit(
                        store, actor, case, workflow=workflow, expected_version=_version()
                    )
        except StaleCase as exc:
            return _conflict(case, str(exc), goals)
        except Invalid as exc:
            error = str(exc)
        else:
            flash(
                _("The mapping is saved.")
                if request.form.get("record") != "1"
                else _("The visit is recorded and the action plan letter is queued."),
                "success",
            )
            return redirect(url_for("cases.show", case_id=case.id))
    patient = session.get(Patient, case.patient_id)
    assert patient is not None
    identity = read_patient(
        store, actor, patient, purpose="kartläggningsbesök", unit_id=case.unit_id
    )
    panel = visit_panel(store, case, workflow)
    return render_audited(
        "visits/mapping.html",
        status=422 if error else 200,
        case=case,
        identity=identity,
        error=error,
        relation_types=RELATION_TYPES,
        frequencies=CONTACT_FREQUENCIES,
        step_actors=STEP_ACTORS,
        step_outcomes=STEP_OUTCOMES,
        barriers=list(barrier_labels()),
        rows=MAX_NETWORK_ROWS,
        step_rows=MAX_STEPS,
        **panel,
    )


@bp.route("/arenden/<int:case_id>/uppfoljning", methods=["GET", "POST"])
@require(Permission.WORK_CASES)
def follow_up(case_id: int) -> ResponseReturnValue:
    """Follow-up 1 (30 min at the unit or by phone) or the phone follow-up 2."""
    case = load_case(case_id)
    error = ""
    how = request.form.get("how_it_went", "")
    if request.method == "POST":
        try:
            services.record_follow_up(
                keystore(),
                current_actor(),
                case,
                workflow=current_workflow(),
                how_it_went=how,
                problem_solving=request.form.get("problem_solving", ""),
                mode=request.form.get("mode", "at_unit"),
                expected_version=_version(),
            )
        except StaleCase as exc:
            return _conflict(case, str(exc), how)
        except Invalid as exc:
            error = str(exc)
        else:
            flash(_("The follow-up is recorded."), "success")
            return redirect(url_for("cases.show", case_id=case.id))
    second = services.follow_up_kind(current_workflow(), case.state) == "follow_up_2"
    return render_template(
        "visits/follow_up.html",
        case=case,
        error=error,
        second=second,
        how=how,
        problem_solving=request.form.get("problem_solving", ""),
    ), (422 if error else 200)


def _form_id(name: str) -> int | None:
    """A chosen row's id from the form; None for none (or one no id column holds)."""
    value = request.form.get(name, "")
    return int(value) if value.isdecimal() and 0 < len(value) <= 10 and int(value) < 2**31 else None


@bp.route("/arenden/<int:case_id>/overlamning", methods=["POST"])
@require(Permission.WORK_CASES)
def request_handover(case_id: int) -> ResponseReturnValue:
    """Sluss 2: ask an organisation to meet the patient at the first occasion, with what the
    patient agreed to share with it."""
    case = load_case(case_id)
    session = db_session()
    organisation_id = _form_id("organisation_id")
    activity_id = _form_id("activity_id")
    if activity_id is not None and organisation_id is None:
        activity = session.get(Activity, activity_id)
        organisation_id = activity.organisation_id if activity else None
    wished_day = request.form.get("wished_day", "")
    wished_at = _local_datetime(wished_day, request.form.get("wished_time", ""))

    def act() -> object:
        if wished_day and wished_at is None:
            raise Invalid(_("Give a date (YYYY-MM-DD) and a time (HH:MM)."))
        return services.request_handover(
            keystore(),
            current_actor(),
            case,
            workflow=current_workflow(),
            step_id=_form_id("step_id"),
            organisation_name=request.form.get("organisation", "")[:300],
            organisation_id=organisation_id,
            activity_id=activity_id,
            wished_at=wished_at,
            is_phone_shared=request.form.get("share_phone") == "1",
            helps=request.form.get("helps", "")[:2000],
            first_name=request.form.get("first_name", "")[:200],
        )

    return _apply(
        case,
        act,
        done=_("The hand-over request is recorded."),
    )


@bp.route("/arenden/<int:case_id>/overlamning/<int:handover_id>", methods=["POST"])
@require(Permission.WORK_CASES)
def update_handover(case_id: int, handover_id: int) -> ResponseReturnValue:
    """Record who accepted, when they meet, and how the first occasion went."""
    case = load_case(case_id)
    handover = load_authorised(
        db_session(),
        Handover,
        handover_id,
        allowed=lambda h: h.case_id == case.id,
        message="Överlämningen finns inte.",
    )
    meeting = _local_datetime(
        request.form.get("meeting_day", ""), request.form.get("meeting_time", "")
    )
    return _apply(
        case,
        lambda: services.update_handover(
            keystore(),
            current_actor(),
            case,
            handover,
            workflow=current_workflow(),
            status=request.form.get("status", "requested"),
            companion_name=request.form.get("companion_name", ""),
            meeting_at=meeting,
            meeting_place=request.form.get("meeting_place", ""),
            outcome=request.form.get("outcome") or None,
            note=request.form.get("note", ""),
        ),
        done=_("The hand-over is updated."),
    )


@bp.route("/arenden/<int:case_id>/screening", methods=["POST"])
@require(Permission.WORK_CASES)
def resolve_screening(case_id: int) -> ResponseReturnValue:
    """Resolve a positive screening: continue, or refer elsewhere with a reason."""
    case = load_case(case_id)
    reason = request.form.get("reason", "")
    return _apply(
        case,
        lambda: services.resolve_screening(
            keystore(),
            current_actor(),
            case,
            workflow=current_workflow(),
            decision=request.form.get("decision", ""),
            reason=reason,
            expected_version=_version(),
        ),
        done=_("Saved."),
        typed=reason,
    )
