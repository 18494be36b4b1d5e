"""The interest categories, read from `forms/interest_mapping.toml` (one list for the
interest-mapping form, the directory and the suggestions), and the other small vocabularies.

Only `interest_categories()` knows where the list comes from, so the forms issue can replace the
file format without touching the directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app

from slussen.content import Content, Problem

DOCUMENT = "interest_mapping"


@dataclass(frozen=True)
class Category:
    id: str
    sv: str
    en: str

    def label(self, language: str = "sv") -> str:
        return self.en if language == "en" else self.sv


def categories_from(content: Content) -> list[Category]:
    """The categories in `content`, in file order (empty when the file is absent)."""
    document: dict[str, Any] = content.documents.get("forms", {}).get(DOCUMENT, {})
    return [
        Category(item["id"], item["text"]["sv"], item["text"]["en"])
        for item in document.get("items", [])
    ]


def interest_categories() -> list[Category]:
    """The interest categories of the running app."""
    content: Content = current_app.extensions["slussen.content"]
    cached: list[Category] | None = content.compiled.get(DOCUMENT)
    if cached is None:
        cached = categories_from(content)
        content.compiled[DOCUMENT] = cached
    return cached


def category_labels(language: str = "sv") -> dict[str, str]:
    return {c.id: c.label(language) for c in interest_categories()}


def check_interest_mapping(content: Content) -> list[Problem]:
    """The interest list must exist with unique snake_case ids and Swedish and English text."""
    path = content.sources.get("forms", {}).get(DOCUMENT)
    document = content.documents.get("forms", {}).get(DOCUMENT)
    if path is None or document is None:
        root = content.root["forms"]
        return [Problem(root / f"{DOCUMENT}.toml", 1, "the interest list is missing")]
    problems: list[Problem] = []
    items = document.get("items")
    if not isinstance(items, list) or not items:
        return [Problem(path, 1, "no [[items]] in the interest list")]
    seen: set[str] = set()
    for index, item in enumerate(items, start=1):
        item_id = item.get("id") if isinstance(item, dict) else None
        text = item.get("text") if isinstance(item, dict) else None
        if not isinstance(item_id, str) or not item_id.replace("_", "").isalnum():
            problems.append(Problem(path, 1, f"item {index} needs a snake_case id"))
            continue
        if not item_id.islower():
            problems.append(Problem(path, 1, f"item {item_id!r}: the id must be lower case"))
        if item_id in seen:
            problems.append(Problem(path, 1, f"item {item_id!r} appears twice"))
        seen.add(item_id)
        if not isinstance(text, dict) or not text.get("sv") or not text.get("en"):
            problems.append(Problem(path, 1, f"item {item_id!r} needs text.sv and text.en"))
    if not problems:
        content.compiled[DOCUMENT] = categories_from(content)
    return problems


#: Kinds of activity: support (stödinsats) or light leisure (fritid).
KINDS = ("support", "leisure")

#: Organisation sectors; the Swedish labels are what the public sees.
SECTORS = {
    "kommun": "Kommun",
    "ideburen": "Idéburen sektor",
    "trossamfund": "Trossamfund",
    "region": "Region",
    "privat": "Privat",
}

#: Target age groups.
AGE_GROUPS = {
    "children": ("Barn (0–12 år)", "Children (0–12)"),
    "youth": ("Unga (13–25 år)", "Young people (13–25)"),
    "adults": ("Vuxna (26–64 år)", "Adults (26–64)"),
    "seniors": ("Seniorer (65 år och äldre)", "Seniors (65 and over)"),
}

#: Age ranges for the open-data export (HSDS minimum_age/maximum_age).
AGE_RANGES = {"children": (0, 12), "youth": (13, 25), "adults": (26, 64), "seniors": (65, 120)}

#: Barriers the suggestions know (the barriers checklist of the forms issue uses the same ids).
BARRIERS = ("cost", "anxiety", "transport", "language", "digital", "health", "time")
