"""The access log (PDL 4 kap. 3 §): one append-only, hash-chained table.

Every read or change of patient data, every print, export and login writes an `AuditEvent` in the
same transaction as the access itself; if the audit row cannot be written, the transaction fails
and nothing is shown. Each row carries a keyed MAC over its own content and the previous row's MAC
(the key lives in the key ring, not the database), so `slussen audit verify` finds a changed,
removed or inserted row. Appends are serialised through the one-row `audit_chain_heads` table:
updating it takes a row lock on PostgreSQL and the write lock on SQLite, so concurrent requests
queue up instead of forking the chain.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from slussen import vault
from slussen.db import Base, UtcDateTime, intpk, one_of, utcnow

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
GENESIS = "0" * 64
HEAD_ID = 1


class AuditEvent(Base):
    """One access. Never updated or deleted (a PostgreSQL trigger refuses both)."""

    __tablename__ = "audit_events"
    __table_args__ = (CheckConstraint(one_of("action", ACTIONS), "action_known"),)

    id: Mapped[intpk]
    #: Position in the chain: 1, 2, 3… with no gaps (a gap is a deleted row).
    seq: Mapped[int] = mapped_column(Integer, unique=True)
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
    """The end of the chain: the last sequence number and MAC. One row."""

    __tablename__ = "audit_chain_heads"

    id: Mapped[intpk]
    seq: Mapped[int] = mapped_column(Integer)
    mac: Mapped[str] = mapped_column(String(64))


_heads = cast(Table, AuditChainHead.__table__)
_ADVANCE_HEAD = (
    update(_heads)
    .where(_heads.c.id == HEAD_ID)
    .values(seq=_heads.c.seq + 1)
    .returning(_heads.c.seq, _heads.c.mac)
)
_INSERT_EVENT = insert(cast(Table, AuditEvent.__table__))
_SET_HEAD_MAC = update(_heads).where(_heads.c.id == HEAD_ID).values(mac=bindparam("mac"))


@dataclass(frozen=True)
class Actor:
    """Who acts: a logged-in user, a CLI operator, or the public (a self-referral)."""

    user_id: int | None
    name: str
    role: str
    #: The units the actor works in (inner confidentiality); empty for the public and system.
    unit_ids: frozenset[int] = frozenset()

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


def patient_pseudonym(ring: vault.KeyRing, patient_id: int) -> str:
    return vault.pseudonym(ring, f"patient:{patient_id}")


#: The row's content in chain order; `_COLUMNS` below reads them in the same order.
_CHAINED = (
    "seq", "occurred_at", "actor_id", "actor_name", "actor_role", "unit_id", "action",
    "object_type", "object_id", "patient_pseudonym", "purpose", "request_id", "client_address",
)  # fmt: skip
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _mac_of(key: bytes, previous: str, fields: Sequence[Any]) -> str:
    """The chain MAC over the previous MAC and the row's fields (in `_CHAINED` order)."""
    content = list(fields)
    content[1] = content[1].astimezone(dt.UTC).isoformat(timespec="microseconds")
    message = previous.encode() + b"\n" + _ENCODER.encode(content).encode()
    return hmac.digest(key, message, "sha256").hex()


def ensure_head(session: Session) -> None:
    """Create the chain head if the table is empty (first use, or a fresh database)."""
    if session.get(AuditChainHead, HEAD_ID) is None:
        session.add(AuditChainHead(id=HEAD_ID, seq=0, mac=GENESIS))
        session.flush()


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
    """Append one audit row in the caller's transaction and return its sequence number.

    Refuses an unknown action (ValueError). The caller commits; if it rolls back, the row goes
    too, and so does the access it recorded."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    info = info or request_info()
    # Core statements on the session's connection: the audit row needs no ORM bookkeeping, and
    # this runs on every audited access.
    connection = session.connection()
    head = connection.execute(_ADVANCE_HEAD).one_or_none()
    if head is None:
        ensure_head(session)
        return record(
            session,
            ring,
            actor,
            action,
            object_type,
            object_id,
            purpose=purpose,
            patient_id=patient_id,
            unit_id=unit_id,
            info=info,
        )
    seq, previous = head
    fields = _fields(
        seq,
        utcnow(),
        actor,
        action,
        object_type,
        object_id,
        patient_pseudonym(ring, patient_id) if patient_id else None,
        purpose,
        unit_id,
        info,
    )
    values = dict(zip(_CHAINED, fields, strict=True))
    values["mac"] = _mac_of(ring.audit_key, previous, fields)
    connection.execute(_INSERT_EVENT, values)
    connection.execute(_SET_HEAD_MAC, {"mac": values["mac"]})
    return int(seq)


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
class VerifyResult:
    ok: bool
    checked: int
    #: The sequence number of the first bad row (or where a missing row should be).
    bad_seq: int | None = None
    bad_id: int | None = None
    reason: str = ""


_COLUMNS = [
    AuditEvent.id,
    AuditEvent.seq,
    AuditEvent.occurred_at,
    AuditEvent.actor_id,
    AuditEvent.actor_name,
    AuditEvent.actor_role,
    AuditEvent.unit_id,
    AuditEvent.action,
    AuditEvent.object_type,
    AuditEvent.object_id,
    AuditEvent.patient_pseudonym,
    AuditEvent.purpose,
    AuditEvent.request_id,
    AuditEvent.client_address,
    AuditEvent.mac,
]


def chain_length(session: Session) -> int:
    """How many rows the access log holds, as its head says (0 when empty)."""
    head = session.get(AuditChainHead, HEAD_ID)
    return head.seq if head else 0


def verify_chain(
    session: Session,
    ring: vault.KeyRing,
    *,
    progress: Callable[[int], None] | None = None,
    batch: int = 20000,
) -> VerifyResult:
    """Walk the whole chain in one streaming pass and name the first row that does not hold:
    a changed row (its MAC fails), a deleted row (a gap in the sequence, or the next MAC fails),
    an inserted row (its MAC fails or its sequence repeats), or rows cut off at the end."""
    key = ring.audit_key
    with session.execute(
        select(*_COLUMNS).order_by(AuditEvent.seq).execution_options(yield_per=batch)
    ) as result:
        failure = _walk(result, key, progress, batch)
    if isinstance(failure, VerifyResult):
        return failure
    checked, previous = failure
    head = session.get(AuditChainHead, HEAD_ID)
    if head is not None and (head.seq != checked or head.mac != previous):
        return VerifyResult(
            False,
            checked,
            checked + 1,
            None,
            f"the chain ends at seq {checked} but its head says {head.seq}: rows were removed "
            "from the end",
        )
    return VerifyResult(True, checked)


def _walk(
    result: Any, key: bytes, progress: Callable[[int], None] | None, batch: int
) -> VerifyResult | tuple[int, str]:
    """Check rows in order; a VerifyResult at the first bad row, else (count, last MAC)."""
    previous = GENESIS
    expected = 1
    checked = 0
    for row in result:
        row_id, seq, mac = row[0], row[1], row[14]
        if seq != expected:
            kind = "is missing (deleted)" if seq > expected else "is repeated (inserted)"
            return VerifyResult(False, checked, expected, row_id, f"row seq {expected} {kind}")
        if not hmac.compare_digest(mac, _mac_of(key, previous, row[1:14])):
            return VerifyResult(
                False,
                checked,
                seq,
                row_id,
                f"row seq {seq} (id {row_id}) does not match its MAC: it was "
                "changed or inserted, or the row before it was removed",
            )
        previous = mac
        expected += 1
        checked += 1
        if progress and checked % batch == 0:
            progress(checked)
    return checked, previous
