"""The patient record. Identity lives only as ciphertext; see slussen.patients.services."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from slussen.db import Base, created_at, intpk
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
            "not yet sealed (#17)": ("birth_year", "sex"),
        },
    )
    __table_args__ = (
        CheckConstraint("identifier_kind IN ('pnr', 'snr', 'reserv')", "identifier_kind_known"),
        CheckConstraint("sex IN ('female', 'male') OR sex IS NULL", "sex_known"),
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
    #: Derived from the identifier for evaluation age bands and sex; not identifying alone.
    birth_year: Mapped[int | None] = mapped_column(Integer)
    sex: Mapped[str | None] = mapped_column(String(6))
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
