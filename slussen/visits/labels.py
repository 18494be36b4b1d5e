"""Words for the visit codes stored in the database (relations, frequencies, plan steps,
hand-overs, visits), in the user's language, for the templates of every capability."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from flask_babel import gettext as _


@functools.cache
def labels(language: str) -> dict[str, Callable[[object], object]]:
    """Label functions by template name; built once per UI language (the catalogs do not change
    while the app runs). An unknown code is shown as it is."""
    relations = {
        "family": _("Family"),
        "friend": _("Friend"),
        "neighbour": _("Neighbour"),
        "colleague": _("Colleague"),
        "association": _("Association or group"),
        "care": _("Care or support"),
        "other": _("Other"),
    }
    frequencies = {
        "daily": _("Daily"),
        "weekly": _("Weekly"),
        "monthly": _("Monthly"),
        "rarely": _("Rarely"),
        "lost": _("Contact lost"),
    }
    closeness = {1: _("Close"), 2: _("Fairly close"), 3: _("Further away")}
    step_actors = {
        "patient": _("The patient"),
        "coach": _("The coach"),
        "companion": _("A companion"),
    }
    outcomes = {
        "pending": _("Not yet"),
        "done": _("Done"),
        "not_done": _("Not done"),
        "barrier": _("A barrier came up"),
    }
    handover_statuses = {
        "requested": _("Requested"),
        "accepted": _("Accepted"),
        "declined": _("Declined"),
        "done": _("Done"),
    }
    handover_outcomes = {
        "went": _("Went"),
        "did_not_go": _("Did not go"),
        "will_continue": _("Came and will continue"),
        "barrier_found": _("A barrier came up"),
    }
    visit_kinds = {
        "mapping": _("Mapping visit"),
        "follow_up_1": _("Follow-up 1"),
        "follow_up_2": _("Follow-up 2"),
    }
    visit_statuses = {"booked": _("booked"), "done": _("held"), "cancelled": _("cancelled")}
    tables: dict[str, Mapping[Any, str]] = {
        "relation_label": relations,
        "frequency_label": frequencies,
        "closeness_label": closeness,
        "step_actor_label": step_actors,
        "outcome_label": outcomes,
        "handover_status": handover_statuses,
        "handover_outcome": handover_outcomes,
        "visit_kind": visit_kinds,
        "visit_status": visit_statuses,
    }
    return {name: _lookup(table) for name, table in tables.items()}


def _lookup(table: Mapping[Any, str]) -> Callable[[object], object]:
    return lambda code: table.get(code, code)
