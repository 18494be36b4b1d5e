"""Writing and erasing research records: `record` is the one writer, called in the transaction
that writes the fact (the engine opening a case or firing an event, a score computed, a plan
made, a hand-over done); `erase_subjects` deletes a patient's records when the patient is erased.

The pseudonyms are HMAC-SHA256 under the key ring's blind-index key with purposes of their own
("research:case", "research:patient"), never the access log's pseudonym key: without the key
ring nobody can compute which subject is which case, and the access log's pseudonyms cannot be
matched to them either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select

from slussen import vault
from slussen.config import local_zone
from slussen.keystore import Keystore
from slussen.research.models import MILESTONES, OPEN, ResearchScore, ResearchSubject

#: The purposes (blind-index kinds) of the two research pseudonyms.
CASE_PURPOSE = "research:case"
PATIENT_PURPOSE = "research:patient"
#: Where age bands start, highest first.
_BAND_LOWS = ((80, "80+"), (65, "65-79"), (45, "45-64"), (30, "30-44"), (18, "18-29"), (0, "0-17"))


class MissingSubject(LookupError):
    """A research fact about a case that has no research subject (opened outside the engine)."""


def subject_pseudonym(ring: vault.KeyRing, case_id: int) -> str:
    """The research pseudonym of a case (64 hex digits)."""
    return vault.blind_index(ring, CASE_PURPOSE, str(case_id))


def patient_pseudonym(ring: vault.KeyRing, patient_id: int) -> str:
    """The pseudonym that ties a patient's research subjects together, for erasure."""
    return vault.blind_index(ring, PATIENT_PURPOSE, str(patient_id))


def age_band(age: int | None) -> str:
    """The band of an age in whole years at referral (birth year to referral year)."""
    if age is None or age < 0:
        return "unknown"
    return next(band for low, band in _BAND_LOWS if age >= low)


def local_day(at: dt.datetime) -> dt.date:
    """The day (Swedish time, the configured zone) of a moment."""
    return at.astimezone(local_zone()).date()


# --- the facts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    """A case was opened at `at`: its patient (for erasure) and its covariates. Birth year and
    sex are the ones `patients.services.read_demographics` gives."""

    patient_id: int
    unit_id: int
    channel: str
    at: dt.datetime
    birth_year: int | None
    sex: str | None


@dataclass(frozen=True)
class Reached:
    """A step of the flow (one of MILESTONES) was reached at `at`; the earliest day counts."""

    step: str
    at: dt.datetime

    def __post_init__(self) -> None:
        if self.step not in MILESTONES:
            raise ValueError(f"unknown step {self.step!r}")


@dataclass(frozen=True)
class Status:
    """The case is open (OPEN) or closed in the state `name`."""

    name: str


@dataclass(frozen=True)
class Flagged:
    """The screening flagged the case."""


@dataclass(frozen=True)
class Scored:
    """A score was computed (or computed again) on an occasion."""

    form_id: str
    score_id: str
    occasion: str
    value: float | None
    is_positive: bool | None


Fact = Opened | Reached | Status | Flagged | Scored


def record(store: Keystore, case_id: int, *facts: Fact) -> None:
    """Write `facts` about case `case_id` into its research records, in the caller's
    transaction (it only flushes): `Opened` creates the subject, `Reached` keeps the earliest
    day of a step, `Status` and `Flagged` set the subject's status and flag, `Scored` writes the
    score (a later computation of the same score replaces it). The one writer of research records.

    Refuses (MissingSubject) a fact other than `Opened` about a case without a subject, and
    (ValueError) an `Opened` for a case that has one."""
    session = store.session
    pseudonym = subject_pseudonym(store.ring, case_id)
    subject = session.get(ResearchSubject, pseudonym)
    for fact in facts:
        if isinstance(fact, Opened):
            if subject is not None:
                raise ValueError(f"case {case_id} has a research subject already")
            subject = _new_subject(store.ring, pseudonym, fact)
            session.add(subject)
            continue
        if subject is None:
            raise MissingSubject(f"case {case_id} has no research subject")
        if isinstance(fact, Reached):
            column = f"{fact.step}_on"
            day, known = local_day(fact.at), getattr(subject, column)
            if known is None or day < known:
                setattr(subject, column, day)
        elif isinstance(fact, Status):
            subject.status = fact.name
        elif isinstance(fact, Flagged):
            subject.is_flagged = True
    _write_scores(store, pseudonym, [f for f in facts if isinstance(f, Scored)])
    session.flush()


def _new_subject(ring: vault.KeyRing, pseudonym: str, fact: Opened) -> ResearchSubject:
    referred_on = local_day(fact.at)
    age = None if fact.birth_year is None else referred_on.year - fact.birth_year
    return ResearchSubject(
        pseudonym=pseudonym,
        patient_pseudonym=patient_pseudonym(ring, fact.patient_id),
        unit_id=fact.unit_id,
        channel=fact.channel,
        age_band=age_band(age),
        sex=fact.sex or "unknown",
        status=OPEN,
        is_flagged=False,
        referred_on=referred_on,
    )


def _write_scores(store: Keystore, pseudonym: str, scores: Iterable[Scored]) -> None:
    scores = list(scores)
    if not scores:
        return
    session = store.session
    existing = {
        (row.form_id, row.score_id, row.occasion): row
        for row in session.scalars(
            select(ResearchScore).where(
                ResearchScore.subject_pseudonym == pseudonym,
                ResearchScore.form_id.in_(sorted({s.form_id for s in scores})),
            )
        )
    }
    for score in scores:
        row = existing.get((score.form_id, score.score_id, score.occasion))
        if row is None:
            row = ResearchScore(
                subject_pseudonym=pseudonym,
                form_id=score.form_id,
                score_id=score.score_id,
                occasion=score.occasion,
            )
            session.add(row)
            existing[(score.form_id, score.score_id, score.occasion)] = row
        row.value = score.value
        row.is_positive = score.is_positive


def erase_subjects(store: Keystore, patient_id: int) -> int:
    """Delete every research record of the patient's cases, in the caller's transaction (part
    of erasing the patient); returns the number of subjects deleted. Refuses nothing: a patient
    without research records has nothing to delete."""
    session = store.session
    subjects = select(ResearchSubject.pseudonym).where(
        ResearchSubject.patient_pseudonym == patient_pseudonym(store.ring, patient_id)
    )
    pseudonyms = list(session.scalars(subjects))
    if not pseudonyms:
        return 0
    session.execute(
        delete(ResearchScore).where(ResearchScore.subject_pseudonym.in_(pseudonyms)),
        execution_options={"synchronize_session": "fetch"},
    )
    session.execute(
        delete(ResearchSubject).where(ResearchSubject.pseudonym.in_(pseudonyms)),
        execution_options={"synchronize_session": "fetch"},
    )
    session.flush()
    return len(pseudonyms)


__all__ = [
    "CASE_PURPOSE",
    "MILESTONES",
    "OPEN",
    "PATIENT_PURPOSE",
    "Fact",
    "Flagged",
    "MissingSubject",
    "Opened",
    "Reached",
    "Scored",
    "Status",
    "age_band",
    "erase_subjects",
    "local_day",
    "patient_pseudonym",
    "record",
    "subject_pseudonym",
]
