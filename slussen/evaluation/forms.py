"""The evaluator's filter form: a GET form that changes nothing (no CSRF token in URLs)."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from wtforms import Field, SelectField
from wtforms.validators import Optional, ValidationError

from slussen.accesslog.forms import IsoDateField
from slussen.evaluation.dataset import AGE_BANDS, SEXES, Filters
from slussen.text import optional_id
from slussen.webforms import Form


def _optional_text(value: Any) -> str | None:
    return None if value in (None, "", "None") else str(value)


class FilterForm(Form):
    class Meta:
        csrf = False

    date_from = IsoDateField(
        _l("Referred from"), validators=[Optional()], render_kw={"placeholder": "ÅÅÅÅ-MM-DD"}
    )
    date_to = IsoDateField(
        _l("Referred until"), validators=[Optional()], render_kw={"placeholder": "ÅÅÅÅ-MM-DD"}
    )
    unit = SelectField(_l("Unit"), coerce=optional_id, validate_choice=False)
    channel = SelectField(_l("Referral channel"), coerce=_optional_text, validate_choice=False)
    age_band = SelectField(_l("Age band"), coerce=_optional_text, validate_choice=False)
    sex = SelectField(_l("Sex"), coerce=_optional_text, validate_choice=False)

    def _check_choice(self, field: Field, message: Any) -> None:
        if field.data not in {value for value, _label in field.choices}:
            raise ValidationError(message)

    def validate_unit(self, field: Field) -> None:
        self._check_choice(field, _l("Choose a unit from the list."))

    def validate_channel(self, field: Field) -> None:
        self._check_choice(field, _l("Choose a referral channel from the list."))

    def validate_age_band(self, field: Field) -> None:
        self._check_choice(field, _l("Choose an age band from the list."))

    def validate_sex(self, field: Field) -> None:
        self._check_choice(field, _l("Choose from the list."))

    def validate_date_to(self, field: Field) -> None:
        if field.data and self.date_from.data and field.data < self.date_from.data:
            raise ValidationError(_l("The end date is before the start date."))

    def filters(self) -> Filters:
        return Filters(
            date_from=self.date_from.data,
            date_to=self.date_to.data,
            unit_id=self.unit.data,
            channel=self.channel.data,
            age_band=self.age_band.data,
            sex=self.sex.data,
        )


__all__ = ["AGE_BANDS", "SEXES", "FilterForm"]
