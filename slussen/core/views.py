"""Start page per role, language choice and the health check."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from slussen.accounts.auth import public
from slussen.db import db_session

bp = Blueprint("core", __name__, template_folder="templates")


@bp.route("/")
def index() -> ResponseReturnValue:
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
    """Checks the database answers; says nothing else."""
    db_session().execute(text("SELECT 1"))
    return {"status": "ok"}


@bp.app_context_processor
def _layout_helpers() -> dict[str, object]:
    from flask_babel import get_locale
    from flask_babel import gettext as _
    from flask_login import current_user

    from slussen.accounts.roles import ROLE_LABELS, Permission, Role

    def nav_items() -> list[dict[str, object]]:
        items = [("core.index", _("Start"), None)]
        if current_user.role in ("coordinator", "coach", "staff", "org_rep"):
            items.append(("directory.home", _("Activity directory"), None))
        if current_user.can(Permission.MODERATE_DIRECTORY):
            items.append(("directory.moderation", _("Review changes"), None))
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

    return {
        "nav_items": nav_items,
        "role_label": role_label,
        "Permission": Permission,
        "get_locale": get_locale,
    }
