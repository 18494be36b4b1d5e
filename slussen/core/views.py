"""Start page per role, language choice, the health check, and the layout's helpers (navigation,
role names, dates); each capability adds the labels of its own codes (`cases/labels.py`,
`visits/labels.py`, `letters/labels.py`)."""

from __future__ import annotations

from pathlib import Path

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from slussen.accounts.auth import public
from slussen.accounts.roles import ROLE_LABELS, Permission, Role
from slussen.config import Settings, local_zone
from slussen.db import db_session
from slussen.i18n import format_day, format_moment, localised, ui_language
from slussen.identifiers import ReserveFormat

bp = Blueprint("core", __name__, template_folder="templates")


@bp.route("/")
def index() -> ResponseReturnValue:
    """Each role starts where its work is."""
    if current_user.can(Permission.WORK_CASES):
        return redirect(url_for("cases.worklist"))
    if current_user.can(Permission.FLAG_PATIENT):
        return redirect(url_for("cases.flagged"))
    if current_user.can(Permission.EVALUATE):
        return redirect(url_for("evaluation.index"))
    if current_user.can(Permission.ANSWER_HANDOVERS):
        return redirect(url_for("associations.index"))
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


@bp.route("/favicon.ico")
@public
def favicon() -> ResponseReturnValue:
    """Browsers and bookmarks ask for /favicon.ico whatever the page links: answer with the
    same picture as the pages' icon (an SVG; every current browser shows it)."""
    picture = Path(current_app.static_folder or "static", "favicon.svg").read_bytes()
    response = Response(picture, mimetype="image/svg+xml")
    response.cache_control.max_age = 86400
    response.cache_control.public = True
    return response


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
    def nav_items() -> list[dict[str, object]]:
        items: list[tuple[str, str, Permission | None]] = [
            ("cases.worklist", _("Worklist"), Permission.WORK_CASES),
            ("cases.caseload", _("My cases"), Permission.WORK_CASES),
            ("cases.unit", _("The unit"), Permission.VIEW_UNIT),
            ("letters.index", _("Letters"), Permission.COORDINATE_UNIT),
            *(
                [("letters.own", _("My letters"), Permission.PRINT_OWN_LETTERS)]
                if not current_user.can(Permission.COORDINATE_UNIT)
                else []
            ),
            ("intake.incoming", _("Referrals from other units"), Permission.COORDINATE_UNIT),
            ("intake.refer", _("Refer"), Permission.FLAG_PATIENT),
            ("cases.flagged", _("My referrals"), Permission.VIEW_OWN_FLAGS),
            ("accesslog.index", _("Access log"), Permission.REVIEW_ACCESS_LOG),
            ("directory.moderation", _("Review changes"), Permission.MODERATE_DIRECTORY),
            ("evaluation.index", _("Evaluation"), Permission.EVALUATE),
            ("associations.index", _("Hand-over requests"), Permission.ANSWER_HANDOVERS),
            ("admin.units", _("Units"), Permission.ADMINISTER),
            ("admin.users", _("Users"), Permission.ADMINISTER),
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
        return en if ui_language() == "en" else sv

    def reserve_format() -> ReserveFormat | None:
        settings: Settings = current_app.extensions["slussen.settings"]
        return settings.reserve_format

    def identifier_hint() -> str:
        """The hint under every personnummer field: both forms, and the region's reservnummer."""
        hint: str = _(
            "12 or 10 digits, for example 19811218-9876 or 811218-9876 (with + instead of - "
            "for a person aged 100 or more)."
        )
        region = reserve_format()
        if region is not None and region.example:
            hint += " " + _("A reserve number looks like %(example)s.", example=region.example)
        return hint

    return {
        "sweden": local_zone(),
        "reserve_format": reserve_format,
        "identifier_hint": identifier_hint,
        "nav_items": nav_items,
        "role_label": role_label,
        "Permission": Permission,
        "get_locale": get_locale,
        "localised": localised,
        "format_day": format_day,
        "format_moment": format_moment,
    }
