"""Case forms: correcting a patient's details from their case."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from slussen.patients.services import REASON_LIMIT
from slussen.webforms import Form


class CorrectionForm(Form):
    """Name, address, phone and contact channel, with why they are corrected. The rules (a whole
    address, a valid postcode, something changed) are the service's; its refusal is shown with
    everything typed kept."""

    name = StringField(
        _l("Name"),
        validators=[DataRequired(message=_l("Enter the name.")), Length(max=200)],
        render_kw={"autocomplete": "off"},
    )
    street = StringField(
        _l("Street address"),
        validators=[Optional(), Length(max=200)],
        render_kw={"autocomplete": "off"},
    )
    postcode = StringField(
        _l("Postcode"),
        validators=[Optional(), Length(max=10)],
        render_kw={"autocomplete": "off", "inputmode": "numeric"},
    )
    town = StringField(
        _l("Town"), validators=[Optional(), Length(max=100)], render_kw={"autocomplete": "off"}
    )
    phone = StringField(
        _l("Phone"),
        validators=[Optional(), Length(max=40)],
        render_kw={"autocomplete": "off", "inputmode": "tel"},
    )
    contact_channel = SelectField(
        _l("How does the patient want to be contacted?"),
        choices=[
            SelectChoice("post", _l("By post")),
            SelectChoice("phone", _l("By phone")),
            SelectChoice("1177", _l("Via 1177")),
        ],
    )
    reason = TextAreaField(
        _l("Why are the details corrected?"),
        validators=[
            DataRequired(message=_l("Write why the details are corrected.")),
            Length(max=REASON_LIMIT),
        ],
    )
