"""`slussen user link-oidc` and `slussen user local-password`: the administrator links a user to
the provider's subject and turns their local password off (and on again)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from slussen.accounts.models import User
from slussen.app import create_app
from slussen.audit import AuditEvent
from slussen.cli import cli
from slussen.db import session_scope
from tests.conftest import TEST_PASSWORD


def _user(username: str) -> User:
    app = create_app()
    try:
        with app.app_context(), session_scope(app) as session:
            user = session.scalar(select(User).where(User.username == username))
            assert user is not None
            session.expunge(user)
            return user
    finally:
        app.extensions["slussen.engine"].dispose()


def test_link_a_user_and_turn_their_password_off(cli_env: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["init-db"])
    for name in ("anna", "bo"):
        made = runner.invoke(
            cli,
            ["user", "create", "--username", name, "--role", "coach", "--password", TEST_PASSWORD],
        )
        assert made.exit_code == 0, made.output
    linked = runner.invoke(
        cli, ["user", "link-oidc", "Anna", "sub-anna", "--hsa-id", "SE2321000016-A001"]
    )
    assert linked.exit_code == 0, linked.output
    assert "anna logs in through the identity provider as sub-anna" in linked.output
    anna = _user("anna")
    assert (anna.oidc_subject, anna.hsa_id) == ("sub-anna", "SE2321000016-A001")
    taken = runner.invoke(cli, ["user", "link-oidc", "bo", "sub-anna"])
    assert taken.exit_code == 1 and "redan kopplat till anna" in taken.output
    assert _user("bo").oidc_subject is None
    off = runner.invoke(cli, ["user", "local-password", "anna", "--off"])
    assert off.exit_code == 0 and "is off" in off.output
    assert _user("anna").is_local_password_disabled
    on = runner.invoke(cli, ["user", "local-password", "anna", "--on"])
    assert on.exit_code == 0 and not _user("anna").is_local_password_disabled
    nobody = runner.invoke(cli, ["user", "local-password", "nobody", "--off"])
    assert nobody.exit_code == 1 and "There is no user nobody" in nobody.output
    app = create_app()
    try:
        with app.app_context(), session_scope(app) as session:
            purposes = session.scalars(
                select(AuditEvent.purpose).where(
                    AuditEvent.action == "update", AuditEvent.object_type == "user"
                )
            ).all()
    finally:
        app.extensions["slussen.engine"].dispose()
    assert sorted(purposes) == [
        "kopplad till regionens inloggning (subjekt sub-anna)",
        "lösenordsinloggning avstängd",
        "lösenordsinloggning påslagen",
    ]
