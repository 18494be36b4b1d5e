"""Login and logout."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from slussen.accounts.auth import LoginUser, public
from slussen.accounts.forms import LoginForm
from slussen.accounts.services import authenticate
from slussen.db import db_session

bp = Blueprint("accounts", __name__, template_folder="templates")


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths; anything else goes to the start page."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("core.index")


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("core.index"))
    form = LoginForm()
    if form.validate_on_submit():
        session = db_session()
        settings = current_app.extensions["slussen.settings"]
        user = authenticate(session, settings, form.username.data, form.password.data)
        if user is None:
            session.rollback()
            flash(_("Wrong username or password."), "error")
            return render_template("accounts/login.html", form=form), 401
        session.commit()
        login_user(LoginUser(user))
        return redirect(_safe_next(request.args.get("next")))
    return render_template("accounts/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    logout_user()
    flash(_("You are logged out."), "info")
    return redirect(url_for("accounts.login"))
