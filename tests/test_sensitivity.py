"""Every column of every table is classified (sealed, blind index, pseudonym or clear with a
reason) next to its model: a column added without saying what it is fails here."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from slussen import models
from slussen.sensitivity import (
    DoubleClassification,
    Sensitivity,
    classify,
    clear_columns,
    declared,
)


def unclassified(tables: list[Table]) -> list[str]:
    """'table.column' for every column its model does not classify, and every classified
    column the table does not have (a stale declaration)."""
    problems = []
    for table in tables:
        classes = declared(table)
        columns = {c.name for c in table.columns}
        problems += [f"{table.name}.{c}: not classified" for c in sorted(columns - set(classes))]
        problems += [f"{table.name}.{c}: no such column" for c in sorted(set(classes) - columns)]
    return problems


def test_every_column_of_every_table_is_classified() -> None:
    assert unclassified(list(models.metadata.sorted_tables)) == []


def test_a_new_column_without_a_classification_fails() -> None:
    table = models.metadata.tables["visits"].to_metadata(MetaData())
    table.append_column(Column("mood", String(20)))
    assert unclassified([table]) == ["visits.mood: not classified"]


def test_a_table_without_a_declaration_fails() -> None:
    class Other(DeclarativeBase):
        pass

    class Diary(Other):
        __tablename__ = "diaries"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)

    assert unclassified([Diary.__table__]) == ["diaries.id: not classified"]  # type: ignore[list-item]


def test_a_column_classified_twice_is_refused() -> None:
    with pytest.raises(DoubleClassification):
        classify(sealed=("notes_enc",), clear={"why": ("notes_enc",)})


def test_sealed_and_only_sealed_columns_hold_ciphertext() -> None:
    """A sealed column is binary (vault ciphertext); a column named *_enc is classified sealed."""
    wrong = []
    for table in models.metadata.sorted_tables:
        for name, kind in declared(table).items():
            column = table.columns[name]
            if kind.sensitivity is Sensitivity.SEALED and not isinstance(column.type, LargeBinary):
                wrong.append(f"{table.name}.{name} is sealed but not binary")
            if name.endswith("_enc") and kind.sensitivity is not Sensitivity.SEALED:
                wrong.append(f"{table.name}.{name} holds ciphertext but is {kind.sensitivity}")
    assert wrong == []


def test_every_clear_or_pseudonymous_column_says_why() -> None:
    unexplained = [
        f"{table.name}.{name}"
        for table in models.metadata.sorted_tables
        for name, kind in declared(table).items()
        if kind.sensitivity in (Sensitivity.CLEAR, Sensitivity.PSEUDONYM) and not kind.reason
    ]
    assert unexplained == []


def test_clear_columns_names_the_clear_ones() -> None:
    assert "identifier_enc" not in clear_columns("patients")
    assert {"id", "state", "reference"} <= clear_columns("cases")
