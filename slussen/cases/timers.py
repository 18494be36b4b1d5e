"""The daily tick: fire the workflow's timers for every case whose due date has passed."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.audit import SYSTEM
from slussen.cases.engine import fire
from slussen.cases.models import Case, DueDate
from slussen.cases.workflow import Workflow
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


def run_timers(
    session_factory: Callable[[], Session],
    ring: KeyRing,
    workflow: Workflow,
    *,
    today: dt.date,
    batch_size: int = 500,
) -> TickReport:
    """Fire each timer whose due date is on or before `today`, one committed batch at a time.

    Idempotent: firing a timer clears or moves its due date (or leaves the state), so a second
    run the same day finds nothing due. A refused event (a guard) is reported, not raised."""
    report = TickReport()
    for timer in workflow.timers:
        last_id = 0
        while True:
            with session_factory() as session, session.begin():
                cases = list(
                    session.scalars(
                        select(Case)
                        .join(DueDate, DueDate.case_id == Case.id)
                        .where(
                            DueDate.name == timer.due,
                            DueDate.due_on <= today,
                            Case.state.in_(timer.states),
                            Case.id > last_id,
                        )
                        .order_by(Case.id)
                        .limit(batch_size)
                    )
                )
                if not cases:
                    break
                store = Keystore(session, ring)
                for case in cases:
                    nested = session.begin_nested()
                    try:
                        fire(store, case, timer.event, SYSTEM, workflow=workflow, today=today)
                        nested.commit()
                        report.fired[timer.event] += 1
                    except DomainError as exc:
                        nested.rollback()
                        report.refused.append(f"{case.reference} {timer.event}: {exc}")
                last_id = cases[-1].id
    return report
