"""One way to refuse: each domain error kind, raised by a service inside a request that has
written something first, is answered by the one error handler with its status and Swedish
message, and nothing of the request is committed.

The services here are test-only (registered on a test blueprint) so that every kind is raised
the same way; the real services' refusals are checked where they live (404 outside the unit,
the 409 conflict page with the typed text, flashed refusals: test_case_views, test_web…).
"""

from __future__ import annotations

from html import unescape

import pytest
from flask import Blueprint, Flask, flash, redirect
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.accesslog.markers import render_audited
from slussen.accesslog.services import PatientNotFound
from slussen.accounts.auth import public
from slussen.accounts.models import Unit
from slussen.accounts.services import SecondFactorRefused
from slussen.cases.engine import StaleCase, TransitionRefused
from slussen.db import attempt, db_session
from slussen.directory.hsds import HsdsError
from slussen.directory.services import InvalidActivity, NotPending
from slussen.errors import Conflict, DomainError, Invalid, NotFound, NotPermitted
from slussen.letters.services import LetterIncomplete
from slussen.patients.services import DuplicatePatient, PatientErased
from slussen.questionnaires.codes import AnswerCodeError

#: (error raised by the service, status the handler answers, the Swedish message).
KINDS = [
    (NotPermitted("Din roll får inte göra det här."), 403, "Din roll får inte göra det här."),
    (NotFound("Ärendet finns inte."), 404, "Ärendet finns inte."),
    (Invalid("Skriv en rubrik."), 400, "Skriv en rubrik."),
    (Conflict("Ändringen är redan granskad."), 409, "Ändringen är redan granskad."),
    # The capabilities' thin subclasses answer as their kind.
    (TransitionRefused("Ange ett skäl."), 400, "Ange ett skäl."),
    (StaleCase("Någon annan har ändrat ärendet medan du arbetade."), 409, "Någon annan har"),
]

HSA_IDS = iter(f"SE2321000016-T{n:03d}" for n in range(1000))


def _write_unit(session: Session, name: str) -> None:
    """What a service writes before it refuses: a row that must not survive the refusal."""
    session.add(
        Unit(
            name=name,
            hsa_id=next(HSA_IDS),
            street="Testgatan 1",
            postcode="123 45",
            town="Teststad",
            phone="010-000 00 00",
        )
    )
    session.flush()


def _units_named(session: Session, name: str) -> int:
    return session.scalar(select(func.count()).select_from(Unit).where(Unit.name == name)) or 0


def _refusing_service(session: Session, error: DomainError, name: str) -> None:
    """A service that writes, then refuses, the way every capability's service does."""
    _write_unit(session, name)
    raise error


def _with_routes(app: Flask, error: DomainError | None = None) -> None:
    bp = Blueprint("errors_test", __name__)

    @bp.route("/test/refuse", methods=["POST"])
    @public
    def refuse() -> ResponseReturnValue:
        assert error is not None
        _refusing_service(db_session(), error, "refused")
        return "not reached"

    @bp.route("/test/ok", methods=["POST"])
    @public
    def ok() -> ResponseReturnValue:
        _write_unit(db_session(), "kept")
        return redirect("/")

    @bp.route("/test/refused-step", methods=["POST"])
    @public
    def refused_step() -> ResponseReturnValue:
        # The view answers this refusal itself (a flash) and goes on: the step is undone,
        # what the request wrote before it is committed.
        _write_unit(db_session(), "before the step")
        try:
            with attempt():
                _refusing_service(db_session(), Invalid("Skriv en rubrik."), "refused step")
        except Invalid as exc:
            flash(str(exc), "error")
        return redirect("/")

    @bp.route("/test/audited-error-page", methods=["POST"])
    @public
    def audited_error_page() -> ResponseReturnValue:
        # An audited read shown with an error status keeps its row (render_audited commits).
        _write_unit(db_session(), "audited read")
        return render_audited("error.html", status=422, code=422)

    app.register_blueprint(bp)


@pytest.mark.parametrize(
    ("error", "status", "message"), KINDS, ids=[type(error).__name__ for error, _s, _m in KINDS]
)
def test_each_kind_has_its_status_and_message_and_commits_nothing(
    app: Flask, client: FlaskClient, session: Session, error: DomainError, status: int, message: str
) -> None:
    _with_routes(app, error)
    response = client.post("/test/refuse")
    assert response.status_code == status
    page = unescape(response.get_data(as_text=True))
    assert message in page
    assert "<h1>" in page  # the error page, not a traceback
    assert _units_named(session, "refused") == 0


def test_a_request_without_refusal_commits_once_after_the_view(
    app: Flask, client: FlaskClient, session: Session
) -> None:
    _with_routes(app)
    response = client.post("/test/ok")
    assert response.status_code == 302
    assert _units_named(session, "kept") == 1


def test_a_refusal_the_view_answers_itself_undoes_only_the_refused_step(
    app: Flask, client: FlaskClient, session: Session
) -> None:
    _with_routes(app)
    response = client.post("/test/refused-step", follow_redirects=False)
    assert response.status_code == 302
    assert _units_named(session, "refused step") == 0
    assert _units_named(session, "before the step") == 1


def test_an_audited_page_with_an_error_status_keeps_its_read(
    app: Flask, client: FlaskClient, session: Session
) -> None:
    _with_routes(app)
    response = client.post("/test/audited-error-page")
    assert response.status_code == 422
    assert _units_named(session, "audited read") == 1


def test_an_unexpected_exception_commits_nothing(
    app: Flask, client: FlaskClient, session: Session
) -> None:
    _with_routes(app, RuntimeError("boom"))  # type: ignore[arg-type]
    response = client.post("/test/refuse")
    assert response.status_code == 500
    assert _units_named(session, "refused") == 0


def test_every_capability_refuses_with_the_one_hierarchy() -> None:
    """No capability keeps an error base of its own: their named refusals are these kinds."""
    for cls, kind in [
        (PatientNotFound, NotFound),
        (PatientErased, NotFound),
        (TransitionRefused, Invalid),
        (SecondFactorRefused, Invalid),
        (HsdsError, Invalid),
        (InvalidActivity, Invalid),
        (LetterIncomplete, Invalid),
        (AnswerCodeError, Invalid),
        (StaleCase, Conflict),
        (NotPending, Conflict),
        (DuplicatePatient, Conflict),
    ]:
        assert issubclass(cls, kind), cls
