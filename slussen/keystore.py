"""Data keys in the database, the key ring on disk, and the per-request cache between them.

`vault.py` is the cryptography; this module is where it meets the database: a `DataKey` row holds
one wrapped data key (one per patient, one per user with TOTP, one for the canary), `Keystore`
unwraps each key at most once per request or command and hands out `FieldCipher`s, and
`rotate_master_key` rewraps every data key in batches. Destroying a data key (crypto-shredding)
makes every field encrypted with it unreadable forever.

The canary (`KeyringCanary`) is a known text sealed under the key ring at `slussen init-db`: a
database, or a backup, whose canary the configured ring cannot open is refused with one line
naming the ring it expects (`check_canary`), so a wrong ring with the right master key ids is
found before anything is changed, not after a restore that reads no patient.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from flask import current_app, g, has_app_context
from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    LargeBinary,
    String,
    bindparam,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from slussen import audit, vault
from slussen.config import Settings
from slussen.db import (
    SLICE_SIZE,
    Base,
    created_at,
    db_session,
    in_slices,
    intpk,
    slice_commit,
    utcnow,
)
from slussen.sensitivity import REFERENCES, classify


class DataKey(Base):
    """One random AES-256 key, stored only wrapped by a master key from the key ring."""

    __tablename__ = "data_keys"
    __sensitivity__ = classify(
        sealed=("wrapped",),
        clear={
            REFERENCES: ("id",),
            "which master key wraps it, so rotation needs no decryption": ("master_key_id",),
            "key life cycle (crypto-shredding)": ("created_at", "destroyed_at"),
        },
    )

    id: Mapped[intpk]
    #: The wrapped key (vault format v1); NULL once destroyed (crypto-shredding).
    wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: Which master key wraps it, so rotation and `keys status` need no decryption.
    master_key_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[created_at]
    destroyed_at: Mapped[dt.datetime | None]


class KeyDestroyed(vault.VaultError):
    """The data key was destroyed: the record was erased and cannot be read."""


#: The canary's known text; the creation time follows it.
CANARY_TEXT = "slussen-canary"
#: Where the canary is sealed: the binding of its `FieldCipher` (table, column, row).
CANARY_FIELD = ("keyring_canaries", "sealed", 1)


class KeyringCanary(Base):
    """The one row sealed under the key ring at `slussen init-db`, opened to check a ring."""

    __tablename__ = "keyring_canaries"
    __sensitivity__ = classify(
        sealed=("sealed",),
        clear={
            REFERENCES: ("id", "data_key_id"),
            "names the ring a restore needs": ("ring_fingerprint", "created_at"),
        },
    )
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    #: Always 1: one canary per database.
    id: Mapped[intpk]
    data_key_id: Mapped[int] = mapped_column(ForeignKey("data_keys.id"))
    #: CANARY_TEXT and the creation time, sealed with the data key (CANARY_FIELD).
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    #: `KeyRing.fingerprint()` of the ring that sealed it, named when another ring is refused.
    ring_fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[created_at]


class KeyRingMismatch(vault.KeyRingError):
    """The key ring cannot open the database's canary: it is not the ring the data needs."""


# --- the key ring -------------------------------------------------------------------------------


def open_key_ring(settings: Settings, *, create_if_missing: bool | None = None) -> vault.KeyRing:
    """Load the key ring. Development and testing create one in the instance folder on first use;
    production never does (run `slussen keys init`)."""
    path = settings.resolved_keyring_path
    if create_if_missing is None:
        create_if_missing = not settings.is_production
    if not path.exists():
        if not create_if_missing:
            raise vault.KeyRingError(
                f"the key ring {path} does not exist; create it with `slussen keys init`"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        return vault.KeyRing.create(path)
    return vault.KeyRing.load(path)


@dataclass
class _RingCache:
    ring: vault.KeyRing
    mtime_ns: int


def current_key_ring() -> vault.KeyRing:
    """The app's key ring, reloaded when the file changed (another process rotated it)."""
    settings: Settings = current_app.extensions["slussen.settings"]
    cached: _RingCache | None = current_app.extensions.get("slussen.keyring")
    path = settings.resolved_keyring_path
    try:
        mtime = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        mtime = -1
    if cached is None or cached.mtime_ns != mtime:
        ring = open_key_ring(settings)
        cached = _RingCache(ring, os.stat(path).st_mtime_ns if ring.path else mtime)
        current_app.extensions["slussen.keyring"] = cached
    return cached.ring


# --- data keys ----------------------------------------------------------------------------------


class Keystore:
    """Creates and unwraps data keys; each key is unwrapped once and cached for this unit of work.

    Unwrapped keys live only in this object's memory and are never written anywhere."""

    def __init__(self, session: Session, ring: vault.KeyRing) -> None:
        self.session = session
        self.ring = ring
        self._ciphers: dict[int, vault.FieldCipher] = {}
        #: Each owner's data key id (patient id → data key id) as the layer above looked it up,
        #: so a page that reads many fields of one patient loads the patient once.
        self.owner_keys: dict[int, int] = {}

    def new_key(self) -> DataKey:
        """Create a data key, wrapped by the active master key, and return its row (flushed)."""
        row = DataKey()
        self.session.add(row)
        self.session.flush()
        raw = vault.new_data_key()
        row.wrapped = vault.wrap_data_key(self.ring, raw, data_key_id=row.id)
        row.master_key_id = self.ring.active_master_id
        self._ciphers[row.id] = vault.FieldCipher(raw, row.id)
        return row

    def cipher(self, data_key_id: int) -> vault.FieldCipher:
        """The cipher for a data key; refuses (KeyDestroyed) a destroyed key."""
        cipher = self._ciphers.get(data_key_id)
        if cipher is None:
            row = self.session.get(DataKey, data_key_id)
            if row is None or row.wrapped is None:
                raise KeyDestroyed("the record was erased; its data can no longer be read")
            raw = vault.unwrap_data_key(self.ring, row.wrapped, data_key_id=data_key_id)
            cipher = vault.FieldCipher(raw, data_key_id)
            self._ciphers[data_key_id] = cipher
        return cipher

    def adopt(self, keys: Iterable[tuple[int, bytes | None]]) -> None:
        """Unwrap data keys the caller read already (id, wrapped) with its own query, so a list
        page of many patients costs no query here. A destroyed key (None) stays unusable."""
        for key_id, wrapped in keys:
            if wrapped is not None and key_id not in self._ciphers:
                raw = vault.unwrap_data_key(self.ring, wrapped, data_key_id=key_id)
                self._ciphers[key_id] = vault.FieldCipher(raw, key_id)

    def destroy(self, data_key_id: int) -> None:
        """Crypto-shred: drop the wrapped key so nothing encrypted with it can be read again."""
        row = self.session.get(DataKey, data_key_id)
        if row is None:
            return
        row.wrapped = None
        row.master_key_id = None
        row.destroyed_at = utcnow()
        self._ciphers.pop(data_key_id, None)


def keystore(session: Session | None = None) -> Keystore:
    """The request's Keystore (cached in `g`), bound to the request's session."""
    if not has_app_context():
        raise RuntimeError("keystore() needs an app context; build Keystore(session, ring) instead")
    session = session or db_session()
    store: Keystore | None = g.get("slussen_keystore")
    if store is None or store.session is not session:
        store = Keystore(session, current_key_ring())
        g.slussen_keystore = store
    return store


# --- the canary ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Canary:
    """A database's canary as read from it or from a backup, with what a ring needs to open it."""

    sealed: bytes
    data_key_id: int
    #: The canary's data key as the database holds it (None if it was destroyed).
    wrapped: bytes | None
    ring_fingerprint: str
    #: Every master key that wraps a live data key of the database.
    master_key_ids: tuple[str, ...]


def seal_canary(session: Session, ring: vault.KeyRing) -> bool:
    """Seal the canary under `ring` with a new data key, unless the database has one already;
    True when sealed now. Checks nothing: the caller opens an existing canary first
    (`check_key_ring`). The caller commits."""
    if session.get(KeyringCanary, CANARY_FIELD[2]) is not None:
        return False
    store = Keystore(session, ring)
    key = store.new_key()
    now = utcnow()
    table, column, row_id = CANARY_FIELD
    sealed = store.cipher(key.id).encrypt(
        f"{CANARY_TEXT} {now.isoformat()}", table=table, column=column, row_id=row_id
    )
    session.add(
        KeyringCanary(
            id=row_id,
            data_key_id=key.id,
            sealed=sealed,
            ring_fingerprint=ring.fingerprint(),
            created_at=now,
        )
    )
    session.flush()
    return True


def read_canary(session: Session) -> Canary | None:
    """The database's canary; None when it has none (a schema before 0013, or no `init-db` yet)."""
    if not inspect(session.connection()).has_table(KeyringCanary.__tablename__):
        return None
    row = session.execute(
        select(
            KeyringCanary.sealed,
            KeyringCanary.data_key_id,
            DataKey.wrapped,
            KeyringCanary.ring_fingerprint,
        ).join(DataKey, DataKey.id == KeyringCanary.data_key_id)
    ).first()
    if row is None:
        return None
    sealed, data_key_id, wrapped, fingerprint = row
    return Canary(sealed, data_key_id, wrapped, fingerprint, tuple(sorted(key_usage(session))))


def _ring_name(ring: vault.KeyRing) -> str:
    where = f" {ring.path}" if ring.path is not None else " (in memory)"
    return (
        f"the key ring{where} (fingerprint {ring.fingerprint()}, master keys "
        f"{', '.join(sorted(ring.master_keys))})"
    )


def check_canary(canary: Canary, ring: vault.KeyRing, *, of: str = "the database") -> None:
    """Open `canary` (the canary `of` "the database" or "the backup") with `ring`. Refuses
    (KeyRingMismatch, one line naming the ring the data needs by fingerprint and master key ids,
    and the ring given) a ring that cannot: another ring, even one with the same master key
    ids, or one lacking the key that wraps it."""
    table, column, row_id = CANARY_FIELD
    try:
        if canary.wrapped is not None:
            raw = vault.unwrap_data_key(ring, canary.wrapped, data_key_id=canary.data_key_id)
            text = vault.FieldCipher(raw, canary.data_key_id).decrypt_str(
                canary.sealed, table=table, column=column, row_id=row_id
            )
            if text.startswith(CANARY_TEXT):
                return
    except vault.VaultError:
        pass  # said below, without the detail (which master key, which check failed)
    expected = ", ".join(canary.master_key_ids) or "none"
    raise KeyRingMismatch(
        f"{_ring_name(ring)} cannot open the canary of {of}: it needs the key ring with "
        f"fingerprint {canary.ring_fingerprint} holding master keys {expected}"
    )


def check_key_ring(session: Session, ring: vault.KeyRing) -> bool:
    """Open the database's canary with `ring`; False when the database has no canary yet.
    Refuses (KeyRingMismatch) a ring that cannot open it, like `check_canary`."""
    canary = read_canary(session)
    if canary is None:
        return False
    check_canary(canary, ring)
    return True


# --- rotation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationResult:
    active_key: str
    rewrapped: int
    retired: list[str]
    resumed: bool


def key_usage(session: Session) -> dict[str, int]:
    """How many live data keys each master key wraps."""
    rows = session.execute(
        select(DataKey.master_key_id, func.count())
        .where(DataKey.master_key_id.is_not(None))
        .group_by(DataKey.master_key_id)
    )
    return {str(key_id): int(count) for key_id, count in rows}


#: Data keys read per query while rewrapping (committed in smaller slices).
_READ_BATCH = 2000


def _pending(session: Session, active: str, after_id: int, batch: int) -> list[tuple[int, bytes]]:
    """(id, wrapped) of up to `batch` data keys after `after_id` not yet wrapped by `active`."""
    rows = session.execute(
        select(DataKey.id, DataKey.wrapped)
        .where(DataKey.master_key_id.is_not(None), DataKey.master_key_id != active)
        .where(DataKey.id > after_id)
        .order_by(DataKey.id)
        .limit(batch)
    )
    return [(key_id, wrapped) for key_id, wrapped in rows if wrapped is not None]


def rotate_master_key(
    session_factory: Callable[[], Session],
    ring: vault.KeyRing,
    *,
    batch_size: int = SLICE_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> RotationResult:
    """Add a new master key and rewrap every data key with it, in short committed slices
    (`db.in_slices`, `batch_size` keys or a quarter of a second each), so pages never wait for
    a rotation; `progress(done, total)` after each slice.

    Each slice's keys are rewrapped in memory and written by one executemany UPDATE just before
    the slice commits. A key is written only if its row still holds the wrapped key that was
    read, so a key destroyed (or made) meanwhile is left as it is, never brought back.

    Resumable: when data keys are still wrapped by an older key (an earlier run was interrupted),
    no new key is added and the run finishes the rewrap. Old master keys are retired only when no
    data key uses them any more; they stay in the ring (retired) so old backups remain readable.
    The rotation is written to the access log (action key_rotate) in its own transaction."""
    with session_factory() as session:
        usage = key_usage(session)
    stale = {key for key, count in usage.items() if key != ring.active_master_id and count}
    resumed = bool(stale)
    if not resumed:
        ring.add_master_key()
    active = ring.active_master_id
    # Run on the session's connection (Core executemany), not through the ORM's bulk update.
    rewrite = (
        update(DataKey)
        .where(DataKey.id == bindparam("key_id"), DataKey.wrapped == bindparam("read"))
        .values(wrapped=bindparam("rewrapped"), master_key_id=active)
    )
    with session_factory() as session:
        total = sum(count for key, count in key_usage(session).items() if key != active)
        rewrapped = 0
        written: list[dict[str, object]] = []

        def pending() -> Iterator[tuple[int, bytes]]:
            last_id = 0
            while rows := _pending(session, active, last_id, _READ_BATCH):
                yield from rows
                last_id = rows[-1][0]

        def rewrap(row: tuple[int, bytes]) -> list[int]:
            key_id, wrapped = row
            new = vault.rewrap_data_key(ring, wrapped, data_key_id=key_id)
            written.append({"key_id": key_id, "read": wrapped, "rewrapped": new})
            return []

        commit = slice_commit(session)

        def write_commit_and_report() -> None:
            nonlocal rewrapped
            if written:
                rewrapped += session.connection().execute(rewrite, written).rowcount
                written.clear()
            commit()
            if progress:
                progress(rewrapped, total)

        for _ in in_slices(pending(), rewrap, commit=write_commit_and_report, size=batch_size):
            pass
    with session_factory() as session:
        usage = key_usage(session)
    retired = []
    for key_id, master in list(ring.master_keys.items()):
        if key_id != active and not master.is_retired and not usage.get(key_id):
            ring.retire_master_key(key_id)
            retired.append(key_id)
    with session_factory() as session, session.begin():
        audit.record(
            session,
            ring,
            audit.SYSTEM,
            "key_rotate",
            "keyring",
            active,
            purpose=f"rewrapped {rewrapped} data keys",
        )
    return RotationResult(active_key=active, rewrapped=rewrapped, retired=retired, resumed=resumed)


def iter_live_keys(session: Session, batch: int = 5000) -> Iterator[DataKey]:
    """Every data key not destroyed, in id order, a batch at a time."""
    last = 0
    while True:
        rows = list(
            session.scalars(
                select(DataKey)
                .where(DataKey.wrapped.is_not(None), DataKey.id > last)
                .order_by(DataKey.id)
                .limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].id
