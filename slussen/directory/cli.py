"""`slussen directory …`: rebuild occasions (daily), export and import open data (HSDS)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click
from sqlalchemy import select

from slussen.accounts.models import User
from slussen.clitools import Failure, clear_stale_parts, command_app
from slussen.config import today_local
from slussen.db import session_scope, slice_commit
from slussen.directory.categories import interest_categories
from slussen.directory.hsds import HsdsError, export_directory, import_directory
from slussen.directory.services import refresh_all_occasions
from slussen.privatefiles import write_private


@click.group("directory", help="The activity directory: occasions and open data (HSDS).")
def directory_cli() -> None:
    pass


@directory_cli.command(
    "refresh", help="Rebuild the stored occasions of every published activity (run daily)."
)
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), default=None)
def refresh(today: dt.datetime | None) -> None:
    app = command_app()
    day = today.date() if today else today_local()
    with app.app_context(), session_scope(app) as session:
        total = refresh_all_occasions(session, today=day)
    click.echo(f"Occasions rebuilt: {total}.")


@directory_cli.command("export-hsds", help="Write the published directory as HSDS 3 JSON.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def export_hsds(out: Path | None) -> None:
    if out is not None:
        clear_stale_parts(out.parent, out.name)
    app = command_app()
    with app.app_context(), session_scope(app) as session:
        text = json.dumps(export_directory(session), ensure_ascii=False, indent=1)
    if out is None:
        sys.stdout.write(text + "\n")
    else:
        write_private(out, (text + "\n").encode("utf-8"))
        click.echo(f"Wrote {out}.")


@directory_cli.command("import-hsds", help="Add or update organisations and activities from HSDS.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "username", required=True, help="The coordinator who approves the import.")
def import_hsds(file: Path, username: str) -> None:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Failure(f"{file} is not JSON: {exc}") from None
    app = command_app()
    with app.app_context(), session_scope(app) as session:
        actor = session.scalar(select(User).where(User.username == username))
        if actor is None:
            raise Failure(f"no user named {username!r}")
        try:
            with click.progressbar(length=1, label="Importing organisations", show_pos=True) as bar:

                def progress(done: int, total: int) -> None:
                    bar.length = total
                    bar.update(done - bar.pos)

                counts = import_directory(
                    session,
                    actor,
                    document,
                    known_categories=[c.id for c in interest_categories()],
                    today=today_local(),
                    # A slice at a time: pages never wait for the import; a rerun finishes it.
                    commit=slice_commit(session),
                    progress=progress,
                )
        except HsdsError as exc:
            raise Failure(str(exc)) from None
    click.echo(
        f"Imported: {counts['organisations']} organisations and {counts['activities']} "
        f"activities changed, {counts['unchanged']} unchanged."
    )
