"""Account forms."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from slussen.webforms import Form


class LoginForm(Form):
    username = StringField(
        _l("Username"),
        validators=[DataRequired(message=_l("Enter your username.")), Length(max=80)],
        render_kw={"autocomplete": "username", "autofocus": True},
    )
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(message=_l("Enter your password.")), Length(max=128)],
        render_kw={"autocomplete": "current-password"},
    )


class CodeForm(Form):
    """The second login step: a code from the authenticator app, or a recovery code."""

    code = StringField(
        _l("Code"),
        validators=[DataRequired(message=_l("Enter the code.")), Length(max=20)],
        render_kw={
            "autocomplete": "one-time-code",
            "autofocus": True,
            "spellcheck": "false",
            "autocapitalize": "characters",
        },
    )


class TotpEnrolForm(Form):
    """Confirm a new authenticator app with its first code; the password when already logged in
    (re-authentication before changing the second factor, ASVS 6.5/7.5.1)."""

    code = StringField(
        _l("Code from the app"),
        validators=[DataRequired(message=_l("Enter the code.")), Length(max=20)],
        render_kw={
            "autocomplete": "one-time-code",
            "inputmode": "numeric",
            "spellcheck": "false",
        },
    )
    password = PasswordField(
        _l("Your password"),
        validators=[Length(max=128)],
        render_kw={"autocomplete": "current-password"},
    )


class NewPasswordForm(Form):
    """A new password, typed twice (with an administrator's one-time link)."""

    new_password = PasswordField(
        _l("New password"),
        validators=[DataRequired(message=_l("Enter a new password.")), Length(max=1000)],
        render_kw={"autocomplete": "new-password"},
    )
    new_password_again = PasswordField(
        _l("New password again"),
        validators=[
            DataRequired(message=_l("Enter the new password again.")),
            EqualTo("new_password", message=_l("The two new passwords are not the same.")),
        ],
        render_kw={"autocomplete": "new-password"},
    )


class PasswordChangeForm(NewPasswordForm):
    current_password = PasswordField(
        _l("Current password"),
        validators=[DataRequired(message=_l("Enter your current password.")), Length(max=128)],
        render_kw={"autocomplete": "current-password"},
    )
