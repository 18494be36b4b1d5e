"""The workflow as data: load `workflows/sluss.toml`, check it, and build the `Workflow` the engine
interprets. Every problem is reported with the file and line it comes from."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dateutil.relativedelta import relativedelta

from slussen.accounts.roles import Role
from slussen.cases.guards import Guard
from slussen.content import Content, Problem
from slussen.i18n import Label

WORKFLOW_FILE = "sluss"
EXTRA_ROLES = ("system", "patient")
#: The questionnaire occasions of `[questionnaires]`: baseline and screening are sent together
#: with the invitation; six_month with the evaluation.
QUESTIONNAIRE_LISTS = ("baseline", "screening", "six_month")
#: What an event may require: a reason, a note, the booked visit, the hand-over it answers.
DATA_KINDS = ("reason", "note", "visit", "handover")
#: `to = "*"`: the transition leaves the case in the state it fired in (a fact about the case
#: that is not a step, e.g. a positive screening), in any of its `from` states.
STAY = "*"
#: `to = "<previous>"`: the transition takes the case back to the state it was in before it
#: entered the current one (reopening a closed case); the only kind that may leave a terminal
#: state. The engine reads that state from the case's history.
PREVIOUS = "<previous>"
#: The values a transition's `screening = "…"` may give the case's screening flag.
SCREENING_VALUES = ("positive", "resolved")
_DURATION = re.compile(r"^(\d{1,3})([dwm])$")


@dataclass(frozen=True)
class State:
    name: str
    label: Label
    is_terminal: bool
    next_action: Label | None


@dataclass(frozen=True)
class Transition:
    event: str
    label: Label
    from_states: frozenset[str]
    to: str
    roles: frozenset[str]
    guards: tuple[str, ...]
    letters: tuple[str, ...]
    due: dict[str, str]
    clear: tuple[str, ...]
    requires: tuple[str, ...]
    #: What firing it writes into the case's screening flag (None: leaves it).
    screening: str | None = None
    #: `confirm = true`: a person firing it must confirm it and give a reason (an irreversible
    #: step such as closing); the daily tick and the patient's own answers are not asked.
    is_confirmed_step: bool = False

    def target(self, state: str, previous: str | None = None) -> str:
        """The state the case is in after firing from `state` (`previous`: the state it was in
        before, for a transition that goes back to it)."""
        if self.to == STAY:
            return state
        if self.to == PREVIOUS:
            return previous or state
        return self.to

    @property
    def goes_back(self) -> bool:
        """The transition takes the case back to its previous state (reopening)."""
        return self.to == PREVIOUS


@dataclass(frozen=True)
class Timer:
    due: str
    states: frozenset[str]
    event: str


@dataclass(frozen=True)
class Parts:
    """`[parts.events]` and `[parts.states]`: the workflow's words for the code's parts."""

    events: dict[str, str]
    states: dict[str, frozenset[str]]


# --- the parts the code needs --------------------------------------------------------------------
# Code outside the engine never names a state or an event: it declares, at module level, the part
# it needs played (`BOOKS_VISIT = needs_event("books_mapping_visit")`) and asks the loaded workflow
# which event or states play it. The content check refuses a workflow that leaves a needed part
# unplayed, naming the file and line of each declaration.


@dataclass(frozen=True)
class EventPart:
    """A part an event plays ("the event that books the mapping visit")."""

    name: str


@dataclass(frozen=True)
class StatesPart:
    """A part some states play ("the states where baseline answers are expected")."""

    name: str


@dataclass(frozen=True)
class Need:
    """One declaration of a needed part, with where it is in the code."""

    kind: Literal["event", "states"]
    part: str
    path: Path
    line: int


_NEEDS: list[Need] = []


def _declare(kind: Literal["event", "states"], part: str) -> None:
    caller = sys._getframe(2)
    _NEEDS.append(Need(kind, part, Path(caller.f_code.co_filename), caller.f_lineno))


def needs_event(part: str) -> EventPart:
    """Declare (at module level) that the calling code needs an event playing `part`."""
    _declare("event", part)
    return EventPart(part)


def needs_states(part: str) -> StatesPart:
    """Declare (at module level) that the calling code needs the states playing `part`."""
    _declare("states", part)
    return StatesPart(part)


def declared_needs() -> list[Need]:
    """Every part the code declares it needs. Imports every module of `slussen` first, so each
    module-level declaration has run whichever of them were imported before (discovery, not
    dependency: no module imports another to get its declarations)."""
    import slussen

    for module in pkgutil.walk_packages(slussen.__path__, "slussen."):
        importlib.import_module(module.name)
    return list(_NEEDS)


def unplayed_parts(workflow: Workflow, needs: Iterable[Need]) -> list[Problem]:
    """A problem at the code's file:line for each needed part the workflow does not play (or
    plays with the other kind), and a warning for a declared part no code needs."""
    problems = []
    needed: set[str] = set()
    for need in needs:
        needed.add(need.part)
        declared = workflow.parts.events if need.kind == "event" else workflow.parts.states
        other = workflow.parts.states if need.kind == "event" else workflow.parts.events
        if need.part in declared:
            continue
        table = f"[parts.{'events' if need.kind == 'event' else 'states'}]"
        hint = f" ({need.part!r} is declared in the other table)" if need.part in other else ""
        problems.append(
            Problem(
                need.path,
                need.line,
                f"the code needs the part {need.part!r}, but {workflow.source} does not declare "
                f"it in {table}{hint}",
            )
        )
    where = _Locator(
        workflow.source.read_text(encoding="utf-8") if workflow.source.exists() else ""
    )
    for kind, declared_parts in (
        ("events", workflow.parts.events),
        ("states", workflow.parts.states),
    ):
        for part in sorted(set(declared_parts) - needed):
            problems.append(
                Problem(
                    workflow.source,
                    where.key(f"parts.{kind}", 0, part),
                    f"[parts.{kind}]: no code needs the part {part!r}",
                    is_warning=True,
                )
            )
    return problems


@dataclass(frozen=True)
class Workflow:
    id: str
    version: int
    initial: str
    roles: frozenset[str]
    states: dict[str, State]
    transitions: dict[str, Transition]
    timers: tuple[Timer, ...]
    opening_due: dict[str, str] = field(default_factory=dict)
    #: Form ids per list ("baseline", "screening", "six_month") from `[questionnaires]`.
    questionnaires: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: `[parts]`: the event or the states playing each part the code needs.
    parts: Parts = field(default_factory=lambda: Parts({}, {}))
    source: Path = field(default=Path("sluss.toml"), compare=False)
    #: The guard functions by the names the file uses (cases' own and those of the
    #: capabilities above, gathered by `slussen.capabilities`).
    guard_functions: Mapping[str, Guard] = field(default_factory=dict, compare=False, repr=False)

    def state(self, name: str) -> State:
        return self.states[name]

    def event_for(self, part: EventPart) -> str:
        """The name of the event playing `part` (the content check made sure there is one)."""
        return self.parts.events[part.name]

    def transition_for(self, part: EventPart) -> Transition:
        """The transition of the event playing `part`."""
        return self.transitions[self.event_for(part)]

    def states_for(self, part: StatesPart) -> frozenset[str]:
        """The states playing `part`."""
        return self.parts.states[part.name]

    def can_fire(self, part: EventPart, state: str) -> bool:
        """Whether the event playing `part` may fire in `state` (by the table; the actor's
        role and the guards are the engine's to judge)."""
        return state in self.transition_for(part).from_states

    def events_from(self, state: str) -> list[Transition]:
        """Transitions that may fire in `state`, in file order."""
        return [t for t in self.transitions.values() if state in t.from_states]

    @property
    def active_states(self) -> list[str]:
        return [s.name for s in self.states.values() if not s.is_terminal]

    @property
    def terminal_states(self) -> list[str]:
        return [s.name for s in self.states.values() if s.is_terminal]


@functools.lru_cache(maxsize=8192)
def add_duration(start: Any, duration: str) -> Any:
    """`start` plus "14d" / "4w" / "6m" (calendar months). Memoised: the same days and
    durations recur (a demo of 100,000 cases computes a few hundred thousand due dates)."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"bad duration {duration!r}")
    amount, unit = int(match.group(1)), match.group(2)
    if unit == "d":
        return start + relativedelta(days=amount)
    if unit == "w":
        return start + relativedelta(weeks=amount)
    return start + relativedelta(months=amount)


class _Locator:
    """Finds the line of a table or key in the TOML text (tomllib gives no positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def _find(self, pattern: str, start: int = 0) -> int | None:
        regex = re.compile(pattern)
        for number in range(start, len(self.lines)):
            if regex.match(self.lines[number].strip()):
                return number
        return None

    def table(self, header: str, index: int = 0) -> int:
        """1-based line of the index-th `[header]` / `[[header]]`."""
        found = -1
        for number, line in enumerate(self.lines):
            stripped = line.strip()
            if stripped in (f"[{header}]", f"[[{header}]]"):
                found += 1
                if found == index:
                    return number + 1
        return 1

    def key(self, header: str, index: int, key: str) -> int:
        start = self.table(header, index)
        end = self._find(r"^\[", start)
        limit = end if end is not None else len(self.lines)
        for number in range(start, limit):
            if re.match(rf"^{re.escape(key)}\s*=", self.lines[number].strip()):
                return number + 1
        return start

    def top_key(self, key: str) -> int:
        number = self._find(rf"^{re.escape(key)}\s*=")
        return number + 1 if number is not None else 1


def _label(value: Any) -> Label | None:
    if isinstance(value, dict) and isinstance(value.get("sv"), str):
        return Label(sv=value["sv"], en=str(value.get("en", value["sv"])))
    return None


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def compile_workflow(
    doc: dict[str, Any],
    path: Path,
    *,
    guards: Iterable[str],
    letters: Iterable[str],
    forms: Iterable[str] | None = None,
) -> tuple[Workflow | None, list[Problem]]:
    """Check a parsed workflow file and build the Workflow; None when there is any error."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    where = _Locator(text)
    problems: list[Problem] = []

    def error(line: int, message: str) -> None:
        problems.append(Problem(path, line, message))

    known_guards, known_letters = set(guards), set(letters)
    roles_value = _strings(doc.get("roles", [])) or []
    known_roles = {r.value for r in Role} | set(EXTRA_ROLES)
    for role in roles_value:
        if role not in known_roles:
            error(where.top_key("roles"), f"unknown role {role!r} (known: {sorted(known_roles)})")
    roles = frozenset(roles_value)

    states: dict[str, State] = {}
    raw_states = doc.get("states")
    if not isinstance(raw_states, dict) or not raw_states:
        error(1, "no [states.*] tables")
        raw_states = {}
    for name, raw in raw_states.items():
        line = where.table(f"states.{name}")
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name):
            error(line, f"state name {name!r} must be lower-case letters, digits and _")
        label = _label(raw.get("label") if isinstance(raw, dict) else None)
        if label is None:
            error(line, f'state {name!r} needs label = {{ sv = "…", en = "…" }}')
            continue
        is_terminal = bool(raw.get("terminal", False))
        states[name] = State(name, label, is_terminal, _label(raw.get("next")))

    initial = doc.get("initial")
    if initial not in states:
        error(where.top_key("initial"), f"initial state {initial!r} is not a declared state")

    transitions: dict[str, Transition] = {}
    raw_transitions = doc.get("transitions", [])
    if not isinstance(raw_transitions, list):
        error(where.top_key("transitions"), "transitions must be [[transitions]] tables")
        raw_transitions = []
    for index, raw in enumerate(raw_transitions):
        line = where.table("transitions", index)

        def at(key: str, index: int = index) -> int:
            return where.key("transitions", index, key)

        event = raw.get("event")
        if not isinstance(event, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", event):
            error(line, 'transition needs event = "name" (lower-case, _)')
            continue
        if event in transitions:
            error(at("event"), f"event {event!r} is declared twice")
            continue
        label = _label(raw.get("label")) or Label(event, event)
        from_states = _strings(raw.get("from"))
        if not from_states:
            error(at("from"), f'event {event!r}: from = ["state", …] is missing')
            from_states = []
        for state in from_states:
            if state not in states:
                error(at("from"), f"event {event!r}: unknown state {state!r} in from")
            elif states[state].is_terminal and raw.get("to") != PREVIOUS:
                error(
                    at("from"),
                    f"event {event!r}: {state!r} is terminal; only a transition with "
                    f'to = "{PREVIOUS}" (reopening) leaves it',
                )
        to = raw.get("to")
        if to not in (STAY, PREVIOUS) and to not in states:
            error(at("to"), f"event {event!r}: unknown state {to!r} in to")
        screening = raw.get("screening")
        if screening is not None and screening not in SCREENING_VALUES:
            error(
                at("screening"),
                f"event {event!r}: screening = {' | '.join(map(repr, SCREENING_VALUES))}",
            )
            screening = None
        t_roles = _strings(raw.get("roles")) or []
        if not t_roles:
            error(at("roles"), f'event {event!r}: roles = ["coach", …] is missing')
        for role in t_roles:
            if role not in roles:
                error(at("roles"), f"event {event!r}: unknown role {role!r}")
        t_guards = _strings(raw.get("guards", [])) or []
        for guard in t_guards:
            if guard not in known_guards:
                error(
                    at("guards"),
                    f"event {event!r}: unknown guard {guard!r} "
                    f"(known: {', '.join(sorted(known_guards))})",
                )
        t_letters = _strings(raw.get("letters", [])) or []
        for letter in t_letters:
            if letter not in known_letters:
                error(
                    at("letters"), f"event {event!r}: letter {letter!r} has no template in letters/"
                )
        due = raw.get("due", {})
        if not isinstance(due, dict) or not all(
            isinstance(v, str) and _DURATION.match(v) for v in due.values()
        ):
            error(at("due"), f'event {event!r}: due = {{ name = "14d" | "4w" | "6m" }}')
            due = {}
        confirm = raw.get("confirm", False)
        if not isinstance(confirm, bool):
            error(at("confirm"), f"event {event!r}: confirm = true | false")
            confirm = False
        clear = _strings(raw.get("clear", [])) or []
        requires = _strings(raw.get("requires", [])) or []
        for kind in requires:
            if kind not in DATA_KINDS:
                error(
                    at("requires"),
                    f"event {event!r}: unknown data {kind!r} (known: {', '.join(DATA_KINDS)})",
                )
        unknown_keys = set(raw) - {
            "event",
            "label",
            "from",
            "to",
            "roles",
            "guards",
            "letters",
            "due",
            "clear",
            "requires",
            "screening",
            "confirm",
        }
        for key in sorted(unknown_keys):
            error(at(key), f"event {event!r}: unknown key {key!r}")
        transitions[event] = Transition(
            event=event,
            label=label,
            from_states=frozenset(from_states),
            to=str(to),
            roles=frozenset(t_roles),
            guards=tuple(t_guards),
            letters=tuple(t_letters),
            due=dict(due),
            clear=tuple(clear),
            requires=tuple(requires),
            screening=screening,
            is_confirmed_step=confirm,
        )

    timers: list[Timer] = []
    due_names = {name for t in transitions.values() for name in t.due}
    for index, raw in enumerate(doc.get("timers", []) or []):
        line = where.table("timers", index)
        event = raw.get("event")
        timer_states = _strings(raw.get("states")) or []
        if event not in transitions:
            error(where.key("timers", index, "event"), f"timer: unknown event {event!r}")
            continue
        if raw.get("due") not in due_names:
            error(
                where.key("timers", index, "due"),
                f"timer: no transition sets the due date {raw.get('due')!r}",
            )
        for state in timer_states:
            if state not in states:
                error(where.key("timers", index, "states"), f"timer: unknown state {state!r}")
            elif state not in transitions[event].from_states:
                error(
                    where.key("timers", index, "states"),
                    f"timer: event {event!r} cannot fire in state {state!r}",
                )
        if "system" not in transitions[event].roles:
            error(line, f'timer: event {event!r} must allow the role "system"')
        timers.append(Timer(str(raw.get("due")), frozenset(timer_states), str(event)))

    opening_due = doc.get("opening_due", {})
    if not isinstance(opening_due, dict) or not all(
        isinstance(v, str) and _DURATION.match(v) for v in opening_due.values()
    ):
        error(where.top_key("opening_due"), 'opening_due = { name = "3d" | "4w" | "6m" }')
        opening_due = {}
    questionnaires = _questionnaires(doc.get("questionnaires", {}), forms, where, error)
    parts = _parts(doc.get("parts", {}), states, transitions, where, error)
    for key in sorted(
        set(doc)
        - {
            "id",
            "version",
            "initial",
            "roles",
            "opening_due",
            "states",
            "transitions",
            "timers",
            "questionnaires",
            "parts",
        }
    ):
        error(where.top_key(key), f"unknown key {key!r}")
    if not problems:
        problems.extend(_check_graph(states, transitions, str(initial), where))
    if any(not p.is_warning for p in problems):
        return None, problems
    workflow = Workflow(
        id=str(doc.get("id", WORKFLOW_FILE)),
        version=int(doc.get("version", 1)),
        initial=str(initial),
        roles=roles,
        states=states,
        transitions=transitions,
        timers=tuple(timers),
        opening_due=dict(opening_due),
        questionnaires=questionnaires,
        parts=parts,
        source=path,
    )
    return workflow, problems


def _parts(
    raw: Any,
    states: dict[str, State],
    transitions: dict[str, Transition],
    where: _Locator,
    error: Any,
) -> Parts:
    """`[parts.events] part = "event"` and `[parts.states] part = ["state", …]`: each value must
    be a declared event, or declared states."""
    events: dict[str, str] = {}
    state_parts: dict[str, frozenset[str]] = {}
    if not isinstance(raw, dict):
        error(where.top_key("parts"), "parts must be [parts.events] and [parts.states] tables")
        return Parts(events, state_parts)
    for key in sorted(set(raw) - {"events", "states"}):
        error(where.table("parts"), f"[parts]: unknown table {key!r} (known: events, states)")
    raw_events = raw.get("events", {})
    raw_states = raw.get("states", {})
    if not isinstance(raw_events, dict) or not isinstance(raw_states, dict):
        error(where.table("parts"), "parts must be [parts.events] and [parts.states] tables")
        return Parts(events, state_parts)
    for part, value in raw_events.items():
        line = where.key("parts.events", 0, part)
        if not isinstance(value, str) or value not in transitions:
            error(line, f"[parts.events]: {part} = {value!r} is not a declared event")
            continue
        events[part] = value
    for part, value in raw_states.items():
        line = where.key("parts.states", 0, part)
        names = _strings(value)
        if not names:
            error(line, f'[parts.states]: {part} = ["state", …]')
            continue
        unknown = [name for name in names if name not in states]
        if unknown:
            error(line, f"[parts.states]: {part}: unknown state(s) {', '.join(map(repr, unknown))}")
            continue
        state_parts[part] = frozenset(names)
    return Parts(events, state_parts)


def _questionnaires(
    raw: Any, forms: Iterable[str] | None, where: _Locator, error: Any
) -> dict[str, tuple[str, ...]]:
    """`[questionnaires] baseline = [...]; screening = [...]; six_month = [...]`: form ids that
    must exist in forms/ (when `forms` is given)."""
    known = set(forms) if forms is not None else None
    result: dict[str, tuple[str, ...]] = {}
    if not isinstance(raw, dict):
        error(where.top_key("questionnaires"), "questionnaires must be a [questionnaires] table")
        return result
    for key, value in raw.items():
        line = where.key("questionnaires", 0, key)
        if key not in QUESTIONNAIRE_LISTS:
            error(
                line,
                f"[questionnaires]: unknown list {key!r} (known: {', '.join(QUESTIONNAIRE_LISTS)})",
            )
            continue
        ids = _strings(value)
        if ids is None:
            error(line, f'[questionnaires]: {key} = ["form", …]')
            continue
        for form_id in ids:
            if known is not None and form_id not in known:
                error(line, f"form {form_id!r} does not exist (no forms/{form_id}.toml)")
            if ids.count(form_id) > 1:
                error(line, f"[questionnaires]: form {form_id!r} is listed twice in {key}")
                break
        result[key] = tuple(ids)
    overlap = set(result.get("baseline", ())) & set(result.get("screening", ()))
    if overlap:
        error(
            where.table("questionnaires"),
            f"[questionnaires]: {sorted(overlap)} in both baseline and screening",
        )
    return result


def _check_graph(
    states: dict[str, State], transitions: dict[str, Transition], initial: str, where: _Locator
) -> list[Problem]:
    path = Path("")
    problems = []
    reachable = {initial}
    changed = True
    while changed:
        changed = False
        for t in transitions.values():
            if t.to not in (STAY, PREVIOUS) and t.from_states & reachable and t.to not in reachable:
                reachable.add(t.to)
                changed = True
    for name, state in states.items():
        line = where.table(f"states.{name}")
        if name not in reachable:
            problems.append(
                Problem(path, line, f"state {name!r} cannot be reached from {initial!r}")
            )
        leaves = any(
            name in t.from_states and t.to not in (STAY, PREVIOUS, name)
            for t in transitions.values()
        )
        if not state.is_terminal and not leaves:
            problems.append(
                Problem(path, line, f"state {name!r} is not terminal but has no way out")
            )
    return problems


def check_workflow(content: Content, guards: Mapping[str, Guard]) -> list[Problem]:
    """The workflow checker run by create_app and `slussen content check`: refuses a workflow
    that names a guard not in `guards`, a letter or form that does not exist, or a broken graph."""
    documents = content.documents.get("workflows", {})
    source = content.sources.get("workflows", {}).get(WORKFLOW_FILE)
    directory = content.root["workflows"]
    if WORKFLOW_FILE not in documents or source is None:
        return [Problem(directory / f"{WORKFLOW_FILE}.toml", 1, "the workflow file is missing")]
    workflow, problems = compile_workflow(
        documents[WORKFLOW_FILE],
        source,
        guards=guards,
        letters=content.documents.get("letters", {}).keys(),
        forms=content.documents.get("forms", {}).keys(),
    )
    # Graph problems are created without a path; give them the file.
    problems = [
        p if p.path != Path("") else Problem(source, p.line, p.message, p.is_warning)
        for p in problems
    ]
    if workflow is not None:
        problems.extend(unplayed_parts(workflow, declared_needs()))
        if not any(not p.is_warning for p in problems):
            content.compiled["workflow"] = dataclasses.replace(workflow, guard_functions=guards)
    return problems
