"""The base of every web form: what all typed text must satisfy, checked once for every field."""

from __future__ import annotations

from typing import Any

from flask import flash
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm

from slussen.text import has_forbidden_characters

#: Shown next to a field holding a character `slussen.text.has_forbidden_characters` refuses.
FORBIDDEN_CHARACTERS = _l(
    "The text contains characters that cannot be saved (invisible control characters or "
    "characters that reverse the writing direction). Remove them and try again."
)


class Form(FlaskForm):  # type: ignore[misc]
    """A FlaskForm whose every text field refuses control characters and bidirectional
    overrides, with a message next to the field and everything typed kept."""

    def validate(self, extra_validators: Any = None) -> bool:
        valid: bool = super().validate(extra_validators)
        for field in self:
            if isinstance(field.data, str) and has_forbidden_characters(field.data):
                field.errors = [*field.errors, FORBIDDEN_CHARACTERS]
                valid = False
        return valid

    def show_refusal(self, error: Exception, default: str | None = None) -> None:
        """Show a service's refusal next to the field it names (`error.field`), else next to
        `default`, else as a message above the form."""
        name = getattr(error, "field", None) or default
        if name and name in self:
            self[name].errors = [*self[name].errors, str(error)]
        else:
            flash(str(error), "error")
