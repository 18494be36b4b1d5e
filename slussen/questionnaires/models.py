"""Stored answers, their scores, and the single-use answer codes printed on letters."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from slussen.db import Base, UtcDateTime, created_at, intpk
from slussen.sensitivity import REFERENCES, classify

#: When a questionnaire is answered: before the visit, or at the six-month evaluation.
OCCASIONS = ("baseline", "six_month")
SOURCES = ("online", "paper")


class QuestionnaireResponse(Base):
    """One answered form (one instrument) on one occasion. The answers are encrypted with the
    patient's data key; the form version they were given under is kept with them."""

    __tablename__ = "questionnaire_responses"
    __sensitivity__ = classify(
        sealed=("answers_enc", "second_answers_enc"),
        clear={
            REFERENCES: ("id", "case_id", "keyed_by_id", "second_keyed_by_id"),
            "which form, version and occasion was answered, how and when": (
                "form_id",
                "form_version",
                "occasion",
                "source",
                "is_verified",
                "submitted_at",
            ),
        },
    )
    __table_args__ = (
        CheckConstraint("occasion IN ('baseline', 'six_month')", "occasion_known"),
        CheckConstraint("source IN ('online', 'paper')", "source_known"),
        Index(
            "ix_questionnaire_responses_case_id_form_id_occasion", "case_id", "form_id", "occasion"
        ),
    )

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    form_id: Mapped[str] = mapped_column(String(40))
    form_version: Mapped[int] = mapped_column(Integer)
    occasion: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(10))
    #: JSON {item_id: code | [codes] | text}, encrypted (vault, table/column/row bound).
    answers_enc: Mapped[bytes] = mapped_column(LargeBinary)
    #: Who keyed in a paper form, and who keyed it a second time (optional double entry).
    keyed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    second_keyed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: False while a double-entry mismatch is unresolved.
    is_verified: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The second keying's answers while they disagree with the first (encrypted like
    #: answers_enc); cleared when the mismatch is resolved.
    second_answers_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    submitted_at: Mapped[created_at]


class QuestionnaireScore(Base):
    """A computed score beside the answers, for the case page and the screening: which score
    of which form and occasion in clear, the value and whether it is at the cut-off sealed with
    the patient's data key. The evaluation reads the research records instead."""

    __tablename__ = "questionnaire_scores"
    __sensitivity__ = classify(
        sealed=("score_enc",),
        clear={
            REFERENCES: ("id", "response_id", "case_id"),
            "which score of which form and occasion": ("form_id", "score_id", "occasion"),
        },
    )
    __table_args__ = (
        UniqueConstraint("response_id", "score_id"),
        CheckConstraint("occasion IN ('baseline', 'six_month')", "occasion_known"),
    )

    id: Mapped[intpk]
    response_id: Mapped[int] = mapped_column(
        ForeignKey("questionnaire_responses.id", ondelete="CASCADE")
    )
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    form_id: Mapped[str] = mapped_column(String(40))
    #: The score's id within the form ("total", "life_satisfaction", …).
    score_id: Mapped[str] = mapped_column(String(40))
    occasion: Mapped[str] = mapped_column(String(10))
    #: JSON {"value": number or null, "is_positive": true, false or null}, sealed with the
    #: patient's data key (questionnaire_scores/score/<id>): the value is null when the
    #: missing-item rule says it cannot be computed, is_positive true at or beyond the form's
    #: cut-off (screen-positive, "lonely"). NULL only for a patient erased before scores were
    #: sealed (migration 0014): the key that could have sealed them was gone.
    score_enc: Mapped[bytes | None] = mapped_column(LargeBinary)


class AnswerCode(Base):
    """A single-use code printed on a letter for answering online at /svar. Only its keyed hash
    is stored; it expires, and works once."""

    __tablename__ = "answer_codes"
    __sensitivity__ = classify(
        sealed=("draft_enc",),
        blind_index=("code_hash",),
        clear={
            REFERENCES: ("id", "case_id", "letter_id"),
            "which occasion it answers and when it works": (
                "occasion",
                "created_at",
                "expires_at",
                "used_at",
            ),
        },
    )
    __table_args__ = (CheckConstraint("occasion IN ('baseline', 'six_month')", "occasion_known"),)

    id: Mapped[intpk]
    #: Keyed hash (hex) of the normalised code: HMAC-SHA256 under the key ring's blind-index key
    #: of its SHA-256 (`codes.code_hash`), so a copy of the table cannot be searched for codes.
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    occasion: Mapped[str] = mapped_column(String(10))
    #: The letter that carries the code, when it came from one.
    letter_id: Mapped[int | None] = mapped_column(ForeignKey("letter_queue.id"))
    created_at: Mapped[created_at]
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[dt.datetime | None]
    #: Answers saved step by step while the patient answers online (JSON, encrypted with the
    #: patient's data key); cleared when the answers are sent.
    draft_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
