"""The research records: one subject per case (its keyed pseudonym, coarse covariates, status
and the first day of each step of the flow) and its scores. The evaluation reads these tables
and nothing else; nothing in them names a case or a patient: the subject's key is an HMAC of the
case id, and the only link to the patient, for erasure, an HMAC of the patient id, both under a
key from the key ring (`slussen.research.services`).

No row has a sequential id: the keys are the pseudonyms, and on SQLite the tables are stored
WITHOUT ROWID, so the order rows were written in (the order the cases were opened) is not a
column either.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, Date, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from slussen.db import Base, one_of
from slussen.sensitivity import classify

#: Sex from the identifier; "unknown" when the identifier does not say (a reserve number).
SEXES = ("female", "male", "unknown")
#: Age at referral (referral year minus birth year).
AGE_BANDS = ("0-17", "18-29", "30-44", "45-64", "65-79", "80+", "unknown")
#: The status of a case that has not closed; a closed case has its closing state instead.
OPEN = "open"
#: The steps of the flow after the referral whose first day a subject records, in order.
MILESTONES = (
    "invitation",
    "baseline",
    "mapping_visit",
    "action_plan",
    "handover_done",
    "follow_up_1",
    "six_month",
)
OCCASIONS = ("baseline", "six_month")
#: Tables whose rowid would be the order of writing (SQLite's default): stored by their key.
_BY_KEY = {"sqlite_with_rowid": False}

_LINKED = "a research subject's covariates and flow, linked only to its keyed pseudonym"


class ResearchSubject(Base):
    """One case as the evaluation sees it. Written only by `research.services.record`."""

    __tablename__ = "research_subjects"
    __sensitivity__ = classify(
        pseudonym={
            "HMAC of the case id and of the patient id (research keys from the key ring)": (
                "pseudonym",
                "patient_pseudonym",
            ),
            _LINKED: (
                "unit_id",
                "channel",
                "age_band",
                "sex",
                "status",
                "is_flagged",
                "referred_on",
                *(f"{step}_on" for step in MILESTONES),
            ),
        },
    )
    __table_args__ = (
        CheckConstraint(one_of("age_band", AGE_BANDS), "age_band_known"),
        CheckConstraint(one_of("sex", SEXES), "sex_known"),
        _BY_KEY,
    )

    #: HMAC-SHA256 (hex) of the case id under the research key (`subject_pseudonym`).
    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: HMAC-SHA256 (hex) of the patient id: erasing the patient finds their subjects by it.
    patient_pseudonym: Mapped[str] = mapped_column(String(64), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    #: How the referral came in (the case's channel).
    channel: Mapped[str] = mapped_column(String(20))
    age_band: Mapped[str] = mapped_column(String(8))
    sex: Mapped[str] = mapped_column(String(8))
    #: OPEN, or the state the case closed in (the reason for closure).
    status: Mapped[str] = mapped_column(String(40), default=OPEN)
    #: The screening flagged the case (screen positive, whatever the coach decided next).
    is_flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The day (Swedish time) the case was opened; the first day of each later step, or NULL.
    referred_on: Mapped[dt.date] = mapped_column(Date)
    invitation_on: Mapped[dt.date | None] = mapped_column(Date)
    baseline_on: Mapped[dt.date | None] = mapped_column(Date)
    mapping_visit_on: Mapped[dt.date | None] = mapped_column(Date)
    action_plan_on: Mapped[dt.date | None] = mapped_column(Date)
    handover_done_on: Mapped[dt.date | None] = mapped_column(Date)
    follow_up_1_on: Mapped[dt.date | None] = mapped_column(Date)
    six_month_on: Mapped[dt.date | None] = mapped_column(Date)


class ResearchScore(Base):
    """One score of one subject on one occasion: the latest value computed for it."""

    __tablename__ = "research_scores"
    __sensitivity__ = classify(
        pseudonym={
            "the subject's keyed pseudonym": ("subject_pseudonym",),
            "a score of a research subject, linked only to its keyed pseudonym": (
                "form_id",
                "score_id",
                "occasion",
                "value",
                "is_positive",
            ),
        },
    )
    __table_args__ = (
        CheckConstraint(one_of("occasion", OCCASIONS), "occasion_known"),
        _BY_KEY,
    )

    subject_pseudonym: Mapped[str] = mapped_column(
        ForeignKey("research_subjects.pseudonym", ondelete="CASCADE"), primary_key=True
    )
    form_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: The score's id within the form ("total", "life_satisfaction", …).
    score_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    occasion: Mapped[str] = mapped_column(String(10), primary_key=True)
    #: NULL when the missing-item rule says the score cannot be computed.
    value: Mapped[float | None] = mapped_column(Float)
    #: At or beyond the form's cut-off (screen positive, "lonely"); NULL without a cut-off.
    is_positive: Mapped[bool | None] = mapped_column(Boolean)
