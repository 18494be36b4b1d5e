"""Letter templates as data: parse and check `letters/*.toml`, and build `LetterTemplate`s.

A template has metadata (title, enclosed forms, whether it carries an answer code), a Swedish
`subject` and `body` with `{placeholders}`, and an `[en]` variant for patients whose preferred
language is English. `slussen content check` and create_app run `check_letters`: an unknown
placeholder, a missing variant, an enclosure that is not a form, a character the letter font cannot
print… are errors with file and line; a Swedish body above LIX 40 (with demo data) is a warning.
The format is documented in docs/letters.md.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slussen.content import Content, Problem
from slussen.pdf import missing_glyphs

LANGUAGES = ("sv", "en")
OCCASIONS = ("baseline", "six_month")
VISIT_KINDS = ("mapping", "follow_up")
#: Letters queued by code rather than by the workflow file (slussen.visits.services).
REQUIRED_LETTERS = ("handover", "follow_up")
LIX_LIMIT = 40

#: Every placeholder a body may use: name -> (what it needs, description for docs/letters.md).
#: "needs" decides which data the letter loads and when it is held back: "visit" needs a booked
#: visit, "plan" the action plan, "handover" an accepted hand-over, "answers" a template with
#: `asks_for_answers = true`.
PLACEHOLDERS: dict[str, tuple[str, str]] = {
    "patient_name": ("", "the patient's name"),
    "unit_name": ("", "the unit's name"),
    "unit_street": ("", "the unit's street address"),
    "unit_postal_line": ("", 'the unit\'s postcode and town ("722 15 Västerås")'),
    "unit_phone": ("", "the unit's phone number"),
    "unit_phone_hours": ("", 'when the phone is answered ("vardagar 8.00–10.00")'),
    "coach_name": ("coach", "the name of the patient's health coach"),
    "case_reference": ("", 'the case reference ("S26-000123"), never a personnummer'),
    "letter_date": ("", 'the letter\'s date ("23 november 2026")'),
    "reply_by": ("", "two weeks after the letter's date"),
    "appointment_time": ("visit", 'the booked visit ("tisdag 5 mars 2030 kl. 10.00")'),
    "appointment_place": ("visit", 'where the visit is ("per telefon – vi ringer dig" by phone)'),
    "appointment_minutes": ("visit", "how long the visit is, in minutes"),
    "plan_goals": ("plan", "the goals of the action plan, in the patient's words"),
    "plan_steps": ("plan", "block: the plan's steps with each activity's time, place, contact"),
    "handover_organisation": ("handover", "the organisation that will meet the patient"),
    "handover_companion": ("handover", "first name of the person who meets the patient"),
    "handover_time": ("handover", "when they meet"),
    "handover_place": ("handover", "where they meet"),
    "enclosures": ("", "block: a list of the enclosed forms"),
    "answer_code": ("answers", "the single-use code for answering online"),
    "answer_url": ("answers", "the address for answering online"),
    "answer_box": ("answers", "block: the code, the address and a QR code"),
}
#: Placeholders that expand to several lines; they stand alone in their paragraph.
BLOCK_PLACEHOLDERS = ("plan_steps", "enclosures", "answer_box")
_TOP_KEYS = {"id", "title", "enclose", "asks_for_answers", "occasion", "visit", "subject", "body"}
_VARIANT_KEYS = {"subject", "body"}


@dataclass(frozen=True)
class Variant:
    subject: str
    body: str


@dataclass(frozen=True)
class LetterTemplate:
    id: str
    title: dict[str, str]
    enclose: tuple[str, ...]
    asks_for_answers: bool
    occasion: str | None
    visit: str
    variants: dict[str, Variant]
    source: Path = field(default=Path("letter.toml"), compare=False)

    def variant(self, language: str) -> Variant:
        return self.variants.get(language) or self.variants["sv"]

    @property
    def needs(self) -> frozenset[str]:
        """What data the letter needs, from the placeholders its variants use."""
        used: set[str] = set()
        for variant in self.variants.values():
            used |= placeholders_in(variant.subject) | placeholders_in(variant.body)
        return frozenset(PLACEHOLDERS[name][0] for name in used if name in PLACEHOLDERS) - {""}


# --- text ---------------------------------------------------------------------------------------


def placeholders_in(text: str) -> set[str]:
    """The placeholder names in `text`; raises ValueError on a stray brace."""
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name is not None}


def blocks(body: str) -> list[tuple[str, Any]]:
    """Split a body into ("p", text), ("list", [items]) and ("block", placeholder) parts.

    Paragraphs are separated by blank lines; lines starting with "- " form a bulleted list; a
    block placeholder alone in its paragraph becomes ("block", name)."""
    parts: list[tuple[str, Any]] = []
    for chunk in re.split(r"\n[ \t]*\n", body.strip()):
        lines = [line.strip() for line in chunk.strip().splitlines() if line.strip()]
        if not lines:
            continue
        single = "\n".join(lines)
        match = re.fullmatch(r"\{(\w+)\}", single)
        if match and match.group(1) in BLOCK_PLACEHOLDERS:
            parts.append(("block", match.group(1)))
        elif all(line.startswith("- ") for line in lines):
            parts.append(("list", [line[2:].strip() for line in lines]))
        else:
            paragraph: list[str] = []
            for line in lines:
                if line.startswith("- "):
                    if paragraph:
                        parts.append(("p", "\n".join(paragraph)))
                        paragraph = []
                    parts.append(("list", [line[2:].strip()]))
                else:
                    paragraph.append(line)
            if paragraph:
                parts.append(("p", "\n".join(paragraph)))
    return parts


_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*|\d+(?:[.,:]\d+)*", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?:]+(?=\s+[^\s\d]|\s*$)")


def lix(text: str) -> float:
    """Läsbarhetsindex: words per sentence + 100 × long words (more than six letters) / words.

    A sentence ends at . ! ? or : before a new word (not "kl. 10.00") and at each paragraph or
    list item; numbers count as words but never as long words."""
    words = 0
    long_words = 0
    sentences = 0
    for part in re.split(r"\n\s*\n|\n\s*-\s+", text.strip()):
        part = part.strip()
        if not part:
            continue
        found = _WORD.findall(part)
        if not found:
            continue
        words += len(found)
        long_words += sum(1 for w in found if w[0].isalpha() and len(w) > 6)
        ends = len(_SENTENCE_END.findall(part))
        sentences += max(ends, 1)
    if not words:
        return 0.0
    return words / max(sentences, 1) + 100.0 * long_words / words


#: Values used to fill placeholders for the LIX check (and as an example in docs/letters.md).
DEMO_VALUES: dict[str, str] = {
    "patient_name": "Anna Berg",
    "unit_name": "Vårdcentralen Solgläntan",
    "unit_street": "Solgatan 4",
    "unit_postal_line": "722 15 Västerås",
    "unit_phone": "021-12 34 56",
    "unit_phone_hours": "vardagar 8.00–10.00",
    "coach_name": "Maria Lind",
    "case_reference": "S26-000123",
    "letter_date": "23 november 2026",
    "reply_by": "7 december 2026",
    "appointment_time": "tisdag 5 januari 2027 kl. 10.00",
    "appointment_place": "Solgatan 4, rum 12",
    "appointment_minutes": "45",
    "plan_goals": "Träffa andra en gång i veckan.",
    "plan_steps": "Gå med i promenadgruppen.\n- Ring kören.",
    "handover_organisation": "Röda Korset",
    "handover_companion": "Eva",
    "handover_time": "torsdag 7 januari 2027 kl. 14.00",
    "handover_place": "Träffpunkten, Storgatan 2",
    "enclosures": "Tre frågor om gemenskap.",
    "answer_code": "K7QM-4TZX-9C",
    "answer_url": "https://slussen.example.se/svar",
    "answer_box": "Din kod är K7QM-4TZX-9C.",
}


def demo_body(template: LetterTemplate, language: str = "sv") -> str:
    """The body filled with DEMO_VALUES: the text the LIX check measures."""
    variant = template.variant(language)
    return variant.body.format(**DEMO_VALUES)


# --- the checker --------------------------------------------------------------------------------


class _Lines:
    """Line numbers in a template file: the Swedish part is everything before `[en]`."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.en_start = next(
            (i for i, line in enumerate(self.lines) if line.strip() == "[en]"), len(self.lines)
        )

    def key(self, key: str, language: str = "sv") -> int:
        start, end = (0, self.en_start) if language == "sv" else (self.en_start, len(self.lines))
        for number in range(start, end):
            if re.match(rf"^{re.escape(key)}\s*=", self.lines[number].strip()):
                return number + 1
        return (start + 1) if language == "en" and self.en_start < len(self.lines) else 1

    def token(self, token: str, language: str, fallback: int) -> int:
        start, end = (0, self.en_start) if language == "sv" else (self.en_start, len(self.lines))
        for number in range(start, end):
            if token in self.lines[number]:
                return number + 1
        return fallback


def compile_letter(
    stem: str, doc: dict[str, Any], path: Path, forms: dict[str, dict[str, Any]]
) -> tuple[LetterTemplate | None, list[Problem]]:
    """Check one parsed template file and build its LetterTemplate (None on any error)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    where = _Lines(text)
    problems: list[Problem] = []

    def error(line: int, message: str) -> None:
        problems.append(Problem(path, line, message))

    def warn(line: int, message: str) -> None:
        problems.append(Problem(path, line, message, is_warning=True))

    if doc.get("id") != stem:
        error(where.key("id"), f'id must be "{stem}" (the file name without .toml)')
    for key in sorted(set(doc) - _TOP_KEYS - set(LANGUAGES)):
        error(where.key(key), f"unknown key {key!r}")
    title = doc.get("title")
    if not (isinstance(title, dict) and all(isinstance(title.get(k), str) for k in LANGUAGES)):
        error(where.key("title"), 'title = { sv = "…", en = "…" } is missing')
        title = {"sv": stem, "en": stem}

    enclose = doc.get("enclose", [])
    if not (isinstance(enclose, list) and all(isinstance(e, str) for e in enclose)):
        error(where.key("enclose"), 'enclose must be a list of form ids: enclose = ["ucla3"]')
        enclose = []
    for form_id in enclose:
        if form_id not in forms:
            known = ", ".join(sorted(forms)) or "none"
            error(
                where.key("enclose"),
                f"enclosure {form_id!r} is not a form in forms/ (known forms: {known})",
            )

    asks = doc.get("asks_for_answers", False)
    if not isinstance(asks, bool):
        error(where.key("asks_for_answers"), "asks_for_answers must be true or false")
        asks = False
    occasion = doc.get("occasion")
    if asks and occasion not in OCCASIONS:
        error(
            where.key("occasion") if "occasion" in doc else where.key("asks_for_answers"),
            f"a letter that asks for answers needs occasion = one of {', '.join(OCCASIONS)}",
        )
    elif occasion is not None and occasion not in OCCASIONS:
        error(where.key("occasion"), f"occasion must be one of {', '.join(OCCASIONS)}")
    visit = doc.get("visit", "mapping")
    if visit not in VISIT_KINDS:
        error(where.key("visit"), f"visit must be one of {', '.join(VISIT_KINDS)}")
        visit = "mapping"

    variants: dict[str, Variant] = {}
    raw_en = doc.get("en")
    for language in LANGUAGES:
        raw = doc if language == "sv" else raw_en
        if language == "en":
            if not isinstance(raw, dict):
                error(
                    len(where.lines) or 1, "missing variant: add an [en] table with subject, body"
                )
                continue
            for key in sorted(set(raw) - _VARIANT_KEYS):
                error(where.key(key, "en"), f"[en]: unknown key {key!r}")
        assert isinstance(raw, dict)
        values: dict[str, str] = {}
        for key in ("subject", "body"):
            value = raw.get(key)
            if not isinstance(value, str) or not value.strip():
                label = "" if language == "sv" else "[en]: "
                error(where.key(key, language), f'{label}{key} = "…" is missing')
                continue
            line = where.key(key, language)
            try:
                used = placeholders_in(value)
            except ValueError as exc:
                error(line, f"{key}: {exc} (write {{{{ and }}}} for a literal brace)")
                continue
            values[key] = value
            for name in sorted(used):
                at = where.token("{" + name, language, line)
                if name not in PLACEHOLDERS:
                    error(
                        at,
                        f"unknown placeholder {{{name}}} "
                        f"(known: {', '.join(sorted(PLACEHOLDERS))})",
                    )
                elif PLACEHOLDERS[name][0] == "answers" and not asks:
                    error(at, f"{{{name}}} needs asks_for_answers = true")
                elif name in BLOCK_PLACEHOLDERS and (
                    key == "subject" or ("block", name) not in blocks(value)
                ):
                    error(at, f"{{{name}}} must stand alone in its own paragraph of the body")
            if key == "body" and asks and "answer_box" not in used:
                error(line, "a letter that asks for answers needs {answer_box} in its body")
            bad = missing_glyphs(value)
            if bad:
                shown = " ".join(f"{c!r} (U+{ord(c):04X})" for c in bad)
                error(
                    where.token(bad[0], language, line),
                    f"{key}: the letter font cannot print {shown}",
                )
        if len(values) == 2:
            variants[language] = Variant(values["subject"], values["body"])

    if {"sv", "en"} <= set(variants):
        sv_used = placeholders_in(variants["sv"].body) | placeholders_in(variants["sv"].subject)
        en_used = placeholders_in(variants["en"].body) | placeholders_in(variants["en"].subject)
        for name in sorted(sv_used - en_used):
            warn(where.key("body", "en"), f"[en] does not use {{{name}}} (the Swedish body does)")
        for name in sorted(en_used - sv_used):
            warn(where.key("body", "sv"), f"the Swedish body does not use {{{name}}} ([en] does)")

    if any(not p.is_warning for p in problems):
        return None, problems
    template = LetterTemplate(
        id=stem,
        title={k: str(title[k]) for k in LANGUAGES},
        enclose=tuple(enclose),
        asks_for_answers=asks,
        occasion=str(occasion) if occasion else None,
        visit=str(visit),
        variants=variants,
        source=path,
    )
    score = lix(demo_body(template))
    if score > LIX_LIMIT:
        warn(
            where.key("body"),
            f"the Swedish body scores LIX {score:.0f} with demo data (aim for at most "
            f"{LIX_LIMIT}: shorter sentences, shorter words)",
        )
    return template, problems


def check_letters(content: Content) -> list[Problem]:
    """The letters checker run by create_app and `slussen content check`."""
    documents = content.documents.get("letters", {})
    sources = content.sources.get("letters", {})
    forms = content.documents.get("forms", {})
    problems: list[Problem] = []
    compiled: dict[str, LetterTemplate] = {}
    for stem, doc in sorted(documents.items()):
        template, found = compile_letter(stem, doc, sources[stem], forms)
        problems.extend(found)
        if template is not None:
            compiled[stem] = template
    directory = content.root["letters"]
    for required in REQUIRED_LETTERS:
        if required not in documents:
            problems.append(
                Problem(
                    directory / f"{required}.toml",
                    1,
                    f"the letter {required!r} is missing (Slussen queues it from code)",
                )
            )
    content.compiled["letters"] = compiled
    return problems
