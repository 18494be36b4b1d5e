"""Directory forms: the organisation and activity forms, moderation, and the calendar filters
(a GET query parsed by hand so a link with any parameters gives a page, never an error)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from babel import Locale
from flask_babel import lazy_gettext as _l
from wtforms import (
    BooleanField,
    DateField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    TimeField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional, Regexp
from wtforms.widgets import CheckboxInput, ListWidget

from slussen.directory.categories import AGE_GROUPS, SECTORS
from slussen.directory.models import CONTENT_FIELDS
from slussen.directory.schedule import WEEKDAY_NAMES_SV, ScheduleError, build_rrule, split_rrule
from slussen.directory.services import MAX_RANGE_DAYS, ActivityData, CalendarFilters
from slussen.text import is_digits
from slussen.webforms import Form

SWEDISH = Locale("sv")
#: Enough to catch typing mistakes; whether the address works shows when someone writes to it.
EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def choices(pairs: Sequence[tuple[Any, Any]]) -> list[SelectChoice]:
    """WTForms 3.3 choices from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


class MultiCheckboxField(SelectMultipleField):  # type: ignore[misc]
    """Several checkboxes; rendered by the `checkboxes` macro inside a fieldset."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class OrganisationForm(Form):
    name = StringField(
        _l("Name"), validators=[DataRequired(message=_l("Enter the name.")), Length(max=200)]
    )
    sector = SelectField(_l("Sector"), choices=choices(list(SECTORS.items())))
    description = TextAreaField(_l("Description"), validators=[Length(max=4000)])
    contact_name = StringField(_l("Contact person"), validators=[Length(max=200)])
    email = StringField(
        _l("Email"),
        validators=[
            Optional(),
            Regexp(EMAIL_RE, message=_l("Enter a valid email address.")),
            Length(max=200),
        ],
    )
    phone = StringField(_l("Phone"), validators=[Length(max=40)])
    website = StringField(_l("Website"), validators=[Length(max=300)])
    area = StringField(_l("Area"), validators=[Length(max=100)])


class RepresentativeForm(Form):
    username = StringField(
        _l("Username of the representative"),
        validators=[DataRequired(message=_l("Enter a username.")), Length(max=80)],
    )


class ActionForm(Form):
    """A button that changes something: only the CSRF token."""


class ApproveForm(Form):
    comment = TextAreaField(_l("Comment (optional)"), validators=[Length(max=2000)])


class ReturnForm(Form):
    comment = TextAreaField(
        _l("What should the organisation change?"),
        validators=[DataRequired(message=_l("Write what needs to change.")), Length(max=2000)],
    )


def _language_codes(text: str) -> list[str]:
    codes = [c.strip().lower() for c in text.replace(";", ",").split(",") if c.strip()]
    unknown = [c for c in codes if c not in SWEDISH.languages or len(c) > 3]
    if unknown:
        raise ScheduleError(
            "Okänd språkkod: " + ", ".join(unknown[:3]) + ". Använd koder som sv, en, ar."
        )
    return list(dict.fromkeys(codes))


class ActivityForm(Form):
    title = StringField(
        _l("Title"), validators=[DataRequired(message=_l("Enter a title.")), Length(max=200)]
    )
    description = TextAreaField(_l("Description in plain Swedish"), validators=[Length(max=4000)])
    categories = MultiCheckboxField(_l("Interest areas"), choices=[])
    kind = RadioField(
        _l("Kind"),
        choices=choices([("leisure", _l("Leisure activity")), ("support", _l("Support"))]),
        default="leisure",
    )
    first_date = DateField(
        _l("First date"), validators=[DataRequired(message=_l("Enter a date, e.g. 2026-03-05."))]
    )
    start_time = TimeField(
        _l("Starts at"), validators=[DataRequired(message=_l("Enter a time, e.g. 10:00."))]
    )
    duration_minutes = IntegerField(
        _l("Length in minutes"),
        default=60,
        validators=[
            DataRequired(message=_l("Enter the length in minutes.")),
            NumberRange(min=1, max=1440, message=_l("Between 1 and 1440 minutes.")),
        ],
    )
    repeat = RadioField(
        _l("Repeats"),
        choices=choices(
            [
                ("none", _l("Once (and any extra dates below)")),
                ("weekly", _l("Every week")),
                ("biweekly", _l("Every second week")),
                ("monthly", _l("Every month on the same weekday (e.g. the second Tuesday)")),
                ("custom", _l("Custom rule (RFC 5545 RRULE)")),
            ]
        ),
        default="none",
    )
    weekdays = MultiCheckboxField(
        _l("On these weekdays"),
        choices=choices([(i, name.capitalize()) for i, name in enumerate(WEEKDAY_NAMES_SV)]),
        coerce=int,
    )
    until = DateField(_l("Last date (optional)"), validators=[Optional()])
    custom_rrule = StringField(_l("Custom rule"), validators=[Length(max=500)])
    extra_dates = TextAreaField(_l("Extra dates"), validators=[Length(max=4000)])
    exception_dates = TextAreaField(_l("Cancelled dates"), validators=[Length(max=4000)])
    place_name = StringField(_l("Place"), validators=[Length(max=200)])
    street = StringField(_l("Street address"), validators=[Length(max=200)])
    postcode = StringField(_l("Postcode"), validators=[Length(max=6)])
    town = StringField(_l("Town"), validators=[Length(max=100)])
    area = StringField(_l("Area"), validators=[Length(max=100)])
    accessibility_notes = TextAreaField(_l("Accessibility"), validators=[Length(max=2000)])
    cost_sek = IntegerField(
        _l("Price in kronor"),
        validators=[
            Optional(),
            NumberRange(min=1, max=100000, message=_l("Leave empty if it is free.")),
        ],
    )
    cost_note = StringField(_l("About the price"), validators=[Length(max=200)])
    bring = StringField(_l("What to bring"), validators=[Length(max=200)])
    age_groups = MultiCheckboxField(
        _l("For ages"), choices=choices([(k, v[0]) for k, v in AGE_GROUPS.items()])
    )
    languages = StringField(_l("Languages"), default="sv", validators=[Length(max=100)])
    has_companion = BooleanField(_l("Someone can meet a newcomer and go along the first time"))
    capacity = IntegerField(
        _l("Number of places"),
        validators=[Optional(), NumberRange(min=1, max=100000, message=_l("At least 1."))],
    )
    contact_name = StringField(_l("Contact person"), validators=[Length(max=200)])
    contact_phone = StringField(_l("Contact phone"), validators=[Length(max=40)])
    contact_email = StringField(
        _l("Contact email"),
        validators=[
            Optional(),
            Regexp(EMAIL_RE, message=_l("Enter a valid email address.")),
            Length(max=200),
        ],
    )

    def to_data(self) -> ActivityData:
        """The submitted activity; raises ScheduleError (with the field name in `field`)."""
        try:
            rule = build_rrule(
                self.repeat.data or "none",
                self.first_date.data,
                self.weekdays.data or [],
                self.until.data,
                self.custom_rrule.data or "",
            )
        except ScheduleError as exc:
            exc.field = "custom_rrule" if self.repeat.data == "custom" else "repeat"  # type: ignore[attr-defined]
            raise
        try:
            languages = _language_codes(self.languages.data or "")
        except ScheduleError as exc:
            exc.field = "languages"  # type: ignore[attr-defined]
            raise
        return ActivityData(
            title=(self.title.data or "").strip(),
            description=(self.description.data or "").strip(),
            categories=list(self.categories.data or []),
            kind=self.kind.data or "leisure",
            first_date=self.first_date.data,
            start_time=self.start_time.data,
            duration_minutes=self.duration_minutes.data,
            rrule=rule,
            extra_dates=(self.extra_dates.data or "").split(),
            exception_dates=(self.exception_dates.data or "").split(),
            place_name=(self.place_name.data or "").strip(),
            street=(self.street.data or "").strip(),
            postcode=(self.postcode.data or "").strip(),
            town=(self.town.data or "").strip(),
            area=(self.area.data or "").strip(),
            accessibility_notes=(self.accessibility_notes.data or "").strip(),
            cost_sek=self.cost_sek.data,
            cost_note=(self.cost_note.data or "").strip(),
            bring=(self.bring.data or "").strip(),
            age_groups=list(self.age_groups.data or []),
            languages=languages,
            has_companion=bool(self.has_companion.data),
            capacity=self.capacity.data,
            contact_name=(self.contact_name.data or "").strip(),
            contact_phone=(self.contact_phone.data or "").strip(),
            contact_email=(self.contact_email.data or "").strip(),
        )

    def fill_from(self, data: ActivityData) -> None:
        """Pre-fill the form from a stored revision's content."""
        # Fields whose form differs from the stored value are filled below.
        for name in CONTENT_FIELDS:
            if name not in ("rrule", "extra_dates", "exception_dates", "languages"):
                getattr(self, name).data = getattr(data, name)
        repeat, days, until, custom = split_rrule(data.rrule)
        self.repeat.data, self.weekdays.data, self.until.data = repeat, days, until
        self.custom_rrule.data = custom
        self.extra_dates.data = "\n".join(data.extra_dates)
        self.exception_dates.data = "\n".join(data.exception_dates)
        self.languages.data = ", ".join(data.languages)


# --- The public calendar's filters ---------------------------------------------------------

PERIODS = ("this_week", "next_week", "range")
TIMES_OF_DAY = ("morning", "afternoon", "evening")
#: The longest date range one calendar page may ask for.
MAX_PAGE_RANGE_DAYS = 92
PER_PAGE = 25


@dataclass
class CalendarQuery:
    """The calendar's GET parameters, checked: `filters` is always usable; `errors` maps a
    parameter to a Swedish message shown next to it. Parameter names are Swedish (they show in
    links people share): period, fran, till, kategori, veckodag, tid, gratis, omrade, alder,
    foljeslagare, typ, sida."""

    filters: CalendarFilters
    period: str
    page: int = 1
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def args(self, **changes: Any) -> dict[str, Any]:
        """The query as URL parameters (for links to other pages, the feed and the print list)."""
        out = {k: v for k, v in self.values.items() if v not in ("", [], None, False)}
        out.update(changes)
        return {k: v for k, v in out.items() if v not in ("", [], None, False)}


def monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def _date(raw: str) -> dt.date | None:
    try:
        value = dt.date.fromisoformat(raw.strip())
    except ValueError:
        return None
    return value if dt.date(2000, 1, 1) <= value <= dt.date(2100, 12, 31) else None


def parse_calendar_query(
    args: Mapping[str, Any],
    *,
    today: dt.date,
    categories: Sequence[str],
    max_days: int = MAX_PAGE_RANGE_DAYS,
) -> CalendarQuery:
    """Read the calendar's parameters; a bad one gets a message and is left out, never a 500."""

    def getlist(name: str) -> list[str]:
        if hasattr(args, "getlist"):
            return [str(v)[:200] for v in args.getlist(name)][:50]
        value = args.get(name)
        if value is None:
            return []
        return [str(v)[:200] for v in (value if isinstance(value, list) else [value])][:50]

    def get(name: str) -> str:
        values = getlist(name)
        return values[0].strip() if values else ""

    errors: dict[str, str] = {}
    period = get("period") or "this_week"
    if period not in PERIODS:
        errors["period"] = "Välj denna vecka, nästa vecka eller datum."
        period = "this_week"
    start = monday(today)
    end = start + dt.timedelta(days=6)
    raw_from, raw_to = get("fran"), get("till")
    if period == "next_week":
        start, end = start + dt.timedelta(days=7), end + dt.timedelta(days=7)
    elif period == "range":
        chosen_from = _date(raw_from) if raw_from else today
        chosen_to = _date(raw_to) if raw_to else None
        if chosen_from is None:
            errors["fran"] = "Skriv datumet som 2026-03-05."
            chosen_from = today
        if raw_to and chosen_to is None:
            errors["till"] = "Skriv datumet som 2026-03-05."
        if chosen_to is None:
            chosen_to = chosen_from + dt.timedelta(days=13)
        if chosen_to < chosen_from:
            errors["till"] = "Slutdatumet ligger före startdatumet."
            chosen_to = chosen_from + dt.timedelta(days=13)
        if (chosen_to - chosen_from).days >= max_days:
            errors["till"] = f"Välj högst {max_days} dagar åt gången."
            chosen_to = chosen_from + dt.timedelta(days=max_days - 1)
        start, end = chosen_from, chosen_to
    known = set(categories)
    chosen_categories = [c for c in getlist("kategori") if c]
    if set(chosen_categories) - known:
        errors["kategori"] = "Okänt intresseområde."
        chosen_categories = [c for c in chosen_categories if c in known]
    weekdays: list[int] = []
    for raw in getlist("veckodag"):
        if is_digits(raw) and 0 <= int(raw) <= 6:
            weekdays.append(int(raw))
        elif raw:
            errors["veckodag"] = "Okänd veckodag."
    times = [t for t in getlist("tid") if t in TIMES_OF_DAY]
    if len(times) != len([t for t in getlist("tid") if t]):
        errors["tid"] = "Välj förmiddag, eftermiddag eller kväll."
    age = get("alder")
    if age and age not in AGE_GROUPS:
        errors["alder"] = "Okänd åldersgrupp."
        age = ""
    kind = get("typ")
    if kind and kind not in ("support", "leisure"):
        errors["typ"] = "Välj stödinsats eller fritidsaktivitet."
        kind = ""
    area = get("omrade")[:100]
    free = get("gratis") in ("1", "on", "ja")
    companion = get("foljeslagare") in ("1", "on", "ja")
    page_raw = get("sida") or "1"
    page = int(page_raw) if is_digits(page_raw) and 1 <= int(page_raw) <= 10000 else 1
    if page_raw != str(page):
        errors["sida"] = "Okänt sidnummer."
    filters = CalendarFilters(
        start=start,
        end=min(end, start + dt.timedelta(days=MAX_RANGE_DAYS)),
        categories=tuple(dict.fromkeys(chosen_categories)),
        weekdays=tuple(sorted(set(weekdays))),
        times_of_day=tuple(dict.fromkeys(times)),
        free_only=free,
        area=area,
        age_group=age,
        companion=companion,
        kind=kind,
    )
    values: dict[str, Any] = {
        "period": period if period != "this_week" else "",
        "fran": start.isoformat() if period == "range" else "",
        "till": end.isoformat() if period == "range" else "",
        "kategori": list(filters.categories),
        "veckodag": [str(d) for d in filters.weekdays],
        "tid": list(filters.times_of_day),
        "gratis": "1" if free else "",
        "omrade": area,
        "alder": age,
        "foljeslagare": "1" if companion else "",
        "typ": kind,
    }
    return CalendarQuery(filters=filters, period=period, page=page, errors=errors, values=values)
