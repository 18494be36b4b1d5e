"""The administrator's forms: a unit, a new user, a user's role and units, the user list's filter.
A new password set with a one-time link is `accounts.forms.NewPasswordForm`."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from slussen.text import optional_id
from slussen.webforms import Form


class CheckboxesField(SelectMultipleField):  # type: ignore[misc]
    """Several choices as a list of checkboxes (each with its own label)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


WEEKDAYS = [
    SelectChoice("1", _l("Monday")),
    SelectChoice("2", _l("Tuesday")),
    SelectChoice("3", _l("Wednesday")),
    SelectChoice("4", _l("Thursday")),
    SelectChoice("5", _l("Friday")),
    SelectChoice("6", _l("Saturday")),
    SelectChoice("7", _l("Sunday")),
]


class UnitForm(Form):
    name = StringField(
        _l("Name"), validators=[DataRequired(message=_l("Enter the name.")), Length(max=200)]
    )
    hsa_id = StringField(
        _l("HSA-ID"),
        validators=[DataRequired(message=_l("Enter the HSA-ID.")), Length(max=31)],
        render_kw={"spellcheck": "false", "autocapitalize": "characters"},
    )
    street = StringField(_l("Street address"), validators=[Length(max=200)])
    postcode = StringField(
        _l("Postcode"), validators=[Length(max=10)], render_kw={"inputmode": "numeric"}
    )
    town = StringField(_l("Town"), validators=[Length(max=100)])
    phone = StringField(_l("Phone"), validators=[Length(max=40)], render_kw={"type": "tel"})
    phone_hours = StringField(_l("When the phone is answered"), validators=[Length(max=100)])
    opens = StringField(
        _l("Opens"), validators=[DataRequired(message=_l("Enter a time.")), Length(max=5)]
    )
    closes = StringField(
        _l("Closes"), validators=[DataRequired(message=_l("Enter a time.")), Length(max=5)]
    )
    weekdays = CheckboxesField(_l("Open on"), choices=WEEKDAYS, validate_choice=False)


class UserForm(Form):
    """A new user, or an existing one's name, role and units (the username cannot change)."""

    username = StringField(
        _l("Username"),
        validators=[Length(max=80)],
        render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"},
    )
    display_name = StringField(
        _l("Name"), validators=[DataRequired(message=_l("Enter the name.")), Length(max=200)]
    )
    role = SelectField(_l("Role"), validate_choice=False)
    units = CheckboxesField(_l("Units"), coerce=optional_id, validate_choice=False)


class UserFilterForm(Form):
    class Meta:
        csrf = False

    unit = SelectField(_l("Unit"), validate_choice=False)
    role = SelectField(_l("Role"), validate_choice=False)
