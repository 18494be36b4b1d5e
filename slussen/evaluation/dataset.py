"""The pseudonymised case stream: one record per case, read in one pass.

Two Core queries, both ordered by case id and read with `yield_per`, are merged in Python:

* the cases with their patient's birth year and sex and, per case, the first moment of each
  milestone (grouped in SQL from `case_events`, `action_plans` and `handovers`);
* the scores of those cases (`questionnaire_scores`), oldest response first, so a later answer to
  the same form replaces an earlier one.

No ORM object is loaded, no identity is decrypted, no free text is read: the only columns touched
are listed here. `CaseRecord` holds what an evaluator may see about one case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Float, Select, and_, case, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from slussen.cases.models import CHANNELS, Case, CaseEvent
from slussen.evaluation.definitions import ScoreDefinition
from slussen.patients.models import Patient
from slussen.questionnaires.models import QuestionnaireScore
from slussen.visits.models import ActionPlan, Handover

#: The main steps of the flow, in order. A case has passed a step when it reached that step's
#: milestone or any later one (follow-up 1 may be skipped when the six-month evaluation is sent
#: straight from the active plan), so each step's count includes the next step's.
STEPS = (
    "referred",
    "invited",
    "baseline",
    "mapping_visit",
    "action_plan",
    "follow_up_1",
    "six_month",
    "complete_pair",
)
#: "Of whom" rows: counted among the cases that passed the step named.
SUB_STEPS = {"screen_positive": "baseline", "handover_done": "action_plan"}
#: The case events that mark a milestone.
MILESTONE_EVENTS = {
    "invited": "invite",
    "baseline": "register_baseline",
    "mapping_visit": "record_mapping_visit",
    "follow_up_1": "record_follow_up",
    "six_month": "register_evaluation",
}
SEXES = ("female", "male", "unknown")
AGE_BANDS = ("0-17", "18-29", "30-44", "45-64", "65-79", "80+", "unknown")
_BAND_LOWS = ((80, "80+"), (65, "65-79"), (45, "45-64"), (30, "30-44"), (18, "18-29"), (0, "0-17"))
DIMENSIONS = ("unit", "channel", "age_band", "sex")
OPEN = "open"
READ_BATCH = 5000


def age_band(age: int | None) -> str:
    """The band of an age in whole years at referral (birth year to referral year)."""
    if age is None or age < 0:
        return "unknown"
    for low, band in _BAND_LOWS:
        if age >= low:
            return band
    return "unknown"  # pragma: no cover


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


@dataclass(slots=True)
class CaseRecord:
    """What an evaluator may know about one case: no identity, no free text."""

    case_id: int
    unit_id: int
    channel: str
    age_band: str
    sex: str
    #: "open" or the terminal state (the reason for closure).
    status: str
    #: The day (Swedish time) each step's milestone was first reached; None when not reached.
    moments: dict[str, dt.date | None]
    is_screen_positive: bool = False
    #: {score key: [baseline, six_month]} with None for a missing value.
    scores: dict[str, list[float | None]] = field(default_factory=dict)

    def group(self, dimension: str) -> str | int:
        value: str | int = getattr(self, "unit_id" if dimension == "unit" else dimension)
        return value

    @property
    def depth(self) -> int:
        """The index in STEPS of the last step the case passed."""
        for index in range(len(STEPS) - 1, 0, -1):
            if self.moments[STEPS[index]] is not None:
                return index
        return 0

    @property
    def has_complete_pair(self) -> bool:
        return any(b is not None and s is not None for b, s in self.scores.values())


class epoch(FunctionElement[float]):
    """Seconds since 1970 (UTC) of a UTC timestamp column, as a float: no datetime objects to
    build per row (the stream reads some 800,000 moments for 100,000 cases)."""

    type = Float()
    inherit_cache = True


@compiles(epoch, "sqlite")
def _epoch_sqlite(element: epoch, compiler: SQLCompiler, **kw: object) -> str:
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


@compiles(epoch, "postgresql")
def _epoch_postgresql(element: epoch, compiler: SQLCompiler, **kw: object) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS FLOAT8)"


def _first(event: str) -> ColumnElement[float]:
    return epoch(func.min(case((CaseEvent.event == event, CaseEvent.occurred_at))))


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


def _cases_query(conditions: list) -> Select:  # type: ignore[type-arg]
    events = (
        select(
            CaseEvent.case_id.label("case_id"),
            *(_first(event).label(step) for step, event in MILESTONE_EVENTS.items()),
        )
        .where(CaseEvent.event.in_(list(MILESTONE_EVENTS.values())))
        .group_by(CaseEvent.case_id)
        .subquery("milestones")
    )
    plans = (
        select(
            ActionPlan.case_id.label("case_id"),
            epoch(func.min(ActionPlan.created_at)).label("first_plan"),
        )
        .group_by(ActionPlan.case_id)
        .subquery("plans")
    )
    handovers = (
        select(
            Handover.case_id.label("case_id"),
            epoch(func.min(func.coalesce(Handover.meeting_at, Handover.created_at))).label(
                "first_done"
            ),
        )
        .where(Handover.status == "done")
        .group_by(Handover.case_id)
        .subquery("handovers_done")
    )
    return (
        select(
            Case.id,
            Case.unit_id,
            Case.channel,
            Case.state,
            epoch(Case.opened_at),
            Case.screening_flag,
            Patient.birth_year,
            Patient.sex,
            *(events.c[step] for step in MILESTONE_EVENTS),
            plans.c.first_plan,
            handovers.c.first_done,
        )
        .join(Patient, Patient.id == Case.patient_id)
        .outerjoin(events, events.c.case_id == Case.id)
        .outerjoin(plans, plans.c.case_id == Case.id)
        .outerjoin(handovers, handovers.c.case_id == Case.id)
        .where(and_(literal(True), *conditions))
        .order_by(Case.id)
    )


def _scores_query(conditions: list, form_ids: Sequence[str], *, by_sex: bool) -> Select:  # type: ignore[type-arg]
    query = (
        select(
            QuestionnaireScore.case_id,
            QuestionnaireScore.form_id,
            QuestionnaireScore.score_id,
            QuestionnaireScore.occasion,
            QuestionnaireScore.value,
            QuestionnaireScore.is_positive,
        )
        .join(Case, Case.id == QuestionnaireScore.case_id)
        .where(QuestionnaireScore.form_id.in_(sorted(set(form_ids))))
        .where(and_(literal(True), *conditions))
        # Score rows are written with their response, so a later response has larger ids; the
        # (case_id) index gives this order without sorting on SQLite.
        .order_by(QuestionnaireScore.case_id, QuestionnaireScore.id)
    )
    if by_sex:
        query = query.join(Patient, Patient.id == Case.patient_id)
    return query


class LocalDays:
    """Seconds since 1970 (UTC) to dates in Swedish time, fast: the offset is looked up once per
    UTC day (exactly, per moment, on the two days a year when the clocks change), and each date
    object is made once."""

    def __init__(self, timezone: ZoneInfo) -> None:
        self.timezone = timezone
        self._offsets: dict[int, float | None] = {}
        self._dates: dict[int, dt.date] = {}

    def __call__(self, seconds: float | None) -> dt.date | None:
        if seconds is None:
            return None
        utc_day = int(seconds // 86400)
        offset = self._offsets.get(utc_day, -1.0)
        if offset == -1.0:
            offset = self._offsets[utc_day] = self._day_offset(utc_day)
        if offset is None:
            moment = _EPOCH + dt.timedelta(seconds=seconds)
            return moment.astimezone(self.timezone).date()
        local_day = int((seconds + offset) // 86400)
        day = self._dates.get(local_day)
        if day is None:
            day = self._dates[local_day] = _EPOCH.date() + dt.timedelta(days=local_day)
        return day

    def _day_offset(self, utc_day: int) -> float | None:
        start = _EPOCH + dt.timedelta(days=utc_day)
        first = start.astimezone(self.timezone).utcoffset()
        last = (
            (start + dt.timedelta(hours=23, minutes=59, seconds=59))
            .astimezone(self.timezone)
            .utcoffset()
        )
        if first is None or first != last:
            return None
        return first.total_seconds()


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def stream_cases(
    session: Session,
    definitions: Sequence[ScoreDefinition],
    filters: Filters,
    *,
    terminal_states: frozenset[str],
    screening_forms: Sequence[str],
    timezone: ZoneInfo,
    unit_ids: frozenset[int] | None = None,
) -> Iterator[CaseRecord]:
    """Every case matching `filters` (and, when given, in `unit_ids`), one record at a time."""
    conditions = _case_filters(filters, unit_ids, timezone)
    by_score = {(d.form_id, d.score_id): d.key for d in definitions}
    screening = frozenset(screening_forms)
    # Core execution on the session's connection: no ORM row processing for ~10^6 rows.
    connection = session.connection()
    options = {"yield_per": READ_BATCH}
    scores = iter(
        connection.execute(
            _scores_query(
                conditions,
                [d.form_id for d in definitions] + list(screening),
                by_sex=filters.sex is not None,
            ).execution_options(**options)
        )
    )
    pending = next(scores, None)
    local = LocalDays(timezone)
    rows = connection.execute(_cases_query(conditions).execution_options(**options))
    for row in rows:
        (
            case_id,
            unit_id,
            channel,
            state,
            opened_at,
            screening_flag,
            birth_year,
            sex,
            invited,
            baseline,
            mapping_visit,
            follow_up_1,
            six_month,
            first_plan,
            first_done,
        ) = row
        referred = local(opened_at)
        assert referred is not None
        band = age_band(referred.year - birth_year if birth_year is not None else None)
        if filters.age_band is not None and band != filters.age_band:
            while pending is not None and pending[0] <= case_id:
                pending = next(scores, None)
            continue
        plan = first_plan
        if mapping_visit is not None and (plan is None or mapping_visit < plan):
            plan = mapping_visit
        record = CaseRecord(
            case_id=case_id,
            unit_id=unit_id,
            channel=channel,
            age_band=band,
            sex=sex or "unknown",
            status=state if state in terminal_states else OPEN,
            moments={
                "referred": referred,
                "invited": local(invited),
                "baseline": local(baseline),
                "mapping_visit": local(mapping_visit),
                "action_plan": local(plan),
                "handover_done": local(first_done),
                "follow_up_1": local(follow_up_1),
                "six_month": local(six_month),
                "complete_pair": None,
            },
            is_screen_positive=screening_flag is not None,
        )
        while pending is not None and pending[0] < case_id:
            pending = next(scores, None)
        while pending is not None and pending[0] == case_id:
            _case_id, form_id, score_id, occasion, value, is_positive = pending
            if form_id in screening and is_positive:
                record.is_screen_positive = True
            key = by_score.get((form_id, score_id))
            if key is not None and value is not None:
                pair = record.scores.setdefault(key, [None, None])
                pair[0 if occasion == "baseline" else 1] = float(value)
            pending = next(scores, None)
        if record.has_complete_pair:
            record.moments["complete_pair"] = record.moments["six_month"] or _latest(record.moments)
        yield record


def _latest(moments: dict[str, dt.date | None]) -> dt.date | None:
    known = [m for m in moments.values() if m is not None]
    return max(known) if known else None
