"""The daily tick: fire the workflow's timers for every case whose due date has passed."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from slussen.audit import SYSTEM
from slussen.cases.engine import fire
from slussen.cases.models import Case, DueDate
from slussen.cases.workflow import Timer, Workflow
from slussen.db import SLICE_SIZE, in_slices, slice_commit
from slussen.errors import DomainError
from slussen.keystore import Keystore
from slussen.vault import KeyRing


@dataclass
class TickReport:
    fired: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        if not self.fired and not self.refused:
            return ["Nothing was due."]
        out = [f"{event}: {count} case(s)" for event, count in sorted(self.fired.items())]
        out += [f"refused: {r}" for r in self.refused]
        return out


def _due(what: Any, timer: Timer, today: dt.date) -> Select[Any]:
    """`select(what)` of the cases whose `timer` is due on or before `today`."""
    return (
        select(what)
        .join(DueDate, DueDate.case_id == Case.id)
        .where(DueDate.name == timer.due, DueDate.due_on <= today, Case.state.in_(timer.states))
    )


def run_timers(
    session_factory: Callable[[], Session],
    ring: KeyRing,
    workflow: Workflow,
    *,
    today: dt.date,
    batch_size: int = SLICE_SIZE,
) -> TickReport:
    """Fire each timer whose due date is on or before `today`, in short committed slices
    (`db.in_slices`), so other units' pages do not wait for the tick.

    Idempotent and resumable: firing a timer clears or moves its due date (or leaves the state),
    so a second run the same day, or a run after one that stopped half way, fires only what is
    still due. A refused event (a guard) is reported, not raised."""
    report = TickReport()
    with session_factory() as session:
        store = Keystore(session, ring)

        def fire_due(item: tuple[Timer, int]) -> tuple[()]:
            timer, case_id = item
            # Read again in this slice: still due, and still in a state the timer acts on.
            case = session.scalar(_due(Case, timer, today).where(Case.id == case_id).limit(1))
            if case is None:
                return ()
            nested = session.begin_nested()
            try:
                fire(store, case, timer.event, SYSTEM, workflow=workflow, today=today)
                nested.commit()
                report.fired[timer.event] += 1
            except DomainError as exc:
                nested.rollback()
                report.refused.append(f"{case.reference} {timer.event}: {exc}")
            return ()

        commit = slice_commit(session)
        for timer in workflow.timers:
            due = [
                (timer, case_id)
                for case_id in session.scalars(
                    _due(Case.id, timer, today).distinct().order_by(Case.id)
                )
            ]
            session.commit()  # the read ends; each slice is its own transaction
            for _ in in_slices(due, fire_due, commit=commit, size=batch_size):
                pass
    return report
