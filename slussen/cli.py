"""The `slussen` command. Each subcommand builds the app, calls services, commits once, and exits
non-zero with one clear line on failure."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from flask import Flask

from slussen.config import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


class Failure(click.ClickException):
    """One line on stderr, exit code 1."""

    def format_message(self) -> str:
        return self.message


def _app() -> Flask:
    from slussen.app import create_app

    return create_app()


def fails_cleanly(func: F) -> F:
    """Turn the domain and configuration errors a command can meet into one line and exit 1."""

    @wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        from slussen.accounts.passwords import PasswordRejected
        from slussen.accounts.services import AccountError

        try:
            return func(*args, **kwargs)
        except (AccountError, PasswordRejected) as exc:
            raise Failure(str(exc)) from None

    return wrapped  # type: ignore[return-value]


@click.group(help="Slussen: social prescribing in primary care.")
@click.version_option(package_name="slussen")
def cli() -> None:
    pass


@cli.command("init-db", help="Create or upgrade the database to the newest schema.")
def init_db() -> None:
    from slussen import migrate
    from slussen.db import engine

    app = _app()
    with app.app_context():
        before = migrate.current_revision(engine())
        migrate.upgrade(engine())
        after = migrate.current_revision(engine())
    if before == after:
        click.echo(f"The database is up to date (revision {after}).")
    else:
        click.echo(f"The database was upgraded from {before or 'empty'} to {after}.")


@cli.command(help="Load demo data once (development only): units, demo users and more.")
@click.option("--password", help="Password for every demo user (default: a random one, printed).")
@click.option("--cases", type=click.IntRange(min=0), default=0, help="Also seed this many cases.")
@fails_cleanly
def demo(password: str | None, cases: int) -> None:
    from slussen import demo as demo_data

    app = _app()
    settings = app.extensions["slussen.settings"]
    if settings.is_production:
        raise Failure("Demo data is refused in production configuration.")
    with app.app_context():
        report = demo_data.seed(app, password=password, cases=cases)
    for line in report:
        click.echo(line)


@cli.command(help="Serve Slussen with gunicorn (bound to 127.0.0.1 unless told otherwise).")
@click.option("--host", default=None, help="Address to bind (default from settings: 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default 5000).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Worker processes.")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    from slussen.serve import run

    app = _app()  # validates settings and content before any worker starts
    settings = app.extensions["slussen.settings"]
    run(
        host=host or settings.serve_host,
        port=port or settings.serve_port,
        workers=workers or settings.serve_workers,
    )


@cli.group(help="Manage user accounts.")
def user() -> None:
    pass


@user.command("create", help="Create a user; asks for the password if not given.")
@click.option("--username", required=True)
@click.option("--name", "display_name", default="", help="Name shown in the app.")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["staff", "coach", "coordinator", "evaluator", "org_rep", "admin"]),
)
@click.option("--unit", "units", multiple=True, help="HSA-id of a unit the user works in.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@fails_cleanly
def user_create(
    username: str, display_name: str, role: str, units: tuple[str, ...], password: str
) -> None:
    from sqlalchemy import select

    from slussen.accounts.models import Unit
    from slussen.accounts.services import create_user
    from slussen.db import session_scope

    app = _app()
    with app.app_context(), session_scope(app) as session:
        unit_ids = []
        for hsa_id in units:
            unit = session.scalar(select(Unit).where(Unit.hsa_id == hsa_id))
            if unit is None:
                raise Failure(f"No unit with HSA-id {hsa_id}.")
            unit_ids.append(unit.id)
        created = create_user(
            session,
            app.extensions["slussen.settings"],
            username=username,
            display_name=display_name,
            role=role,
            password=password,
            unit_ids=unit_ids,
        )
        click.echo(f"Created {created.username} ({created.role}).")


@cli.group(help="Check the content directories (workflows, forms, letters).")
def content() -> None:
    pass


@content.command("check", help="Validate content; prints file:line for every problem.")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def content_check(directory: Path | None) -> None:
    from slussen.config import load_settings
    from slussen.content import check_content

    settings = load_settings()
    if directory is not None and not directory.is_dir():
        raise Failure(f"{directory} is not a directory.")
    loaded, problems = check_content(settings, directory)
    for problem in problems:
        click.echo(str(problem))
    errors = [p for p in problems if not p.is_warning]
    counted = ", ".join(
        f"{len(loaded.documents.get(kind, {}))} {kind}" for kind in sorted(loaded.root)
    )
    if errors:
        raise Failure(f"{len(errors)} error(s) in content ({counted}).")
    click.echo(f"Content is valid: {counted}.")


def main() -> None:
    """Console entry point: configuration errors become one line and exit code 2."""
    try:
        cli.main(prog_name="slussen", standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"slussen: configuration error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
