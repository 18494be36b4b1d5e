"""Alembic, driven from Slussen's own settings (no alembic.ini needed)."""

from __future__ import annotations

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


def upgrade(engine: Engine, revision: str = "head", *, ring: KeyRing | None = None) -> None:
    """Bring the database to `revision` (default: the newest), in one transaction. Without
    `ring`, a migration that must seal data (0013: TOTP secrets in clear) stops with a message
    and changes nothing."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(str(engine.url), connection, ring=ring), revision)


def downgrade(engine: Engine, revision: str, *, ring: KeyRing | None = None) -> None:
    """Take the database back to `revision`; 0013 needs `ring` to unseal TOTP secrets."""
    with engine.begin() as connection:
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
