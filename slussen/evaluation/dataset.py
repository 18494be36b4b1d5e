"""The pseudonymised case stream: the cases matching the evaluator's filters, in batches of
columns (numpy arrays), read in one pass. The page, the CSV and the PDF all use it.

Where the numbers come from, each read with one Core statement:

* the cases with their patient's birth year and sex (filtered in SQL, in case id order, handed
  on in batches of `READ_BATCH`; SQLite's rows are read a batch at a time, PostgreSQL packs each
  column into one value, numbers as float8s and texts joined);
* per milestone event, every (case id, moment) of that event, from the index `(event, case_id,
  occurred_at)` alone; the earliest moment per case counts;
* the first action plan and the first hand-over marked done per case;
* per score and occasion, every non-null (case id, value, score row id), from the index
  `(form_id, score_id, occasion, case_id, id, value, is_positive)` alone; the row with the
  highest id per case counts, so a later answer with a value replaces an earlier one;
* the cases with a positive screening score.

These side columns are numbers only (an array per column, read whole: from the driver's cursor
on SQLite, packed into one bytea per column by PostgreSQL) and are matched to each batch of
cases by case id with a binary search; no ORM object or SQLAlchemy row is built, no identity is
decrypted, no free text is read, and nothing runs per case in Python. `CaseBatch` holds what an
evaluator may see about the cases of one batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    ColumnElement,
    Double,
    Float,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from slussen.cases.models import CHANNELS, Case, CaseEvent
from slussen.cases.workflow import Workflow, needs_event
from slussen.evaluation.definitions import ScoreDefinition
from slussen.patients.models import Patient
from slussen.questionnaires.models import QuestionnaireScore
from slussen.visits.models import ActionPlan, Handover

#: The main steps of the flow, in order. A case has passed a step when it reached that step's
#: milestone or any later one (follow-up 1 may be skipped when the six-month evaluation is sent
#: straight from the active plan), so each step's count includes the next step's.
STEPS = (
    "referral",
    "invitation",
    "baseline",
    "mapping_visit",
    "action_plan",
    "follow_up_1",
    "six_month",
    "complete_pair",
)
#: "Of whom" rows: counted among the cases that passed the step named.
SUB_STEPS = {"screen_positive": "baseline", "handover_done": "action_plan"}
#: The parts whose events mark a milestone (the workflow names the events).
MILESTONE_PARTS = {
    "invitation": needs_event("invites"),
    "baseline": needs_event("registers_baseline"),
    "mapping_visit": needs_event("records_mapping_visit"),
    "follow_up_1": needs_event("records_follow_up_1"),
    "six_month": needs_event("registers_evaluation"),
}
#: The columns of `CaseBatch.days`: every step's milestone and the first hand-over done.
MOMENTS = (
    "referral",
    "invitation",
    "baseline",
    "mapping_visit",
    "action_plan",
    "handover_done",
    "follow_up_1",
    "six_month",
    "complete_pair",
)
#: For each step in STEPS, its column in `CaseBatch.days`.
STEP_COLUMNS = tuple(MOMENTS.index(step) for step in STEPS)
SEXES = ("female", "male", "unknown")
AGE_BANDS = ("0-17", "18-29", "30-44", "45-64", "65-79", "80+", "unknown")
_BAND_LOWS = ((80, "80+"), (65, "65-79"), (45, "45-64"), (30, "30-44"), (18, "18-29"), (0, "0-17"))
DIMENSIONS = ("unit", "channel", "age_band", "sex")
OPEN = "open"
OCCASIONS = ("baseline", "six_month")
READ_BATCH = 20_000
#: Rows of (case id, number) converted at a time.
SIDE_BATCH = 100_000

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Objects = NDArray[np.object_]


def age_band(age: int | None) -> str:
    """The band of an age in whole years at referral (birth year to referral year)."""
    if age is None or age < 0:
        return "unknown"
    for low, band in _BAND_LOWS:
        if age >= low:
            return band
    return "unknown"  # pragma: no cover


def age_bands(ages: Floats) -> Objects:
    """`age_band` of each age (NaN: unknown), vectorised."""
    result = np.full(len(ages), "unknown", dtype=object)
    known = ~np.isnan(ages)
    done = ~known | (ages < 0)
    for low, band in _BAND_LOWS:
        chosen = ~done & (ages >= low)
        result[chosen] = band
        done |= chosen
    return result


@dataclass(frozen=True)
class Filters:
    """What the evaluator chose. The period is the day of referral, both ends included."""

    date_from: dt.date | None = None
    date_to: dt.date | None = None
    unit_id: int | None = None
    channel: str | None = None
    age_band: str | None = None
    sex: str | None = None

    def __post_init__(self) -> None:
        if self.channel is not None and self.channel not in CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r}")
        if self.age_band is not None and self.age_band not in AGE_BANDS:
            raise ValueError(f"unknown age band {self.age_band!r}")
        if self.sex is not None and self.sex not in SEXES:
            raise ValueError(f"unknown sex {self.sex!r}")


@dataclass
class CaseRecord:
    """What an evaluator may know about one case, as plain values (`CaseBatch.from_records` packs
    records into a batch; the stream itself never builds them)."""

    case_id: int
    unit_id: int
    channel: str
    age_band: str
    sex: str
    #: "open" or the terminal state (the reason for closure).
    status: str
    #: The day (Swedish time) each of MOMENTS was first reached; None when not reached.
    moments: dict[str, dt.date | None]
    is_screen_positive: bool = False
    #: {score key: (baseline, six_month)} with None for a missing value.
    scores: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DATE = _EPOCH.date()


def day_number(day: dt.date | None) -> float:
    """Days since 1970-01-01 (NaN for None): how `CaseBatch.days` holds a date."""
    return float("nan") if day is None else float((day - _EPOCH_DATE).days)


@dataclass
class CaseBatch:
    """A batch of cases as columns, one entry per case, in case id order. Days are whole days
    since 1970-01-01 in Swedish time (NaN: not reached), scores NaN when missing."""

    case_id: Ints
    unit_id: Ints
    channel: Objects
    age_band: Objects
    sex: Objects
    #: "open" or the terminal state.
    status: Objects
    #: (cases, len(MOMENTS)); complete_pair is the six-month day (or the latest day known) of a
    #: case with at least one complete pair.
    days: Floats
    is_screen_positive: NDArray[np.bool_]
    #: The score keys of `scores`' second axis.
    keys: tuple[str, ...]
    #: (cases, len(keys), 2): baseline and six-month value.
    scores: Floats

    def __len__(self) -> int:
        return len(self.case_id)

    def group(self, dimension: str) -> Objects | Ints:
        """Each case's group in `dimension` (unit id, channel, age band or sex)."""
        column: Objects | Ints = getattr(self, "unit_id" if dimension == "unit" else dimension)
        return column

    @property
    def has_complete_pair(self) -> NDArray[np.bool_]:
        """At least one score with both a baseline and a six-month value."""
        complete: NDArray[np.bool_] = np.any(~np.isnan(self.scores).any(axis=2), axis=1)
        return complete

    @property
    def step_days(self) -> Floats:
        """The days of STEPS, in that order."""
        return self.days[:, STEP_COLUMNS]

    @classmethod
    def from_records(cls, records: Iterable[CaseRecord], keys: Sequence[str] = ()) -> CaseBatch:
        """Pack records as they are (complete_pair included: the stream derives it)."""
        listed = list(records)
        days = np.array(
            [[day_number(r.moments.get(m)) for m in MOMENTS] for r in listed], dtype=np.float64
        ).reshape(len(listed), len(MOMENTS))
        scores = np.array(
            [
                [
                    [np.nan if v is None else v for v in r.scores.get(key, (None, None))]
                    for key in keys
                ]
                for r in listed
            ],
            dtype=np.float64,
        ).reshape(len(listed), len(keys), 2)

        def objects(values: Iterable[str]) -> Objects:
            result = np.empty(len(listed), dtype=object)
            result[:] = list(values)
            return result

        batch = cls(
            case_id=np.array([r.case_id for r in listed], dtype=np.int64),
            unit_id=np.array([r.unit_id for r in listed], dtype=np.int64),
            channel=objects(r.channel for r in listed),
            age_band=objects(r.age_band for r in listed),
            sex=objects(r.sex for r in listed),
            status=objects(r.status for r in listed),
            days=days,
            is_screen_positive=np.array([r.is_screen_positive for r in listed], dtype=bool),
            keys=tuple(keys),
            scores=scores,
        )
        return batch


def _set_complete_pair(batch: CaseBatch) -> None:
    complete = MOMENTS.index("complete_pair")
    six_month = batch.days[:, MOMENTS.index("six_month")]
    latest = np.fmax.reduce(batch.days[:, :complete], axis=1)
    day = np.where(np.isnan(six_month), latest, six_month)
    batch.days[:, complete] = np.where(batch.has_complete_pair, day, np.nan)


class epoch(FunctionElement[float]):
    """Seconds since 1970 (UTC) of a UTC timestamp column, as a float: no datetime objects to
    build per row."""

    type = Float()
    inherit_cache = True


@compiles(epoch, "sqlite")
def _epoch_sqlite(element: epoch, compiler: SQLCompiler, **kw: object) -> str:
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


@compiles(epoch, "postgresql")
def _epoch_postgresql(element: epoch, compiler: SQLCompiler, **kw: object) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS FLOAT8)"


def _case_filters(filters: Filters, unit_ids: frozenset[int] | None, timezone: ZoneInfo) -> list:  # type: ignore[type-arg]
    conditions: list[ColumnElement[bool]] = []
    if unit_ids is not None:
        conditions.append(Case.unit_id.in_(sorted(unit_ids)))
    if filters.unit_id is not None:
        conditions.append(Case.unit_id == filters.unit_id)
    if filters.channel is not None:
        conditions.append(Case.channel == filters.channel)
    if filters.date_from is not None:
        start = dt.datetime.combine(filters.date_from, dt.time(), timezone).astimezone(dt.UTC)
        conditions.append(Case.opened_at >= start)
    if filters.date_to is not None:
        end_day = filters.date_to + dt.timedelta(days=1)
        end = dt.datetime.combine(end_day, dt.time(), timezone).astimezone(dt.UTC)
        conditions.append(Case.opened_at < end)
    if filters.sex == "unknown":
        conditions.append(Patient.sex.is_(None))
    elif filters.sex is not None:
        conditions.append(Patient.sex == filters.sex)
    return conditions


def cases_query(conditions: list) -> Select:  # type: ignore[type-arg]
    """The cases matching `conditions`, one row each, in case id order: the numbers (id, unit id,
    referral moment, patient's birth year, 1.0 when a staff member flagged a positive screening)
    first, then the texts (channel, state, patient's sex)."""
    return (
        select(
            Case.id,
            Case.unit_id,
            epoch(Case.opened_at),
            Patient.birth_year,
            case((Case.screening_flag.is_not(None), 1.0), else_=0.0),
            Case.channel,
            Case.state,
            Patient.sex,
        )
        .join(Patient, Patient.id == Case.patient_id)
        .where(and_(literal(True), *conditions))
        .order_by(Case.id)
    )


#: The number of leading number columns of `cases_query`.
CASE_NUMBERS = 5
#: What separates the texts `_packed_cases` joins: never in a channel, a sex or a state (the
#: workflow allows `[a-z][a-z0-9_]` names only).
_TEXT_SEPARATOR = "\x1f"


class _Cases(NamedTuple):
    """A batch of `cases_query`'s rows as columns."""

    #: (cases, CASE_NUMBERS), in `cases_query`'s order; NaN for a missing birth year.
    numbers: Floats
    channel: Objects
    state: Objects
    #: "" for an unknown sex.
    sex: Objects

    @property
    def case_id(self) -> Ints:
        return self.numbers[:, 0].astype(np.int64)

    @property
    def unit_id(self) -> Ints:
        return self.numbers[:, 1].astype(np.int64)

    @property
    def opened(self) -> Floats:
        """Seconds since 1970 (UTC) of the referral."""
        return self.numbers[:, 2]

    @property
    def birth_year(self) -> Floats:
        return self.numbers[:, 3]

    @property
    def is_flagged_positive(self) -> NDArray[np.bool_]:
        """A staff member flagged a positive screening."""
        flagged: NDArray[np.bool_] = self.numbers[:, 4] == 1.0
        return flagged


def _case_batches(connection: Connection, query: Select) -> Iterator[_Cases]:  # type: ignore[type-arg]
    """`cases_query`'s rows, `READ_BATCH` cases at a time, in case id order. On PostgreSQL the
    server packs every column into one value (`_packed_cases`); on SQLite the rows are read from
    the driver's cursor a batch at a time."""
    if connection.dialect.name == "postgresql":
        cases = _packed_cases(connection, query)
        for start in range(0, len(cases.numbers), READ_BATCH):
            window = slice(start, start + READ_BATCH)
            yield _Cases(
                cases.numbers[window], cases.channel[window], cases.state[window], cases.sex[window]
            )
        return
    for rows in _driver_rows(connection, query, READ_BATCH):
        columns = list(zip(*rows, strict=True))
        yield _Cases(
            np.array(columns[:CASE_NUMBERS], dtype=np.float64).T,
            *(_objects([text or "" for text in texts]) for texts in columns[CASE_NUMBERS:]),
        )


def _packed_cases(connection: Connection, query: Select) -> _Cases:  # type: ignore[type-arg]
    """All of `cases_query`'s rows as one row: the numbers packed like `_packed`, the texts
    joined by `_TEXT_SEPARATOR`. The aggregates read the rows in one order, whatever it is, so
    the columns stay aligned; they are sorted by case id here."""
    rows = query.order_by(None).subquery()
    columns = list(rows.c)
    packed = select(
        *(_float8s(column) for column in columns[:CASE_NUMBERS]),
        *(
            func.string_agg(func.coalesce(column, ""), _TEXT_SEPARATOR)
            for column in columns[CASE_NUMBERS:]
        ),
    )
    row = connection.execute(packed).one()
    numbers = np.column_stack(_unpacked(row[:CASE_NUMBERS])).reshape(-1, CASE_NUMBERS)
    order = np.argsort(numbers[:, 0], kind="stable")
    texts: tuple[str | None, ...] = tuple(row)[CASE_NUMBERS:]
    channel, state, sex = (_split(joined)[order] for joined in texts)
    return _Cases(numbers[order], channel, state, sex)


def _split(joined: str | None) -> Objects:
    """The texts `_packed_cases` joined (None: no rows)."""
    return _objects([] if joined is None else joined.split(_TEXT_SEPARATOR))


def milestone_events(workflow: Workflow) -> dict[str, str]:
    """Each milestone step's event in `workflow`."""
    return {step: workflow.event_for(part) for step, part in MILESTONE_PARTS.items()}


def side_queries(
    definitions: Sequence[ScoreDefinition],
    screening_forms: Sequence[str],
    milestones: Mapping[str, str],
) -> dict[str, Select]:  # type: ignore[type-arg]
    """The per-case numbers beside the cases, each as (case id, number) rows: milestone moments
    ("moment:<step>" for each step -> event of `milestones`; every event, the earliest per case
    counts), the first action plan and
    hand-over done, score values ("score:<key>:<occasion>"; non-null values with the score row's
    id as a third column, the last answered per case counts) and the screen-positive cases
    ("screen_positive")."""
    queries: dict[str, Select] = {}  # type: ignore[type-arg]
    for step, event in milestones.items():
        queries[f"moment:{step}"] = select(CaseEvent.case_id, epoch(CaseEvent.occurred_at)).where(
            CaseEvent.event == event
        )
    queries["moment:first_plan"] = select(ActionPlan.case_id, epoch(ActionPlan.created_at))
    queries["moment:handover_done"] = select(
        Handover.case_id, epoch(func.coalesce(Handover.meeting_at, Handover.created_at))
    ).where(Handover.status == "done")
    for d in definitions:
        for occasion in OCCASIONS:
            queries[f"score:{d.key}:{occasion}"] = select(
                QuestionnaireScore.case_id, QuestionnaireScore.value, QuestionnaireScore.id
            ).where(
                QuestionnaireScore.form_id == d.form_id,
                QuestionnaireScore.score_id == d.score_id,
                QuestionnaireScore.occasion == occasion,
                QuestionnaireScore.value.is_not(None),
            )
    queries["screen_positive"] = (
        select(QuestionnaireScore.case_id, literal(1.0))
        .where(
            QuestionnaireScore.form_id.in_(sorted(set(screening_forms))),
            QuestionnaireScore.is_positive.is_(True),
        )
        .distinct()
    )
    return queries


@dataclass
class _Column:
    """One side query's result: sorted unique case ids and one number each."""

    ids: Ints
    values: Floats

    def at(self, case_ids: Ints) -> Floats:
        """The number of each case in `case_ids` (NaN for a case without one)."""
        if len(self.ids) == 0:
            return np.full(len(case_ids), np.nan)
        where = np.minimum(np.searchsorted(self.ids, case_ids), len(self.ids) - 1)
        return np.where(self.ids[where] == case_ids, self.values[where], np.nan)


def _driver_rows(
    connection: Connection,
    query: Select,  # type: ignore[type-arg]
    batch: int,
) -> Iterator[Sequence[Any]]:
    """The rows of `query` as the driver gives them, `batch` at a time.

    The evaluation's columns are numbers and plain strings that need no result processing, and
    building a SQLAlchemy row per case, event and score would cost more than the queries."""
    # Not stream_results: its buffered strategy reads rows ahead of the driver's cursor.
    result = connection.execute(query)
    try:
        cursor = result.cursor
        assert cursor is not None
        while rows := cursor.fetchmany(batch):
            yield rows
    finally:
        result.close()


def _numbers(connection: Connection, query: Select) -> list[Floats]:  # type: ignore[type-arg]
    """The columns of a query of numbers, as read (ids are exact in a double far beyond any
    case count)."""
    width = len(query.selected_columns)
    chunks = [
        np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=width * len(rows))
        for rows in _driver_rows(connection, query, SIDE_BATCH)
    ]
    table = (np.concatenate(chunks) if chunks else np.zeros(0)).reshape(-1, width)
    return [table[:, i] for i in range(width)]


def _packed(query: Select) -> Select:  # type: ignore[type-arg]
    """`query` with each column packed by PostgreSQL into one bytea of big-endian float8s: one
    row to transfer instead of one per case, event or score, and no Python object per value."""
    return select(*(_float8s(column) for column in query.subquery().c))


def _float8s(column: ColumnElement[Any]) -> ColumnElement[bytes]:
    """The aggregate packing `column` into one bytea of big-endian float8s (NULL as NaN, so the
    columns of one query stay aligned)."""
    number = func.coalesce(cast(column, Double), literal_column("'NaN'::float8"))
    return func.string_agg(func.float8send(number), literal_column("''::bytea"))


def _all_numbers(
    connection: Connection,
    queries: dict[str, Select],  # type: ignore[type-arg]
) -> dict[str, list[Floats]]:
    """`_numbers` of every query. On PostgreSQL each query's columns come packed (`_packed`)
    and all queries are sent at once in one pipeline, so the server runs the next query while
    this process reads the last one's result."""
    if connection.dialect.name != "postgresql":
        return {name: _numbers(connection, query) for name, query in queries.items()}
    driver = connection.connection.driver_connection
    assert driver is not None
    cursors = {}
    with driver.pipeline():
        for name, query in queries.items():
            compiled = _packed(query).compile(
                dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
            )
            cursors[name] = driver.cursor(binary=True)
            cursors[name].execute(str(compiled), compiled.params)
        return {name: _unpacked(cursor.fetchone()) for name, cursor in cursors.items()}


def _unpacked(row: Sequence[bytes | None] | None) -> list[Floats]:
    """The columns `_packed` made, as float arrays."""
    assert row is not None
    return [
        np.zeros(0) if packed is None else np.frombuffer(packed, dtype=">f8").astype(np.float64)
        for packed in row
    ]


def _first(ids: Floats, values: Floats) -> _Column:
    """The smallest number per case."""
    ids, values = _by_case(ids, values, values)
    first = np.ones(len(ids), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    return _Column(ids[first].astype(np.int64), values[first])


def _last(ids: Floats, values: Floats, rows: Floats) -> _Column:
    """The number of the last row (by `rows`, the row ids) per case."""
    ids, values = _by_case(ids, rows, values)
    last = np.ones(len(ids), dtype=bool)
    last[:-1] = ids[1:] != ids[:-1]
    return _Column(ids[last].astype(np.int64), values[last])


def _by_case(ids: Floats, then: Floats, values: Floats) -> tuple[Floats, Floats]:
    """`ids` and `values` ordered by (case id, `then`). Rows that came in that order from the
    index are kept as they are: checking costs far less than sorting."""
    step = np.diff(ids)
    if not ((step > 0) | ((step == 0) & (np.diff(then) >= 0))).all():
        order = np.lexsort((then, ids))
        ids, values = ids[order], values[order]
    return ids, values


class LocalDays:
    """Seconds since 1970 (UTC) to whole days since 1970 in Swedish time, vectorised: the offset
    is looked up once per UTC day (exactly, per moment, on the two days a year when the clocks
    change)."""

    def __init__(self, timezone: ZoneInfo) -> None:
        self.timezone = timezone
        self._offsets: dict[int, float] = {}

    def __call__(self, seconds: Floats) -> Floats:
        result = np.full(len(seconds), np.nan)
        known = ~np.isnan(seconds)
        if not known.any():
            return result
        moments = seconds[known]
        utc_days, inverse = np.unique(np.floor(moments / 86400.0), return_inverse=True)
        offsets = np.array([self._day_offset(int(d)) for d in utc_days])[inverse]
        local = np.floor((moments + offsets) / 86400.0)
        for i in np.flatnonzero(np.isnan(offsets)):
            moment = _EPOCH + dt.timedelta(seconds=float(moments[i]))
            local[i] = (moment.astimezone(self.timezone).date() - _EPOCH_DATE).days
        result[known] = local
        return result

    def _day_offset(self, utc_day: int) -> float:
        """The UTC offset in seconds all through a UTC day; NaN when the clocks change on it."""
        offset = self._offsets.get(utc_day)
        if offset is None:
            start = _EPOCH + dt.timedelta(days=utc_day)
            first = start.astimezone(self.timezone).utcoffset()
            last = (
                (start + dt.timedelta(hours=23, minutes=59, seconds=59))
                .astimezone(self.timezone)
                .utcoffset()
            )
            offset = float("nan") if first is None or first != last else first.total_seconds()
            self._offsets[utc_day] = offset
        return offset


def years(days: Floats) -> Floats:
    """The calendar year of each day number."""
    result = np.full(len(days), np.nan)
    known = ~np.isnan(days)
    calendar = (
        days[known]
        .astype(np.int64)
        .astype("datetime64[D]")
        .astype("datetime64[Y]")
        .astype(np.int64)
    )
    result[known] = calendar + 1970
    return result


def months(days: Floats) -> list[str]:
    """ "YYYY-MM" of each day number ("" for NaN)."""
    distinct, inverse = np.unique(days, return_inverse=True)
    known = ~np.isnan(distinct)
    texts = np.full(len(distinct), "", dtype=object)
    month = distinct[known].astype(np.int64).astype("datetime64[D]").astype("datetime64[M]")
    texts[known] = np.datetime_as_string(month, unit="M").astype(object)
    listed: list[str] = texts[inverse.reshape(-1)].tolist()
    return listed


def _objects(values: Sequence[Any]) -> Objects:
    result = np.empty(len(values), dtype=object)
    result[:] = values
    return result


def stream_cases(
    session: Session,
    definitions: Sequence[ScoreDefinition],
    filters: Filters,
    *,
    workflow: Workflow,
    screening_forms: Sequence[str],
    timezone: ZoneInfo,
    unit_ids: frozenset[int] | None = None,
) -> Iterator[CaseBatch]:
    """Every case matching `filters` (and, when given, in `unit_ids`), a batch at a time; the
    milestones and the closed states are `workflow`'s."""
    conditions = _case_filters(filters, unit_ids, timezone)
    # Core execution on the session's connection: no ORM row processing.
    connection = session.connection()
    local = LocalDays(timezone)
    columns: dict[str, _Column] = {}
    for name, (ids, values, *score_ids) in _all_numbers(
        connection, side_queries(definitions, screening_forms, milestone_events(workflow))
    ).items():
        if name.startswith("score:"):
            columns[name] = _last(ids, values, score_ids[0])
        else:
            column = columns[name] = _first(ids, values)
            if name.startswith("moment:"):
                column.values = local(column.values)
    keys = tuple(d.key for d in definitions)
    terminal = sorted(workflow.terminal_states)
    for cases in _case_batches(connection, cases_query(conditions)):
        case_id = cases.case_id
        referred = local(cases.opened)
        bands = age_bands(years(referred) - cases.birth_year)
        sex = cases.sex.copy()
        sex[sex == ""] = "unknown"
        keep = slice(None) if filters.age_band is None else bands == filters.age_band
        moment = {step: columns[f"moment:{step}"].at(case_id) for step in MILESTONE_PARTS}
        plan = columns["moment:first_plan"].at(case_id)
        mapping_visit = moment["mapping_visit"]
        # The action plan is made at the mapping visit at the latest.
        plan = np.fmin(plan, mapping_visit)
        days = np.column_stack(
            [
                referred,
                moment["invitation"],
                moment["baseline"],
                mapping_visit,
                plan,
                columns["moment:handover_done"].at(case_id),
                moment["follow_up_1"],
                moment["six_month"],
                np.full(len(case_id), np.nan),
            ]
        )
        scores = np.full((len(case_id), len(keys), 2), np.nan)
        for j, key in enumerate(keys):
            for o, occasion in enumerate(OCCASIONS):
                scores[:, j, o] = columns[f"score:{key}:{occasion}"].at(case_id)
        positive = cases.is_flagged_positive | ~np.isnan(columns["screen_positive"].at(case_id))
        batch = CaseBatch(
            case_id=case_id[keep],
            unit_id=cases.unit_id[keep],
            channel=cases.channel[keep],
            age_band=bands[keep],
            sex=sex[keep],
            status=np.where(np.isin(cases.state, terminal), cases.state, OPEN).astype(object)[keep],
            days=days[keep],
            is_screen_positive=positive[keep],
            keys=keys,
            scores=scores[keep],
        )
        _set_complete_pair(batch)
        if len(batch):
            yield batch
