"""Open data: the HSDS export validates against the Open Referral schema (the parts Slussen
uses) and re-imports to the same directory; a bad file is refused with a message."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from slussen.cli import cli
from slussen.db import slice_commit
from slussen.directory import hsds
from slussen.directory.hsds import HsdsError, export_directory, import_directory
from slussen.directory.models import (
    Activity,
    ActivityOccasion,
    ActivityRevision,
    Organisation,
    OrganisationMember,
)
from tests.conftest import DemoSite
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


def _file(organisations: int, services: int = 2) -> dict[str, Any]:
    """An HSDS file from another tool: `organisations` organisations with `services` weekly
    activities each, read from the standard fields."""
    day = today().isoformat()
    return {
        "contents": [
            {
                "id": f"org-{o}",
                "name": f"Förening {o}",
                "services": [
                    {
                        "id": f"org-{o}-service-{s}",
                        "name": f"Aktivitet {o}.{s}",
                        "schedules": [
                            {"dtstart": day, "opens_at": "10:00", "freq": "WEEKLY", "byday": "MO"}
                        ],
                    }
                    for s in range(services)
                ],
            }
            for o in range(organisations)
        ]
    }


def _imported(session: Session) -> tuple[list[str], list[str]]:
    """The HSDS ids of the imported organisations and activities (the fixtures' have none
    of the file's)."""
    session.expire_all()
    organisations = session.scalars(
        select(Organisation.public_id).where(Organisation.public_id.like("org-%"))
    ).all()
    activities = session.scalars(
        select(Activity.public_id).where(Activity.public_id.like("org-%"))
    ).all()
    return sorted(organisations), sorted(activities)


def _import_in_slices(app: Flask, directory: Directory, document: Any, size: int) -> Any:
    """Import as the CLI does: a session of its own, committing slices of `size`; a failure
    rolls the current slice back (session_scope)."""
    factory = app.extensions["slussen.sessionmaker"]
    with app.app_context(), factory() as work:
        try:
            counts = import_directory(
                work,
                work.merge(directory.coordinator),
                document,
                known_categories=directory.categories,
                today=today(),
                commit=slice_commit(work),
                slice_size=size,
            )
            work.commit()
        except BaseException:
            work.rollback()
            raise
    return counts


def test_a_bad_item_late_in_the_file_writes_nothing(
    backend: str, app: Flask, session: Session, directory: Directory
) -> None:
    document = _file(6)
    document["contents"][4]["services"][1]["schedules"][0]["freq"] = "HOURLY"
    with pytest.raises(HsdsError, match=r"Organisation 5, aktivitet 2.*FREQ"):
        _import_in_slices(app, directory, document, size=1)
    assert _imported(session) == ([], [])


def test_an_import_stopped_in_a_slice_is_finished_by_the_next_without_duplicates(
    backend: str,
    app: Flask,
    session: Session,
    directory: Directory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash at the fifth organisation (in the third slice of two) keeps the slices before
    it; the same file again finishes the rest and counts what was done as unchanged."""
    document = _file(7)
    real = hsds.create_organisation
    created = 0

    def crash_at_the_fifth(*args: Any, **kwargs: Any) -> Organisation:
        nonlocal created
        created += 1
        if created == 5:
            raise RuntimeError("the power went")
        return real(*args, **kwargs)

    monkeypatch.setattr(hsds, "create_organisation", crash_at_the_fifth)
    with pytest.raises(RuntimeError, match="power"):
        _import_in_slices(app, directory, document, size=2)
    monkeypatch.setattr(hsds, "create_organisation", real)
    organisations, activities = _imported(session)
    # Slices of two, or fewer when one runs out of time: the first three or four are kept whole.
    kept = len(organisations)
    assert kept in (3, 4)
    assert organisations == [f"org-{o}" for o in range(kept)]
    assert activities == sorted(f"org-{o}-service-{s}" for o in range(kept) for s in range(2))

    counts = _import_in_slices(app, directory, document, size=2)
    assert counts == {
        "organisations": 7 - kept,
        "activities": 2 * (7 - kept),
        "unchanged": 2 * kept,
    }
    organisations, activities = _imported(session)
    assert organisations == [f"org-{o}" for o in range(7)]
    assert activities == sorted(f"org-{o}-service-{s}" for o in range(7) for s in range(2))
    revisions = session.scalar(
        select(func.count())
        .select_from(ActivityRevision)
        .join(Activity, ActivityRevision.activity_id == Activity.id)
        .where(Activity.public_id.like("org-%"))
    )
    assert revisions == 14, "one revision per activity: nothing imported twice"


def test_import_command_checks_without_a_write_lock_shows_progress_and_reruns_change_nothing(
    demo_site: DemoSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    document = _file(3)
    good.write_text(json.dumps(document), encoding="utf-8")
    document["contents"][2]["services"][0]["schedules"] = []
    bad.write_text(json.dumps(document), encoding="utf-8")
    command = ["directory", "import-hsds", "--as", "koordinator"]
    # While the file is checked, another page can write (here: append to the access log).
    waits: list[float] = []
    real = hsds._read_organisation

    def read_organisation(*args: Any, **kwargs: Any) -> Any:
        waits.append(demo_site.append_audit_row(None))
        return real(*args, **kwargs)

    monkeypatch.setattr(hsds, "_read_organisation", read_organisation)

    refused = runner.invoke(cli, [*command, str(bad)])
    assert refused.exit_code == 1 and "Organisation 3, aktivitet 1" in refused.output
    first = runner.invoke(cli, [*command, str(good)])
    assert first.exit_code == 0, first.output
    assert "Importing organisations" in first.output
    # The bad file wrote nothing: the good one adds all three.
    assert "3 organisations and 6 activities changed, 0 unchanged" in first.output
    again = runner.invoke(cli, [*command, str(good)])
    assert "0 organisations and 0 activities changed, 6 unchanged" in again.output
    assert len(waits) == 9 and max(waits) < 1.0, waits
