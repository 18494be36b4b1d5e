"""The patient record. Identity lives only as ciphertext; see slussen.patients.services."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from slussen.db import Base, UtcDateTime, created_at, intpk, one_of, utcnow
from slussen.sensitivity import REFERENCES, classify

#: Columns holding AES-GCM ciphertext (vault format v1), bound to table, column and row.
ENCRYPTED_COLUMNS = ("identifier", "name", "street", "postcode", "town", "phone")


class Patient(Base):
    """A person in the sluss. Read and write it only through slussen.patients.services, which
    encrypts, decrypts and writes the audit row; the ciphertext columns are useless without it."""

    __tablename__ = "patients"
    __sensitivity__ = classify(
        sealed=(
            "identifier_enc",
            "name_enc",
            "street_enc",
            "postcode_enc",
            "town_enc",
            "phone_enc",
            "demographics_enc",
        ),
        clear={
            REFERENCES: ("id", "data_key_id", "registered_unit_id"),
            "which register the identifier belongs to (personnummer, samordningsnummer, reserve)": (
                "identifier_kind",
                "identifier_issuer",
            ),
            "letters need the language and whether the address may be printed": (
                "preferred_language",
                "is_protected_identity",
            ),
            "record life cycle (erasure)": ("created_at", "erased_at"),
        },
    )
    __table_args__ = (
        CheckConstraint("identifier_kind IN ('pnr', 'snr', 'reserv')", "identifier_kind_known"),
    )

    id: Mapped[intpk]
    #: The patient's own data key; destroying it erases the record (crypto-shredding).
    data_key_id: Mapped[int] = mapped_column(ForeignKey("data_keys.id"), unique=True)
    #: The unit that first registered the patient.
    registered_unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), index=True)
    identifier_kind: Mapped[str] = mapped_column(String(10))
    #: OID of the identifier's issuer (personnummer, samordningsnummer, a region's reserve ids).
    identifier_issuer: Mapped[str] = mapped_column(String(64))
    identifier_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    street_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    postcode_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    town_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    preferred_language: Mapped[str] = mapped_column(String(8), default="sv")
    #: Skyddad identitet: the address is never printed or shown.
    is_protected_identity: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Birth year and sex derived from the identifier, for the evaluation's coarse covariates:
    #: JSON sealed with the patient's data key, padded to one length (see
    #: `patients.services.read_demographics`).
    demographics_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[created_at]
    erased_at: Mapped[dt.datetime | None]


class PatientLookup(Base):
    """Blind index: HMAC of an identifier, so a patient can be found without decrypting rows."""

    __tablename__ = "patient_lookups"
    __sensitivity__ = classify(
        blind_index=("digest",),
        clear={
            REFERENCES: ("id", "patient_id"),
            "what the digest indexes (the identifier)": ("kind",),
        },
    )
    __table_args__ = (UniqueConstraint("kind", "digest"),)

    id: Mapped[intpk]
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))
    digest: Mapped[str] = mapped_column(String(64))


#: What a correction of a patient's details may change (`patients.services.correct_patient`).
CORRECTABLE_FIELDS = ("name", "street", "postcode", "town", "phone", "contact_channel")
OFFER_STATUSES = ("pending", "accepted", "declined")


class PatientCorrection(Base):
    """One correction of a patient's details: who, when, and, sealed with the patient's data
    key, why and the values the correction replaced (a small JSON text), so the history of a
    record is kept without any earlier value in clear."""

    __tablename__ = "patient_corrections"
    __sensitivity__ = classify(
        sealed=("reason_enc", "earlier_enc"),
        clear={
            REFERENCES: ("id", "patient_id", "corrected_by_id", "unit_id"),
            "when the record was corrected (the history's order)": ("corrected_at",),
        },
    )

    id: Mapped[intpk]
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    corrected_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: The unit the correction was made for (the case's unit).
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    corrected_at: Mapped[created_at]
    #: Why, in the corrector's words.
    reason_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: JSON {field: earlier value} of the fields this correction changed.
    earlier_enc: Mapped[bytes | None] = mapped_column(LargeBinary)


class OfferedDetails(Base):
    """Contact details a later referral gave that differ from the record's: sealed while they
    wait for the coach to accept (they become a correction) or decline them."""

    __tablename__ = "offered_details"
    __sensitivity__ = classify(
        sealed=("details_enc",),
        clear={
            REFERENCES: ("id", "patient_id", "decided_by_id"),
            "whether the offer still waits, and when it came and was decided": (
                "status",
                "offered_at",
                "decided_at",
            ),
        },
    )
    __table_args__ = (CheckConstraint(one_of("status", OFFER_STATUSES), "status_known"),)

    id: Mapped[intpk]
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(10), default="pending")
    offered_at: Mapped[created_at]
    #: JSON {street, postcode, town, phone} as the referral gave them.
    details_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None]


#: The long staff forms whose typing is kept as a draft (slussen.patients.drafts).
DRAFT_FORMS = ("mapping", "follow_up")


class FormDraft(Base):
    """What a coach has typed in a long form of a case and not saved yet: kept as they type,
    sealed with the patient's data key, one per user, case and form; deleted when the form is
    saved or discarded, and with the patient's erasure. A draft whose `is_kept_post` is set is
    the form a session that had timed out submitted: it is saved once its user logs in again."""

    __tablename__ = "form_drafts"
    __sensitivity__ = classify(
        sealed=("fields_enc",),
        clear={
            REFERENCES: ("id", "user_id", "case_id", "patient_id"),
            "which form, whether it waits for a login to be saved, and when it was typed "
            "(no fact about the patient)": ("form", "is_kept_post", "updated_at"),
        },
    )
    __table_args__ = (
        CheckConstraint(one_of("form", DRAFT_FORMS), "form_known"),
        UniqueConstraint("user_id", "case_id", "form"),
    )

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    #: Clear: the patient's erasure deletes their drafts by it.
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), index=True
    )
    #: Clear: which form (DRAFT_FORMS).
    form: Mapped[str] = mapped_column(String(20))
    #: The form's fields as a sealed JSON list of [name, value] pairs (form_drafts/fields).
    fields_enc: Mapped[bytes] = mapped_column(LargeBinary)
    #: The form was submitted after the session timed out: save it after the next login.
    is_kept_post: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
