"""What the capabilities contribute to shared machinery, gathered in one place above them all:
the content checkers (run in this order by create_app and `slussen content check`) and the
workflow's guards. No capability imports another to register itself; this list is the whole set.
"""

from __future__ import annotations

import functools
from pathlib import Path

from slussen.cases import guards as case_guards
from slussen.cases.guards import Guard
from slussen.cases.workflow import check_workflow
from slussen.config import Settings
from slussen.content import Checker, Content, Problem, refuse_errors, run_checkers
from slussen.directory.categories import check_interest_mapping
from slussen.letters.definitions import check_letters
from slussen.questionnaires import guards as questionnaire_guards
from slussen.questionnaires.definitions import check_forms
from slussen.visits import guards as visit_guards

#: Every guard a workflow file may name, by name.
GUARDS: dict[str, Guard] = {
    **case_guards.GUARDS,
    **visit_guards.GUARDS,
    **questionnaire_guards.GUARDS,
}

CHECKERS: tuple[Checker, ...] = (
    functools.partial(check_workflow, guards=GUARDS),
    check_interest_mapping,
    check_letters,
    check_forms,
)


def check_content(
    settings: Settings, override: str | Path | None = None
) -> tuple[Content, list[Problem]]:
    """Parse and check all content; return it with every problem found (errors and warnings)."""
    return run_checkers(settings, CHECKERS, override)


def load_content(settings: Settings) -> Content:
    """Content for create_app; raises ContentError on any error (warnings are allowed)."""
    return refuse_errors(*check_content(settings))
