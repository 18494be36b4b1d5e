"""Field-level encryption, key ring and keyed hashes for Slussen.

Pure cryptography: no database, no Flask. The design (docs/security.md):

* A key ring file, held outside the database, carries the master keys (KEKs), the
  blind-index key, the audit-chain MAC key and the pseudonym key.
* Every patient has a random 256-bit data key (DEK). The DEK is stored wrapped
  (AES-256-GCM) by the active master key; the wrapped blob names the master key id.
* Every sensitive field is encrypted with AES-256-GCM under the DEK. The ciphertext
  carries a format version and the DEK id, and the associated data binds
  table/column/row/DEK id, so a ciphertext moved to another row, column or table,
  or decrypted with another key, fails instead of returning garbage.

Formats (all version 1):

* wrapped data key: ``0x01 | len(master_id) (1 byte) | master_id (ascii) | nonce (12) | ct+tag``,
  AAD ``b"slussen/dk/v1/" + str(data_key_id)``.
* field: ``0x01 | data_key_id (8 bytes big-endian) | nonce (12) | ct+tag``,
  AAD ``f"slussen/field/v1/{table}/{column}/{row_id}/{data_key_id}"``.

Error messages never contain plaintext or key material.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "DecryptionError",
    "FieldCipher",
    "KeyRing",
    "KeyRingError",
    "MasterKey",
    "VaultError",
    "blind_index",
    "new_data_key",
    "pseudonym",
    "rewrap_data_key",
    "unwrap_data_key",
    "wrap_data_key",
    "wrapping_key_id",
]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
FORMAT_VERSION = 1
_VERSION_BYTE = b"\x01"
_FIELD_HEADER_BYTES = 1 + 8
_FIELD_NONCE_END = _FIELD_HEADER_BYTES + NONCE_BYTES
_MIN_FIELD_BYTES = _FIELD_NONCE_END + TAG_BYTES
_BYTES_LIKE = (bytes, bytearray, memoryview)
_MAX_DATA_KEY_ID = 2**64 - 1
_KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MASTER_SEQ_RE = re.compile(r"m([0-9]{1,9})")
_DK_AAD_PREFIX = b"slussen/dk/v1/"
_FINGERPRINT_LABEL = b"slussen/keyring-fingerprint/v1"


class VaultError(Exception):
    """Base class of every error raised by this module; the message is readable by a person."""


class DecryptionError(VaultError):
    """A ciphertext or wrapped key was tampered with, moved, or used with the wrong key."""


class KeyRingError(VaultError):
    """The key ring is missing, unreadable, malformed, too permissive, or lacks a key id."""


# --------------------------------------------------------------------------- key ring


@dataclass(frozen=True)
class MasterKey:
    """One master key (key-encryption key) of the ring; ``key`` is left out of repr()."""

    key_id: str
    key: bytes = field(repr=False)
    created_at: str
    is_retired: bool


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _decode_key(value: Any, what: str, path: Path | None) -> bytes:
    where = f" in {path}" if path is not None else ""
    if not isinstance(value, str):
        raise KeyRingError(f"Key ring field {what}{where} must be a base64 string.")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise KeyRingError(f"Key ring field {what}{where} is not valid base64.") from None
    if len(raw) != KEY_BYTES:
        raise KeyRingError(
            f"Key ring field {what}{where} must be {KEY_BYTES} bytes, not {len(raw)}."
        )
    return raw


def _check_distinct(keys: dict[str, bytes], path: Path | None) -> None:
    """Refuse all-zero keys and any key reused for two purposes (security.md ENC-8)."""
    where = f" in {path}" if path is not None else ""
    seen: dict[bytes, str] = {}
    for name, key in keys.items():
        if key == bytes(len(key)):
            raise KeyRingError(f"Key ring field {name}{where} is all zeros (a placeholder).")
        if key in seen:
            raise KeyRingError(f"Key ring fields {seen[key]} and {name}{where} hold the same key.")
        seen[key] = name


class KeyRing:
    """The keys Slussen needs, held outside the database (a JSON file or memory).

    Attributes: ``path`` (None for an in-memory ring), ``active_master_id``,
    ``master_keys`` (id -> MasterKey), and the 32-byte ``blind_index_key``,
    ``audit_key`` and ``pseudonym_key``.
    """

    path: Path | None
    active_master_id: str
    master_keys: dict[str, MasterKey]
    blind_index_key: bytes
    audit_key: bytes
    pseudonym_key: bytes

    def __init__(
        self,
        *,
        path: Path | None,
        active_master_id: str,
        master_keys: dict[str, MasterKey],
        blind_index_key: bytes,
        audit_key: bytes,
        pseudonym_key: bytes,
    ) -> None:
        """Build a ring from parts; refuses an inconsistent ring with KeyRingError.

        Refuses: an active id that is unknown or retired, bad key ids, keys that are not
        32 bytes, all-zero keys, and the same key used twice.
        """
        self.path = path
        self.active_master_id = active_master_id
        self.master_keys = dict(master_keys)
        self.blind_index_key = blind_index_key
        self.audit_key = audit_key
        self.pseudonym_key = pseudonym_key
        #: An AES-GCM object per master key, built on first use: rotation unwraps and wraps
        #: every data key, a list page unwraps a key per patient, and building the object
        #: costs about as much as wrapping a key.
        self._aeads: dict[bytes, AESGCM] = {}
        self._validate()

    def __repr__(self) -> str:
        """Describe the ring without any key material."""
        return (
            f"KeyRing(path={self.path!r}, active_master_id={self.active_master_id!r}, "
            f"master_keys={sorted(self.master_keys)!r})"
        )

    def _validate(self) -> None:
        where = f" in {self.path}" if self.path is not None else ""
        if not self.master_keys:
            raise KeyRingError(f"Key ring{where} has no master keys.")
        for key_id, mk in self.master_keys.items():
            if key_id != mk.key_id or not _KEY_ID_RE.fullmatch(key_id):
                raise KeyRingError(f"Key ring{where} has an invalid master key id {key_id!r}.")
            if len(mk.key) != KEY_BYTES:
                raise KeyRingError(f"Master key {key_id}{where} must be {KEY_BYTES} bytes.")
        active = self.master_keys.get(self.active_master_id)
        if active is None:
            raise KeyRingError(
                f"Key ring{where}: active master key {self.active_master_id!r} is not in the ring."
            )
        if active.is_retired:
            raise KeyRingError(
                f"Key ring{where}: active master key {self.active_master_id!r} is retired."
            )
        named = {
            "blind_index_key": self.blind_index_key,
            "audit_key": self.audit_key,
            "pseudonym_key": self.pseudonym_key,
        }
        for name, key in named.items():
            if len(key) != KEY_BYTES:
                raise KeyRingError(f"Key ring field {name}{where} must be {KEY_BYTES} bytes.")
        keys = {f"master_keys.{k}": mk.key for k, mk in self.master_keys.items()}
        keys.update(named)
        _check_distinct(keys, self.path)

    # ----- construction

    @classmethod
    def generate(cls) -> KeyRing:
        """Return a fresh in-memory ring (path None) with master key "m1"; for tests."""
        return cls(
            path=None,
            active_master_id="m1",
            master_keys={"m1": MasterKey("m1", os.urandom(KEY_BYTES), _now_iso(), False)},
            blind_index_key=os.urandom(KEY_BYTES),
            audit_key=os.urandom(KEY_BYTES),
            pseudonym_key=os.urandom(KEY_BYTES),
        )

    @classmethod
    def create(cls, path: Path) -> KeyRing:
        """Create a new ring file at ``path`` (mode 0o600) with one master key "m1".

        The parent directory is created with mode 0o700 if missing. The file is written
        atomically. Refuses (KeyRingError) if ``path`` already exists or cannot be written.
        """
        path = Path(path)
        if path.exists() or path.is_symlink():
            raise KeyRingError(f"Key ring {path} already exists; refusing to overwrite it.")
        ring = cls.generate()
        ring.path = path
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise KeyRingError(f"Cannot create directory {path.parent}: {exc.strerror}.") from None
        ring._write(ring._to_json(), overwrite=False)
        return ring

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        """Read a ring file.

        Raises KeyRingError with a one-line message if the file is missing or unreadable,
        is readable or writable by group/other on POSIX (fix: ``chmod 600 PATH``), is not
        JSON, has an unknown format, lacks a field, holds bad base64 or a key of the wrong
        length, reuses a key, or names an unknown or retired active master key.
        """
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise KeyRingError(f"Key ring {path} is not a regular file.")
                if os.name == "posix" and st.st_mode & 0o077:
                    raise KeyRingError(
                        f"Key ring {path} is accessible by group or others "
                        f"(mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}"
                    )
                raw = fh.read()
        except FileNotFoundError:
            raise KeyRingError(f"Key ring file {path} does not exist.") from None
        except IsADirectoryError:
            raise KeyRingError(f"Key ring {path} is a directory, not a file.") from None
        except OSError as exc:
            raise KeyRingError(f"Cannot read key ring {path}: {exc.strerror}.") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise KeyRingError(f"Key ring {path} is not valid JSON.") from None
        return cls._from_json(data, path)

    @classmethod
    def _from_json(cls, data: Any, path: Path) -> KeyRing:
        if not isinstance(data, dict):
            raise KeyRingError(f"Key ring {path} must hold a JSON object.")
        for name in (
            "format",
            "active_master",
            "master_keys",
            "blind_index_key",
            "audit_key",
            "pseudonym_key",
        ):
            if name not in data:
                raise KeyRingError(f"Key ring {path} lacks the field {name!r}.")
        fmt = data["format"]
        if type(fmt) is not int or fmt != FORMAT_VERSION:
            raise KeyRingError(
                f"Key ring {path} has format {fmt!r}; this version reads {FORMAT_VERSION}."
            )
        active = data["active_master"]
        if not isinstance(active, str):
            raise KeyRingError(f"Key ring {path}: 'active_master' must be a string.")
        entries = data["master_keys"]
        if not isinstance(entries, dict) or not entries:
            raise KeyRingError(f"Key ring {path}: 'master_keys' must be a non-empty object.")
        masters: dict[str, MasterKey] = {}
        for key_id, entry in entries.items():
            if not _KEY_ID_RE.fullmatch(key_id):
                raise KeyRingError(f"Key ring {path} has an invalid master key id {key_id!r}.")
            if not isinstance(entry, dict):
                raise KeyRingError(f"Key ring {path}: master key {key_id} must be an object.")
            for name in ("key", "created_at", "retired"):
                if name not in entry:
                    raise KeyRingError(f"Key ring {path}: master key {key_id} lacks {name!r}.")
            created, retired = entry["created_at"], entry["retired"]
            if not isinstance(created, str):
                raise KeyRingError(f"Key ring {path}: {key_id}.created_at must be a string.")
            if not isinstance(retired, bool):
                raise KeyRingError(f"Key ring {path}: {key_id}.retired must be true or false.")
            key = _decode_key(entry["key"], f"master_keys.{key_id}.key", path)
            masters[key_id] = MasterKey(key_id, key, created, retired)
        return cls(
            path=path,
            active_master_id=active,
            master_keys=masters,
            blind_index_key=_decode_key(data["blind_index_key"], "blind_index_key", path),
            audit_key=_decode_key(data["audit_key"], "audit_key", path),
            pseudonym_key=_decode_key(data["pseudonym_key"], "pseudonym_key", path),
        )

    def _to_json(self) -> str:
        doc = {
            "format": FORMAT_VERSION,
            "active_master": self.active_master_id,
            "master_keys": {
                k: {"key": _b64(mk.key), "created_at": mk.created_at, "retired": mk.is_retired}
                for k, mk in self.master_keys.items()
            },
            "blind_index_key": _b64(self.blind_index_key),
            "audit_key": _b64(self.audit_key),
            "pseudonym_key": _b64(self.pseudonym_key),
        }
        return json.dumps(doc, indent=2) + "\n"

    def _write(self, text: str, *, overwrite: bool) -> None:
        """Write ``text`` to self.path atomically with mode 0o600."""
        if self.path is None:
            raise KeyRingError("This key ring is in memory only; it has no file to save to.")
        path = self.path
        tmp_name: str | None = None
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                os.chmod(tmp_name, 0o600)
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            if overwrite:
                os.replace(tmp_name, path)
            else:
                # link() fails if the target exists, so a concurrent create cannot be clobbered.
                try:
                    os.link(tmp_name, path)
                except FileExistsError:
                    raise KeyRingError(
                        f"Key ring {path} already exists; refusing to overwrite it."
                    ) from None
                except OSError:  # file system without hard links
                    if path.exists():
                        raise KeyRingError(
                            f"Key ring {path} already exists; refusing to overwrite it."
                        ) from None
                    os.replace(tmp_name, path)
                else:
                    os.unlink(tmp_name)
            tmp_name = None
            if os.name == "posix":
                dir_fd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            raise KeyRingError(f"Cannot write key ring {path}: {exc.strerror}.") from None
        finally:
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    # ----- use and maintenance

    def fingerprint(self) -> str:
        """A short public name of this ring, e.g. ``"3f9a-0c41-77be-d2e8"``.

        SHA-256 over a MAC of a fixed string under each of the blind-index, access-log and
        pseudonym keys, which rotation never changes: the name stays the same across
        `slussen keys rotate` and differs for every other ring (one made afresh with the same
        master key ids too). It reveals nothing about the keys.
        """
        digest = hashlib.sha256(_FINGERPRINT_LABEL)
        for key in (self.blind_index_key, self.audit_key, self.pseudonym_key):
            digest.update(hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).digest())
        text = digest.hexdigest()[:16]
        return "-".join(text[i : i + 4] for i in range(0, 16, 4))

    def master(self, key_id: str) -> bytes:
        """Return master key ``key_id``; retired keys are returned too (they may still unwrap).

        Raises KeyRingError if the ring has no key with that id.
        """
        mk = self.master_keys.get(key_id)
        if mk is None:
            raise KeyRingError(f"Master key {key_id!r} is not in the key ring.")
        return mk.key

    def _aead(self, key_id: str) -> AESGCM:
        """The AES-GCM object of master key ``key_id``; KeyRingError like :meth:`master`.

        Cached by the key itself, so a ring whose keys change never uses a stale object."""
        key = self.master(key_id)
        aead = self._aeads.get(key)
        if aead is None:
            aead = self._aeads[key] = AESGCM(key)
        return aead

    def save(self) -> None:
        """Write the ring to its file atomically (mode 0o600); refuses an in-memory ring."""
        self._validate()
        self._write(self._to_json(), overwrite=True)

    def _commit(self, active: str, masters: dict[str, MasterKey]) -> None:
        """Apply a change, saving first when the ring has a file; on failure nothing changes."""
        old_active, old_masters = self.active_master_id, self.master_keys
        self.active_master_id, self.master_keys = active, masters
        try:
            self._validate()
            if self.path is not None:
                self._write(self._to_json(), overwrite=True)
        except BaseException:
            self.active_master_id, self.master_keys = old_active, old_masters
            raise

    def add_master_key(self) -> str:
        """Add a new random master key ``m<N+1>``, make it active, save; return its id.

        N is the highest number among existing ids of the form ``m<number>``.
        Raises KeyRingError if the ring file cannot be written (the ring is then unchanged).
        """
        numbers = [int(m.group(1)) for k in self.master_keys if (m := _MASTER_SEQ_RE.fullmatch(k))]
        new_id = f"m{max(numbers, default=0) + 1}"
        masters = dict(self.master_keys)
        masters[new_id] = MasterKey(new_id, os.urandom(KEY_BYTES), _now_iso(), False)
        self._commit(new_id, masters)
        return new_id

    def retire_master_key(self, key_id: str) -> None:
        """Mark master key ``key_id`` retired and save; it can still unwrap but is never used
        to wrap. Refuses (KeyRingError) the active key and unknown ids.
        """
        mk = self.master_keys.get(key_id)
        if mk is None:
            raise KeyRingError(f"Master key {key_id!r} is not in the key ring.")
        if key_id == self.active_master_id:
            raise KeyRingError(
                f"Master key {key_id!r} is the active key; add a new master key before retiring it."
            )
        masters = dict(self.master_keys)
        masters[key_id] = MasterKey(mk.key_id, mk.key, mk.created_at, True)
        self._commit(self.active_master_id, masters)


# --------------------------------------------------------------------------- data keys


def new_data_key() -> bytes:
    """Return a fresh random 32-byte data key (DEK)."""
    return os.urandom(KEY_BYTES)


def _check_data_key_id(data_key_id: int) -> None:
    if type(data_key_id) is not int or not 0 <= data_key_id <= _MAX_DATA_KEY_ID:
        raise VaultError("data_key_id must be an integer between 0 and 2**64-1.")


def _dk_aad(data_key_id: int) -> bytes:
    return _DK_AAD_PREFIX + str(data_key_id).encode("ascii")


def _parse_wrapped(blob: bytes) -> tuple[str, bytes, bytes]:
    """Split a wrapped data key into (master id, nonce, ct); DecryptionError if malformed."""
    if not isinstance(blob, _BYTES_LIKE):
        raise DecryptionError("Wrapped data key must be bytes.")
    blob = bytes(blob)
    if len(blob) < 2 or blob[:1] != _VERSION_BYTE:
        raise DecryptionError("Wrapped data key has an unknown format version or is empty.")
    n = blob[1]
    id_end = 2 + n
    if len(blob) != id_end + NONCE_BYTES + KEY_BYTES + TAG_BYTES:
        raise DecryptionError("Wrapped data key has the wrong length.")
    try:
        key_id = blob[2:id_end].decode("ascii")
    except UnicodeDecodeError:
        raise DecryptionError("Wrapped data key names an invalid master key id.") from None
    if not _KEY_ID_RE.fullmatch(key_id):
        raise DecryptionError("Wrapped data key names an invalid master key id.")
    return key_id, blob[id_end : id_end + NONCE_BYTES], blob[id_end + NONCE_BYTES :]


def wrap_data_key(ring: KeyRing, data_key: bytes, *, data_key_id: int) -> bytes:
    """Encrypt ``data_key`` under the ring's active master key, bound to ``data_key_id``.

    Refuses (VaultError) a data key that is not 32 bytes or a key id outside 0..2**64-1.
    """
    _check_data_key_id(data_key_id)
    if not isinstance(data_key, bytes) or len(data_key) != KEY_BYTES:
        raise VaultError(f"Data key must be {KEY_BYTES} bytes.")
    master_id = ring.active_master_id
    id_bytes = master_id.encode("ascii")
    nonce = os.urandom(NONCE_BYTES)
    ct = ring._aead(master_id).encrypt(nonce, data_key, _dk_aad(data_key_id))
    return _VERSION_BYTE + bytes([len(id_bytes)]) + id_bytes + nonce + ct


def unwrap_data_key(ring: KeyRing, blob: bytes, *, data_key_id: int) -> bytes:
    """Decrypt a wrapped data key with whichever master key it names (retired keys included).

    Raises DecryptionError if the blob is malformed, tampered with, or belongs to another
    data key id; KeyRingError if the ring lacks the named master key.
    """
    _check_data_key_id(data_key_id)
    key_id, nonce, ct = _parse_wrapped(blob)
    aead = ring._aead(key_id)
    try:
        return aead.decrypt(nonce, ct, _dk_aad(data_key_id))
    except InvalidTag:
        raise DecryptionError(
            f"Data key {data_key_id} failed authentication under master key {key_id!r} "
            "(tampered, moved, or wrong key)."
        ) from None


def wrapping_key_id(blob: bytes) -> str:
    """Return the id of the master key that wraps ``blob``, without decrypting it.

    Raises DecryptionError if the blob is malformed.
    """
    return _parse_wrapped(blob)[0]


def rewrap_data_key(ring: KeyRing, blob: bytes, *, data_key_id: int) -> bytes:
    """Unwrap ``blob`` with the master key it names and wrap it again with the active key.

    Always produces a new blob (fresh nonce), even when already under the active key.
    Raises like :func:`unwrap_data_key`.
    """
    data_key = unwrap_data_key(ring, blob, data_key_id=data_key_id)
    return wrap_data_key(ring, data_key, data_key_id=data_key_id)


# --------------------------------------------------------------------------- fields


class FieldCipher:
    """Encrypts fields with one data key; built once per data key and cached by callers.

    The AESGCM object and the 9-byte header are built once, so per-field cost is close
    to that of raw AESGCM: what is left per call is the associated data (one f-string), the
    header check and one concatenation (bench/bench_vault.py measures the difference).
    """

    __slots__ = ("_aad_suffix", "_aead", "_header", "data_key_id")

    def __init__(self, data_key: bytes, data_key_id: int) -> None:
        """Prepare a cipher for ``data_key``; refuses (VaultError) a key that is not 32 bytes
        or an id outside 0..2**64-1.
        """
        _check_data_key_id(data_key_id)
        if not isinstance(data_key, bytes) or len(data_key) != KEY_BYTES:
            raise VaultError(f"Data key must be {KEY_BYTES} bytes.")
        self.data_key_id = data_key_id
        self._aead = AESGCM(data_key)
        self._header = _VERSION_BYTE + data_key_id.to_bytes(8, "big")
        self._aad_suffix = f"/{data_key_id}"

    def __repr__(self) -> str:
        """Describe the cipher without key material."""
        return f"FieldCipher(data_key_id={self.data_key_id})"

    def _aad(self, table: str, column: str, row_id: int | str) -> bytes:
        if not table or not column or "/" in table or "/" in column:
            raise VaultError("Table and column names must be non-empty and must not contain '/'.")
        return f"slussen/field/v1/{table}/{column}/{row_id}{self._aad_suffix}".encode()

    def encrypt(
        self, plaintext: str | bytes, *, table: str, column: str, row_id: int | str
    ) -> bytes:
        """Encrypt ``plaintext`` (str is UTF-8 encoded) bound to table/column/row and this key.

        Each call uses a fresh random nonce, so equal plaintexts give different ciphertexts.
        Refuses (VaultError) str that is not encodable as UTF-8 (lone surrogates), table or
        column names that are empty or contain '/', and input over AES-GCM's size limit.
        """
        try:
            data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        except UnicodeEncodeError:
            raise VaultError(
                f"Value for {table}.{column} row {row_id} is not valid Unicode text."
            ) from None
        aad = self._aad(table, column, row_id)
        nonce = os.urandom(NONCE_BYTES)
        try:
            return self._header + nonce + self._aead.encrypt(nonce, data, aad)
        except OverflowError:
            raise VaultError(f"Value for {table}.{column} row {row_id} is too large.") from None

    def decrypt(self, blob: bytes, *, table: str, column: str, row_id: int | str) -> bytes:
        """Decrypt a field ciphertext made by :meth:`encrypt` for the same table/column/row.

        Raises DecryptionError (naming table, column and row, never the plaintext) if the
        blob is too short, has an unknown version, was made with another data key, or fails
        authentication (tampered, moved to another row/column/table, wrong key).
        """
        return self._open(blob, table, column, row_id)

    def decrypt_str(self, blob: bytes, *, table: str, column: str, row_id: int | str) -> str:
        """Decrypt like :meth:`decrypt` and decode UTF-8; DecryptionError if not valid UTF-8."""
        try:
            return self._open(blob, table, column, row_id).decode()
        except UnicodeDecodeError:
            raise DecryptionError(
                f"Ciphertext for {table}.{column} row {row_id} does not hold UTF-8 text."
            ) from None

    def _open(self, blob: bytes, table: str, column: str, row_id: int | str) -> bytes:
        # Positional, so that decrypt_str costs one call more than raw AES-GCM, not two.
        if (
            not isinstance(blob, _BYTES_LIKE)
            or len(blob) < _MIN_FIELD_BYTES
            or blob[:_FIELD_HEADER_BYTES] != self._header
        ):
            raise self._header_error(blob, table, column, row_id)
        aad = self._aad(table, column, row_id)
        try:
            # Slices, not a memoryview: for fields of a few KiB copying is cheaper than the
            # view objects.
            return self._aead.decrypt(
                blob[_FIELD_HEADER_BYTES:_FIELD_NONCE_END], blob[_FIELD_NONCE_END:], aad
            )
        except InvalidTag:
            raise DecryptionError(
                f"Ciphertext for {table}.{column} row {row_id} failed authentication "
                "(tampered, moved, or wrong key)."
            ) from None

    def _header_error(
        self, blob: object, table: str, column: str, row_id: int | str
    ) -> DecryptionError:
        where = f"{table}.{column} row {row_id}"
        if not isinstance(blob, _BYTES_LIKE):
            return DecryptionError(f"Ciphertext for {where} is not bytes.")
        if len(blob) < _MIN_FIELD_BYTES:
            return DecryptionError(f"Ciphertext for {where} is too short.")
        if blob[:1] != _VERSION_BYTE:
            return DecryptionError(f"Ciphertext for {where} has unknown format version.")
        other = int.from_bytes(blob[1:_FIELD_HEADER_BYTES], "big")
        return DecryptionError(
            f"Ciphertext for {where} was made with data key {other}, not {self.data_key_id}."
        )


# --------------------------------------------------------------------------- keyed hashes


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise VaultError(f"{what} is not valid Unicode text.") from None


def blind_index(ring: KeyRing, kind: str, value: str) -> str:
    """Return the hex HMAC-SHA256 of ``kind + "\\x00" + value`` under the blind-index key.

    Deterministic for one ring; different per kind and per ring. Callers normalize
    ``value`` first (e.g. 12-digit personnummer). Refuses (VaultError) an empty kind or
    a kind containing NUL (which would break the domain separation), and text with lone
    surrogates.
    """
    if not kind or "\x00" in kind:
        raise VaultError("Blind index kind must be non-empty and must not contain NUL.")
    msg = _utf8(kind + "\x00" + value, "Blind index value")
    return hmac.new(ring.blind_index_key, msg, hashlib.sha256).hexdigest()


def pseudonym(ring: KeyRing, value: str) -> str:
    """Return ``"P-"`` + the first 16 hex chars of HMAC-SHA256(pseudonym_key, value).

    Refuses (VaultError) text that is not encodable as UTF-8 (lone surrogates).
    """
    msg = _utf8(value, "Pseudonym input")
    digest = hmac.new(ring.pseudonym_key, msg, hashlib.sha256).hexdigest()
    return "P-" + digest[:16]


def pseudonymiser(ring: KeyRing) -> Callable[[str], str]:
    """`pseudonym` for many values: the same results, with the key's HMAC pads hashed once
    (RFC 2104) instead of per value, for exports of a pseudonym per case.

    The function returned refuses (VaultError) what `pseudonym` refuses.
    """
    key = ring.pseudonym_key
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\x00")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def pseudonym_of(value: str) -> str:
        first = inner.copy()
        first.update(_utf8(value, "Pseudonym input"))
        second = outer.copy()
        second.update(first.digest())
        return "P-" + second.hexdigest()[:16]

    return pseudonym_of
