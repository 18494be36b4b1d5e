"""Open data: the HSDS export validates against the Open Referral schema (the parts Slussen
uses) and re-imports to the same directory; a bad file is refused with a message."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from sqlalchemy import delete
from sqlalchemy.orm import Session

from slussen.directory.hsds import HsdsError, export_directory, import_directory
from slussen.directory.models import (
    Activity,
    ActivityOccasion,
    ActivityRevision,
    Organisation,
    OrganisationMember,
)
from tests.directory.conftest import Directory, today

SCHEMA = json.loads((Path(__file__).parent / "hsds_schema.json").read_text())


def _seed(directory: Directory, publish: Callable[..., Any]) -> None:
    publish(
        title="Språkpromenad",
        categories=["language_cafe", "nature_walks"],
        exception_dates=[(today() + dt.timedelta(days=14)).isoformat()],
        extra_dates=[(today() + dt.timedelta(days=3)).isoformat()],
        has_companion=True,
        capacity=12,
        age_groups=["adults", "seniors"],
        languages=["sv", "ar"],
        contact_name="Ulla Exempel",
        contact_phone="070-000 00 02",
        contact_email="ulla@example.org",
        accessibility_notes="Flack grusväg, bänkar längs vägen.",
        street="Parkgatan 1",
        postcode="722 15",
        town="Västerås",
    )
    publish(
        directory.org_b,
        title="Pickleball",
        categories=["sport_exercise"],
        cost_sek=40,
        cost_note="första gången gratis",
        rrule="FREQ=MONTHLY;BYDAY=2TU",
    )
    publish(title="Höstmarknad", rrule="FREQ=YEARLY;BYMONTH=10;BYDAY=1SA")


def test_export_validates_against_the_open_referral_schema(
    backend: str, app: Flask, session: Session, directory: Directory, publish: Callable[..., Any]
) -> None:
    _seed(directory, publish)
    with app.app_context():
        document = export_directory(session)
    errors = sorted(
        Draft202012Validator(
            SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
        ).iter_errors(document),
        key=str,
    )
    assert errors == []
    assert document["total_items"] == 2
    service = document["contents"][0]["services"][0]
    assert service["schedules"][0]["freq"] == "WEEKLY"
    assert service["x_slussen"]["has_companion"] is True


def test_export_reimports_to_the_same_directory(
    backend: str, app: Flask, session: Session, directory: Directory, publish: Callable[..., Any]
) -> None:
    _seed(directory, publish)
    with app.app_context():
        before = export_directory(session)
        # Importing the same file again changes nothing.
        counts = import_directory(
            session,
            directory.coordinator,
            before,
            known_categories=directory.categories,
            today=today(),
        )
        assert counts == {"organisations": 0, "activities": 0, "unchanged": 3}
        # Into an empty directory: the same organisations and activities come back.
        for model in (ActivityOccasion, OrganisationMember):
            session.execute(delete(model))
        session.execute(Activity.__table__.update().values(published_revision_id=None))
        for model in (ActivityRevision, Activity, Organisation):
            session.execute(delete(model))
        session.flush()
        session.expire_all()
        counts = import_directory(
            session,
            directory.coordinator,
            before,
            known_categories=directory.categories,
            today=today(),
        )
        assert counts["activities"] == 3
        after = export_directory(session)
    assert after == before


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"nothing": []}, "contents saknas"),
        ({"contents": [{"name": "Utan id"}]}, "id och name krävs"),
        (
            {"contents": [{"id": "a", "name": "X", "services": [{"id": "s", "name": "Y"}]}]},
            "startdatum",
        ),
        (
            {
                "contents": [
                    {
                        "id": "a",
                        "name": "X",
                        "services": [
                            {
                                "id": "s",
                                "name": "Y",
                                "schedules": [
                                    {"dtstart": "2026-03-03", "opens_at": "10:00", "freq": "HOURLY"}
                                ],
                            }
                        ],
                    }
                ]
            },
            "FREQ",
        ),
    ],
)
def test_a_bad_file_is_refused_with_a_message(
    app: Flask, session: Session, directory: Directory, document: Any, message: str
) -> None:
    with pytest.raises(HsdsError, match=message):
        import_directory(
            session,
            directory.coordinator,
            document,
            known_categories=directory.categories,
            today=today(),
        )


def test_open_data_endpoint_is_public_json(
    client: FlaskClient, directory: Directory, publish: Callable[..., Any]
) -> None:
    publish(title="Teknikhjälp")
    response = client.get("/aktiviteter/oppna-data.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert "Teknikhjälp" in response.get_data(as_text=True)
