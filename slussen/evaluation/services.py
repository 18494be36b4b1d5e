"""Evaluation services: the evaluator's report and the pseudonymised dataset, both audited.

Only evaluators (and the operator at the command line) may call these. An evaluator who works in
units sees those units only; an evaluator with no unit sees the whole region. Every call writes
one audit row (action "read" for the report, "export" for a file) in the caller's transaction,
without any patient id: the evaluator never sees a single patient.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen import audit, vault
from slussen.accounts.models import Unit
from slussen.accounts.roles import Permission, grants
from slussen.audit import Actor
from slussen.cases.workflow import Workflow
from slussen.config import Settings
from slussen.content import Content
from slussen.errors import NotFound, NotPermitted
from slussen.evaluation import codebook, stats
from slussen.evaluation.dataset import MOMENTS, STEPS, CaseBatch, Filters, months, stream_cases
from slussen.evaluation.definitions import (
    ScoreDefinition,
    outcome_definitions,
    screening_forms,
)
from slussen.evaluation.report import Accumulator, Report


@dataclass(frozen=True)
class Context:
    """What the evaluation reads besides the database: loaded content and settings."""

    content: Content
    workflow: Workflow
    settings: Settings

    @property
    def definitions(self) -> list[ScoreDefinition]:
        return outcome_definitions(self.content)


def _scope(session: Session, actor: Actor, filters: Filters) -> frozenset[int] | None:
    """The units the actor may evaluate (None: all), refusing a unit filter outside them."""
    if actor.role != "system" and not grants(actor.role, Permission.EVALUATE):
        raise NotPermitted("Bara utvärderare kan se utvärderingen.")
    scope = actor.unit_ids if actor.role != "system" and actor.unit_ids else None
    if filters.unit_id is not None:
        if scope is not None and filters.unit_id not in scope:
            raise NotPermitted("Du kan bara utvärdera dina egna enheter.")
        if session.get(Unit, filters.unit_id) is None:
            raise NotFound("Enheten finns inte.")
    return scope


def unit_names(session: Session, scope: frozenset[int] | None = None) -> dict[int, str]:
    query = select(Unit.id, Unit.name).order_by(Unit.name)
    if scope is not None:
        query = query.where(Unit.id.in_(sorted(scope)))
    return {unit_id: name for unit_id, name in session.execute(query)}


def describe(filters: Filters) -> str:
    """The filters in a few words for the audit row (no patient data in them)."""
    parts = [
        f"{name}={value}"
        for name, value in (
            ("från", filters.date_from),
            ("till", filters.date_to),
            ("enhet", filters.unit_id),
            ("kanal", filters.channel),
            ("ålder", filters.age_band),
            ("kön", filters.sex),
        )
        if value is not None
    ]
    return ", ".join(parts) or "alla ärenden"


def _records(
    session: Session, context: Context, filters: Filters, scope: frozenset[int] | None
) -> Iterator[CaseBatch]:
    return stream_cases(
        session,
        context.definitions,
        filters,
        screening_forms=screening_forms(context.content),
        unit_ids=scope,
    )


def build_report(
    session: Session,
    ring: vault.KeyRing,
    actor: Actor,
    context: Context,
    filters: Filters,
    *,
    as_pdf: bool = False,
) -> Report:
    """The flow and outcome report for `filters`, suppressed with the configured k, in one pass
    over the cases. Writes the audit row ("read", or "export" when it becomes a PDF); refuses a
    non-evaluator or a unit outside the evaluator's units (NotPermitted)."""
    scope = _scope(session, actor, filters)
    accumulator = Accumulator(context.definitions)
    for batch in _records(session, context, filters, scope):
        accumulator.add(batch)
    report = accumulator.finish(
        filters=filters,
        k=context.settings.suppression_k,
        unit_names=unit_names(session),
        terminal=context.workflow.terminal_states,
    )
    audit.record(
        session,
        ring,
        actor,
        "export" if as_pdf else "read",
        "evaluation",
        "report.pdf" if as_pdf else "report",
        purpose=f"utvärdering: {describe(filters)}"[:200],
    )
    return report


# --- the pseudonymised dataset ------------------------------------------------------------------

#: The moments written as months (every one but the complete pair, a flag).
MILESTONE_COLUMNS = [m for m in MOMENTS if m != "complete_pair"]


def write_dataset(
    session: Session,
    ring: vault.KeyRing,
    actor: Actor,
    context: Context,
    filters: Filters,
    out: TextIO,
) -> int:
    """Write the pseudonymised dataset as CSV: one header row (the codebook's columns), then one
    row per case and nothing else; what it covers is stated in the codebook. Returns the number
    of rows. Writes the audit row (export); refuses like `build_report`."""
    scope = _scope(session, actor, filters)
    definitions = context.definitions
    hsa = {u: h for u, h in session.execute(select(Unit.id, Unit.hsa_id))}
    names = unit_names(session)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in codebook.columns(context.workflow, definitions)])
    # Texts (units, codes) are quoted by the csv module once per distinct value; months, hex
    # pseudonyms, flags and numbers never need quoting. The rows are then joined directly: the
    # csv module's per-field checks would cost more than everything else here.
    units = {u: _csv_fields([hsa.get(u, ""), name]) for u, name in names.items()}
    quoted = _Quoted()
    rows = 0
    for batch in _records(session, context, filters, scope):
        pseudonyms = [f"P-{pseudonym[:16]}" for pseudonym in batch.pseudonym.tolist()]
        month = {step: months(batch.days[:, MOMENTS.index(step)]) for step in MILESTONE_COLUMNS}
        columns: list[list[str]] = [
            pseudonyms,
            [units.get(u) or _csv_fields([hsa.get(u, ""), ""]) for u in batch.unit_id.tolist()],
            [quoted[v] for v in batch.channel.tolist()],
            [quoted[v] for v in batch.age_band.tolist()],
            [quoted[v] for v in batch.sex.tolist()],
            [quoted[v] for v in batch.status.tolist()],
            month["referral"],
            month["invitation"],
            month["baseline"],
            _flags(batch.is_screen_positive),
            month["mapping_visit"],
            month["action_plan"],
            month["handover_done"],
            month["follow_up_1"],
            month["six_month"],
            _flags(batch.has_complete_pair),
        ]
        # The batch's score keys are the definitions', in the same order as the header.
        for j in range(len(batch.keys)):
            columns += [_numbers(batch.scores[:, j, 0]), _numbers(batch.scores[:, j, 1])]
        out.write("\n".join(map(",".join, zip(*columns, strict=True))) + "\n")
        rows += len(batch)
    audit.record(
        session,
        ring,
        actor,
        "export",
        "evaluation",
        "dataset.csv",
        purpose=f"utvärdering, dataset: {describe(filters)}"[:200],
    )
    return rows


def _csv_fields(values: list[str]) -> str:
    """`values` as CSV fields joined by commas, quoted where needed (no line end)."""
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(values)
    return line.getvalue()[:-1]


class _Quoted(dict[str, str]):
    """Each text as a CSV field, quoted where needed; worked out once per distinct text."""

    def __missing__(self, text: str) -> str:
        field = self[text] = _csv_fields([text])
        return field


def _flags(values: NDArray[np.bool_]) -> list[str]:
    return np.where(values, "1", "0").tolist()  # type: ignore[no-any-return]


def _numbers(values: stats.Floats) -> list[str]:
    """Each value with ten significant digits, "" for NaN; formatted once per distinct value
    (a score nobody answered is all NaN and needs no formatting at all)."""
    texts = np.full(len(values), "", dtype=object)
    known = ~np.isnan(values)
    if known.any():
        distinct, inverse = np.unique(values[known], return_inverse=True)
        formatted = np.array([f"{v:.10g}" for v in distinct.tolist()], dtype=object)
        texts[known] = formatted[inverse.reshape(-1)]
    return texts.tolist()  # type: ignore[no-any-return]


__all__ = ["STEPS", "Context", "build_report", "write_dataset"]
