"""`slussen user add-organisation`: an administrator gives an association's user their
organisation from the command line; the user then sees that organisation's requests."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from slussen.cli import cli
from tests.conftest import TEST_PASSWORD


def test_user_add_organisation_and_refusals(cli_env: Path) -> None:
    from slussen.accounts.models import User
    from slussen.app import create_app
    from slussen.db import session_scope
    from slussen.directory.models import Organisation, OrganisationMember

    runner = CliRunner()
    assert runner.invoke(cli, ["init-db"]).exit_code == 0
    for username, role in (("tove", "org_rep"), ("anna", "coach")):
        created = runner.invoke(
            cli,
            ["user", "create", "--username", username, "--role", role, "--password", TEST_PASSWORD],
        )
        assert created.exit_code == 0, created.output
    app = create_app()
    with app.app_context(), session_scope(app) as session:
        session.add(Organisation(name="Korpen Västerås", sector="ideburen"))

    added = runner.invoke(cli, ["user", "add-organisation", "Tove", "korpen västerås"])
    assert added.exit_code == 0, added.output
    assert "tove now represents Korpen Västerås." in added.output
    again = runner.invoke(cli, ["user", "add-organisation", "tove", "Korpen Västerås"])
    assert again.exit_code == 0  # idempotent

    nobody = runner.invoke(cli, ["user", "add-organisation", "nobody", "Korpen Västerås"])
    assert nobody.exit_code == 1 and "There is no user nobody" in nobody.output
    unknown = runner.invoke(cli, ["user", "add-organisation", "tove", "Okänd förening"])
    assert unknown.exit_code == 1 and "no organisation named" in unknown.output
    coach = runner.invoke(cli, ["user", "add-organisation", "anna", "Korpen Västerås"])
    assert coach.exit_code == 1 and "föreningsrepresentant" in coach.output

    with app.app_context(), session_scope(app) as session:
        members = session.execute(
            select(User.username, Organisation.name)
            .join(OrganisationMember, OrganisationMember.user_id == User.id)
            .join(Organisation, Organisation.id == OrganisationMember.organisation_id)
        ).all()
    assert [tuple(m) for m in members] == [("tove", "Korpen Västerås")]
    app.extensions["slussen.engine"].dispose()
