"""What every stored column is, declared next to its model: the promise that a copy of the
database reveals nothing about a patient, written so a test can hold the code to it.

Each model class says, for every column of its table, one of:

* **sealed**: ciphertext written and read only through the vault's one path for that kind of
  data (`patients.services.seal/unseal` for a patient's facts, the key ring for the rest);
* **blind index**: a keyed hash (HMAC with a key of the key ring) used to find a row by a value
  without storing the value;
* **pseudonym**: a keyed pseudonym, or a value that is only linked to a keyed pseudonym (the
  research records), which nobody can tie to a person without the key ring;
* **clear**: stored as it is, with the reason it may be (a state name, a count, a date that a
  due-date query needs, a reference to another row).

    class Visit(Base):
        __sensitivity__ = classify(
            sealed=("notes_enc",),
            clear={
                "row references": ("id", "case_id", "coach_id"),
                "the worklist and letters need when and what kind": ("starts_at", "kind"),
            },
        )

`tests/test_sensitivity.py` fails when a column has no classification, or two, or when a
column named for a sealed value is not binary. `docs/security.md` explains the classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Table

from slussen.db import Base

#: The reason shared by most clear columns: ids of rows, which say nothing by themselves.
REFERENCES = "row references (an id carries no fact by itself)"


class Sensitivity(StrEnum):
    SEALED = "sealed"
    BLIND_INDEX = "blind_index"
    PSEUDONYM = "pseudonym"
    CLEAR = "clear"


@dataclass(frozen=True)
class Classification:
    """One column's class, and for a clear or pseudonymous column why it may be stored so."""

    sensitivity: Sensitivity
    reason: str = ""


class DoubleClassification(ValueError):
    """A column was declared twice in one model's classification."""


def classify(
    *,
    sealed: Iterable[str] = (),
    blind_index: Iterable[str] = (),
    pseudonym: Mapping[str, Iterable[str]] | None = None,
    clear: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, Classification]:
    """A model's `__sensitivity__`: column name → classification. Clear and pseudonymous columns
    are grouped under the reason they may be stored so. Refuses a column named twice."""
    result: dict[str, Classification] = {}

    def put(columns: Iterable[str], classification: Classification) -> None:
        for column in columns:
            if column in result:
                raise DoubleClassification(f"column {column!r} classified twice")
            result[column] = classification

    put(sealed, Classification(Sensitivity.SEALED))
    put(blind_index, Classification(Sensitivity.BLIND_INDEX))
    for reason, columns in (pseudonym or {}).items():
        put(columns, Classification(Sensitivity.PSEUDONYM, reason))
    for reason, columns in (clear or {}).items():
        put(columns, Classification(Sensitivity.CLEAR, reason))
    return result


def declared(table: Table | str) -> dict[str, Classification]:
    """The classification the model of `table` declares ({} for a table without one)."""
    name = table if isinstance(table, str) else table.name
    for mapper in Base.registry.mappers:
        if getattr(mapper.class_, "__tablename__", None) == name:
            found: dict[str, Classification] = getattr(mapper.class_, "__sensitivity__", {})
            return found
    return {}


def clear_columns(table: Table | str) -> set[str]:
    """The columns of `table` stored in clear."""
    return {c for c, k in declared(table).items() if k.sensitivity is Sensitivity.CLEAR}


__all__ = [
    "REFERENCES",
    "Classification",
    "DoubleClassification",
    "Sensitivity",
    "classify",
    "clear_columns",
    "declared",
]
