"""Pages for the mapping visit, the action plan, sluss 2 hand-overs and follow-ups."""

from __future__ import annotations

import datetime as dt
import math
import textwrap
from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from markupsafe import Markup, escape
from reportlab.pdfbase.pdfmetrics import stringWidth
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from slussen.accesslog.markers import render_audited, shows_patient_data
from slussen.accounts import sessions
from slussen.accounts.auth import load_identity, require
from slussen.accounts.roles import Permission, grants
from slussen.audit import Actor
from slussen.cases.access import current_actor, load_case
from slussen.cases.engine import StaleCase, current_workflow, may_act_on
from slussen.cases.models import Case
from slussen.cases.views import render_case
from slussen.cases.workflow import Workflow
from slussen.config import local_zone, today_local
from slussen.db import attempt, commit_request, db_session, load_authorised
from slussen.directory.models import Activity, ActivityRevision, Organisation
from slussen.directory.schedule import TIME_OF_DAY_MINUTES as TIMES_OF_DAY
from slussen.directory.services import Suggestion, activity_titles, suggest_activities
from slussen.errors import Invalid, NotFound
from slussen.i18n import ui_language
from slussen.keystore import Keystore, keystore
from slussen.patients import drafts
from slussen.patients.models import Patient
from slussen.patients.services import PatientIdentity, read_patient
from slussen.pdf import register_fonts
from slussen.questionnaires import definitions as form_definitions
from slussen.text import row_id
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


#: A name is wrapped at word boundaries into at most this many lines of this many characters;
#: a longer one is shortened with "…" and the whole name is the dot's tooltip (<title>).
LABEL_LINE_CHARS, LABEL_MAX_LINES = 16, 2
#: Font size and line height (px). Labels are measured in Bitstream Vera (the wide ancestor of
#: DejaVu Sans, Debian's fallback) with a tenth to spare, so the box holds them in any browser.
LABEL_FONT, LABEL_LINE_HEIGHT, LABEL_SPARE = 11, 13, 1.1


def label_lines(label: str) -> list[str]:
    """A network member's name as the map writes it: wrapped at spaces, shortened with "…"
    after LABEL_MAX_LINES lines; a single word longer than a line is cut with "…"."""
    words = " ".join(label.split())
    lines = textwrap.wrap(
        words, LABEL_LINE_CHARS, max_lines=LABEL_MAX_LINES, placeholder=" …", break_long_words=False
    )
    cut = [
        line if len(line) <= LABEL_LINE_CHARS else line[: LABEL_LINE_CHARS - 1] + "…"
        for line in lines
    ]
    return cut or [""]


class _Bounds:
    """The smallest box around everything drawn, so the viewBox never clips a label."""

    def __init__(self, size: int) -> None:
        self.left, self.top, self.right, self.bottom = 0.0, 0.0, float(size), float(size)

    def text(self, x: float, baseline: float, line: str, anchor: str) -> None:
        width = stringWidth(line, register_fonts()[0], LABEL_FONT) * LABEL_SPARE
        start = x - width / 2 if anchor == "middle" else x - width if anchor == "end" else x
        self.left, self.right = min(self.left, start), max(self.right, start + width)
        self.top = min(self.top, baseline - LABEL_FONT)
        self.bottom = max(self.bottom, baseline + LABEL_FONT / 3)

    def view_box(self, margin: float = 4) -> str:
        width = self.right - self.left + 2 * margin
        height = self.bottom - self.top + 2 * margin
        return f"{self.left - margin:.0f} {self.top - margin:.0f} {width:.0f} {height:.0f}"


def _label(bounds: _Bounds, x: float, y: float, angle: float, lines: list[str]) -> str:
    """The name's lines beside its dot, away from the centre: above or below a dot near the
    vertical axis, to the right or left of the others, so no label crosses the rings' middle."""
    dx, dy = math.cos(angle), math.sin(angle)
    n = len(lines)
    if abs(dx) < 0.35:
        anchor, tx = "middle", x
        first = y - 12 - (n - 1) * LABEL_LINE_HEIGHT if dy < 0 else y + 20
    else:
        anchor, tx = ("start", x + 11) if dx > 0 else ("end", x - 11)
        first = y + 4 - (n - 1) * LABEL_LINE_HEIGHT / 2
    spans = []
    for i, line in enumerate(lines):
        baseline = first + i * LABEL_LINE_HEIGHT
        bounds.text(tx, baseline, line, anchor)
        spans.append(f'<tspan x="{tx:.1f}" y="{baseline:.1f}">{escape(line)}</tspan>')
    return (
        f'<text text-anchor="{anchor}" font-size="{LABEL_FONT}" fill="#1b1b1b">'
        f"{''.join(spans)}</text>"
    )


def network_svg(entries: list[services.NetworkInput]) -> Markup:
    """The network as concentric rings around the patient: closest people innermost. Green
    marks a relation that could deepen, amber a lost contact that could resume. No name is
    clipped: names wrap, a shortened one has its full name as a tooltip, and the picture's
    box grows to hold every label."""
    size, centre = 360, 180
    radii = {1: 60, 2: 110, 3: 160}
    bounds = _Bounds(size)
    parts = []
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
            parts.append(
                f'<g class="member"><title>{escape(" ".join(entry.label.split()))}</title>'
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="{colour}"/>'
                f"{_label(bounds, x, y, angle, label_lines(entry.label))}</g>"
            )
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="network-map" '
        f'viewBox="{bounds.view_box()}" role="img" '
        f'font-family="DejaVu Sans, Bitstream Vera Sans, Verdana, sans-serif" '
        f'aria-labelledby="netmap-title"><title id="netmap-title">'
        f"{escape(_('Network map'))}</title>"
    )
    # Every piece of text in the SVG was escaped above.
    return Markup(head + "".join(parts) + "</svg>")  # noqa: S704


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
        # "follow_up_1", "follow_up_2" or None: which follow-up the panel offers to book.
        "follow_up_to_book": services.follow_up_kind(workflow, case.state),
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


def _version(form: MultiDict[str, str] | None = None) -> int:
    try:
        return int((request.form if form is None else form).get("version", ""))
    except ValueError:
        return -1


def _conflict(case: Case, message: str, typed: str) -> ResponseReturnValue:
    # The 409 rolls the request back; the page keeps what the user typed.
    return render_template("cases/conflict.html", case=case, message=message, typed=typed), 409


def _apply(
    case: Case, action: Callable[[], object], *, done: str, typed: str = ""
) -> ResponseReturnValue:
    """Run a visit service for a small form on the case page: say `done`, or undo it and show
    the case page again with why and the form as it was posted (422); 409 (keeping `typed`) on
    a stale case (404 outside the user's units: the error handler)."""
    try:
        with attempt():
            action()
    except StaleCase as exc:
        return _conflict(case, str(exc), typed)
    except Invalid as exc:
        flash(str(exc), "error")
        return render_case(load_case(case.id), status=422)
    flash(done, "success")
    return redirect(url_for("cases.show", case_id=case.id))


def _local_datetime(day: str, time: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.strptime(f"{day} {time}", "%Y-%m-%d %H:%M")
    except ValueError:
        return None
    return moment.replace(tzinfo=local_zone()).astimezone(dt.UTC)


def _booked_time(case: Case, values: dict[str, str]) -> tuple[dt.datetime, int, list[str]]:
    """A booking page's time, its length in minutes (0 for a length that is no number, which
    the service refuses) and the opening-hours and holiday warnings, none once the coach has
    seen them and confirmed (the page's "Book anyway" sends `confirm`). Refuses a missing or
    unreadable date or time (Invalid)."""
    starts_at = _local_datetime(values["day"], values["time"])
    if starts_at is None:
        raise Invalid(_("Give a date (YYYY-MM-DD) and a time (HH:MM)."))
    try:
        minutes = int(values["duration"])
    except ValueError:
        minutes = 0
    if request.form.get("confirm") == "1":
        return starts_at, minutes, []
    warnings = services.visit_time_warnings(db_session(), case.unit_id, starts_at, minutes)
    return starts_at, minutes, warnings


@bp.route("/arenden/<int:case_id>/boka", methods=["GET", "POST"])
@require(Permission.WORK_CASES)
def book(case_id: int) -> ResponseReturnValue:
    """Book or rebook the 45-minute mapping visit; queues the appointment letter. A time outside
    the unit's opening hours or on a holiday shows a warning first and books when confirmed."""
    case = load_case(case_id)
    error = ""
    warnings: list[str] = []
    values = {"day": "", "time": "", "place": "", "duration": "45"}
    if request.method == "POST":
        values = {k: (request.form.get(k) or "").strip()[:200] for k in values}
        values["duration"] = values["duration"] or "45"
        try:
            starts_at, duration, warnings = _booked_time(case, values)
            if not warnings:
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
            error, warnings = str(exc), []
        else:
            if not warnings:
                flash(_("The visit is booked and the appointment letter is queued."), "success")
                return redirect(url_for("cases.show", case_id=case.id))
    return render_template(
        "visits/book.html", case=case, values=values, error=error, warnings=warnings
    ), (422 if error else 200)


@bp.route("/arenden/<int:case_id>/uppfoljning/boka", methods=["GET", "POST"])
@require(Permission.WORK_CASES)
def book_follow_up(case_id: int) -> ResponseReturnValue:
    """Book follow-up 1 (at the unit or by phone) or the phone follow-up 2: queues the follow-up
    letter (a phone time agreed on the phone may go without one); rebooking replaces the letter
    not yet printed. A time outside the opening hours or on a holiday warns first."""
    case = load_case(case_id)
    workflow = current_workflow()
    kind = services.follow_up_kind(workflow, case.state)
    error = ""
    warnings: list[str] = []
    second = kind == "follow_up_2"
    values = {
        "day": "",
        "time": "",
        "place": "",
        "duration": "30",
        "mode": "phone" if second else "at_unit",
        "letter": "1",
    }
    if request.method == "POST":
        values = {k: (request.form.get(k) or "").strip()[:200] for k in values}
        values["duration"] = values["duration"] or "30"
        try:
            starts_at, duration, warnings = _booked_time(case, values)
            if not warnings:
                services.book_follow_up(
                    keystore(),
                    current_actor(),
                    case,
                    workflow=workflow,
                    starts_at=starts_at,
                    mode=values["mode"],
                    place=values["place"],
                    duration_minutes=duration,
                    send_letter=values["letter"] == "1",
                )
        except Invalid as exc:
            error, warnings = str(exc), []
        else:
            if not warnings:
                with_letter = values["letter"] == "1" or values["mode"] != "phone"
                flash(
                    _("The follow-up is booked and the letter is queued.")
                    if with_letter
                    else _("The phone time is booked, without a letter."),
                    "success",
                )
                return redirect(url_for("cases.show", case_id=case.id))
    return render_template(
        "visits/book_follow_up.html",
        case=case,
        values=values,
        error=error,
        warnings=warnings,
        second=second,
        is_open=kind is not None,
    ), (422 if error else 200)


Fields = MultiDict[str, str]

#: The forms whose typing is kept as a draft: their kind (slussen.patients.models.DRAFT_FORMS)
#: by the word in their draft URLs, and the endpoint of the form's page.
DRAFT_SLUGS = {"kartlaggning": "mapping", "uppfoljning": "follow_up"}
_FORM_PAGES = {"mapping": "visits.mapping", "follow_up": "visits.follow_up"}


def _network_from_form(form: Fields) -> list[services.NetworkInput]:
    entries = []
    for i in range(MAX_NETWORK_ROWS):
        label = (form.get(f"net-{i}-label") or "").strip()
        if not label:
            continue
        try:
            closeness = int(form.get(f"net-{i}-closeness", "2"))
        except ValueError:
            closeness = 0
        entries.append(
            services.NetworkInput(
                label=label[:200],
                relation_type=form.get(f"net-{i}-relation", "other"),
                closeness=closeness,
                contact_frequency=form.get(f"net-{i}-frequency", "monthly"),
                is_could_deepen=form.get(f"net-{i}-deepen") == "1",
                is_could_resume=form.get(f"net-{i}-resume") == "1",
            )
        )
    return entries


def _steps_from_form(form: Fields) -> list[services.StepInput]:
    steps = []
    for i in range(MAX_STEPS):
        text = (form.get(f"step-{i}-text") or "").strip()
        # A step is an activity chosen from the directory's suggestions (it keeps it when the
        # plan is saved again), free text, or both; an id no integer column holds is no
        # activity. A step with an activity and no text takes the activity's title.
        activity_id = row_id(form.get(f"step-{i}-activity"))
        if not text and activity_id is None:
            continue
        due = form.get(f"step-{i}-due") or ""
        try:
            due_on = dt.date.fromisoformat(due) if due else None
        except ValueError as exc:
            raise Invalid(_("A step's date must be YYYY-MM-DD.")) from exc
        steps.append(
            services.StepInput(
                text=text[:1000],
                actor=form.get(f"step-{i}-actor", "patient"),
                due_on=due_on,
                activity_id=activity_id,
                outcome=form.get(f"step-{i}-outcome", "pending"),
                outcome_note=(form.get(f"step-{i}-note") or "")[:1000],
            )
        )
    return steps


def plan_suggestions(
    mapping: services.Mapping, plan: services.Plan | None, identity: PatientIdentity
) -> dict[str, Any]:
    """What the plan form offers each step: the directory's activities ranked by the saved
    mapping's interests and barriers (the area, and the postcode for distance) and the times of
    day the coach ticked (`tid`, kept in the address by "save and update the suggestions"), and
    the titles of activities the plan already names that are no longer among them."""
    times = [t for t in (request.form or request.args).getlist("tid") if t in TIMES_OF_DAY]
    suggestions: list[Suggestion] = suggest_activities(
        db_session(),
        interests=mapping.interests,
        barriers=mapping.barriers,
        area=mapping.area or None,
        postcode="" if identity.is_protected_identity else identity.postcode,
        today=today_local(),
        limit=12,
        category_labels=interest_areas(),
        times_of_day=times,
    )
    offered = {s.activity.id for s in suggestions}
    chosen = {s.activity_id for s in plan.steps if s.activity_id} if plan else set()
    return {
        "suggestions": suggestions,
        "other_chosen": activity_titles(db_session(), chosen - offered),
        "times_of_day": times,
    }


def mapping_fields(mapping: services.Mapping, plan: services.Plan | None) -> Fields:
    """The stored mapping and plan as the mapping form posts them: the page shows one set of
    fields, whether they come from the database, a draft, or a post that was refused."""
    pairs: list[tuple[str, str]] = []
    for i, entry in enumerate(mapping.network[:MAX_NETWORK_ROWS]):
        pairs += [
            (f"net-{i}-label", entry.label),
            (f"net-{i}-relation", entry.relation_type),
            (f"net-{i}-closeness", str(entry.closeness)),
            (f"net-{i}-frequency", entry.contact_frequency),
        ]
        pairs += [(f"net-{i}-deepen", "1")] if entry.is_could_deepen else []
        pairs += [(f"net-{i}-resume", "1")] if entry.is_could_resume else []
    pairs += [("interest", key) for key in mapping.interests]
    pairs += [("barrier", key) for key in mapping.barriers]
    pairs += [("area", mapping.area), ("barrier_notes", mapping.barrier_notes)]
    pairs += [("notes", mapping.notes), ("goals", plan.goals if plan else "")]
    for i, step in enumerate(plan.steps[:MAX_STEPS] if plan else []):
        pairs += [
            (f"step-{i}-text", step.text),
            (f"step-{i}-actor", step.actor),
            (f"step-{i}-due", step.due_on.isoformat() if step.due_on else ""),
            (f"step-{i}-outcome", step.outcome),
            (f"step-{i}-note", step.outcome_note),
        ]
        pairs += [(f"step-{i}-activity", str(step.activity_id))] if step.activity_id else []
    return MultiDict(pairs)


def _keep_draft(case: Case, kind: str, form: Fields, *, is_kept_post: bool = False) -> None:
    """Keep what was posted as the user's draft of the form (a refused post, a kept one)."""
    drafts.save_draft(
        keystore(),
        current_actor(),
        case_id=case.id,
        patient_id=case.patient_id,
        form=kind,
        fields=form.items(multi=True),
        is_kept_post=is_kept_post,
    )


def _restored(case: Case, kind: str) -> drafts.Draft | None:
    return drafts.read_draft(keystore(), current_actor(), case_id=case.id, form=kind)


def _submit_mapping(case: Case, form: Fields) -> str:
    """Save the mapping form (and the plan, and record the visit when asked): "" when saved
    (the draft is deleted, the success flashed), else why not (nothing of it is saved). A stale
    case raises StaleCase."""
    store = keystore()
    actor = current_actor()
    workflow = current_workflow()
    form_mapping = services.Mapping(
        network=_network_from_form(form),
        interests=form.getlist("interest"),
        barriers=form.getlist("barrier"),
        barrier_notes=form.get("barrier_notes", ""),
        notes=form.get("notes", ""),
        area=form.get("area", ""),
    )
    goals = form.get("goals", "")
    record = form.get("record") == "1"
    try:
        # A refusal shows the form again with the audited read committed: undo the step.
        with attempt():
            if case.version != _version(form):
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
            steps = _steps_from_form(form)
            if goals.strip() or steps:
                services.save_action_plan(
                    store, actor, case, workflow=workflow, goals=goals, steps=steps
                )
            if record:
                services.record_mapping_visit(
                    store, actor, case, workflow=workflow, expected_version=_version(form)
                )
    except Invalid as exc:
        return str(exc)
    drafts.discard_draft(store, actor, case_id=case.id, form="mapping")
    flash(
        _("The visit is recorded and the action plan letter is queued.")
        if record
        else _("The mapping is saved."),
        "success",
    )
    return ""


@bp.route("/arenden/<int:case_id>/kartlaggning", methods=["GET", "POST"])
@require(Permission.WORK_CASES)
@shows_patient_data
def mapping(case_id: int) -> ResponseReturnValue:
    """The mapping visit: network, interests, barriers, notes and the action plan; "save" keeps
    working, "save and record the visit" moves the case to the active plan. A refused post shows
    every field as it was typed (and keeps it as the draft); a draft is restored on return."""
    case = load_case(case_id)
    store = keystore()
    error = ""
    restored: drafts.Draft | None = None
    fields: Fields
    if request.method == "POST":
        fields = request.form
        try:
            error = _submit_mapping(case, fields)
        except StaleCase as exc:
            return _conflict(case, str(exc), fields.get("goals", ""))
        if not error:
            if fields.get("record") == "suggest":
                # Back to the plan, its suggestions ranked by what was just saved.
                times = [t for t in fields.getlist("tid") if t in TIMES_OF_DAY]
                return redirect(
                    url_for("visits.mapping", case_id=case.id, tid=times, _anchor="h-suggestions")
                )
            return redirect(url_for("cases.show", case_id=case.id))
        _keep_draft(case, "mapping", fields)
    else:
        restored = _restored(case, "mapping")
        fields = (
            MultiDict(restored.fields)
            if restored
            else mapping_fields(
                services.load_mapping(store, case), services.current_plan(store, case)
            )
        )
    return _mapping_page(case, fields, error=error, restored=restored)


def _mapping_page(
    case: Case, fields: Fields, *, error: str, restored: drafts.Draft | None
) -> ResponseReturnValue:
    store = keystore()
    patient = db_session().get(Patient, case.patient_id)
    assert patient is not None
    identity = read_patient(
        store, current_actor(), patient, purpose="kartläggningsbesök", unit_id=case.unit_id
    )
    panel = visit_panel(store, case, current_workflow())
    return render_audited(
        "visits/mapping.html",
        status=422 if error else 200,
        case=case,
        identity=identity,
        error=error,
        fields=fields,
        restored=restored,
        draft_slug="kartlaggning",
        text_limit=services.LONG_TEXT,
        relation_types=RELATION_TYPES,
        frequencies=CONTACT_FREQUENCIES,
        step_actors=STEP_ACTORS,
        step_outcomes=STEP_OUTCOMES,
        barriers=list(barrier_labels()),
        rows=MAX_NETWORK_ROWS,
        step_rows=MAX_STEPS,
        **panel,
        **plan_suggestions(panel["mapping"], panel["plan"], identity),
    )


def _submit_follow_up(case: Case, form: Fields) -> str:
    """Record the follow-up form: "" when recorded (the draft is deleted, the success
    flashed), else why not. A stale case raises StaleCase."""
    try:
        with attempt():
            services.record_follow_up(
                keystore(),
                current_actor(),
                case,
                workflow=current_workflow(),
                how_it_went=form.get("how_it_went", ""),
                problem_solving=form.get("problem_solving", ""),
                mode=form.get("mode", "at_unit"),
                expected_version=_version(form),
            )
    except Invalid as exc:
        return str(exc)
    drafts.discard_draft(keystore(), current_actor(), case_id=case.id, form="follow_up")
    flash(_("The follow-up is recorded."), "success")
    return ""


@bp.route("/arenden/<int:case_id>/uppfoljning", methods=["GET", "POST"])
@require(Permission.WORK_CASES)
def follow_up(case_id: int) -> ResponseReturnValue:
    """Follow-up 1 (30 min at the unit or by phone) or the phone follow-up 2. A refused post
    shows what was typed (and keeps it as the draft); a draft is restored on return."""
    case = load_case(case_id)
    error = ""
    restored: drafts.Draft | None = None
    second = services.follow_up_kind(current_workflow(), case.state) == "follow_up_2"
    fields: Fields
    if request.method == "POST":
        fields = request.form
        try:
            error = _submit_follow_up(case, fields)
        except StaleCase as exc:
            return _conflict(case, str(exc), fields.get("how_it_went", ""))
        if not error:
            return redirect(url_for("cases.show", case_id=case.id))
        _keep_draft(case, "follow_up", fields)
        # A refusal answers 422, which rolls back: the draft must stay.
        commit_request()
    else:
        restored = _restored(case, "follow_up")
        fields = (
            MultiDict(restored.fields)
            if restored
            else MultiDict([("mode", "phone" if second else "at_unit")])
        )
    return render_template(
        "visits/follow_up.html",
        case=case,
        error=error,
        second=second,
        fields=fields,
        restored=restored,
        draft_slug="uppfoljning",
        text_limit=services.LONG_TEXT,
    ), (422 if error else 200)


def _draft_kind(slug: str) -> str:
    kind = DRAFT_SLUGS.get(slug)
    if kind is None:
        raise NotFound("Formuläret finns inte.")
    return kind


@bp.route("/arenden/<int:case_id>/utkast/<slug>", methods=["POST"])
@require(Permission.WORK_CASES)
def save_draft(case_id: int, slug: str) -> ResponseReturnValue:
    """Keep the form as typed so far (drafts.js posts it as the coach types, a few seconds
    after the last key). Answers JSON: when it was kept, or why not (422). The request also
    renews the session's idle timer: a form being typed in does not time out."""
    kind = _draft_kind(slug)
    case = load_case(case_id)
    try:
        with attempt():
            _keep_draft(case, kind, request.form)
    except Invalid as exc:
        return jsonify(saved=False, message=str(exc)), 422
    when = dt.datetime.now(dt.UTC).astimezone(local_zone()).strftime("%H.%M")
    return jsonify(saved=True, message=_("Draft saved at %(time)s.", time=when))


@bp.route("/arenden/<int:case_id>/utkast/<slug>/slang", methods=["POST"])
@require(Permission.WORK_CASES)
def discard_draft(case_id: int, slug: str) -> ResponseReturnValue:
    """Throw the draft away: the form shows what is saved again."""
    kind = _draft_kind(slug)
    case = load_case(case_id)
    if drafts.discard_draft(keystore(), current_actor(), case_id=case.id, form=kind):
        flash(_("The draft is discarded."), "success")
    return redirect(url_for(_FORM_PAGES[kind], case_id=case.id))


@bp.route("/arenden/<int:case_id>/utkast/<slug>/spara")
@require(Permission.WORK_CASES)
def save_kept_post(case_id: int, slug: str) -> ResponseReturnValue:
    """Where the login goes after a form was submitted from a session that had timed out: the
    kept post is saved now, as if it had just been submitted (a GET, since a login ends in a
    redirect; it saves only the user's own kept post, which was accepted with the CSRF token of
    their session). Refused, it stays as the draft and the form shows it with the reason."""
    kind = _draft_kind(slug)
    case = load_case(case_id)
    kept = _restored(case, kind)
    if kept is None or not kept.is_kept_post:
        return redirect(url_for(_FORM_PAGES[kind], case_id=case.id))
    fields: Fields = MultiDict(kept.fields)
    submit = _submit_mapping if kind == "mapping" else _submit_follow_up
    typed = fields.get("goals" if kind == "mapping" else "how_it_went", "")
    try:
        error = submit(case, fields)
    except StaleCase as exc:
        _keep_draft(case, kind, fields)
        commit_request()
        return _conflict(case, str(exc), typed)
    if error:
        _keep_draft(case, kind, fields)
        flash(_("What you typed is kept but could not be saved: %(reason)s", reason=error), "error")
        return redirect(url_for(_FORM_PAGES[kind], case_id=case.id))
    return redirect(url_for("cases.show", case_id=case.id))


def _post_keeper(kind: str | None) -> sessions.PostKeeper:
    """The keeper of `kind`'s form for a session that timed out (slussen.accounts.sessions): the
    post is kept as the user's draft, flagged as a kept post, when they may still work on the
    case; the login then goes to `save_kept_post`. With `kind` None it keeps what the draft
    endpoint was sent (the form named in its URL) as an ordinary draft."""

    def keep(user_id: int, view_args: dict[str, Any], form: Fields) -> str | None:
        form_kind = kind or DRAFT_SLUGS.get(str(view_args.get("slug")))
        session = db_session()
        identity = load_identity(session, user_id)
        if form_kind is None or identity is None:
            return None
        if not grants(identity.role, Permission.WORK_CASES):
            return None
        actor = Actor.of(identity)
        case = session.get(Case, view_args.get("case_id"))
        if case is None or not may_act_on(actor, case):
            return None
        try:
            with attempt():
                drafts.save_draft(
                    keystore(),
                    actor,
                    case_id=case.id,
                    patient_id=case.patient_id,
                    form=form_kind,
                    fields=form.items(multi=True),
                    is_kept_post=kind is not None,
                )
        except Invalid:
            return None
        commit_request()
        if kind is None:
            return ""
        slug = next(s for s, k in DRAFT_SLUGS.items() if k == kind)
        return url_for("visits.save_kept_post", case_id=case.id, slug=slug)

    return keep


#: Registered by create_app under sessions.POST_KEEPERS.
POST_KEEPERS: dict[str, sessions.PostKeeper] = {
    **{endpoint: _post_keeper(kind) for kind, endpoint in _FORM_PAGES.items()},
    "visits.save_draft": _post_keeper(None),
}


@bp.route("/arenden/<int:case_id>/overlamning", methods=["POST"])
@require(Permission.WORK_CASES)
def request_handover(case_id: int) -> ResponseReturnValue:
    """Sluss 2: ask an organisation to meet the patient at the first occasion, with what the
    patient agreed to share with it."""
    case = load_case(case_id)
    session = db_session()
    organisation_id = row_id(request.form.get("organisation_id"))
    activity_id = row_id(request.form.get("activity_id"))
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
            step_id=row_id(request.form.get("step_id")),
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
