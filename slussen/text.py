"""Checks on text that people type, shared by forms, query strings and answers."""

from __future__ import annotations

from typing import Any


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
