"""Log review forms: the GET filter (no personnummer in it) and the POSTed personnummer forms."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from wtforms import DateField, Field, SelectField, StringField
from wtforms.validators import DataRequired, Optional, ValidationError

from slussen.identifiers import IdentifierError, PersonIdentifier, parse_person_identifier
from slussen.text import optional_id
from slussen.webforms import Form


class IsoDateField(DateField):  # type: ignore[misc]
    """A YYYY-MM-DD date whose parse error says in words how to write it."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError as exc:
            raise ValueError(_l("Write the date as YYYY-MM-DD, for example 2026-03-05.")) from exc


class LogFilterForm(Form):
    """Filters that may sit in a URL: a user and a date range. The patient filter is not here:
    a personnummer never goes into a URL, so it is POSTed to the patient search."""

    class Meta:
        csrf = False  # a GET form that changes nothing

    user = SelectField(_l("User"), coerce=optional_id, validate_choice=False)
    date_from = IsoDateField(
        _l("From date"),
        validators=[Optional()],
        render_kw={"placeholder": "ÅÅÅÅ-MM-DD"},
    )
    date_to = IsoDateField(
        _l("To date"),
        validators=[Optional()],
        render_kw={"placeholder": "ÅÅÅÅ-MM-DD"},
    )

    def validate_user(self, field: Field) -> None:
        if field.data not in {value for value, _label in field.choices}:
            raise ValidationError(_l("Choose a user from the list."))

    def validate_date_to(self, field: Field) -> None:
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError(_l("The end date is before the start date."))


class PersonnummerForm(Form):
    """One personnummer or samordningsnummer, POSTed with a CSRF token."""

    pnr = StringField(
        _l("Personnummer"),
        validators=[DataRequired(message=_l("Enter the patient's personnummer."))],
        render_kw={"autocomplete": "off", "inputmode": "numeric", "spellcheck": "false"},
    )

    identifier: PersonIdentifier | None = None

    def validate_pnr(self, field: Field) -> None:
        try:
            self.identifier = parse_person_identifier(field.data or "")
        except IdentifierError as exc:
            raise ValidationError(exc.message) from exc
