"""The one place scores are computed: answers are checked against the form, reverse keys applied,
the missing-item rule applied, sums/means/lookups/single items computed, cut-offs judged.

Everything else (online answers, paper entry, the live score while keying, the evaluation) calls
`check_answers` and `score_form`; nothing else does arithmetic on answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from slussen.questionnaires.definitions import MAX_TEXT, FormDef, Item, Score
from slussen.text import is_digits

#: An answer: a code (choice, tick) or a text.
Answer = int | str


@dataclass(frozen=True)
class ScoreResult:
    score: Score
    #: None when the missing-item rule says the score cannot be computed.
    value: float | None
    is_positive: bool | None
    #: The score's items that were not answered.
    missing: tuple[str, ...]

    @property
    def score_id(self) -> str:
        return self.score.id


@dataclass
class Checked:
    """Answers checked against a form: the clean ones, and a message per refused item."""

    answers: dict[str, Answer] = field(default_factory=dict)
    #: item id → Swedish message (out of range, not a number, required but missing…).
    errors: dict[str, str] = field(default_factory=dict)
    #: Scored items with no answer (allowed on paper; the missing-item rule decides).
    missing: list[str] = field(default_factory=list)

    @property
    def is_valid(self) -> bool:
        return not self.errors


def _parse_code(item: Item, raw: object) -> tuple[int | None, str | None]:
    """(code, None), (None, None) for no answer, or (None, message)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, None
    if isinstance(raw, bool):
        raw = int(raw)
    if isinstance(raw, int):
        code = raw
    elif isinstance(raw, str):
        text = raw.strip()
        if item.type == "tick" and text.lower() in ("on", "ja", "yes", "x"):
            return 1, None
        if not is_digits(text.removeprefix("-")) or len(text) > 6:
            return None, f"Svaret ska vara en siffra ({_range_text(item)})."
        code = int(text)
    else:
        return None, f"Svaret ska vara en siffra ({_range_text(item)})."
    if code not in item.codes:
        return None, f"{code} går inte att svara här ({_range_text(item)})."
    return code, None


def _range_text(item: Item) -> str:
    codes = item.codes
    if codes == tuple(range(min(codes), max(codes) + 1)):
        return f"{min(codes)}–{max(codes)}"
    return ", ".join(str(c) for c in codes)


def check_answers(form: FormDef, raw: Mapping[str, object], *, require: bool = True) -> Checked:
    """Check posted or stored answers against `form`. Unknown keys are ignored. `require`
    refuses a required item left empty (online answering); paper entry passes False and gets
    the empty items listed in `missing` instead."""
    checked = Checked()
    for item in form.items:
        value = raw.get(item.id)
        if item.type == "text":
            text = value.strip() if isinstance(value, str) else ""
            if text:
                checked.answers[item.id] = text[:MAX_TEXT]
            continue
        code, message = _parse_code(item, value)
        if message:
            checked.errors[item.id] = message
        elif code is None:
            if item.type == "tick":
                checked.answers[item.id] = 0
            elif item.required and require:
                checked.errors[item.id] = "Välj ett svar."
            else:
                checked.missing.append(item.id)
        else:
            checked.answers[item.id] = code
    return checked


def item_value(item: Item, code: int) -> int:
    """The value a code contributes to a score: reverse-keyed items count min + max − code."""
    return item.min_code + item.max_code - code if item.reverse else code


def _round(value: float) -> float:
    return float(Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def compute_score(form: FormDef, score: Score, answers: Mapping[str, Answer]) -> ScoreResult:
    """One score under its missing-item rule; `value` None when too many items are missing."""
    values: list[int] = []
    missing: list[str] = []
    for item_id in score.items:
        code = answers.get(item_id)
        if isinstance(code, int) and not isinstance(code, bool):
            values.append(item_value(form.item(item_id), code))
        else:
            missing.append(item_id)
    if not values or len(missing) > score.max_missing:
        return ScoreResult(score, None, None, tuple(missing))
    n = len(score.items)
    raw = float(sum(values))
    if score.method == "mean":
        value = _round(raw / len(values))
    elif score.method == "item":
        value = raw
    else:
        if missing:  # prorate: the mean of the answered items stands in for the missing ones
            raw = raw * n / len(values)
        if score.method == "lookup":
            whole = int(Decimal(str(raw)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))
            value = score.lookup[whole]
        else:
            value = _round(raw)
    positive = score.cutoff.is_positive(value) if score.cutoff else None
    return ScoreResult(score, value, positive, tuple(missing))


def score_form(form: FormDef, answers: Mapping[str, Answer]) -> list[ScoreResult]:
    """Every score of the form, in file order."""
    return [compute_score(form, score, answers) for score in form.scores]


def is_screen_positive(results: list[ScoreResult]) -> bool:
    return any(r.is_positive for r in results)
