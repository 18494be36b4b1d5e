"""The administrator's screens (units, users, one-time links) and the public page where a user
sets a new password with a one-time link. Every screen but that one needs the permission
`administer`; others get 403."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from slussen.accounts.auth import public, require
from slussen.accounts.forms import NewPasswordForm
from slussen.accounts.models import Membership, Unit, User
from slussen.accounts.passwords import MIN_LENGTH_SINGLE_FACTOR, PasswordRejected
from slussen.accounts.roles import ROLE_LABELS, Permission, Role
from slussen.accounts.services import NO_PASSWORD, has_second_factor
from slussen.admin import services
from slussen.admin.forms import WEEKDAYS, UnitForm, UserFilterForm, UserForm
from slussen.audit import Actor
from slussen.config import Settings
from slussen.db import attempt, db_session
from slussen.errors import DomainError, Invalid, NotFound
from slussen.i18n import ui_language
from slussen.keystore import current_key_ring
from slussen.text import optional_id

bp = Blueprint("admin", __name__, template_folder="templates")


def _settings() -> Settings:
    result: Settings = current_app.extensions["slussen.settings"]
    return result


def _actor() -> Actor:
    user: User = current_user.user
    return Actor.of(user)


def _role_choices() -> list[SelectChoice]:
    english = ui_language() == "en"
    return [SelectChoice(role.value, ROLE_LABELS[role][1 if english else 0]) for role in Role]


def _units() -> list[Unit]:
    return list(db_session().scalars(select(Unit).order_by(Unit.name)))


def _unit_or_404(unit_id: int) -> Unit:
    unit = db_session().get(Unit, unit_id)
    if unit is None:
        raise NotFound()
    return unit


def _user_or_404(user_id: int) -> User:
    user = db_session().get(User, user_id)
    if user is None:
        raise NotFound()
    return user


@bp.context_processor
def _admin_helpers() -> dict[str, object]:
    def weekday_names(days: str) -> str:
        """ "135" → "Monday, Wednesday, Friday", in the page's language."""
        names = {choice.value: choice.label for choice in WEEKDAYS}
        return ", ".join(str(names[d]) for d in days if d in names)

    return {"weekday_names": weekday_names}


def _no_store(body: str, status: int = 200) -> ResponseReturnValue:
    """A page holding a one-time link: kept by no cache and no browser history."""
    response = make_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- units -----------------------------------------------------------------------------------


@bp.route("/admin/enheter")
@require(Permission.ADMINISTER)
def units() -> ResponseReturnValue:
    return render_template("admin/units.html", units=_units())


def _unit_details(form: UnitForm) -> services.UnitDetails:
    return services.UnitDetails(
        name=form.name.data or "",
        hsa_id=form.hsa_id.data or "",
        street=form.street.data or "",
        postcode=form.postcode.data or "",
        town=form.town.data or "",
        phone=form.phone.data or "",
        phone_hours=form.phone_hours.data or "",
        opens=form.opens.data or "",
        closes=form.closes.data or "",
        weekdays="".join(form.weekdays.data or []),
    )


@bp.route("/admin/enheter/ny", methods=["GET", "POST"])
@require(Permission.ADMINISTER)
def unit_new() -> ResponseReturnValue:
    form = UnitForm()
    if not form.is_submitted():
        form.opens.data, form.closes.data, form.weekdays.data = "08.00", "17.00", list("12345")
    status = 200
    if form.validate_on_submit():
        try:
            with attempt():
                unit = services.create_unit(
                    db_session(), current_key_ring(), _actor(), _unit_details(form)
                )
        except Invalid as exc:
            form.show_refusal(exc, "name")
            status = 400
        else:
            flash(_("The unit %(name)s is created.", name=unit.name), "info")
            return redirect(url_for("admin.units"))
    elif form.is_submitted():
        status = 400
    return render_template("admin/unit_form.html", form=form, unit=None), status


@bp.route("/admin/enheter/<int:unit_id>", methods=["GET", "POST"])
@require(Permission.ADMINISTER)
def unit_edit(unit_id: int) -> ResponseReturnValue:
    unit = _unit_or_404(unit_id)
    form = UnitForm(obj=unit)
    if not form.is_submitted():
        form.opens.data = f"{unit.opens_at:%H.%M}"
        form.closes.data = f"{unit.closes_at:%H.%M}"
        form.weekdays.data = list(unit.open_weekdays)
    status = 200
    if form.validate_on_submit():
        try:
            with attempt():
                services.update_unit(
                    db_session(), current_key_ring(), _actor(), unit, _unit_details(form)
                )
        except Invalid as exc:
            form.show_refusal(exc, "name")
            status = 400
        else:
            flash(_("The unit %(name)s is saved.", name=unit.name), "info")
            return redirect(url_for("admin.units"))
    elif form.is_submitted():
        status = 400
    return render_template("admin/unit_form.html", form=form, unit=unit), status


# --- users -----------------------------------------------------------------------------------


@bp.route("/admin/anvandare")
@require(Permission.ADMINISTER)
def users() -> ResponseReturnValue:
    all_units = _units()
    form = UserFilterForm(request.args)
    form.unit.choices = [SelectChoice("", _("All units"))] + [
        SelectChoice(str(u.id), u.name) for u in all_units
    ]
    form.role.choices = [SelectChoice("", _("All roles")), *_role_choices()]
    query = select(User).order_by(User.display_name, User.username)
    if form.role.data and form.role.data in {r.value for r in Role}:
        query = query.where(User.role == form.role.data)
    unit_id = optional_id(form.unit.data)
    if unit_id:
        query = query.where(
            User.id.in_(select(Membership.user_id).where(Membership.unit_id == unit_id))
        )
    names = {u.id: u.name for u in all_units}
    return render_template(
        "admin/users.html",
        form=form,
        users=list(db_session().scalars(query)),
        unit_names=names,
        has_second_factor=has_second_factor,
        waits_for_password=lambda u: u.password_hash == NO_PASSWORD and not u.oidc_subject,
    )


def _user_form(user: User | None) -> UserForm:
    form = UserForm(obj=user) if user is not None else UserForm()
    form.role.choices = _role_choices()
    form.units.choices = [SelectChoice(str(u.id), u.name) for u in _units()]
    if user is not None and not form.is_submitted():
        form.units.data = sorted(user.unit_ids)
    return form


def _account_fields(form: UserForm) -> dict[str, Any]:
    return {
        "display_name": form.display_name.data or "",
        "role": form.role.data or "",
        "unit_ids": form.units.data or [],
    }


def _link_page(user: User, token: str, *, new: bool) -> ResponseReturnValue:
    link = _settings().absolute_url(url_for("admin.link_password", token=token))
    return _no_store(
        render_template(
            "admin/link_issued.html", user=user, link=link, new=new, hours=services.LINK_HOURS
        )
    )


@bp.route("/admin/anvandare/ny", methods=["GET", "POST"])
@require(Permission.ADMINISTER)
def user_new() -> ResponseReturnValue:
    form = _user_form(None)
    status = 200
    if form.validate_on_submit():
        try:
            with attempt():
                user, token = services.create_account(
                    db_session(),
                    _settings(),
                    current_key_ring(),
                    _actor(),
                    username=form.username.data or "",
                    **_account_fields(form),
                )
        except Invalid as exc:
            form.show_refusal(exc, "display_name")
            status = 400
        else:
            return _link_page(user, token, new=True)
    elif form.is_submitted():
        status = 400
    return render_template("admin/user_new.html", form=form), status


@bp.route("/admin/anvandare/<int:user_id>", methods=["GET", "POST"])
@require(Permission.ADMINISTER)
def user_edit(user_id: int) -> ResponseReturnValue:
    user = _user_or_404(user_id)
    form = _user_form(user)
    status = 200
    if form.validate_on_submit():
        try:
            with attempt():
                services.update_account(
                    db_session(),
                    current_key_ring(),
                    _actor(),
                    user,
                    **_account_fields(form),
                )
        except Invalid as exc:
            form.show_refusal(exc, "display_name")
            status = 400
        else:
            flash(_("The account of %(name)s is saved.", name=user.display_name), "info")
            return redirect(url_for("admin.user_edit", user_id=user.id))
    elif form.is_submitted():
        status = 400
    return render_template(
        "admin/user.html",
        form=form,
        user=user,
        unit_names={u.id: u.name for u in _units()},
        has_totp=has_second_factor(user),
    ), status


def _account_action(user_id: int, action: Any, done: str) -> ResponseReturnValue:
    user = _user_or_404(user_id)
    try:
        with attempt():
            action(db_session(), current_key_ring(), _actor(), user)
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash(done, "info")
    return redirect(url_for("admin.user_edit", user_id=user.id))


@bp.route("/admin/anvandare/<int:user_id>/stang-av", methods=["POST"])
@require(Permission.ADMINISTER)
def user_deactivate(user_id: int) -> ResponseReturnValue:
    return _account_action(user_id, services.deactivate_account, _("The account is deactivated."))


@bp.route("/admin/anvandare/<int:user_id>/oppna", methods=["POST"])
@require(Permission.ADMINISTER)
def user_reactivate(user_id: int) -> ResponseReturnValue:
    return _account_action(
        user_id, services.reactivate_account, _("The account can be used again.")
    )


@bp.route("/admin/anvandare/<int:user_id>/engangslank", methods=["POST"])
@require(Permission.ADMINISTER)
def user_link(user_id: int) -> ResponseReturnValue:
    user = _user_or_404(user_id)
    try:
        with attempt():
            token = services.issue_link(db_session(), current_key_ring(), _actor(), user)
    except DomainError as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.user_edit", user_id=user.id))
    return _link_page(user, token, new=False)


# --- the one-time link, for the user ---------------------------------------------------------


@bp.route("/konto/engangslank/<token>", methods=["GET", "POST"])
@public
def link_password(token: str) -> ResponseReturnValue:
    """Set a new password with a one-time link; two-step verification is set up at the login
    that follows, where the role needs it. Opening the link spends nothing: only a password
    saved does."""
    db = db_session()
    ring = current_key_ring()
    try:
        _link, user = services.open_link(db, ring, token[:100])
    except services.LinkRefused as exc:
        return _no_store(render_template("admin/link_refused.html", message=str(exc)), 404)
    form = NewPasswordForm()
    status = 200
    if form.validate_on_submit():
        try:
            with attempt():
                services.set_password_with_link(
                    db, _settings(), ring, token[:100], form.new_password.data
                )
        except PasswordRejected as exc:
            form.new_password.errors = [*form.new_password.errors, str(exc)]
            status = 400
        except services.LinkRefused as exc:
            return _no_store(render_template("admin/link_refused.html", message=str(exc)), 404)
        else:
            flash(_("Your password is saved. Log in with it now."), "info")
            return redirect(url_for("accounts.login"))
    elif form.is_submitted():
        status = 400
    return _no_store(
        render_template(
            "admin/link_password.html",
            form=form,
            user=user,
            minimum=MIN_LENGTH_SINGLE_FACTOR,
        ),
        status,
    )
