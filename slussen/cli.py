"""The `slussen` command: each subcommand parses its options, builds the app, calls one service
function, commits once, prints, and exits non-zero with one clear line on failure.

Modules that load heavy libraries (the app with numpy and scipy, alembic, reportlab, the demo)
are imported when their command runs, each with a comment saying why: `slussen --help`, `keys
init` or `content check` do not need them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from slussen import audit, serve, vault
from slussen.accounts.models import Unit, User
from slussen.accounts.passwords import PasswordRejected
from slussen.accounts.services import (
    create_user,
    link_oidc_subject,
    reset_totp,
    set_local_password,
    set_opening_hours,
)
from slussen.admin.services import UnitDetails, create_unit, deactivate_account
from slussen.capabilities import check_content
from slussen.cases.engine import current_workflow
from slussen.cases.timers import run_timers
from slussen.clitools import Failure, clear_stale_parts
from slussen.config import ConfigError, load_settings, today_local
from slussen.db import SLICE_SIZE, engine, make_engine, session_scope, slice_commit
from slussen.dbroles import app_role_warnings
from slussen.directory.cli import directory_cli
from slussen.directory.models import Organisation
from slussen.directory.services import add_representative
from slussen.errors import DomainError
from slussen.evaluation.cli import evaluation_cli
from slussen.intake.services import erase_self_referral_by_reference
from slussen.keystore import (
    KeyRingMismatch,
    Keystore,
    check_key_ring,
    current_key_ring,
    key_usage,
    rotate_master_key,
    seal_canary,
)
from slussen.privatefiles import private_part, write_private
from slussen.questionnaires import fhir
from slussen.questionnaires.services import export_case_answers
from slussen.vault import VaultError

F = TypeVar("F", bound=Callable[..., Any])


def _app() -> Flask:
    # Imported when a command runs: the app loads every capability, numpy and scipy included.
    from slussen.app import create_app

    return create_app()


def fails_cleanly(func: F) -> F:
    """Turn the domain and configuration errors a command can meet into one line and exit 1."""

    @wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (DomainError, PasswordRejected, VaultError) as exc:
            raise Failure(str(exc)) from None

    return wrapped  # type: ignore[return-value]


@click.group(help="Slussen: social prescribing in primary care.")
@click.version_option(package_name="slussen")
@click.pass_context
def cli(ctx: click.Context) -> None:
    # The capabilities' command groups build the app through clitools.command_app. `_app` is
    # looked up when called, so a test may replace it for every command at once.
    ctx.obj = lambda: _app()


@cli.command(
    "init-db",
    help="Create or upgrade the database to the newest schema, and seal the key-ring canary.",
)
def init_db() -> None:
    from slussen import migrate  # alembic, only for this command

    app = _app()
    settings = app.extensions["slussen.settings"]
    with app.app_context():
        try:
            ring = current_key_ring()
        except VaultError as exc:
            raise Failure(f"{exc}; the database was not changed.") from None
        # The schema's owner migrates; the check then looks at the role the app connects as.
        separate = bool(settings.migration_database_url)
        owner = make_engine(settings.migration_sqlalchemy_url) if separate else engine()
        try:
            before = migrate.current_revision(owner)
            with Session(owner) as session:
                check_key_ring(session, ring)
            migrate.upgrade(owner, ring=ring)
            after = migrate.current_revision(owner)
            with Session(owner) as session, session.begin():
                sealed = seal_canary(session, ring)
            with engine().connect() as connection:
                warnings = app_role_warnings(connection)
        except KeyRingMismatch as exc:
            raise Failure(f"{exc}; the database was not changed.") from None
        except OperationalError as exc:
            first = str(exc.orig or exc).strip().splitlines()[0]
            raise Failure(f"The database could not be reached: {first}") from None
        finally:
            if separate:
                owner.dispose()
    if before == after:
        click.echo(f"The database is up to date (revision {after}).")
    else:
        click.echo(f"The database was upgraded from {before or 'empty'} to {after}.")
    if sealed:
        click.echo(f"Sealed the key-ring canary with the key ring {ring.fingerprint()}.")
    for warning in warnings:
        click.echo(f"Warning: {warning} (docs/install.md §2).")


@cli.command("demo", help="Load demo data once (development only): units, demo users and more.")
@click.option("--password", help="Password for every demo user (default: a random one, printed).")
@click.option("--cases", type=click.IntRange(min=0), default=0, help="Also seed this many cases.")
@click.option(
    "--units",
    type=click.IntRange(3, 500),
    default=3,
    show_default=True,
    help="Units in the demo region (a region-sized load test uses 50).",
)
@fails_cleanly
def demo_command(password: str | None, cases: int, units: int) -> None:
    from slussen import demo as demo_data  # every capability's services, only for the demo

    app = _app()
    settings = app.extensions["slussen.settings"]
    if settings.is_production:
        raise Failure("Demo data is refused in production configuration.")
    with app.app_context():
        report = demo_data.seed(app, password=password, cases=cases, units=units)
    for line in report:
        click.echo(line)


@cli.command(
    "serve", help="Serve Slussen with gunicorn (bound to 127.0.0.1 unless told otherwise)."
)
@click.option("--host", default=None, help="Address to bind (default from settings: 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port (default 5000).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes; while rate limits count in memory, one process with their threads.",
)
def serve_command(host: str | None, port: int | None, workers: int | None) -> None:
    app = _app()  # validates settings and content before any worker starts
    settings = app.extensions["slussen.settings"]
    # A wrong key ring would serve pages that read no patient: refuse before any worker starts.
    try:
        with app.app_context(), session_scope(app) as session:
            check_key_ring(session, current_key_ring())
    except VaultError as exc:
        raise Failure(f"{exc}; Slussen was not started.") from None
    host = host or settings.serve_host
    port = port or settings.serve_port
    plan = serve.plan(settings.ratelimit_storage_uri, workers or settings.serve_workers)
    click.echo(plan.describe(host, port))
    serve.run(host=host, port=port, workers=plan.workers, threads=plan.threads)


@cli.group("user", help="Manage user accounts.")
def user_group() -> None:
    pass


@user_group.command("create", help="Create a user; asks for the password if not given.")
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
    app = _app()
    with app.app_context(), session_scope(app) as session:
        created = create_user(
            session,
            app.extensions["slussen.settings"],
            username=username,
            display_name=display_name,
            role=role,
            password=password,
            unit_hsa_ids=units,
        )
        click.echo(f"Created {created.username} ({created.role}).")


@user_group.command(
    "reset-totp",
    help="Turn off a user's two-factor login (a lost phone): the sealed secret is destroyed and "
    "the user sets it up again at the next login.",
)
@click.argument("username")
@fails_cleanly
def user_reset_totp(username: str) -> None:
    app = _app()
    with app.app_context(), session_scope(app) as session:
        user = _user_named(session, username)
        reset_totp(session, current_key_ring(), audit.SYSTEM, user)
    click.echo(f"Two-factor login of {user.username} is off; they set it up at the next login.")


@user_group.command(
    "deactivate",
    help="Deactivate a user: they cannot log in, and every session of theirs ends at once. "
    "The only active administrator cannot be deactivated.",
)
@click.argument("username")
@fails_cleanly
def user_deactivate(username: str) -> None:
    app = _app()
    with app.app_context(), session_scope(app) as session:
        user = _user_named(session, username)
        deactivate_account(session, current_key_ring(), audit.SYSTEM, user)
    click.echo(f"{user.username} is deactivated and logged out everywhere.")


def _user_named(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise Failure(f"There is no user {username}.")
    return user


@user_group.command(
    "link-oidc",
    help="Link a user to the region's identity provider: a federated login with this subject "
    "(the provider's `sub`) is this user.",
)
@click.argument("username")
@click.argument("subject")
@click.option("--hsa-id", default="", help="The person's own HSA-id, when logins match on it.")
@fails_cleanly
def user_link_oidc(username: str, subject: str, hsa_id: str) -> None:
    app = _app()
    with app.app_context(), session_scope(app) as session:
        user = _user_named(session, username)
        link_oidc_subject(session, current_key_ring(), audit.SYSTEM, user, subject, hsa_id.strip())
    click.echo(f"{user.username} logs in through the identity provider as {subject}.")


@user_group.command(
    "local-password",
    help="Turn a user's local password login off (federated login only) or on again.",
)
@click.argument("username")
@click.option("--off/--on", "off", required=True)
@fails_cleanly
def user_local_password(username: str, off: bool) -> None:
    app = _app()
    with app.app_context(), session_scope(app) as session:
        user = _user_named(session, username)
        set_local_password(session, current_key_ring(), audit.SYSTEM, user, disabled=off)
    click.echo(f"Local password login of {user.username} is {'off' if off else 'on'}.")


@cli.group("unit", help="Settings of a unit (vårdcentral).")
def unit_group() -> None:
    pass


@unit_group.command(
    "create",
    help="Create a unit (vårdcentral) with its address and phone for letters; opening hours "
    "default to 08.00–17.00 Monday to Friday (change them with `unit hours`).",
)
@click.option("--name", required=True, help="The unit's name, as on its letters.")
@click.option("--hsa-id", required=True, help="The unit's HSA-id, e.g. SE2321000016-ABCD.")
@click.option("--street", default="", help="Street address.")
@click.option("--postcode", default="", help="Postcode, e.g. 722 15.")
@click.option("--town", default="", help="Postal town.")
@click.option("--phone", default="", help="Phone number printed on letters.")
@click.option("--phone-hours", default="", help="When the phone is answered.")
@fails_cleanly
def unit_create(**details: str) -> None:
    app = _app()
    with app.app_context(), session_scope(app) as session:
        unit = create_unit(session, current_key_ring(), audit.SYSTEM, UnitDetails(**details))
        click.echo(f"Created the unit {unit.name} ({unit.hsa_id}).")


@unit_group.command(
    "hours",
    help="Show a unit's opening hours, or set them: a visit booked outside them warns the coach.",
)
@click.argument("hsa_id")
@click.option("--open", "opens", default=None, help="Opening time, e.g. 08.00.")
@click.option("--close", "closes", default=None, help="Closing time, e.g. 17.00.")
@click.option("--days", default=None, help="Open weekdays as digits, 1 = Monday (e.g. 12345).")
@fails_cleanly
def unit_hours(hsa_id: str, opens: str | None, closes: str | None, days: str | None) -> None:
    app = _app()
    with app.app_context(), session_scope(app) as session:
        unit = session.scalar(select(Unit).where(Unit.hsa_id == hsa_id.strip()))
        if unit is None:
            raise Failure(f"There is no unit {hsa_id}.")
        if opens or closes or days:
            set_opening_hours(
                session,
                unit,
                opens=opens or f"{unit.opens_at:%H.%M}",
                closes=closes or f"{unit.closes_at:%H.%M}",
                weekdays=days or unit.open_weekdays,
            )
        click.echo(
            f"{unit.name}: open {unit.opens_at:%H.%M}–{unit.closes_at:%H.%M} "
            f"on weekdays {unit.open_weekdays} (1 = Monday)."
        )


@user_group.command(
    "add-organisation",
    help="Make an association's user (role org_rep) a representative of an organisation of the "
    "directory, given by its name: they see and answer the hand-over requests addressed to it.",
)
@click.argument("username")
@click.argument("organisation")
@fails_cleanly
def user_add_organisation(username: str, organisation: str) -> None:
    app = _app()
    with app.app_context(), session_scope(app) as session:
        user = _user_named(session, username)
        found = list(
            session.scalars(
                select(Organisation).where(
                    func.lower(Organisation.name) == organisation.strip().lower()
                )
            )
        )
        if len(found) != 1:
            raise Failure(
                f"There is no organisation named {organisation!r} in the directory."
                if not found
                else f"Several organisations are named {organisation!r}."
            )
        add_representative(session, None, found[0], user)
        click.echo(f"{user.username} now represents {found[0].name}.")


@cli.group("content", help="Check the content directories (workflows, forms, letters).")
def content_group() -> None:
    pass


@content_group.command("check", help="Validate content; prints file:line for every problem.")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def content_check(directory: Path | None) -> None:
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


@cli.command("tick", help="Apply the workflow's due timers once for the day (idempotent).")
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The day to act as (default: today in Sweden).",
)
@fails_cleanly
def tick_command(today: Any) -> None:
    app = _app()
    with app.app_context():
        day = today.date() if today else today_local()
        report = run_timers(
            app.extensions["slussen.sessionmaker"],
            current_key_ring(),
            current_workflow(),
            today=day,
        )
    click.echo(f"Tick for {day.isoformat()}:")
    for line in report.lines():
        click.echo(f"  {line}")


@cli.command("erase-self-referral", help="Crypto-shred a self-referral that never became a case.")
@click.argument("reference")
@click.option("--reason", required=True, help="Why (recorded in the access log).")
@fails_cleanly
def erase_self_referral_command(reference: str, reason: str) -> None:
    app = _app()
    with app.app_context(), session_scope(app) as session:
        erase_self_referral_by_reference(
            Keystore(session, current_key_ring()), audit.SYSTEM, reference, reason=reason
        )
    click.echo(f"The patient data of {reference} is erased (its data key is destroyed).")


@cli.group("keys", help="The key ring: master keys that wrap every patient's data key.")
def keys_group() -> None:
    pass


def _settings_only() -> Any:
    return load_settings()


@keys_group.command("init", help="Create the key ring file (mode 600); refuses to overwrite one.")
@click.option(
    "--path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write it (default: SLUSSEN_KEYRING or the instance folder).",
)
def keys_init(path: Path | None) -> None:
    target = path or _settings_only().resolved_keyring_path
    if target.exists():
        raise Failure(f"The key ring {target} exists already; it was not changed.")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        vault.KeyRing.create(target)
    except vault.VaultError as exc:
        raise Failure(str(exc)) from None
    click.echo(f"Created the key ring {target} (mode 600). Back it up apart from the database.")


@keys_group.command(
    "status", help="Which master key wraps how many data keys; checks the key-ring canary."
)
@fails_cleanly
def keys_status() -> None:
    app = _app()
    with app.app_context(), session_scope(app) as session:
        ring = current_key_ring()
        usage = key_usage(session)
        has_canary = check_key_ring(session, ring)
    for key_id, master in sorted(ring.master_keys.items()):
        state = (
            "active"
            if key_id == ring.active_master_id
            else ("retired" if master.is_retired else "kept")
        )
        click.echo(
            f"{key_id}  {state:<8} created {master.created_at}  "
            f"wraps {usage.get(key_id, 0)} data key(s)"
        )
    unknown = set(usage) - set(ring.master_keys)
    if unknown:
        raise Failure(f"Data keys are wrapped by keys missing from the ring: {sorted(unknown)}")
    if has_canary:
        click.echo(f"The key ring {ring.fingerprint()} opens the database's canary.")
    else:
        click.echo("The database has no key-ring canary yet: `slussen init-db` seals one.")


@keys_group.command("rotate", help="Add a new master key and rewrap every data key (resumable).")
@click.option("--batch-size", type=click.IntRange(1, 100000), default=SLICE_SIZE, show_default=True)
@fails_cleanly
def keys_rotate(batch_size: int) -> None:
    app = _app()
    with app.app_context():
        ring = current_key_ring()
        factory = app.extensions["slussen.sessionmaker"]
        with click.progressbar(length=1, label="Rewrapping data keys") as bar:

            def progress(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(done - bar.pos)

            result = rotate_master_key(factory, ring, batch_size=batch_size, progress=progress)
    verb = "Resumed an interrupted rotation" if result.resumed else "Rotated"
    retired = ", ".join(result.retired) or "none"
    click.echo(
        f"{verb}: active key {result.active_key}, {result.rewrapped} data keys rewrapped, "
        f"retired: {retired}."
    )


@cli.group("forms", help="Forms and questionnaires (forms/).")
def forms_group() -> None:
    pass


@forms_group.command(
    "export-fhir", help="Write every form as a FHIR R4 Questionnaire (JSON) in DIR."
)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--case", "case_reference", default=None, help="Also export this case's answers.")
@click.option("--base-url", default=None, help="Canonical base of the Questionnaire URLs.")
@fails_cleanly
def forms_export_fhir(directory: Path, case_reference: str | None, base_url: str | None) -> None:
    app = _app()
    base = base_url or fhir.DEFAULT_BASE
    directory.mkdir(parents=True, exist_ok=True)
    clear_stale_parts(directory, "Questionnaire*.json")
    all_forms = app.extensions["slussen.content"].compiled["forms"]

    def write(name: str, resource: dict[str, Any]) -> None:
        text = json.dumps(resource, ensure_ascii=False, indent=2) + "\n"
        write_private(directory / name, text.encode("utf-8"))

    for form in all_forms.values():
        write(f"Questionnaire-{fhir.fhir_id(form.id)}.json", fhir.questionnaire(form, base))
    written = len(all_forms)
    if case_reference:
        # Reads take no write lock (SQLite); the audit row is committed when the scope ends,
        # and only then are the answers written out (no audit row, no data).
        with app.app_context(), session_scope(app, reading_only=True) as session:
            store = Keystore(session, current_key_ring())
            resources = export_case_answers(
                store, audit.SYSTEM, case_reference, all_forms, base=base
            )
        for resource in resources:
            write(f"QuestionnaireResponse-{resource['id']}.json", resource)
            written += 1
    click.echo(f"Wrote {written} FHIR R4 resources to {directory}.")


@cli.group("audit", help="The access log.")
def audit_group() -> None:
    pass


@audit_group.command(
    "verify",
    help="Check every chain of the access log against its head and the last checkpoints; "
    "names the first bad row in each chain.",
)
@fails_cleanly
def audit_verify() -> None:
    app = _app()
    path = app.extensions["slussen.settings"].resolved_audit_checkpoint_path
    with app.app_context(), session_scope(app) as session:
        ring = current_key_ring()
        total = max(audit.chain_length(session), 1)
        with click.progressbar(length=total, label="Kontrollerar åtkomstloggen") as bar:
            result = audit.verify_chain(
                session, ring, checkpoint_path=path, progress=lambda n: bar.update(n - bar.pos)
            )
    for chain in result.chains:
        if not chain.ok:
            state = f"FEL: {chain.reason}"
        elif chain.checkpoint is not None:
            state = f"hel, stämmer med {chain.checkpoint.describe()}"
        else:
            state = "hel; ingen kontrollpunkt: avkortning kan inte upptäckas"
        click.echo(f"{audit.chain_label(chain.chain)}: {chain.checked} rader, {state}")
    for problem in result.checkpoint_problems:
        click.echo(f"FEL: {problem}")
    if not path.exists():
        click.echo(f"ingen kontrollpunkt: avkortning kan inte upptäckas ({path} finns inte)")
    if not result.ok:
        raise Failure(
            f"Åtkomstloggen är inte hel: {len(result.bad)} av {len(result.chains)} kedjor "
            f"har fel, {len(result.checkpoint_problems)} fel i kontrollpunktsfilen."
        )
    click.echo(
        f"Åtkomstloggen är hel: {result.checked} rader i {len(result.chains)} kedjor kontrollerade."
    )


@audit_group.command(
    "checkpoint",
    help="Append each chain's head as a MACed line to the checkpoint file (audit_checkpoint_path);"
    " run every 5 minutes and ship the file to separate storage.",
)
@fails_cleanly
def audit_checkpoint() -> None:
    app = _app()
    path = app.extensions["slussen.settings"].resolved_audit_checkpoint_path
    with app.app_context(), session_scope(app) as session:
        written = audit.write_checkpoint(session, current_key_ring(), path)
    click.echo(f"Kontrollpunkt för {len(written)} kedjor skriven till {path}.")


cli.add_command(directory_cli)
cli.add_command(evaluation_cli)


@cli.command(
    "backup", help="Back up the database to one file (never the key ring: back that up apart)."
)
@click.argument("path", type=click.Path(path_type=Path))
@fails_cleanly
def backup_command(path: Path) -> None:
    from slussen import backup  # reportlab and pg tools, only for backups

    settings = _settings_only()
    url = settings.sqlalchemy_url
    if not path.is_dir():
        clear_stale_parts(path.parent, path.name)
    try:
        if backup.kind_of_url(url) == "sqlite":
            with click.progressbar(length=1, label="Copying the database") as bar:

                def progress(done: int, total: int) -> None:
                    bar.length = max(total, 1)
                    bar.update(done - bar.pos)

                result = backup.backup(url, path, progress=progress)
        else:
            click.echo("Running pg_dump (this can take a while) …")
            result = backup.backup(url, path)
    except backup.BackupError as exc:
        raise Failure(f"No backup was made: {exc}.") from None
    click.echo(f"Wrote {result.kind} backup {result.path} ({result.size:,} bytes, mode 600).")
    click.echo(
        f"The backup does not contain the key ring ({settings.resolved_keyring_path}): "
        "Back up the key ring separately, apart from the database backups."
    )


@cli.command(help="Restore a backup made by `slussen backup` into the configured database.")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace a database that already holds data.")
@fails_cleanly
def restore(path: Path, force: bool) -> None:
    from slussen import backup  # reportlab and pg tools, only for backups

    settings = _settings_only()
    url = settings.sqlalchemy_url
    ring_path = settings.resolved_keyring_path
    ring = vault.KeyRing.load(ring_path) if ring_path.exists() else None
    master_ids = set(ring.master_keys) if ring is not None else set()
    engine = make_engine(url)
    try:
        if backup.kind_of_url(url) == "sqlite":
            with click.progressbar(length=1, label="Restoring the database") as bar:

                def progress(done: int, total: int) -> None:
                    bar.length = max(total, 1)
                    bar.update(done - bar.pos)

                result = backup.restore(
                    url,
                    path,
                    engine,
                    force=force,
                    ring=ring,
                    master_key_ids=master_ids,
                    progress=progress,
                )
        else:
            click.echo("Running pg_restore (this can take a while) …")
            result = backup.restore(
                url, path, engine, force=force, ring=ring, master_key_ids=master_ids
            )
    except backup.BackupError as exc:
        raise Failure(f"Nothing was restored: {exc}.") from None
    finally:
        engine.dispose()
    click.echo(f"Restored {path} into the {result.kind} database.")
    for name, count in result.counts.items():
        click.echo(f"  {name:<16} {count:>10,} rows")
    if result.at_head:
        click.echo(f"The schema is up to date (revision {result.revision}).")
    else:
        click.echo(
            f"The schema is at revision {result.revision or 'none'}; this Slussen expects "
            f"{result.head}: run `slussen init-db` before starting Slussen."
        )
    if not ring_path.exists():
        click.echo(
            f"There is no key ring at {ring_path}: restore it from its own backup, or no patient "
            "can be read."
        )
    elif result.missing_master_keys:
        click.echo(
            f"The key ring {ring_path} lacks master key(s) {', '.join(result.missing_master_keys)}"
            " that the restored data needs: restore the key ring from its own backup."
        )
    click.echo("Then check the access log with `slussen audit verify`.")


@cli.group("letters", help="Postal letters: print batches for the print room.")
def letters_group() -> None:
    pass


_UNFINISHED = (
    " Letters printed before the stop stay in their unfinished batch: run the same command again"
    " to finish it into one PDF."
)


@letters_group.command("print", help="Print a unit's queued letters as one PDF (or a batch again).")
@click.option("--batch", "batch_id", type=int, default=None, help="Print this batch again.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the PDF (default: brev-omgang-<ID>.pdf in the current folder).",
)
@click.option("--unit", "hsa_id", default=None, help="The unit's HSA-id (needed with several).")
@click.option("--forwarding", is_flag=True, help="Print the letters for protected identity.")
@fails_cleanly
def letters_print(
    batch_id: int | None, out: Path | None, hsa_id: str | None, forwarding: bool
) -> None:
    # reportlab, only for printing letters
    from slussen.letters import services as letter_services

    app = _app()
    settings = app.extensions["slussen.settings"]
    context = letter_services.render_context(app.extensions["slussen.content"], settings)
    folder = out.parent if out else Path.cwd()
    # The part is named for the final file; without --out the batch id is known only at the end.
    clear_stale_parts(folder, out.name if out else "brev-omgang*.pdf")
    with private_part(folder, out.name if out else "brev-omgang.pdf") as part:
        with app.app_context(), session_scope(app) as session:
            store = Keystore(session, current_key_ring())
            try:
                with click.progressbar(length=1, label="Rendering letters") as bar:

                    def progress(done: int, total: int) -> None:
                        bar.length = max(total, 1)
                        bar.update(done - bar.pos)

                    if batch_id is not None:
                        result = letter_services.reprint_batch(
                            store,
                            audit.SYSTEM,
                            batch_id,
                            part.file,  # type: ignore[arg-type]
                            context=context,
                            settings=settings,
                            progress=progress,
                        )
                    else:
                        result = letter_services.print_batch(
                            store,
                            audit.SYSTEM,
                            letter_services.printing_unit(session, hsa_id),
                            part.file,  # type: ignore[arg-type]
                            context=context,
                            settings=settings,
                            forwarding=forwarding,
                            progress=progress,
                            # A slice at a time: other units' pages never wait for the print.
                            commit=slice_commit(session),
                        )
            except (DomainError, Failure) as exc:
                # session_scope rolls the current slice back; earlier slices stay committed.
                raise Failure(str(exc) + (_UNFINISHED if batch_id is None else "")) from None
            except BaseException:
                if batch_id is None:
                    click.echo(_UNFINISHED.strip(), err=True)
                raise
            for letter_id, reason in result.held:
                click.echo(f"Held back letter {letter_id}: {reason}")
            printed = (result.batch.id, result.batch.page_count) if result.batch else None
        # Committed: only now does the PDF get its name (0600; the part is removed otherwise).
        if printed is None:
            click.echo("There were no letters to print.")
            return
        target = part.finish(out or folder / f"brev-omgang-{printed[0]}.pdf")
    note = "" if result.is_identical else " (differs from the first print: the data changed)"
    click.echo(
        f"Batch {printed[0]}: {result.printed} letters, {printed[1]} pages -> {target}{note}"
    )


@letters_group.command(
    "test-print", help="A sample letter with the window outlined, to test envelopes."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("testbrev.pdf"),
    show_default=True,
)
@click.option("--letter", "template_id", default="appointment", show_default=True)
def letters_test_print(out: Path, template_id: str) -> None:
    # reportlab, only for printing letters
    from slussen.letters import services as letter_services
    from slussen.letters.render import sample_letter

    app = _app()
    settings = app.extensions["slussen.settings"]
    context = letter_services.render_context(app.extensions["slussen.content"], settings)
    if template_id not in context.templates:
        raise Failure(
            f"No letter template {template_id!r} (known: {', '.join(context.templates)})."
        )
    write_private(out, sample_letter(context, template_id))
    click.echo(
        f"Wrote {out}. Print it at 100 % (no 'fit to page'), fold it and hold it behind your "
        "envelope: the whole address must show inside the dashed frame's window."
    )


def main() -> None:
    """Console entry point: configuration errors become one line and exit code 2."""
    try:
        cli.main(prog_name="slussen", standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"slussen: configuration error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
