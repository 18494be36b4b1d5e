"""Referral forms: staff flag, coach registers a call or 1177 message, public self-referral."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from slussen.identifiers import IdentifierError, normalise_postcode, parse_identifier
from slussen.webforms import Form


def valid_personnummer(form: Any, field: Any) -> None:
    """A personnummer or samordningsnummer (12 or 10 digits, the `-`/`+` century rule), or the
    region's reservnummer when the form's reservnummer box is ticked."""
    is_reserve = bool(getattr(form, "is_reserve_number", None) and form.is_reserve_number.data)
    reserve = current_app.extensions["slussen.settings"].reserve_format
    try:
        field.parsed = parse_identifier(field.data or "", reserve=reserve, is_reserve=is_reserve)
    except IdentifierError as exc:
        raise ValidationError(str(exc)) from None


def valid_postcode(_form: Any, field: Any) -> None:
    if field.data:
        try:
            field.data = normalise_postcode(field.data)
        except IdentifierError as exc:
            raise ValidationError(str(exc)) from None


def optional_int(value: Any) -> int | None:
    """A select's value as an id; the empty first option ("choose …") gives None."""
    if value in ("", None):
        return None
    return int(value)


class IdentityFields(Form):
    personnummer = StringField(
        _l("Personal identity number"),
        validators=[
            DataRequired(message=_l("Enter the personal identity number.")),
            Length(max=20),
            valid_personnummer,
        ],
        render_kw={"autocomplete": "off", "inputmode": "numeric", "spellcheck": "false"},
    )
    name = StringField(
        _l("Name"),
        validators=[DataRequired(message=_l("Enter the name.")), Length(max=200)],
        render_kw={"autocomplete": "name"},
    )
    street = StringField(
        _l("Street address"),
        validators=[Optional(), Length(max=200)],
        render_kw={"autocomplete": "street-address"},
    )
    postcode = StringField(
        _l("Postcode"),
        validators=[Optional(), Length(max=10), valid_postcode],
        render_kw={"autocomplete": "postal-code", "inputmode": "numeric"},
    )
    town = StringField(
        _l("Town"),
        validators=[Optional(), Length(max=100)],
        render_kw={"autocomplete": "address-level2"},
    )
    phone = StringField(
        _l("Phone"),
        validators=[Optional(), Length(max=40)],
        render_kw={"autocomplete": "tel", "inputmode": "tel"},
    )


class ReferralForm(IdentityFields):
    """Staff flag or a coach registers contact: everything on one screen."""

    is_reserve_number = BooleanField(_l("The patient has a reserve number instead"))
    unit = SelectField(_l("Unit"), coerce=int, validators=[InputRequired()])
    channel = SelectField(
        _l("How did the referral come?"),
        choices=[
            SelectChoice("staff_flag", _l("Flagged during another visit")),
            SelectChoice("phone", _l("The patient phoned")),
            SelectChoice("message_1177", _l("A message via 1177")),
        ],
    )
    contact_channel = SelectField(
        _l("How does the patient want to be contacted?"),
        choices=[
            SelectChoice("post", _l("By post")),
            SelectChoice("phone", _l("By phone")),
            SelectChoice("1177", _l("Via 1177")),
        ],
    )
    preferred_language = SelectField(
        _l("Language of letters"),
        choices=[SelectChoice("sv", "Svenska"), SelectChoice("en", "English")],
    )
    is_protected_identity = BooleanField(_l("Protected identity (skyddad identitet)"))
    reason = TextAreaField(
        _l("Why? What does the patient wish for?"),
        validators=[DataRequired(message=_l("Write a few words about why.")), Length(max=2000)],
    )
    consent = BooleanField(
        _l("The patient agrees to be contacted about the programme"),
        validators=[DataRequired(message=_l("The patient must agree to be contacted."))],
    )


class SelfReferralForm(IdentityFields):
    """The public form at /anmalan: plain Swedish, nothing more than needed."""

    #: No choice is made for the person: the first option is empty and refused when sent.
    unit = SelectField(
        _l("Your health centre"),
        coerce=optional_int,
        validators=[DataRequired(message=_l("Choose your health centre."))],
        render_kw={
            "data-unit-search": "",
            "data-search-label": _l("Search by town or health centre"),
            "data-count-text": _l("{n} health centres match."),
            "data-count-one": _l("One health centre matches."),
        },
    )
    wish = TextAreaField(
        _l("What would you like? For example meeting others, an activity or someone to talk to."),
        validators=[
            DataRequired(message=_l("Write a few words about what you would like.")),
            Length(max=2000, message=_l("Write at most 2000 characters.")),
        ],
    )
    contact_channel = SelectField(
        _l("How do you want us to contact you?"),
        choices=[SelectChoice("post", _l("By letter")), SelectChoice("phone", _l("By phone"))],
    )
    consent = BooleanField(
        _l("I want the health centre to contact me about this"),
        validators=[DataRequired(message=_l("We need your consent to contact you."))],
    )
    #: Honeypot: hidden from people, filled in by robots.
    website = StringField(_l("Leave this field empty"), validators=[Optional(), Length(max=200)])


def unit_choices(units: Any) -> list[SelectChoice]:
    """The health centres grouped by town (the town is the group's label, so a person finds
    theirs by name or by town without script), after an empty first option: nothing is chosen
    for the person. `data-town` lets the filter script match the town too."""
    return [
        SelectChoice("", _l("Choose a health centre")),
        *(
            SelectChoice(unit.id, unit.name, render_kw={"data-town": unit.town}, optgroup=unit.town)
            for unit in units
        ),
    ]


def choices(pairs: Any) -> list[SelectChoice]:
    """WTForms choices from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]
