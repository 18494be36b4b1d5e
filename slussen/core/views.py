"""Start page per role, language choice and the health check."""

from __future__ import annotations

import functools

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from slussen.accounts.auth import public
from slussen.config import local_zone
from slussen.db import db_session
from slussen.i18n import format_day, format_moment, localised

bp = Blueprint("core", __name__, template_folder="templates")


@bp.route("/")
def index() -> ResponseReturnValue:
    """Each role starts where its work is."""
    from flask_login import current_user

    from slussen.accounts.roles import Permission

    if current_user.can(Permission.WORK_CASES):
        return redirect(url_for("cases.worklist"))
    if current_user.can(Permission.FLAG_PATIENT):
        return redirect(url_for("cases.flagged"))
    if current_user.can(Permission.EVALUATE):
        return redirect(url_for("evaluation.index"))
    return render_template("core/index.html")


@bp.route("/sprak/<lang>", methods=["POST"])
@public
def set_language(lang: str) -> ResponseReturnValue:
    if lang in ("sv", "en"):
        session["lang"] = lang
    target = request.form.get("next", "")
    if not target.startswith("/") or target.startswith("//"):
        target = url_for("core.index")
    return redirect(target)


@bp.route("/healthz")
@public
def healthz() -> ResponseReturnValue:
    """Checks the database answers; says nothing else (no error details, for monitors)."""
    try:
        db_session().execute(text("SELECT 1"))
    except OperationalError:
        return {"status": "unavailable"}, 503
    return {"status": "ok"}


@bp.app_context_processor
def _layout_helpers() -> dict[str, object]:
    from flask_babel import get_locale
    from flask_babel import gettext as _
    from flask_login import current_user

    from slussen.accounts.roles import ROLE_LABELS, Permission, Role

    def nav_items() -> list[dict[str, object]]:
        items: list[tuple[str, str, Permission | None]] = [
            ("cases.worklist", _("Worklist"), Permission.WORK_CASES),
            ("cases.unit", _("The unit"), Permission.COORDINATE_UNIT),
            ("letters.index", _("Letters"), Permission.COORDINATE_UNIT),
            ("intake.refer", _("Refer"), Permission.FLAG_PATIENT),
            ("cases.flagged", _("My referrals"), Permission.VIEW_OWN_FLAGS),
            ("accesslog.index", _("Access log"), Permission.REVIEW_ACCESS_LOG),
            ("directory.moderation", _("Review changes"), Permission.MODERATE_DIRECTORY),
            ("evaluation.index", _("Evaluation"), Permission.EVALUATE),
        ]
        items = [item for item in items if item[2] is None or current_user.can(item[2])]
        if current_user.role in ("coordinator", "coach", "staff", "org_rep"):
            items.append(("directory.home", _("Activity directory"), None))
        if not items:
            items.insert(0, ("core.index", _("Start"), None))
        return [
            {"url": url_for(endpoint), "label": label, "current": request.endpoint == endpoint}
            for endpoint, label, permission in items
            if permission is None or current_user.can(permission)
        ]

    def role_label(role: str) -> str:
        try:
            sv, en = ROLE_LABELS[Role(role)]
        except ValueError:
            return role
        return en if session.get("lang") == "en" else sv

    locale = get_locale()
    return {
        **labels(locale.language if locale else "sv"),
        "nav_items": nav_items,
        "role_label": role_label,
        "Permission": Permission,
        "get_locale": get_locale,
        "localised": localised,
        "format_day": format_day,
        "format_moment": format_moment,
    }


@functools.cache
def labels(language: str) -> dict[str, object]:
    """Swedish (or English) words for the codes stored in the database; built once per UI
    language (the catalogs do not change while the app runs)."""
    from flask_babel import gettext as _

    from slussen.cases.engine import current_workflow

    channels = {
        "staff_flag": _("Flagged by staff"),
        "self_referral": _("Self-referral"),
        "phone": _("Phone call"),
        "message_1177": _("1177 message"),
    }
    contacts = {"post": _("Post"), "phone": _("Phone"), "1177": _("1177")}
    statuses = {
        "queued": _("waiting to be printed"),
        "held": _("held back"),
        "printed": _("printed"),
        "cancelled": _("cancelled"),
    }
    dues = {
        "first_contact": _("Send the invitation"),
        "reminder": _("Reminder"),
        "no_response": _("Close if no answer"),
        "book_visit": _("Book the mapping visit"),
        "mapping_visit": _("Mapping visit"),
        "follow_up_1": _("Follow-up 1"),
        "follow_up_2": _("Follow-up 2"),
        "evaluation": _("Six-month evaluation"),
        "evaluation_no_response": _("Close if the evaluation is not answered"),
    }

    def event_label(event: str) -> str:
        if event == "open":
            return str(_("Case opened"))
        transition = current_workflow().transitions.get(event)
        return localised(transition.label) if transition else event

    relations = {
        "family": _("Family"),
        "friend": _("Friend"),
        "neighbour": _("Neighbour"),
        "colleague": _("Colleague"),
        "association": _("Association or group"),
        "care": _("Care or support"),
        "other": _("Other"),
    }
    frequencies = {
        "daily": _("Daily"),
        "weekly": _("Weekly"),
        "monthly": _("Monthly"),
        "rarely": _("Rarely"),
        "lost": _("Contact lost"),
    }
    closeness = {1: _("Close"), 2: _("Fairly close"), 3: _("Further away")}
    step_actors = {
        "patient": _("The patient"),
        "coach": _("The coach"),
        "companion": _("A companion"),
    }
    outcomes = {
        "pending": _("Not yet"),
        "done": _("Done"),
        "not_done": _("Not done"),
        "barrier": _("A barrier came up"),
    }
    handover_statuses = {
        "requested": _("Requested"),
        "accepted": _("Accepted"),
        "declined": _("Declined"),
        "done": _("Done"),
    }
    handover_outcomes = {
        "went": _("Went"),
        "did_not_go": _("Did not go"),
        "barrier_found": _("A barrier came up"),
    }
    visit_kinds = {
        "mapping": _("Mapping visit"),
        "follow_up_1": _("Follow-up 1"),
        "follow_up_2": _("Follow-up 2"),
    }
    visit_statuses = {"booked": _("booked"), "done": _("held"), "cancelled": _("cancelled")}
    return {
        "sweden": local_zone(),
        "relation_label": lambda code: relations.get(code, code),
        "frequency_label": lambda code: frequencies.get(code, code),
        "closeness_label": lambda code: closeness.get(code, code),
        "step_actor_label": lambda code: step_actors.get(code, code),
        "outcome_label": lambda code: outcomes.get(code, code),
        "handover_status": lambda code: handover_statuses.get(code, code),
        "handover_outcome": lambda code: handover_outcomes.get(code, code),
        "visit_kind": lambda code: visit_kinds.get(code, code),
        "visit_status": lambda code: visit_statuses.get(code, code),
        "channel_label": lambda code: channels.get(code, code),
        "contact_label": lambda code: contacts.get(code, code),
        "letter_status": lambda code: statuses.get(code, code),
        "due_label": lambda code: dues.get(code, code.replace("_", " ")),
        "event_label": event_label,
    }
