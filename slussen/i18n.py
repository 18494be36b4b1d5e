"""Words and dates in the user's language: a content label with its Swedish and English text, and
dates and times in Swedish form and Swedish time. Shared by every capability and the templates."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from babel.dates import format_date
from flask_babel import get_locale, to_user_timezone


@dataclass(frozen=True)
class Label:
    """A text written in content files (workflow, forms, letters) in both UI languages."""

    sv: str
    en: str

    def get(self, lang: str) -> str:
        return self.en if lang == "en" else self.sv


def ui_language() -> str:
    """The current UI language: "sv" unless the user chose English."""
    locale = get_locale()
    return locale.language if locale else "sv"


def localised(label: Label | None) -> str:
    """The label in the current UI language (Swedish unless the user chose English)."""
    if label is None:
        return ""
    return label.get(ui_language())


def format_day(value: dt.date | None, style: str = "full") -> str:
    """A date in Swedish form: "torsdag 5 mars 2026" (or "5 mars 2026" with style="long")."""
    if value is None:
        return ""
    return _format_day(value, style, str(get_locale() or "sv"))


@functools.lru_cache(maxsize=4096)
def _format_day(value: dt.date, style: str, locale: str) -> str:
    # Babel's formatting is slow and a page repeats the same few days: remember them.
    return format_date(value, style, locale=locale)


def format_clock(value: dt.datetime | dt.time, *, seconds: bool = False) -> str:
    """A time of day as Swedish writes it, "10.00" ("10.00.05" with seconds); "10:00" in
    English. A datetime is given in its own zone (callers convert first)."""
    separator = ":" if ui_language() == "en" else "."
    parts = [value.hour, value.minute, *([value.second] if seconds else [])]
    return separator.join(f"{part:02d}" for part in parts)


def format_moment(value: dt.datetime | None, style: str = "full", *, seconds: bool = False) -> str:
    """A moment in the app's time zone: "torsdag 5 mars 2026 kl. 10.00" ("5 mars 2026 kl.
    10.00.05" with style="long" and seconds); "Thursday, March 5, 2026 at 10:00" in English."""
    if value is None:
        return ""
    local = to_user_timezone(value)
    at = "at" if ui_language() == "en" else "kl."
    return f"{format_day(local.date(), style)} {at} {format_clock(local, seconds=seconds)}"
