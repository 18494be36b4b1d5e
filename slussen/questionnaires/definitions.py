"""Forms as data: load `forms/*.toml`, check them, and build typed, frozen `FormDef`s.

The checker registered here runs in `slussen content check` and at app start; every problem names
the file and line it comes from (duplicate item id, option codes not numeric, cut-off outside the
score range, lookup table missing a raw score, unknown licence, a licensed form enabled without its
text…). The built forms are in `content.compiled["forms"]`; `forms()` and `form()` read them.
The format is documented in docs/forms.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slussen.content import Content, Problem
from slussen.i18n import Label

KINDS = ("instrument", "checklist", "mapping")
LICENCES = ("free", "registration", "licensed")
ITEM_TYPES = ("choice", "tick", "text")
METHODS = ("sum", "mean", "lookup", "item")
DIRECTIONS = ("lower_better", "higher_better")
POSITIVE = ("at_or_above", "at_or_below")
MISSING_RULES = ("none", "prorate")
SUMMARIES = ("mean", "share_positive")
#: Longest free-text answer kept.
MAX_TEXT = 2000
_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class Option:
    code: int
    text: Label


#: A tick item's codes: not ticked, ticked.
TICK_OPTIONS = (Option(0, Label("Nej", "No")), Option(1, Label("Ja", "Yes")))


@dataclass(frozen=True)
class Item:
    id: str
    text: Label
    #: "choice" (one option), "tick" (a box: 0 or 1) or "text" (free text, never scored).
    type: str
    options: tuple[Option, ...]
    required: bool
    #: Reverse-keyed: the score uses min + max − code.
    reverse: bool
    line: int = field(default=1, compare=False)

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(o.code for o in self.options)

    @property
    def min_code(self) -> int:
        return min(self.codes)

    @property
    def max_code(self) -> int:
        return max(self.codes)

    def option(self, code: int) -> Option | None:
        return next((o for o in self.options if o.code == code), None)


@dataclass(frozen=True)
class Group:
    id: str
    title: Label
    items: tuple[str, ...]


@dataclass(frozen=True)
class Cutoff:
    value: float
    #: "at_or_above" or "at_or_below": which side of `value` is positive.
    positive: str
    label: Label | None = None

    def is_positive(self, value: float) -> bool:
        return value >= self.value if self.positive == "at_or_above" else value <= self.value


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    label: Label


@dataclass(frozen=True)
class Reliability:
    sd: float
    rxx: float
    source: str


@dataclass(frozen=True)
class Score:
    id: str
    label: Label
    method: str
    items: tuple[str, ...]
    low: float
    high: float
    direction: str
    max_missing: int
    missing_rule: str
    cutoff: Cutoff | None = None
    #: Raw sum → score, for method "lookup".
    lookup: dict[int, float] = field(default_factory=dict)
    bands: tuple[Band, ...] = ()
    reliability: Reliability | None = None
    #: How the evaluation summarises it: "mean" or "share_positive" (share at the cut-off).
    summary: str = "mean"

    def band(self, value: float | None) -> Band | None:
        if value is None:
            return None
        return next((b for b in self.bands if b.low <= value <= b.high), None)


@dataclass(frozen=True)
class FormDef:
    id: str
    version: int
    kind: str
    title: Label
    instructions: Label
    recall_period: Label | None
    licence: str
    #: As the file says; `usable()` also lets a development install use DEMO placeholders.
    enabled: bool
    text_supplied: bool
    #: The item text is a DEMO placeholder (never for real use).
    is_demo: bool
    copyright: str
    citation: str
    groups: tuple[Group, ...]
    items: tuple[Item, ...]
    scores: tuple[Score, ...]
    verify: str = ""
    source: Path = field(default=Path("form.toml"), compare=False)

    def item(self, item_id: str) -> Item:
        return next(i for i in self.items if i.id == item_id)

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(i.id for i in self.items)

    def usable(self, *, demo_forms: bool) -> bool:
        """May patients and staff fill it in? An enabled form, or a DEMO placeholder in a
        development installation that asked for them (`use_demo_forms`)."""
        return self.enabled or (self.is_demo and demo_forms)


class _Locator:
    """Lines of tables and keys in the TOML text (tomllib gives no positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def table(self, header: str, index: int = 0) -> int:
        found = -1
        for number, line in enumerate(self.lines):
            if line.strip() in (f"[{header}]", f"[[{header}]]"):
                found += 1
                if found == index:
                    return number + 1
        return 1

    def _end(self, start: int) -> int:
        for number in range(start, len(self.lines)):
            stripped = self.lines[number].strip()
            if re.match(r"^\[\[?[A-Za-z_]", stripped):
                return number
        return len(self.lines)

    def key(self, header: str, index: int, key: str) -> int:
        """Line of `key = …` in the index-th [header]/[[header]] (the table's line if absent)."""
        start = self.table(header, index)
        for number in range(start, self._end(start)):
            if re.match(rf"^{re.escape(key)}\s*=", self.lines[number].strip()):
                return number + 1
        return start

    def text_after(self, line: int, needle: str) -> int:
        """First line from `line` (1-based) containing `needle`, within the same table."""
        for number in range(line - 1, self._end(line)):
            if needle in self.lines[number]:
                return number + 1
        return line

    def top_key(self, key: str) -> int:
        for number, line in enumerate(self.lines):
            if line.strip().startswith("["):
                break
            if re.match(rf"^{re.escape(key)}\s*=", line.strip()):
                return number + 1
        return 1


def _label(value: Any) -> Label | None:
    if (
        isinstance(value, dict)
        and isinstance(value.get("sv"), str)
        and value["sv"].strip()
        and isinstance(value.get("en", ""), str)
    ):
        return Label(sv=value["sv"], en=str(value.get("en") or value["sv"]))
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value)


TOP_KEYS = {
    "id",
    "version",
    "kind",
    "title",
    "instructions",
    "recall_period",
    "licence",
    "enabled",
    "text_supplied",
    "demo",
    "copyright",
    "citation",
    "verify",
    "option_sets",
    "groups",
    "items",
    "scores",
}
ITEM_KEYS = {"id", "text", "type", "options", "required", "reverse"}
SCORE_KEYS = {
    "id",
    "label",
    "method",
    "items",
    "range",
    "direction",
    "cutoff",
    "missing",
    "lookup",
    "bands",
    "reliability",
    "summary",
}


def compile_form(doc: dict[str, Any], path: Path) -> tuple[FormDef | None, list[Problem]]:
    """Check one parsed form file and build its FormDef; None when there is any error."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    where = _Locator(text)
    problems: list[Problem] = []

    def error(line: int, message: str) -> None:
        problems.append(Problem(path, line, message))

    form_id = doc.get("id")
    if form_id != path.stem:
        error(where.top_key("id"), f'id must be the file name: id = "{path.stem}"')
    for key in sorted(set(doc) - TOP_KEYS):
        error(where.top_key(key), f"unknown key {key!r}")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        error(where.top_key("version"), "version must be a whole number from 1")
        version = 1
    kind = doc.get("kind", "instrument")
    if kind not in KINDS:
        error(where.top_key("kind"), f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
        kind = "instrument"
    title = _label(doc.get("title"))
    if title is None:
        error(where.top_key("title"), 'title = { sv = "…", en = "…" } is missing')
    instructions = _label(doc.get("instructions")) or Label("", "")
    recall = _label(doc.get("recall_period")) if "recall_period" in doc else None
    if "recall_period" in doc and recall is None:
        error(where.top_key("recall_period"), 'recall_period = { sv = "…", en = "…" }')

    licence = doc.get("licence")
    if licence not in LICENCES:
        error(
            where.top_key("licence"),
            f"unknown licence {licence!r} (known: {', '.join(LICENCES)})",
        )
        licence = "free"
    flags: dict[str, bool] = {}
    for key in ("enabled", "text_supplied", "demo"):
        value = doc.get(key)
        if value is not None and not isinstance(value, bool):
            error(where.top_key(key), f"{key} must be true or false")
            value = None
        flags[key] = bool(value) if value is not None else False
    enabled = doc.get("enabled") if isinstance(doc.get("enabled"), bool) else licence == "free"
    copyright_text = doc.get("copyright", "")
    citation = doc.get("citation", "")
    for key, value in (("copyright", copyright_text), ("citation", citation)):
        if not isinstance(value, str):
            error(where.top_key(key), f"{key} must be text")
    if licence != "free" and not (isinstance(copyright_text, str) and copyright_text.strip()):
        error(
            where.top_key("licence"),
            f'a {licence} form needs its copyright notice (copyright = "…"): it must appear on '
            "every copy and report",
        )
    if flags["demo"] and flags["text_supplied"]:
        error(
            where.top_key("text_supplied"),
            "text_supplied = true but the file still says demo = true: remove demo = true once "
            "the real text is in",
        )
    if licence != "free" and enabled and not flags["text_supplied"]:
        error(
            where.top_key("enabled"),
            f"form {path.stem!r} is {licence}: it cannot be enabled before the deployer supplies "
            f"its text. Copy {path.name} into SLUSSEN_CONTENT_DIR/forms/, put in the text you "
            "are licensed to use, remove demo = true and set text_supplied = true",
        )
    verify = doc.get("verify", "")
    if not isinstance(verify, str):
        error(where.top_key("verify"), "verify must be text")
        verify = ""
    elif verify:
        problems.append(Problem(path, where.top_key("verify"), f"verify: {verify}", True))

    option_sets = _option_sets(doc.get("option_sets", {}), where, error)
    items = _items(doc.get("items"), kind, option_sets, where, error)
    groups = _groups(doc.get("groups"), items, where, error)
    scores = _scores(doc.get("scores", []), kind, items, where, error)

    if any(not p.is_warning for p in problems) or title is None:
        return None, problems
    form = FormDef(
        id=str(form_id),
        version=int(version),
        kind=str(kind),
        title=title,
        instructions=instructions,
        recall_period=recall,
        licence=str(licence),
        enabled=bool(enabled),
        text_supplied=flags["text_supplied"],
        is_demo=flags["demo"],
        copyright=str(copyright_text),
        citation=str(citation),
        groups=groups,
        items=tuple(items.values()),
        scores=scores,
        verify=verify,
        source=path,
    )
    return form, problems


def _options(
    raw: Any, line: int, where: _Locator, error: Any, context: str
) -> tuple[Option, ...] | None:
    if not isinstance(raw, list) or not raw:
        error(line, f'{context}: options = [{{ code = 1, sv = "…", en = "…" }}, …] is missing')
        return None
    options: list[Option] = []
    seen: set[int] = set()
    ok = True
    for entry in raw:
        if not isinstance(entry, dict):
            error(line, f'{context}: each option is {{ code = 1, sv = "…", en = "…" }}')
            ok = False
            continue
        code = entry.get("code")
        at = where.text_after(line, f"code = {code}") if code is not None else line
        if not isinstance(code, int) or isinstance(code, bool):
            at = where.text_after(line, f"code = {code!r}".replace("'", '"'))
            error(at, f"{context}: option code {code!r} is not a whole number")
            ok = False
            continue
        if code in seen:
            error(at, f"{context}: option code {code} appears twice")
            ok = False
        seen.add(code)
        label = _label(entry)
        if label is None:
            error(at, f'{context}: option {code} needs sv = "…" (and en = "…")')
            ok = False
            continue
        options.append(Option(code, label))
    return tuple(options) if ok else None


def _option_sets(raw: Any, where: _Locator, error: Any) -> dict[str, tuple[Option, ...]]:
    sets: dict[str, tuple[Option, ...]] = {}
    if not isinstance(raw, dict):
        error(where.top_key("option_sets"), "option_sets must be [option_sets.NAME] tables")
        return sets
    for name, table in raw.items():
        line = where.table(f"option_sets.{name}")
        options = _options(
            table.get("options") if isinstance(table, dict) else None,
            where.key(f"option_sets.{name}", 0, "options"),
            where,
            error,
            f"option set {name!r}",
        )
        if options is not None:
            sets[name] = options
        elif not isinstance(table, dict):
            error(line, f"option set {name!r} must be a table")
    return sets


def _items(
    raw: Any,
    kind: str,
    option_sets: dict[str, tuple[Option, ...]],
    where: _Locator,
    error: Any,
) -> dict[str, Item]:
    items: dict[str, Item] = {}
    if not isinstance(raw, list) or not raw:
        error(1, "no [[items]] in the form")
        return items
    default_type = "choice" if kind == "instrument" else "tick"
    for index, entry in enumerate(raw):
        line = where.table("items", index)

        def at(key: str, index: int = index) -> int:
            return where.key("items", index, key)

        if not isinstance(entry, dict):
            error(line, "each item is an [[items]] table")
            continue
        item_id = entry.get("id")
        if not isinstance(item_id, str) or not _ID.match(item_id):
            error(at("id"), 'item needs id = "name" (lower-case letters, digits, _)')
            continue
        if item_id in items:
            error(at("id"), f"duplicate item id {item_id!r}")
            continue
        for key in sorted(set(entry) - ITEM_KEYS):
            error(at(key), f"item {item_id!r}: unknown key {key!r}")
        text = _label(entry.get("text"))
        if text is None:
            error(at("text"), f'item {item_id!r}: text = {{ sv = "…", en = "…" }} is missing')
            continue
        item_type = entry.get("type", default_type)
        if item_type not in ITEM_TYPES:
            error(
                at("type"),
                f"item {item_id!r}: unknown type {item_type!r} (known: {', '.join(ITEM_TYPES)})",
            )
            continue
        reverse = entry.get("reverse", False)
        if not isinstance(reverse, bool):
            error(at("reverse"), f"item {item_id!r}: reverse must be true or false")
            reverse = False
        required = entry.get("required", item_type == "choice")
        if not isinstance(required, bool):
            error(at("required"), f"item {item_id!r}: required must be true or false")
            required = False
        options: tuple[Option, ...] | None = ()
        if item_type == "choice":
            raw_options = entry.get("options")
            if isinstance(raw_options, str):
                options = option_sets.get(raw_options)
                if options is None:
                    error(at("options"), f"item {item_id!r}: no option set {raw_options!r}")
            else:
                options = _options(raw_options, at("options"), where, error, f"item {item_id!r}")
            if options is None:
                continue
        elif "options" in entry:
            error(at("options"), f"item {item_id!r}: a {item_type} item has no options")
        if item_type == "tick":
            options = TICK_OPTIONS
            required = False
        if reverse and item_type != "choice":
            error(at("reverse"), f"item {item_id!r}: only choice items can be reverse-keyed")
        items[item_id] = Item(
            item_id, text, str(item_type), options or (), bool(required), bool(reverse), at("id")
        )
    return items


def _groups(raw: Any, items: dict[str, Item], where: _Locator, error: Any) -> tuple[Group, ...]:
    groups: list[Group] = []
    placed: dict[str, str] = {}
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        error(where.top_key("groups"), "groups must be [[groups]] tables")
        raw = []
    for index, entry in enumerate(raw):
        line = where.table("groups", index)
        if not isinstance(entry, dict):
            error(line, "each group is a [[groups]] table")
            continue
        group_id = entry.get("id")
        if not isinstance(group_id, str) or not _ID.match(group_id):
            error(where.key("groups", index, "id"), 'group needs id = "name"')
            continue
        title = _label(entry.get("title"))
        if title is None:
            error(where.key("groups", index, "title"), f"group {group_id!r}: title is missing")
            continue
        members = entry.get("items")
        if not isinstance(members, list) or not members:
            error(where.key("groups", index, "items"), f"group {group_id!r}: items = [ids]")
            continue
        for member in members:
            if member not in items:
                error(
                    where.key("groups", index, "items"),
                    f"group {group_id!r}: unknown item {member!r}",
                )
            elif member in placed:
                error(
                    where.key("groups", index, "items"),
                    f"item {member!r} is in two groups ({placed[member]!r} and {group_id!r})",
                )
            else:
                placed[member] = group_id
        groups.append(Group(group_id, title, tuple(str(m) for m in members)))
    for item in items.values():
        if item.id not in placed:
            error(item.line, f"item {item.id!r} is in no group ([[groups]] items = [...])")
    return tuple(groups)


def _scores(
    raw: Any, kind: str, items: dict[str, Item], where: _Locator, error: Any
) -> tuple[Score, ...]:
    scores: list[Score] = []
    if not isinstance(raw, list):
        error(where.top_key("scores"), "scores must be [[scores]] tables")
        return ()
    if kind == "instrument" and not raw:
        error(1, 'an instrument needs at least one [[scores]] (or kind = "checklist")')
    seen: set[str] = set()
    for index, entry in enumerate(raw):

        def at(key: str, index: int = index) -> int:
            return where.key("scores", index, key)

        if not isinstance(entry, dict):
            error(where.table("scores", index), "each score is a [[scores]] table")
            continue
        score_id = entry.get("id")
        if not isinstance(score_id, str) or not _ID.match(score_id):
            error(at("id"), 'score needs id = "name"')
            continue
        if score_id in seen:
            error(at("id"), f"duplicate score id {score_id!r}")
            continue
        seen.add(score_id)
        ctx = f"score {score_id!r}"
        ok = True
        for key in sorted(set(entry) - SCORE_KEYS):
            error(at(key), f"{ctx}: unknown key {key!r}")
            ok = False
        label = _label(entry.get("label"))
        if label is None:
            error(at("label"), f'{ctx}: label = {{ sv = "…", en = "…" }} is missing')
            ok = False
        method = entry.get("method")
        if method not in METHODS:
            error(at("method"), f"{ctx}: unknown method {method!r} (known: {', '.join(METHODS)})")
            ok = False
        members = entry.get("items")
        used: list[Item] = []
        if not isinstance(members, list) or not members:
            error(at("items"), f"{ctx}: items = [ids] is missing")
            ok = False
            members = []
        for member in members:
            item = items.get(member) if isinstance(member, str) else None
            if item is None:
                error(at("items"), f"{ctx}: unknown item {member!r}")
                ok = False
            elif item.type == "text":
                error(at("items"), f"{ctx}: item {member!r} is free text and cannot be scored")
                ok = False
            else:
                used.append(item)
        if method == "item" and len(members) != 1:
            error(at("items"), f'{ctx}: method "item" takes exactly one item')
            ok = False
        direction = entry.get("direction")
        if direction not in DIRECTIONS:
            error(at("direction"), f"{ctx}: direction must be lower_better or higher_better")
            ok = False
        summary = entry.get("summary", "mean")
        if summary not in SUMMARIES:
            error(at("summary"), f"{ctx}: summary must be mean or share_positive")
            ok = False
        rng = entry.get("range")
        low = high = 0.0
        if (
            not isinstance(rng, list)
            or len(rng) != 2
            or _number(rng[0]) is None
            or _number(rng[1]) is None
            or float(rng[0]) > float(rng[1])
        ):
            error(at("range"), f"{ctx}: range = [min, max] with numbers, min ≤ max")
            ok = False
        else:
            low, high = float(rng[0]), float(rng[1])
        missing = entry.get("missing", {"max_missing": 0})
        max_missing, rule = 0, "none"
        if not isinstance(missing, dict):
            error(at("missing"), f"{ctx}: missing = {{ max_missing = 0 }}")
            ok = False
        else:
            max_missing = missing.get("max_missing", 0)
            rule = missing.get("rule", "prorate" if max_missing else "none")
            if not isinstance(max_missing, int) or isinstance(max_missing, bool):
                error(at("missing"), f"{ctx}: max_missing must be a whole number")
                ok, max_missing = False, 0
            elif not 0 <= max_missing < max(len(members), 1):
                error(at("missing"), f"{ctx}: max_missing must be from 0 to {len(members) - 1}")
                ok = False
            if rule not in MISSING_RULES:
                error(at("missing"), f'{ctx}: missing rule must be "prorate" or "none"')
                ok = False
            elif max_missing and rule != "prorate" and method in ("sum", "lookup"):
                error(at("missing"), f'{ctx}: a sum with missing items needs rule = "prorate"')
                ok = False
        lookup: dict[int, float] = {}
        if ok and used:
            possible_low, possible_high = _possible_raw(used)
            if method == "lookup":
                lookup = _lookup(entry.get("lookup"), ctx, at, error, possible_low, possible_high)
                ok = ok and bool(lookup)
                values = list(lookup.values())
                if values and (min(values) < low or max(values) > high):
                    error(at("lookup"), f"{ctx}: lookup values lie outside range [{low}, {high}]")
                    ok = False
            else:
                if "lookup" in entry:
                    error(at("lookup"), f'{ctx}: lookup needs method = "lookup"')
                    ok = False
                if method == "mean":
                    n = len(used)
                    possible_low, possible_high = possible_low / n, possible_high / n
                if (possible_low, possible_high) != (low, high):
                    error(
                        at("range"),
                        f"{ctx}: range [{low:g}, {high:g}] does not match the items "
                        f"(possible {possible_low:g}–{possible_high:g})",
                    )
                    ok = False
        cutoff = _cutoff(entry.get("cutoff"), ctx, at, error, low, high)
        if "cutoff" in entry and cutoff is None:
            ok = False
        if summary == "share_positive" and cutoff is None:
            error(at("summary"), f"{ctx}: summary = share_positive needs a cutoff")
            ok = False
        bands = _bands(entry.get("bands", []), ctx, at, error, low, high)
        if bands is None:
            ok = False
        reliability = _reliability(entry.get("reliability"), ctx, at, error)
        if "reliability" in entry and reliability is None:
            ok = False
        if not ok or label is None:
            continue
        scores.append(
            Score(
                id=score_id,
                label=label,
                method=str(method),
                items=tuple(i.id for i in used),
                low=low,
                high=high,
                direction=str(direction),
                max_missing=int(max_missing),
                missing_rule=str(rule),
                cutoff=cutoff,
                lookup=lookup,
                bands=bands or (),
                reliability=reliability,
                summary=str(summary),
            )
        )
    return tuple(scores)


def _possible_raw(used: list[Item]) -> tuple[float, float]:
    return float(sum(i.min_code for i in used)), float(sum(i.max_code for i in used))


def _lookup(raw: Any, ctx: str, at: Any, error: Any, low: float, high: float) -> dict[int, float]:
    if not isinstance(raw, dict) or not raw:
        error(at("lookup"), f'{ctx}: method "lookup" needs lookup = {{ "raw" = score, … }}')
        return {}
    table: dict[int, float] = {}
    for key, value in raw.items():
        try:
            raw_score = int(key)
        except ValueError:
            error(at("lookup"), f"{ctx}: lookup key {key!r} is not a whole raw score")
            return {}
        number = _number(value)
        if number is None:
            error(at("lookup"), f"{ctx}: lookup value for {key} is not a number")
            return {}
        table[raw_score] = number
    expected = set(range(int(low), int(high) + 1))
    absent = sorted(expected - set(table))
    extra = sorted(set(table) - expected)
    if absent:
        error(at("lookup"), f"{ctx}: lookup table is missing raw score(s) {absent}")
        return {}
    if extra:
        error(at("lookup"), f"{ctx}: lookup has raw score(s) {extra} the items cannot give")
        return {}
    return table


def _cutoff(raw: Any, ctx: str, at: Any, error: Any, low: float, high: float) -> Cutoff | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        error(at("cutoff"), f'{ctx}: cutoff = {{ value = 6, positive = "at_or_above" }}')
        return None
    value = _number(raw.get("value"))
    if value is None:
        error(at("cutoff"), f"{ctx}: cutoff value must be a number")
        return None
    if not low <= value <= high:
        error(
            at("cutoff"), f"{ctx}: cut-off {value:g} lies outside the score range {low:g}–{high:g}"
        )
        return None
    positive = raw.get("positive")
    if positive not in POSITIVE:
        error(at("cutoff"), f"{ctx}: cutoff positive must be at_or_above or at_or_below")
        return None
    label = _label(raw.get("label")) if "label" in raw else None
    return Cutoff(value, str(positive), label)


def _bands(
    raw: Any, ctx: str, at: Any, error: Any, low: float, high: float
) -> tuple[Band, ...] | None:
    if not isinstance(raw, list):
        error(at("bands"), f'{ctx}: bands = [{{ from = 0, to = 4, sv = "…", en = "…" }}, …]')
        return None
    bands = []
    for entry in raw:
        start = _number(entry.get("from")) if isinstance(entry, dict) else None
        end = _number(entry.get("to")) if isinstance(entry, dict) else None
        label = _label(entry)
        if start is None or end is None or label is None or start > end:
            error(at("bands"), f'{ctx}: each band is {{ from = 0, to = 4, sv = "…", en = "…" }}')
            return None
        if start < low or end > high:
            error(at("bands"), f"{ctx}: band {start:g}–{end:g} lies outside the score range")
            return None
        bands.append(Band(start, end, label))
    return tuple(bands)


def _reliability(raw: Any, ctx: str, at: Any, error: Any) -> Reliability | None:
    if raw is None:
        return None
    sd = _number(raw.get("sd")) if isinstance(raw, dict) else None
    rxx = _number(raw.get("rxx")) if isinstance(raw, dict) else None
    source = raw.get("source") if isinstance(raw, dict) else None
    if sd is None or rxx is None or not isinstance(source, str) or sd <= 0 or not 0 < rxx < 1:
        error(
            at("reliability"),
            f'{ctx}: reliability = {{ sd = 1.5, rxx = 0.8, source = "…" }} (sd > 0, 0 < rxx < 1)',
        )
        return None
    return Reliability(sd, rxx, source)


def check_forms(content: Content) -> list[Problem]:
    """The forms checker run by create_app and `slussen content check`."""
    problems: list[Problem] = []
    compiled: dict[str, FormDef] = {}
    for stem, doc in content.documents.get("forms", {}).items():
        path = content.sources["forms"][stem]
        form, found = compile_form(doc, path)
        problems.extend(found)
        if form is not None:
            compiled[stem] = form
    content.compiled["forms"] = compiled
    return problems


# --- the running app's forms -------------------------------------------------------------------


def forms() -> dict[str, FormDef]:
    """Every form of the running app, by id."""
    from flask import current_app

    result: dict[str, FormDef] = current_app.extensions["slussen.content"].compiled.get("forms", {})
    return result


def form(form_id: str) -> FormDef | None:
    return forms().get(form_id)


def interest_areas(lang: str = "sv") -> dict[str, str]:
    """The interest areas (tick items of forms/interest_mapping.toml), id → text, in file order."""
    mapping = form("interest_mapping")
    if mapping is None:
        return {}
    return {i.id: i.text.get(lang) for i in mapping.items if i.type == "tick"}


def barrier_ids() -> tuple[str, ...]:
    """The barrier ids (tick items of forms/barriers.toml), in file order."""
    barriers = form("barriers")
    if barriers is None:
        return ()
    return tuple(i.id for i in barriers.items if i.type == "tick")


def barrier_labels(lang: str = "sv") -> dict[str, str]:
    barriers = form("barriers")
    if barriers is None:
        return {}
    return {i.id: i.text.get(lang) for i in barriers.items if i.type == "tick"}
