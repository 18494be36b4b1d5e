"""Checks on text that people type, shared by forms, query strings and answers."""

from __future__ import annotations

import re
from typing import Any

#: What no typed text may hold: control characters other than tab, line feed and carriage return
#: (NUL, ESC, DEL, the C1 range), and the bidirectional embeddings, overrides and isolates
#: (U+202A–U+202E, U+2066–U+2069), which make text display otherwise than it reads.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def is_digits(text: str) -> bool:
    """Whether `text` is one or more ASCII digits 0–9.

    `str.isdigit` alone also accepts "²", "³" and other characters that `int()` refuses, so a
    query string like `?sida=²` would end in a server error instead of a page."""
    return text.isascii() and text.isdigit()


def optional_id(value: Any) -> int | None:
    """A select field's chosen id: None when nothing is chosen, 0 for anything that is not an id
    (never a choice, so the form's own check refuses it)."""
    if value in (None, "", "None"):
        return None
    text = str(value)
    return int(text) if is_digits(text) and len(text) < 12 else 0


#: One past the largest id an integer column holds (SQLite and PostgreSQL alike).
ID_LIMIT = 2**31


def row_id(value: str | None) -> int | None:
    """The id of a row a form chose, or None when nothing (or nothing any row could have: not
    digits, zero, beyond an integer column) was chosen."""
    text = value or ""
    if not is_digits(text) or len(text) > 10:
        return None
    number = int(text)
    return number if 0 < number < ID_LIMIT else None


def has_forbidden_characters(text: str) -> bool:
    """Whether `text` holds a character no name, address or note may hold (`_FORBIDDEN`)."""
    return _FORBIDDEN.search(text) is not None
