"""`slussen unit create` and `slussen user deactivate`: a new vårdcentral from the command line,
with no SQL, and its refusals as one line and exit code 1."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from slussen.cli import cli
from tests.conftest import TEST_PASSWORD


def test_a_new_vardcentral_from_the_command_line(cli_env: Path) -> None:
    from slussen.accounts.models import Unit, User
    from slussen.app import create_app
    from slussen.audit import AuditEvent
    from slussen.db import session_scope

    runner = CliRunner()
    assert runner.invoke(cli, ["init-db"]).exit_code == 0
    created = runner.invoke(
        cli,
        [
            "unit",
            "create",
            "--name",
            "Vårdcentralen Öster",
            "--hsa-id",
            "SE2321000016-OST1",
            "--street",
            "Österled 2",
            "--postcode",
            "72218",
            "--town",
            "Västerås",
            "--phone",
            "021-11 22 33",
        ],
    )
    assert created.exit_code == 0, created.output
    assert "Created the unit Vårdcentralen Öster (SE2321000016-OST1)." in created.output
    again = runner.invoke(
        cli, ["unit", "create", "--name", "Kopia", "--hsa-id", "SE2321000016-OST1"]
    )
    assert again.exit_code == 1
    assert "Det finns redan en enhet med HSA-id SE2321000016-OST1" in again.output
    bad = runner.invoke(cli, ["unit", "create", "--name", "Fel", "--hsa-id", "SE99-X"])
    assert bad.exit_code == 1 and "HSA-id" in bad.output and "Traceback" not in bad.output

    # Users of the new unit, made by its HSA-id.
    for username, role in (("anna", "coach"), ("chef", "admin")):
        made = runner.invoke(
            cli,
            [
                "user",
                "create",
                "--username",
                username,
                "--role",
                role,
                "--unit",
                "SE2321000016-OST1",
                "--password",
                TEST_PASSWORD,
            ],
        )
        assert made.exit_code == 0, made.output
    hours = runner.invoke(cli, ["unit", "hours", "SE2321000016-OST1"])
    assert "open 08.00–17.00 on weekdays 12345" in hours.output

    off = runner.invoke(cli, ["user", "deactivate", "Anna"])
    assert off.exit_code == 0 and "anna is deactivated" in off.output
    twice = runner.invoke(cli, ["user", "deactivate", "anna"])
    assert twice.exit_code == 1 and "Kontot anna är redan avstängt." in twice.output
    last = runner.invoke(cli, ["user", "deactivate", "chef"])
    assert last.exit_code == 1
    assert "den enda aktiva administratören och kan inte stängas av" in last.output
    missing = runner.invoke(cli, ["user", "deactivate", "nobody"])
    assert missing.exit_code == 1 and "There is no user nobody" in missing.output

    app = create_app()
    with app.app_context(), session_scope(app) as session:
        unit = session.scalar(select(Unit).where(Unit.hsa_id == "SE2321000016-OST1"))
        assert unit is not None
        assert (unit.street, unit.postcode, unit.town, unit.phone) == (
            "Österled 2",
            "722 18",
            "Västerås",
            "021-11 22 33",
        )
        users = {u.username: u for u in session.scalars(select(User))}
        assert not users["anna"].is_active and users["chef"].is_active
        assert users["anna"].unit_ids == {unit.id}
        rows = session.execute(
            select(AuditEvent.action, AuditEvent.object_type, AuditEvent.actor_role).where(
                AuditEvent.object_type.in_(["unit", "user"]),
                AuditEvent.action.in_(["create", "account_disable"]),
            )
        ).all()
        assert ("create", "unit", "system") in rows
        assert ("account_disable", "user", "system") in rows
    app.extensions["slussen.engine"].dispose()
