"""Alembic, driven from Slussen's own settings (no alembic.ini needed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, inspect

from slussen.paths import shipped_dir
from slussen.vault import KeyRing


def alembic_config(
    url: str, connection: Connection | None = None, *, ring: KeyRing | None = None
) -> Config:
    """Alembic's configuration; `connection` and `ring` reach the migrations through
    `config.attributes` (a migration that seals or unseals data needs the ring)."""
    config = Config()
    config.set_main_option("script_location", str(shipped_dir("migrations")))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    if ring is not None:
        config.attributes["ring"] = ring
    return config


class ForeignKeysBroken(RuntimeError):
    """A migration left rows whose foreign keys point nowhere (SQLite); it was rolled back."""


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """One transaction for a migration run. On SQLite, foreign keys are off meanwhile: a column
    with a CHECK constraint can only be dropped by copying its table (Alembic's batch mode),
    and with foreign keys on, dropping the old copy of a table others refer to would delete
    their rows (ON DELETE CASCADE) or fail. Before the commit every foreign key is checked
    (`PRAGMA foreign_key_check`); a broken one rolls the whole run back."""
    with engine.connect() as connection:
        is_sqlite = connection.dialect.name == "sqlite"
        if is_sqlite:
            # Outside any transaction (SQLite ignores the pragma inside one); pysqlite begins
            # none by itself here (db.make_engine sets isolation_level None).
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with connection.begin():
                yield connection
                if is_sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise ForeignKeysBroken(
                            f"the migration left {len(broken)} broken reference(s), e.g. "
                            f"{broken[0]}; nothing was changed"
                        )
        finally:
            if is_sqlite:
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def upgrade(engine: Engine, revision: str = "head", *, ring: KeyRing | None = None) -> None:
    """Bring the database to `revision` (default: the newest), in one transaction. Without
    `ring`, a migration that must seal data (0013: TOTP secrets in clear) stops with a message
    and changes nothing."""
    with _migrating(engine) as connection:
        command.upgrade(alembic_config(str(engine.url), connection, ring=ring), revision)


def downgrade(engine: Engine, revision: str, *, ring: KeyRing | None = None) -> None:
    """Take the database back to `revision`; 0013 needs `ring` to unseal TOTP secrets."""
    with _migrating(engine) as connection:
        command.downgrade(alembic_config(str(engine.url), connection, ring=ring), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads: {heads}")
    return heads[0]
