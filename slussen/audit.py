"""The access log (PDL 4 kap. 3 §): one append-only, hash-chained table.

Every read or change of patient data, every print, export and login writes an `AuditEvent` in the
same transaction as the access itself; if the audit row cannot be written, the transaction fails
and nothing is shown. Each row carries a keyed MAC over its own content and the previous row's MAC
(the key lives in the key ring, not the database), so `slussen audit verify` finds a changed,
removed or inserted row.

The log is one chain per unit plus the region chain (events without a unit: logins of users
without a unit, operator commands; and every row written before revision 0011). Each chain has its
own sequence numbers and its own row in `audit_chain_heads`; an append updates its chain's head,
which takes that row's lock on PostgreSQL until the commit, so requests of one unit queue up
instead of forking its chain while other units never wait for it. (SQLite has one write lock for
the whole database anyway.)

`slussen audit checkpoint` appends each chain's head (chain, seq, MAC, time) as one MACed line
to a file outside the database; `verify` fails when a chain is shorter than, or differs from, its
last checkpoint, which catches rows cut off the end together with a head set back.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    func,
    insert,
    literal,
    null,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from slussen import vault
from slussen.db import Base, UtcDateTime, intpk, one_of, utcnow
from slussen.errors import Conflict
from slussen.sensitivity import REFERENCES, classify

ACTIONS = (
    "read",
    "search",
    "create",
    "update",
    "print",
    "export",
    "login",
    "login_failed",
    "logout",
    "erase",
    "key_rotate",
    "totp_enrol",
    "totp_reset",
    "account_disable",
)
#: The MAC before a chain's first row in the region chain (the one chain before revision 0011).
GENESIS = "0" * 64
#: The chain of rows without a unit.
REGION = "region"


class AuditEvent(Base):
    """One access. Never updated or deleted (a PostgreSQL trigger refuses both)."""

    __tablename__ = "audit_events"
    __sensitivity__ = classify(
        pseudonym={
            "the patient concerned, keyed with the key ring (vault.pseudonym)": (
                "patient_pseudonym",
            )
        },
        clear={
            REFERENCES: ("id", "actor_id", "unit_id"),
            "the chain's order and MAC, which verify recomputes": ("chain", "seq", "mac"),
            "who acted, when, what on which object and why: the access log's own words": (
                "occurred_at",
                "actor_name",
                "actor_role",
                "action",
                "object_type",
                "object_id",
                "purpose",
                "request_id",
                "client_address",
            ),
        },
    )
    __table_args__ = (
        CheckConstraint(one_of("action", ACTIONS), "action_known"),
        UniqueConstraint("chain", "seq"),
    )

    id: Mapped[intpk]
    #: The chain the row belongs to: `REGION` or "unit:<unit id>" (see `chain_of`).
    chain: Mapped[str] = mapped_column(String(20))
    #: Position in its chain: 1, 2, 3… with no gaps (a gap is a deleted row).
    seq: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    #: Username and role as they were at the time (accounts may change later).
    actor_name: Mapped[str] = mapped_column(String(80))
    actor_role: Mapped[str] = mapped_column(String(20))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    action: Mapped[str] = mapped_column(String(20))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(80))
    #: Keyed pseudonym of the patient concerned (vault.pseudonym), never the identity.
    patient_pseudonym: Mapped[str | None] = mapped_column(String(40), index=True)
    purpose: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str] = mapped_column(String(32))
    client_address: Mapped[str] = mapped_column(String(64))
    #: HMAC-SHA256 (hex) over the previous row's MAC and this row's content.
    mac: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The end of one chain: its last sequence number and MAC. One row per chain."""

    __tablename__ = "audit_chain_heads"
    __sensitivity__ = classify(
        clear={
            "each chain's end, which verify and checkpoints compare": ("id", "chain", "seq", "mac")
        }
    )

    id: Mapped[intpk]
    chain: Mapped[str] = mapped_column(String(20), unique=True)
    seq: Mapped[int] = mapped_column(Integer)
    mac: Mapped[str] = mapped_column(String(64))


_heads = cast(Table, AuditChainHead.__table__)
_ADVANCE_HEAD = (
    update(_heads)
    .where(_heads.c.chain == bindparam("b_chain"))
    .values(seq=_heads.c.seq + bindparam("b_count", type_=Integer))
    .returning(_heads.c.seq, _heads.c.mac)
)
_INSERT_EVENT = insert(cast(Table, AuditEvent.__table__))
_SET_HEAD_MAC = (
    update(_heads).where(_heads.c.chain == bindparam("b_chain")).values(mac=bindparam("mac"))
)


def chain_of(unit_id: int | None) -> str:
    """The chain an event of `unit_id` is appended to: the unit's own, or the region chain."""
    return f"unit:{unit_id}" if unit_id else REGION


def chain_label(chain: str) -> str:
    """A chain's name for the operator (Swedish)."""
    return "regionkedjan" if chain == REGION else f"enhet {chain.removeprefix('unit:')}"


def genesis(key: bytes, chain: str) -> str:
    """The MAC before a chain's first row. The region chain keeps the all-zero start of the one
    chain it continues; a unit chain starts from a MAC of its own name, so the first rows of two
    chains cannot be swapped unseen."""
    if chain == REGION:
        return GENESIS
    return hmac.digest(key, b"chain-genesis\n" + chain.encode(), "sha256").hex()


@dataclass(frozen=True)
class Actor:
    """Who acts: a logged-in user, a CLI operator, or the public (a self-referral)."""

    user_id: int | None
    name: str
    role: str
    #: The units the actor works in (inner confidentiality); empty for the public and system.
    unit_ids: frozenset[int] = frozenset()
    #: Cases outside those units the actor may act on in this request, granted by the capability
    #: that authorised it: an association's user answering a hand-over addressed to their
    #: organisation (slussen.associations). The workflow's roles still say which events.
    case_ids: frozenset[int] = frozenset()

    @classmethod
    def of(cls, user: Any) -> Actor:
        return cls(user.id, user.username, user.role, frozenset(user.unit_ids))


PUBLIC = Actor(None, "(public)", "public")
SYSTEM = Actor(None, "(system)", "system")


@dataclass(frozen=True)
class RequestInfo:
    request_id: str
    client_address: str


def request_info() -> RequestInfo:
    """The current request's id and client address, or a CLI marker outside requests."""
    from flask import g, has_request_context, request

    if not has_request_context():
        return RequestInfo(request_id="cli-" + secrets.token_hex(6), client_address="cli")
    if "request_id" not in g:
        g.request_id = secrets.token_hex(8)
    return RequestInfo(g.request_id, request.remote_addr or "unknown")


def patient_pseudonym(
    ring: vault.KeyRing, patient_id: int, pseudonym_of: Callable[[str], str] | None = None
) -> str:
    """The patient's pseudonym in the access log; `pseudonym_of` is `vault.pseudonymiser(ring)`
    when many are made at once (the same result, faster)."""
    value = f"patient:{patient_id}"
    return pseudonym_of(value) if pseudonym_of is not None else vault.pseudonym(ring, value)


#: The row's content in chain order; verify selects the stored columns in the same order.
_CHAINED = (
    "seq", "occurred_at", "actor_id", "actor_name", "actor_role", "unit_id", "action",
    "object_type", "object_id", "patient_pseudonym", "purpose", "request_id", "client_address",
)  # fmt: skip
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
#: len("2026-01-02 07:00:00.000000"): how SQLAlchemy stores a time in SQLite (UTC, no zone).
_SQLITE_STORED_LENGTH = 26
#: The MACed time, to the microsecond in UTC, as PostgreSQL's to_char writes it.
_PG_ISO_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'


def _content(fields: Sequence[Any]) -> bytes:
    """A row's MACed content: its fields in `_CHAINED` order as compact JSON (UTF-8, non-ASCII
    as is), the time in ISO 8601 UTC to the microsecond. The time is a datetime, or (verify on
    SQLite) the stored text. `_content_sql` makes the same bytes in the database."""
    content = list(fields)
    when = content[1]
    if isinstance(when, str):
        if len(when) == _SQLITE_STORED_LENGTH:  # SQLAlchemy's stored form: no parsing needed
            content[1] = when.replace(" ", "T") + "+00:00"
            return _ENCODER.encode(content).encode()
        when = dt.datetime.fromisoformat(when)  # written some other way: read it
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
    content[1] = when.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return _ENCODER.encode(content).encode()


def _keyed(key: bytes) -> hmac.HMAC:
    """HMAC-SHA256 keyed with the audit key, for `_mac_over` to copy: keying costs as much as
    MACing a row, so a walk over a million rows keys once."""
    return hmac.new(key, digestmod="sha256")


def _mac_over(keyed: hmac.HMAC, previous: str, content: bytes) -> str:
    """The chain MAC (hex) over the previous row's MAC and this row's content (`_content`)."""
    mac = keyed.copy()
    mac.update(previous.encode() + b"\n" + content)
    return mac.hexdigest()


def _mac_of(key: bytes, previous: str, fields: Sequence[Any]) -> str:
    """The chain MAC of a row with `fields` (in `_CHAINED` order) after a row with `previous`."""
    return _mac_over(_keyed(key), previous, _content(fields))


def ensure_head(session: Session, ring: vault.KeyRing, chain: str) -> None:
    """Create `chain`'s head at its genesis unless it exists. Two requests starting the same new
    chain at once both succeed: the second insert does nothing (ON CONFLICT DO NOTHING)."""
    connection = session.connection()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(
        dialect.insert(_heads)
        .values(chain=chain, seq=0, mac=genesis(ring.audit_key, chain))
        .on_conflict_do_nothing(index_elements=["chain"])
    )


@dataclass(frozen=True)
class Entry:
    """One access to record: what was done to which object, why, and for which patient and unit
    (the unit picks the chain, `chain_of`)."""

    action: str
    object_type: str
    object_id: str | int
    purpose: str
    patient_id: int | None = None
    unit_id: int | None = None


def record(
    session: Session,
    ring: vault.KeyRing,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | int,
    *,
    purpose: str,
    patient_id: int | None = None,
    unit_id: int | None = None,
    info: RequestInfo | None = None,
) -> int:
    """Append one audit row in the caller's transaction and return its sequence number: the
    one-item form of `record_entries` (same rules, same refusals)."""
    entry = Entry(action, object_type, object_id, purpose, patient_id, unit_id)
    return record_entries(session, ring, actor, [entry], info=info)[0]


def record_entries(
    session: Session,
    ring: vault.KeyRing,
    actor: Actor,
    entries: Sequence[Entry],
    *,
    info: RequestInfo | None = None,
) -> list[int]:
    """Append one audit row per entry in the caller's transaction, all in one INSERT, and return
    their sequence numbers in the entries' order. The only way a row enters the access log.

    Each row goes to the chain of its `unit_id` (`chain_of`); each chain's head advances once
    by its number of rows, the heads in a fixed (sorted) order so two requests spanning the same
    chains cannot deadlock, and each head row stays locked until the caller's commit, so a long
    job holds up only its own units' appends. Within a chain the MACs follow the entries' order.
    Refuses an unknown action (ValueError), writing nothing. The caller commits; if it rolls
    back, the rows go too, and so does the access they recorded."""
    for entry in entries:
        if entry.action not in ACTIONS:
            raise ValueError(f"unknown audit action {entry.action!r}")
    if not entries:
        return []
    info = info or request_info()
    by_chain: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        by_chain.setdefault(chain_of(entry.unit_id), []).append(index)
    # Core statements on the session's connection: the audit rows need no ORM bookkeeping, and
    # this runs on every audited access.
    connection = session.connection()
    when = utcnow()
    # A page of 50 patients: the pseudonym key's HMAC pads are hashed once, not per row.
    pseudonym_of = vault.pseudonymiser(ring) if len(entries) > 1 else None
    keyed = _keyed(ring.audit_key)
    seqs = [0] * len(entries)
    rows: list[dict[str, Any]] = [{} for _ in entries]
    heads: list[dict[str, Any]] = []
    for chain in sorted(by_chain):
        indexes = by_chain[chain]
        params = {"b_chain": chain, "b_count": len(indexes)}
        head = connection.execute(_ADVANCE_HEAD, params).one_or_none()
        if head is None:
            ensure_head(session, ring, chain)
            head = connection.execute(_ADVANCE_HEAD, params).one()
        last, previous = head
        for seq, index in enumerate(indexes, start=int(last) - len(indexes) + 1):
            entry = entries[index]
            fields = _fields(
                seq,
                when,
                actor,
                entry.action,
                entry.object_type,
                entry.object_id,
                patient_pseudonym(ring, entry.patient_id, pseudonym_of)
                if entry.patient_id
                else None,
                entry.purpose,
                entry.unit_id,
                info,
            )
            values = dict(zip(_CHAINED, fields, strict=True))
            values["chain"] = chain
            values["mac"] = previous = _mac_over(keyed, previous, _content(fields))
            rows[index] = values
            seqs[index] = seq
        heads.append({"b_chain": chain, "mac": previous})
    # One row is passed as such: an executemany of one costs more on the audited floor.
    connection.execute(_INSERT_EVENT, rows if len(rows) > 1 else rows[0])
    connection.execute(_SET_HEAD_MAC, heads if len(heads) > 1 else heads[0])
    return seqs


def _fields(
    seq: int,
    occurred_at: dt.datetime,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | int,
    pseudonym: str | None,
    purpose: str,
    unit_id: int | None,
    info: RequestInfo,
) -> tuple[Any, ...]:
    """One audit row's chained content in `_CHAINED` order, cut to the columns' lengths."""
    return (
        seq,
        occurred_at,
        actor.user_id,
        actor.name[:80],
        actor.role[:20],
        unit_id,
        action,
        object_type[:40],
        str(object_id)[:80],
        pseudonym,
        purpose[:200],
        info.request_id[:32],
        info.client_address[:64],
    )


@dataclass(frozen=True)
class Checkpoint:
    """One chain's head as `slussen audit checkpoint` wrote it, and where in the file."""

    chain: str
    seq: int
    mac: str
    #: When it was written (ISO 8601, UTC).
    at: str
    #: Line number in the checkpoint file (1-based).
    line: int

    def describe(self) -> str:
        return f"kontrollpunkten på rad {self.line} ({self.at}, seq {self.seq})"


@dataclass(frozen=True)
class ChainResult:
    """What verify found in one chain."""

    chain: str
    ok: bool
    checked: int
    #: The sequence number of the first bad row (or where a missing row should be).
    bad_seq: int | None = None
    bad_id: int | None = None
    reason: str = ""
    #: The last checkpoint the chain was compared with; None when the file has none for it.
    checkpoint: Checkpoint | None = None
    #: The MAC of the chain's last row (of a chain whose rows hold), for the head's check.
    last_mac: str = ""


@dataclass(frozen=True)
class VerifyResult:
    """Every chain's result and the checkpoint file's own problems (a changed line)."""

    chains: tuple[ChainResult, ...] = ()
    checkpoint_problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.checkpoint_problems and all(c.ok for c in self.chains)

    @property
    def checked(self) -> int:
        return sum(c.checked for c in self.chains)

    @property
    def bad(self) -> list[ChainResult]:
        return [c for c in self.chains if not c.ok]

    @property
    def bad_seq(self) -> int | None:
        """The first bad row's sequence number in the first bad chain."""
        return self.bad[0].bad_seq if self.bad else None

    @property
    def reason(self) -> str:
        """Every problem in one text: each bad chain's first bad row, and the file's problems."""
        parts = [f"{chain_label(c.chain)}: {c.reason}" for c in self.bad]
        return "; ".join([*parts, *self.checkpoint_problems])


_events = cast(Table, AuditEvent.__table__)
#: A row's place in its chain, then its content (`_content`) or NULL (see `_content_sql`).
_WALKED = (_events.c.id, _events.c.seq, _events.c.chain, _events.c.mac)


def _content_sql(dialect: str, columns: Any) -> Any:
    """The database making `_content` of a row from its stored `columns` (a table's or a
    subquery's `.c`): the same bytes, so verify neither builds a million rows of Python values
    nor encodes them. On SQLite the time's stored text is put into ISO form with string
    operations and the row is NULL when that text has another shape (verify then reads the row
    and calls `_content`). None on other databases. `_sql_content_agrees` checks the database
    writes JSON exactly as `_ENCODER` does before verify trusts it."""
    fields = [columns[name] for name in _CHAINED]
    if dialect == "sqlite":
        stored = type_coerce(fields[1], String)
        iso = func.replace(stored, " ", "T").concat("+00:00")
        array = func.json_array(fields[0], iso, *fields[2:]).cast(LargeBinary)
        return case((func.length(stored) == _SQLITE_STORED_LENGTH, array), else_=null())
    if dialect == "postgresql":
        # The time's digits need no escaping; array_to_json escapes a run of text columns at
        # half the cost of to_json on each, and its brackets are cut off.
        iso = func.to_char(func.timezone("UTC", fields[1]), _PG_ISO_FORMAT)
        text = (
            literal("[")
            .concat(fields[0].cast(Text))
            .concat(',"')
            .concat(iso)
            .concat('",')
            .concat(_pg_json_or_null(fields[2]))
            .concat(",")
            .concat(_pg_json_run(fields[3:5]))
            .concat(",")
            .concat(_pg_json_or_null(fields[5]))
            .concat(",")
            .concat(_pg_json_run(fields[6:]))
            .concat("]")
        )
        return func.convert_to(text, "UTF8")
    return None


def _pg_json_or_null(number: Any) -> Any:
    return func.coalesce(number.cast(Text), "null")


def _pg_json_run(texts: Sequence[Any]) -> Any:
    """Text columns as JSON values separated by commas, without the array's brackets."""
    array = func.array_to_json(postgresql.array(texts)).cast(Text)
    return func.substr(func.left(array, -1), 2)


#: Rows with what `_content_sql` must encode exactly: every control character but NUL (which
#: PostgreSQL's text cannot hold), quotes, backslashes, non-ASCII, NULLs, times with and without
#: microseconds, large integers.
_TRICKY = "".join(map(chr, range(1, 32))) + '"\\/\x7få\u00e4ö\u2028\u2029\ufeff\U0001f600'
_PROBES = (
    (1, dt.datetime(2026, 1, 2, 7, 0, 0, 5, tzinfo=dt.UTC), 7, _TRICKY, "coach", 3, "read",
     "patient", _TRICKY, "P-" + "0" * 24, _TRICKY, "r" * 32, "::1"),
    (2**31 - 1, dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.UTC), None, "", "", None,
     "login", "", "", None, "", "", ""),
)  # fmt: skip


def _content_by_sql(connection: Any, fields: Sequence[Any]) -> bytes | None:
    """What the database's `_content_sql` makes of a row with `fields` (in `_CHAINED` order)."""
    dialect = connection.dialect.name
    values = []
    for name, value in zip(_CHAINED, fields, strict=True):
        # Not the columns' own types: a foreign key's is only known once its table is.
        column_type: Any = String()
        if name in ("seq", "actor_id", "unit_id"):
            column_type = Integer()
        elif name == "occurred_at":
            column_type = UtcDateTime()
        bound: Any = literal(value, column_type)
        if dialect == "postgresql":  # it must be told a parameter's type (SQLite's CAST
            bound = bound.cast(column_type)  # would change the value)
        values.append(bound.label(name))
    row = select(*values).subquery("probe").c
    made: bytes | None = connection.scalar(select(_content_sql(dialect, row)))
    return made


def _sql_content_agrees(connection: Any) -> bool:
    """Whether the database's `_content_sql` gives `_content`'s bytes for every `_PROBES` row
    (a database version that wrote JSON another way would fail every such row as changed)."""
    return all(_content_by_sql(connection, probe) == _content(probe) for probe in _PROBES)


def _walked_rows(connection: Any, batch: int, chain: str | None = None) -> Iterator[Any]:
    """Every row as (id, seq, chain, MAC, content) in id order, or `chain`'s rows in seq order,
    streamed in batches. The content comes from `_content_sql` when the database's JSON agrees
    with `_ENCODER`'s, from the stored fields and `_content` otherwise."""
    dialect = connection.dialect.name
    content = _content_sql(dialect, _events.c)
    fields: list[Any] = [_events.c[name] for name in _CHAINED]
    if dialect == "sqlite":  # the stored text, read by `_content` as written
        fields[1] = type_coerce(fields[1], String)
    read_fields = content is None or not _sql_content_agrees(connection)
    query = select(*_WALKED, null() if read_fields else content, *(fields if read_fields else ()))
    if chain is None:
        # The table's own order: no sort, and on SQLite no lookup of each row from an index.
        query = query.order_by(_events.c.id)
    else:
        query = query.where(_events.c.chain == chain).order_by(_events.c.seq, _events.c.id)
    with connection.execute(query.execution_options(yield_per=batch)) as rows:
        for row in rows:
            if row[4] is None:
                if read_fields:
                    stored = row[5:]
                else:  # a time SQLite's string operations cannot put into ISO form
                    stored = connection.execute(select(*fields).where(_events.c.id == row[0])).one()
                row = (row[0], row[1], row[2], row[3], _content(stored))
            yield row


def chain_length(session: Session) -> int:
    """How many rows the access log holds over all chains, as their heads say (0 when empty)."""
    return sum(session.scalars(select(AuditChainHead.seq)))


def verify_chain(
    session: Session,
    ring: vault.KeyRing,
    *,
    checkpoint_path: Path | None = None,
    progress: Callable[[int], None] | None = None,
    batch: int = 20000,
) -> VerifyResult:
    """Walk every chain in one streaming pass (in id order, which is each chain's seq order when
    its rows were appended by `record_entries`; a chain whose ids are not is walked again in seq
    order on its own) and name the first row that does not hold in each:
    a changed row (its MAC fails), a deleted row (a gap in the sequence, or the next MAC fails),
    an inserted row (its MAC fails or its sequence repeats), rows cut off at the end (the head
    says more), and, with `checkpoint_path`, a chain shorter than or different from its last
    checkpoint (the end cut off and the head set back). A changed checkpoint line fails too."""
    key = ring.audit_key
    checkpoints, problems = read_checkpoints(checkpoint_path, ring) if checkpoint_path else ({}, [])
    heads = {h.chain: (h.seq, h.mac) for h in session.scalars(select(AuditChainHead))}
    connection = session.connection()
    walked, disordered = _walk(_walked_rows(connection, batch), key, checkpoints, progress, batch)
    for chain in sorted(disordered):
        again, _ = _walk(_walked_rows(connection, batch, chain), key, checkpoints, None, batch)
        walked.extend(again)
    results = {r.chain: r for r in walked}
    for chain in sorted(set(heads) | set(checkpoints) - set(results)):
        if chain not in results:  # a chain without rows
            results[chain] = ChainResult(chain, True, 0, checkpoint=checkpoints.get(chain))
    final = [
        _against_head_and_checkpoint(r, heads.get(r.chain), checkpoints.get(r.chain))
        for r in sorted(results.values(), key=lambda r: (r.chain != REGION, _chain_order(r.chain)))
    ]
    return VerifyResult(tuple(final), tuple(problems))


def _chain_order(chain: str) -> tuple[int, str]:
    number = chain.removeprefix("unit:")
    return (int(number), "") if number.isdigit() else (0, chain)


@dataclass
class _Walking:
    """One chain's state during the walk."""

    chain: str
    previous: str
    checkpoint: Checkpoint | None
    expected: int = 1
    failure: ChainResult | None = None
    #: The seq of the chain's row walked last, and whether every row so far came after it.
    seen: int = 0
    in_order: bool = True
    #: The MAC of the row at the checkpoint's seq, once walked past it.
    mac_at_checkpoint: str | None = field(default=None)


def _walk(
    rows: Iterable[Any],
    key: bytes,
    checkpoints: dict[str, Checkpoint],
    progress: Callable[[int], None] | None,
    batch: int,
) -> tuple[list[ChainResult], set[str]]:
    """Check each row against the row before it in its chain. A chain whose rows come in seq
    order gets its first bad row or (count, last MAC); one with a row whose seq is below the
    seq of its row before is only named (the second value), to be walked in seq order: its
    first bad row is then found where a walk in (chain, seq) order finds it. After a chain's
    first bad row its remaining rows are counted and their order watched, not checked."""
    keyed = _keyed(key)
    states: dict[str, _Walking] = {}
    total = 0
    for row_id, seq, chain, mac, content in rows:
        total += 1
        if progress and total % batch == 0:
            progress(total)
        state = states.get(chain)
        if state is None:
            state = states[chain] = _Walking(chain, genesis(key, chain), checkpoints.get(chain))
        elif seq < state.seen:
            state.in_order = False
        state.seen = seq
        if state.failure is not None or not state.in_order:
            continue
        expected = state.expected
        if seq != expected:
            kind = "saknas (borttagen)" if seq > expected else "finns två gånger (infogad)"
            state.failure = ChainResult(
                chain, False, expected - 1, expected, row_id, f"rad seq {expected} {kind}"
            )
            continue
        if not hmac.compare_digest(mac, _mac_over(keyed, state.previous, content)):
            state.failure = ChainResult(
                chain,
                False,
                expected - 1,
                seq,
                row_id,
                f"rad seq {seq} (id {row_id}) stämmer inte med sin MAC: den är ändrad eller "
                "infogad, eller raden före den är borttagen",
            )
            continue
        state.previous = mac
        state.expected = expected + 1
        if state.checkpoint is not None and seq == state.checkpoint.seq:
            state.mac_at_checkpoint = mac
    done = [_finish(state) for state in states.values() if state.in_order]
    return done, {state.chain for state in states.values() if not state.in_order}


def _finish(state: _Walking) -> ChainResult:
    if state.failure is not None:
        return state.failure
    # A good chain's result carries its last MAC in `reason` until the head check replaces it.
    checkpoint = state.checkpoint
    if checkpoint is not None and state.mac_at_checkpoint not in (None, checkpoint.mac):
        return ChainResult(
            state.chain,
            False,
            state.expected - 1,
            checkpoint.seq,
            None,
            f"rad seq {checkpoint.seq} skiljer sig från {checkpoint.describe()}: kedjan är "
            "omskriven",
            checkpoint,
        )
    return ChainResult(state.chain, True, state.expected - 1, last_mac=state.previous)


def _against_head_and_checkpoint(
    result: ChainResult, head: tuple[int, str] | None, checkpoint: Checkpoint | None
) -> ChainResult:
    """A chain whose rows hold must also end where its head and its last checkpoint say."""
    if not result.ok:
        return result
    checked, last_mac = result.checked, result.last_mac
    if head is None and checked:
        return ChainResult(result.chain, False, checked, None, None, "kedjan saknar huvud")
    if head is not None and (head[0] != checked or (checked and head[1] != last_mac)):
        return ChainResult(
            result.chain,
            False,
            checked,
            checked + 1,
            None,
            f"kedjan slutar vid seq {checked} men dess huvud säger {head[0]}: rader har tagits "
            "bort från slutet",
            checkpoint,
        )
    if checkpoint is not None and checked < checkpoint.seq:
        return ChainResult(
            result.chain,
            False,
            checked,
            checked + 1,
            None,
            f"kedjan slutar vid seq {checked} men {checkpoint.describe()} säger {checkpoint.seq}: "
            "rader har tagits bort från slutet och huvudet flyttats tillbaka",
            checkpoint,
        )
    return ChainResult(result.chain, True, checked, checkpoint=checkpoint)


class CheckpointRefused(Conflict):
    """`slussen audit checkpoint` will not anchor a chain that is behind its last checkpoint, and
    cannot write to an unusable path."""


def _checkpoint_key(ring: vault.KeyRing) -> bytes:
    # A key of its own, derived from the audit key: a checkpoint MAC can never pass as a row MAC.
    return hmac.digest(ring.audit_key, b"audit-checkpoint", "sha256")


def _checkpoint_mac(key: bytes, chain: str, seq: int, mac: str, at: str) -> str:
    return hmac.digest(key, _ENCODER.encode([chain, seq, mac, at]).encode(), "sha256").hex()


def read_checkpoints(path: Path, ring: vault.KeyRing) -> tuple[dict[str, Checkpoint], list[str]]:
    """Each chain's furthest checkpoint in the file at `path`, and the file's problems: a line
    whose MAC fails (changed, or written with another key ring) or that cannot be read, and a
    chain that a later line shows shorter than an earlier one. No file: nothing, no problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, []
    except OSError as exc:
        return {}, [f"kontrollpunktsfilen {path} kan inte läsas: {exc.strerror}"]
    key = _checkpoint_key(ring)
    found: dict[str, Checkpoint] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            point = Checkpoint(
                str(data["chain"]), int(data["seq"]), str(data["mac"]), str(data["at"]), number
            )
            check = str(data["check"])
        except (ValueError, KeyError, TypeError):
            problems.append(f"kontrollpunktsfilen {path} rad {number} kan inte läsas")
            continue
        expected = _checkpoint_mac(key, point.chain, point.seq, point.mac, point.at)
        if not hmac.compare_digest(check, expected):
            problems.append(
                f"kontrollpunktsfilen {path} rad {number} stämmer inte med sin MAC: den är "
                "ändrad eller skriven med en annan nyckelring"
            )
            continue
        before = found.get(point.chain)
        if before is not None and point.seq < before.seq:
            problems.append(
                f"{chain_label(point.chain)}: {point.describe()} är kortare än "
                f"{before.describe()}: kedjan har flyttats tillbaka"
            )
            continue
        found[point.chain] = point
    return found, problems


def write_checkpoint(session: Session, ring: vault.KeyRing, path: Path) -> list[Checkpoint]:
    """Append one MACed line per chain (chain, seq, head MAC, time) to the file at `path`,
    creating it with mode 600. Reads only the heads (cheap enough for every 5 minutes).

    Refuses (CheckpointRefused), writing nothing, when a chain's head is behind or differs from
    its last checkpoint in the file, when the file has a line whose MAC fails, or when the file
    cannot be written."""
    before, problems = read_checkpoints(path, ring)
    if problems:
        raise CheckpointRefused("; ".join(problems))
    heads = list(
        session.execute(select(AuditChainHead.chain, AuditChainHead.seq, AuditChainHead.mac))
    )
    for chain, seq, mac in heads:
        last = before.get(chain)
        if last is not None and (seq < last.seq or (seq == last.seq and mac != last.mac)):
            raise CheckpointRefused(
                f"{chain_label(chain)} står på seq {seq} men {last.describe()} säger "
                f"{last.seq}: kedjan har flyttats tillbaka eller skrivits om. Kör `slussen audit "
                "verify`."
            )
    key = _checkpoint_key(ring)
    at = utcnow().isoformat(timespec="seconds")
    written: list[Checkpoint] = []
    lines = []
    for chain, seq, mac in sorted(heads):
        data = {"chain": chain, "seq": seq, "mac": mac, "at": at}
        data["check"] = _checkpoint_mac(key, chain, seq, mac, at)
        lines.append(_ENCODER.encode(data) + "\n")
        written.append(Checkpoint(chain, seq, mac, at, 0))
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as out:
            out.write("".join(lines))
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise CheckpointRefused(
            f"kontrollpunktsfilen {path} kan inte skrivas: {exc.strerror}"
        ) from None
    return written
