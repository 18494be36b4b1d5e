"""What the evaluation needs to know about the instruments: each score's label, range, direction of
improvement and reliability, read from the form definitions in `forms/*.toml` (docs/forms.md).

`score_definitions` is the ONE place that reads the parsed TOML. When the questionnaires capability
offers typed form definitions, only this function changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slussen.content import Content

DIRECTIONS = ("lower_better", "higher_better")
#: Screening forms when the workflow names none (the social-phobia screen).
DEFAULT_SCREENING_FORMS = ("mini_spin",)


@dataclass(frozen=True)
class Reliability:
    """What the reliable change index needs (Jacobson & Truax 1991): a baseline SD and a
    reliability coefficient, with the source they come from."""

    sd: float
    rxx: float
    source: str = ""


@dataclass(frozen=True)
class ScoreDefinition:
    form_id: str
    score_id: str
    #: {"sv": ..., "en": ...}
    label: dict[str, str]
    direction: str
    low: float | None
    high: float | None
    reliability: Reliability | None = None

    @property
    def key(self) -> str:
        """A stable id, also the stem of the score's CSV columns: "ucla3_total"."""
        return f"{self.form_id}_{self.score_id}"

    @property
    def is_lower_better(self) -> bool:
        return self.direction == "lower_better"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _reliability(value: Any) -> Reliability | None:
    if not isinstance(value, dict):
        return None
    sd, rxx = _number(value.get("sd")), _number(value.get("rxx"))
    if sd is None or rxx is None or sd <= 0 or not 0 <= rxx < 1:
        return None
    return Reliability(sd=sd, rxx=rxx, source=str(value.get("source", "")))


def score_definitions(content: Content) -> list[ScoreDefinition]:
    """Every score with a direction of improvement, from every instrument form, sorted by form and
    in the form's own order. Malformed entries are skipped here: the forms checker reports them."""
    result: list[ScoreDefinition] = []
    forms: dict[str, dict[str, Any]] = content.documents.get("forms", {})
    for form_id in sorted(forms):
        document = forms[form_id]
        if document.get("kind", "instrument") != "instrument":
            continue
        for score in document.get("scores", []) or []:
            if not isinstance(score, dict) or score.get("direction") not in DIRECTIONS:
                continue
            raw_label = score.get("label")
            label: dict[str, Any] = raw_label if isinstance(raw_label, dict) else {}
            raw_range = score.get("range")
            bounds: list[Any] = raw_range if isinstance(raw_range, list) else []
            low, high = (
                (_number(bounds[0]), _number(bounds[1])) if len(bounds) == 2 else (None, None)
            )
            result.append(
                ScoreDefinition(
                    form_id=form_id,
                    score_id=str(score.get("id", "")),
                    label={k: str(v) for k, v in label.items()} or {"sv": form_id, "en": form_id},
                    direction=str(score["direction"]),
                    low=low,
                    high=high,
                    reliability=_reliability(score.get("reliability")),
                )
            )
    return result


def _workflow_questionnaires(content: Content) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    for document in content.documents.get("workflows", {}).values():
        section = document.get("questionnaires")
        if isinstance(section, dict):
            for occasion, forms in section.items():
                if isinstance(forms, list):
                    lists.setdefault(occasion, []).extend(str(f) for f in forms)
    return lists


def screening_forms(content: Content) -> tuple[str, ...]:
    """The forms whose positive result counts as a positive screening."""
    named = _workflow_questionnaires(content).get("screening")
    return tuple(named) if named else DEFAULT_SCREENING_FORMS


def outcome_definitions(content: Content) -> list[ScoreDefinition]:
    """The scores compared baseline vs six months: every scored instrument except the forms used
    only for screening (they are not asked again at six months)."""
    lists = _workflow_questionnaires(content)
    screening_only = set(screening_forms(content)) - set(lists.get("six_month", []))
    return [d for d in score_definitions(content) if d.form_id not in screening_only]
