"""The pseudonymised case stream: the research subjects matching the evaluator's filters, in
batches of columns (numpy arrays), read in one pass. The page, the CSV and the PDF all use it.

The evaluation reads the research records and nothing else (`slussen.research`): no case, event,
plan, hand-over, score or patient row, no identity, no free text. One SQLAlchemy query reads
them: each subject (pseudonym, covariates, status, screening flag, the first day of each step)
with, from its scores, one column per score and occasion and whether a screening form was
positive (a grouped subquery of the scores, joined to the subjects). The filters are conditions
on the subjects' covariates. Rows come in pseudonym order, `READ_BATCH` at a time, and each batch
becomes a `CaseBatch`: what an evaluator may see about those cases.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    ColumnElement,
    Date,
    Select,
    String,
    and_,
    case,
    func,
    literal,
    select,
    true,
    type_coerce,
)
from sqlalchemy.orm import Session

from slussen.cases.models import CHANNELS
from slussen.evaluation.definitions import ScoreDefinition
from slussen.research.models import (
    AGE_BANDS,
    MILESTONES,
    OCCASIONS,
    OPEN,
    SEXES,
    ResearchScore,
    ResearchSubject,
)

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
#: The columns of `CaseBatch.days`: every step's milestone and the first hand-over done.
MOMENTS = ("referral", *MILESTONES, "complete_pair")
#: For each step in STEPS, its column in `CaseBatch.days`.
STEP_COLUMNS = tuple(MOMENTS.index(step) for step in STEPS)
DIMENSIONS = ("unit", "channel", "age_band", "sex")
READ_BATCH = 20_000

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Objects = NDArray[np.object_]


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

    pseudonym: str
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


_EPOCH = dt.date(1970, 1, 1).toordinal()


def day_number(day: dt.date | None) -> float:
    """Days since 1970-01-01 (NaN for None): how `CaseBatch.days` holds a date."""
    return float("nan") if day is None else float(day.toordinal() - _EPOCH)


@dataclass
class CaseBatch:
    """A batch of cases as columns, one entry per case, in pseudonym order. Days are whole days
    since 1970-01-01 in Swedish time (NaN: not reached), scores NaN when missing."""

    #: The research pseudonym of each case.
    pseudonym: Objects
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
        return len(self.pseudonym)

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
        return cls(
            pseudonym=_objects([r.pseudonym for r in listed]),
            unit_id=np.array([r.unit_id for r in listed], dtype=np.int64),
            channel=_objects([r.channel for r in listed]),
            age_band=_objects([r.age_band for r in listed]),
            sex=_objects([r.sex for r in listed]),
            status=_objects([r.status for r in listed]),
            days=days,
            is_screen_positive=np.array([r.is_screen_positive for r in listed], dtype=bool),
            keys=tuple(keys),
            scores=scores,
        )


def _objects(values: Sequence[Any]) -> Objects:
    result = np.empty(len(values), dtype=object)
    result[:] = values
    return result


def _conditions(filters: Filters, unit_ids: frozenset[int] | None) -> list[ColumnElement[bool]]:
    """The filters (and the evaluator's units) as conditions on the subjects' covariates."""
    subject = ResearchSubject
    conditions: list[ColumnElement[bool]] = []
    if unit_ids is not None:
        conditions.append(subject.unit_id.in_(sorted(unit_ids)))
    if filters.unit_id is not None:
        conditions.append(subject.unit_id == filters.unit_id)
    if filters.channel is not None:
        conditions.append(subject.channel == filters.channel)
    if filters.age_band is not None:
        conditions.append(subject.age_band == filters.age_band)
    if filters.sex is not None:
        conditions.append(subject.sex == filters.sex)
    if filters.date_from is not None:
        conditions.append(subject.referred_on >= filters.date_from)
    if filters.date_to is not None:
        conditions.append(subject.referred_on <= filters.date_to)
    return conditions


#: The subject's columns `subjects_query` reads first, in this order.
_SUBJECT_COLUMNS = (
    ResearchSubject.pseudonym,
    ResearchSubject.unit_id,
    ResearchSubject.channel,
    ResearchSubject.age_band,
    ResearchSubject.sex,
    ResearchSubject.status,
    ResearchSubject.is_flagged,
    ResearchSubject.referred_on,
    *(getattr(ResearchSubject, f"{step}_on") for step in MILESTONES),
)


def subjects_query(
    definitions: Sequence[ScoreDefinition],
    screening_forms: Sequence[str],
    conditions: Sequence[ColumnElement[bool]] = (),
) -> Select:  # type: ignore[type-arg]
    """The subjects matching `conditions`, one row each, in pseudonym order: `_SUBJECT_COLUMNS`,
    then each definition's baseline and six-month value (NULL when missing), then 1 when a
    screening form's score was positive (else 0)."""
    score = ResearchScore
    values = [
        func.max(
            case(
                (
                    and_(
                        score.form_id == d.form_id,
                        score.score_id == d.score_id,
                        score.occasion == occasion,
                    ),
                    score.value,
                )
            )
        ).label(f"v{i}_{occasion}")
        for i, d in enumerate(definitions)
        for occasion in OCCASIONS
    ]
    positive = func.max(
        case(
            (
                and_(score.form_id.in_(sorted(set(screening_forms))), score.is_positive.is_(True)),
                1,
            ),
            else_=0,
        )
    ).label("positive")
    scores = (
        select(score.subject_pseudonym.label("subject"), *values, positive)
        .group_by(score.subject_pseudonym)
        .subquery("scores")
    )
    return (
        select(
            # Days as the driver reads them (text on SQLite): `_days` parses a whole column at once.
            *(
                type_coerce(column, String).label(column.name)
                if isinstance(column.type, Date)
                else column
                for column in _SUBJECT_COLUMNS
            ),
            *(scores.c[column.name] for column in values),
            func.coalesce(scores.c.positive, literal(0)),
        )
        .outerjoin(scores, scores.c.subject == ResearchSubject.pseudonym)
        .where(and_(true(), *conditions))
        .order_by(ResearchSubject.pseudonym)
    )


def _days(column: Sequence[dt.date | str | None]) -> Floats:
    """Day numbers of a date column as the driver gives it (dates, or ISO strings where the
    query reads them as text), NaN for None."""
    days = np.array(column, dtype="datetime64[D]")
    result: Floats = np.where(np.isnat(days), np.nan, days.astype(np.int64).astype(np.float64))
    return result


def _batch(rows: Sequence[Any], keys: tuple[str, ...]) -> CaseBatch:
    """One batch of `subjects_query`'s rows as a CaseBatch."""
    columns = list(zip(*rows, strict=True))
    first_day = _SUBJECT_COLUMNS.index(ResearchSubject.referred_on)
    flagged = np.array(columns[_SUBJECT_COLUMNS.index(ResearchSubject.is_flagged)], dtype=bool)
    score_columns = columns[len(_SUBJECT_COLUMNS) : -1]
    n = len(rows)
    days = np.full((n, len(MOMENTS)), np.nan)
    for moment in range(len(MOMENTS) - 1):  # every moment but the complete pair
        days[:, moment] = _days(columns[first_day + moment])
    # The action plan is made at the mapping visit at the latest.
    plan, visit = MOMENTS.index("action_plan"), MOMENTS.index("mapping_visit")
    days[:, plan] = np.fmin(days[:, plan], days[:, visit])
    scores = np.array(score_columns, dtype=np.float64).T.reshape(n, len(keys), 2)
    batch = CaseBatch(
        pseudonym=_objects(columns[0]),
        unit_id=np.array(columns[1], dtype=np.int64),
        channel=_objects(columns[2]),
        age_band=_objects(columns[3]),
        sex=_objects(columns[4]),
        status=_objects(columns[5]),
        days=days,
        is_screen_positive=flagged | (np.array(columns[-1], dtype=np.int64) == 1),
        keys=keys,
        scores=scores,
    )
    _set_complete_pair(batch)
    return batch


def _set_complete_pair(batch: CaseBatch) -> None:
    complete = MOMENTS.index("complete_pair")
    six_month = batch.days[:, MOMENTS.index("six_month")]
    latest = np.fmax.reduce(batch.days[:, :complete], axis=1)
    day = np.where(np.isnan(six_month), latest, six_month)
    batch.days[:, complete] = np.where(batch.has_complete_pair, day, np.nan)


def months(days: Floats) -> list[str]:
    """ "YYYY-MM" of each day number ("" for NaN)."""
    distinct, inverse = np.unique(days, return_inverse=True)
    known = ~np.isnan(distinct)
    texts = np.full(len(distinct), "", dtype=object)
    month = distinct[known].astype(np.int64).astype("datetime64[D]").astype("datetime64[M]")
    texts[known] = np.datetime_as_string(month, unit="M").astype(object)
    listed: list[str] = texts[inverse.reshape(-1)].tolist()
    return listed


def stream_cases(
    session: Session,
    definitions: Sequence[ScoreDefinition],
    filters: Filters,
    *,
    screening_forms: Sequence[str],
    unit_ids: frozenset[int] | None = None,
) -> Iterator[CaseBatch]:
    """Every research subject matching `filters` (and, when given, in `unit_ids`), a batch at a
    time in pseudonym order."""
    keys = tuple(d.key for d in definitions)
    query = subjects_query(definitions, screening_forms, _conditions(filters, unit_ids))
    # Core rows, not ORM entities: the stream only wants the values.
    result = session.connection().execute(query.execution_options(yield_per=READ_BATCH))
    for rows in result.partitions():
        yield _batch(rows, keys)


__all__ = [
    "AGE_BANDS",
    "DIMENSIONS",
    "MOMENTS",
    "OPEN",
    "SEXES",
    "STEPS",
    "SUB_STEPS",
    "CaseBatch",
    "CaseRecord",
    "Filters",
    "months",
    "stream_cases",
    "subjects_query",
]
