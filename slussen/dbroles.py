"""Whether the database role Slussen connects as could change or remove the access log.

On PostgreSQL the schema and the access log's tables belong to an owner role that only
`slussen init-db` and `slussen restore` use; the app connects as a role that may only append to
and read the access log (docs/install.md §2). The append-only trigger stops UPDATE, DELETE and
TRUNCATE, but the table's owner, a member of the owner's role or a superuser can switch the
trigger off, so those are the roles the app must not be."""

from __future__ import annotations

from sqlalchemy import Connection, text

from slussen.audit import AuditChainHead, AuditEvent

#: What the app's role may do on each access-log table; anything more is reported. The chain
#: heads move on every append, so the app updates them, but never deletes one.
APP_MAY = {
    AuditEvent.__tablename__: frozenset({"SELECT", "INSERT"}),
    AuditChainHead.__tablename__: frozenset({"SELECT", "INSERT", "UPDATE"}),
}
#: The table privileges PostgreSQL has (besides MAINTAIN in 17), checked one by one.
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")

_ROLE = text("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
_OWNS = text(
    "SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c "
    "WHERE c.oid = to_regclass(:table)"
)
_MAY = text(
    "SELECT has_table_privilege(current_user, CAST(:table AS text), CAST(:privilege AS text))"
)


def app_role_warnings(connection: Connection) -> list[str]:
    """One line per way the role of `connection` (the app's) could change or remove the access
    log: a superuser, the owner (or a member of the owner's role) of an access-log table, or a
    privilege beyond `APP_MAY`. Empty when it may only append and read, and on SQLite, which
    has no roles; a table that does not exist yet is not checked."""
    if connection.dialect.name != "postgresql":
        return []
    role, superuser = connection.execute(_ROLE).one()
    if superuser:
        return [
            f"the database role {role!r} that Slussen connects as is a superuser: it can switch "
            "off the access log's append-only trigger"
        ]
    warnings: list[str] = []
    for table, allowed in APP_MAY.items():
        owns = connection.execute(_OWNS, {"table": table}).scalar()
        if owns is None:
            continue
        if owns:
            warnings.append(
                f"the database role {role!r} that Slussen connects as owns {table}: it can switch "
                "off the append-only trigger or drop the table"
            )
            continue
        extra = [
            privilege
            for privilege in PRIVILEGES
            if privilege not in allowed
            and connection.execute(_MAY, {"table": table, "privilege": privilege}).scalar()
        ]
        if extra:
            warnings.append(
                f"the database role {role!r} that Slussen connects as may {', '.join(extra)} "
                f"on {table}, more than {' and '.join(sorted(allowed))}"
            )
    return warnings
