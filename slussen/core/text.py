"""Checks on text that people type, shared by forms, query strings and answers."""

from __future__ import annotations


def is_digits(text: str) -> bool:
    """Whether `text` is one or more ASCII digits 0–9.

    `str.isdigit` alone also accepts "²", "³" and other characters that `int()` refuses, so a
    query string like `?sida=²` would end in a server error instead of a page."""
    return text.isascii() and text.isdigit()
