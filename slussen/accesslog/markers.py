"""Mark the views that show patient data, so one test can prove each of them writes an audit row.

A marked view promises: it writes at least one audit row (in the same transaction) before any
patient data leaves the server, and if that row cannot be written it shows an error page and none
of the patient's data. `tests/accesslog/test_patient_views_audited.py` walks
`patient_data_endpoints(app)` and checks both promises for every marked endpoint; it fails for a
marked endpoint it does not know how to call, so a new patient view cannot slip past it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, render_template

from slussen.db import commit_request

F = TypeVar("F", bound=Callable[..., Any])

MARKER = "shows_patient_data"

#: A view that holds patient data in its response sets `g.<NO_STORE_FLAG>` so the response is never
#: cached (the app's security headers read it).
NO_STORE_FLAG = "slussen_no_store"


def shows_patient_data(view: F) -> F:
    """Mark `view` as showing patient data (identity, record content, or who accessed it).

    Works above or below `require(...)`: `functools.wraps` copies the marker to the wrapper."""
    setattr(view, MARKER, True)
    return view


def render_audited(template: str, *, status: int = 200, **context: Any) -> tuple[str, int]:
    """Render the page of an audited read whose audit row is written: the request's transaction
    is committed first, so the write lock the audit row took is not held while the template
    renders (docs/architecture.md), and the read stays on record even when the page answers
    with an error status. Everything the page needs from the database is read before this."""
    commit_request()
    return render_template(template, **context), status


def patient_data_endpoints(app: Flask) -> list[str]:
    """The endpoints of `app` whose view is marked with `shows_patient_data`, sorted."""
    return sorted(
        endpoint
        for endpoint, view in app.view_functions.items()
        if getattr(view, MARKER, False) is True
    )
