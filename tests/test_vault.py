"""Tests for slussen.vault: field encryption, envelope keys, key ring file, keyed hashes.

No database and no Flask. Covers security.md ENC-2, ENC-3, ENC-4 (frozen vectors) and
the key-ring parts of ENC-5/ENC-8.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slussen.vault import (
    DecryptionError,
    FieldCipher,
    KeyRing,
    KeyRingError,
    MasterKey,
    VaultError,
    blind_index,
    new_data_key,
    pseudonym,
    rewrap_data_key,
    unwrap_data_key,
    wrap_data_key,
    wrapping_key_id,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")

LOC: dict[str, Any] = {"table": "patient", "column": "name", "row_id": 42}


@pytest.fixture()
def cipher() -> FieldCipher:
    return FieldCipher(new_data_key(), 7)


def flip(blob: bytes, bit: int) -> bytes:
    b = bytearray(blob)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


# --------------------------------------------------------------------------- fields


@pytest.mark.parametrize("value", ["", "Tolvan Tolvansson", "åäöÅÄÖéü", "x" * 65536, "😀\n\t"])
def test_round_trip_str(cipher: FieldCipher, value: str) -> None:
    blob = cipher.encrypt(value, **LOC)
    assert cipher.decrypt_str(blob, **LOC) == value
    assert cipher.decrypt(blob, **LOC) == value.encode("utf-8")


@pytest.mark.parametrize("value", [b"", b"\x00\xff" * 10, "åäöÅÄÖéü".encode()])
def test_round_trip_bytes(cipher: FieldCipher, value: bytes) -> None:
    assert cipher.decrypt(cipher.encrypt(value, **LOC), **LOC) == value


def test_format_header(cipher: FieldCipher) -> None:
    blob = cipher.encrypt("abc", **LOC)
    assert blob[0] == 1
    assert int.from_bytes(blob[1:9], "big") == 7
    assert len(blob) == 1 + 8 + 12 + 3 + 16


def test_same_value_twice_differs(cipher: FieldCipher) -> None:
    assert cipher.encrypt("samma", **LOC) != cipher.encrypt("samma", **LOC)


def test_plaintext_not_in_ciphertext(cipher: FieldCipher) -> None:
    secret = "191212121212 Tolvan Tolvansson, Storgatan 1"
    blob = cipher.encrypt(secret, **LOC)
    for encoded in (
        secret.encode("utf-8"),
        secret.encode("utf-16-le"),
        base64.b64encode(secret.encode()),
        b"191212121212",
        b"Tolvan",
    ):
        assert encoded not in blob


@pytest.mark.parametrize(
    "other",
    [
        {"table": "patient", "column": "name", "row_id": 43},
        {"table": "patient", "column": "name", "row_id": "42x"},
        {"table": "patient", "column": "address", "row_id": 42},
        {"table": "referral", "column": "name", "row_id": 42},
    ],
)
def test_moved_ciphertext_fails(cipher: FieldCipher, other: dict[str, Any]) -> None:
    blob = cipher.encrypt("Tolvan", **LOC)
    with pytest.raises(DecryptionError) as exc:
        cipher.decrypt(blob, **other)
    msg = str(exc.value)
    assert other["table"] in msg and other["column"] in msg and str(other["row_id"]) in msg
    assert "Tolvan" not in msg


def test_int_and_str_row_id_are_the_same_row(cipher: FieldCipher) -> None:
    blob = cipher.encrypt("x", table="t", column="c", row_id=5)
    assert cipher.decrypt_str(blob, table="t", column="c", row_id="5") == "x"


def test_every_single_bit_flip_fails(cipher: FieldCipher) -> None:
    blob = cipher.encrypt("Hemlig anteckning om patienten", **LOC)
    n = len(blob)
    regions = {
        "version": range(0, 8),
        "key id": range(8, 9 * 8),
        "nonce": range(9 * 8, 21 * 8),
        "body": range(21 * 8, (n - 16) * 8),
        "tag": range((n - 16) * 8, n * 8),
    }
    for name, bits in regions.items():
        assert len(bits) > 0, name
        for bit in bits:
            with pytest.raises(DecryptionError):
                cipher.decrypt(flip(blob, bit), **LOC)


def test_truncated_and_extended_fail(cipher: FieldCipher) -> None:
    blob = cipher.encrypt("abc", **LOC)
    for bad in (b"", blob[:1], blob[:20], blob[:-1], blob + b"\x00", b"\x02" + blob[1:]):
        with pytest.raises(DecryptionError):
            cipher.decrypt(bad, **LOC)


def test_wrong_data_key_id_fails() -> None:
    key = new_data_key()
    blob = FieldCipher(key, 7).encrypt("abc", **LOC)
    with pytest.raises(DecryptionError, match="data key 7"):
        FieldCipher(key, 8).decrypt(blob, **LOC)
    # Header rewritten to claim key 8: the AAD still binds 7, so authentication fails.
    forged = b"\x01" + (8).to_bytes(8, "big") + blob[9:]
    with pytest.raises(DecryptionError):
        FieldCipher(key, 8).decrypt(forged, **LOC)


def test_wrong_data_key_fails() -> None:
    blob = FieldCipher(new_data_key(), 7).encrypt("abc", **LOC)
    with pytest.raises(DecryptionError):
        FieldCipher(new_data_key(), 7).decrypt(blob, **LOC)


def test_decrypt_str_refuses_non_utf8(cipher: FieldCipher) -> None:
    blob = cipher.encrypt(b"\xff\xfe", **LOC)
    with pytest.raises(DecryptionError):
        cipher.decrypt_str(blob, **LOC)


def test_encrypt_refusals(cipher: FieldCipher) -> None:
    with pytest.raises(VaultError):
        cipher.encrypt("\ud800", **LOC)
    for table, column in (("", "c"), ("t", ""), ("a/b", "c"), ("a", "b/c")):
        with pytest.raises(VaultError):
            cipher.encrypt("x", table=table, column=column, row_id=1)
    with pytest.raises(VaultError):
        FieldCipher(b"short", 1)
    with pytest.raises(VaultError):
        FieldCipher(new_data_key(), -1)
    with pytest.raises(VaultError):
        FieldCipher(new_data_key(), 2**64)


def test_repr_has_no_key_material() -> None:
    ring = KeyRing.generate()
    key = ring.master("m1")
    assert key.hex() not in repr(ring)
    assert repr(key) not in repr(ring.master_keys["m1"])
    assert "key=" not in repr(ring.master_keys["m1"])


@settings(max_examples=200, deadline=None)
@given(value=st.text(), row_id=st.one_of(st.integers(min_value=0), st.text()))
def test_hypothesis_text_round_trips(value: str, row_id: int | str) -> None:
    c = FieldCipher(bytes(range(32)), 3)
    blob = c.encrypt(value, table="t", column="c", row_id=row_id)
    assert c.decrypt_str(blob, table="t", column="c", row_id=row_id) == value


@settings(max_examples=100, deadline=None)
@given(value=st.binary())
def test_hypothesis_bytes_round_trip(value: bytes) -> None:
    c = FieldCipher(bytes(range(32)), 3)
    assert c.decrypt(c.encrypt(value, **LOC), **LOC) == value


# Frozen known-answer vectors (security.md ENC-4). Never regenerate: if these fail, the v1
# format changed and stored data would become unreadable.
KAT_DATA_KEY = bytes(range(1, 33))
KAT_MASTER_KEY = bytes(range(33, 65))
KAT_FIELD = bytes.fromhex(
    "0100000000000000076465666768696a6b6c6d6e6f34301f3af0ec9c2d973bd9f9765f8b539a16e6"
    "113dc3f01ab134036b6183962b53"
)
KAT_WRAPPED = bytes.fromhex(
    "01026d31c8c9cacbcccdcecfd0d1d2d3f91380b4dece52adc457d12b642b6665284cd74ccc7629caeef9"
    "61cc4a2622a78cdbf7e225095ba0e7d63853bfda0cd6"
)


def test_known_answer_field() -> None:
    c = FieldCipher(KAT_DATA_KEY, 7)
    assert c.decrypt_str(KAT_FIELD, **LOC) == "Tolvan Tolvansson"


def test_known_answer_field_from_any_bytes_like_and_a_str_row_id() -> None:
    # Drivers may hand back a bytearray or a memoryview; the row id may come as text.
    c = FieldCipher(KAT_DATA_KEY, 7)
    for blob in (bytearray(KAT_FIELD), memoryview(KAT_FIELD)):
        assert c.decrypt(blob, **LOC) == b"Tolvan Tolvansson"
        assert c.decrypt_str(blob, table="patient", column="name", row_id="42") == (
            "Tolvan Tolvansson"
        )


def test_known_answer_wrapped_key() -> None:
    ring = KeyRing(
        path=None,
        active_master_id="m1",
        master_keys={"m1": MasterKey("m1", KAT_MASTER_KEY, "2026-01-01T00:00:00+00:00", False)},
        blind_index_key=bytes([1]) * 32,
        audit_key=bytes([2]) * 32,
        pseudonym_key=bytes([3]) * 32,
    )
    assert wrapping_key_id(KAT_WRAPPED) == "m1"
    assert unwrap_data_key(ring, KAT_WRAPPED, data_key_id=7) == KAT_DATA_KEY


# --------------------------------------------------------------------------- data keys


def test_wrap_round_trip_and_format() -> None:
    ring = KeyRing.generate()
    dk = new_data_key()
    assert len(dk) == 32 and dk != new_data_key()
    blob = wrap_data_key(ring, dk, data_key_id=1)
    assert blob[:4] == b"\x01\x02m1"
    assert wrapping_key_id(blob) == "m1"
    assert dk not in blob
    assert unwrap_data_key(ring, blob, data_key_id=1) == dk


def test_unwrap_wrong_id_or_ring_fails() -> None:
    ring = KeyRing.generate()
    blob = wrap_data_key(ring, new_data_key(), data_key_id=1)
    with pytest.raises(DecryptionError):
        unwrap_data_key(ring, blob, data_key_id=2)
    with pytest.raises(DecryptionError):
        unwrap_data_key(KeyRing.generate(), blob, data_key_id=1)


def test_unwrap_every_bit_flip_fails() -> None:
    ring = KeyRing.generate()
    blob = wrap_data_key(ring, new_data_key(), data_key_id=1)
    for bit in range(len(blob) * 8):
        with pytest.raises(VaultError):  # DecryptionError, or KeyRingError if the id changes
            unwrap_data_key(ring, flip(blob, bit), data_key_id=1)


def test_malformed_wrapped_blob() -> None:
    ring = KeyRing.generate()
    blob = wrap_data_key(ring, new_data_key(), data_key_id=1)
    for bad in (b"", b"\x01", b"\x02" + blob[1:], blob[:-1], blob + b"x", b"\x01\xff" + blob[2:]):
        with pytest.raises(DecryptionError):
            wrapping_key_id(bad)
        with pytest.raises(DecryptionError):
            unwrap_data_key(ring, bad, data_key_id=1)


def test_wrap_refusals() -> None:
    ring = KeyRing.generate()
    with pytest.raises(VaultError):
        wrap_data_key(ring, b"short", data_key_id=1)
    with pytest.raises(VaultError):
        wrap_data_key(ring, new_data_key(), data_key_id=-1)


def test_rotation_rewrap_and_retire(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys.json")
    dk = new_data_key()
    old = wrap_data_key(ring, dk, data_key_id=9)
    assert ring.add_master_key() == "m2"
    assert ring.active_master_id == "m2"
    assert unwrap_data_key(ring, old, data_key_id=9) == dk
    new = rewrap_data_key(ring, old, data_key_id=9)
    assert wrapping_key_id(old) == "m1" and wrapping_key_id(new) == "m2"
    assert unwrap_data_key(ring, new, data_key_id=9) == dk
    assert wrapping_key_id(wrap_data_key(ring, dk, data_key_id=9)) == "m2"

    with pytest.raises(KeyRingError, match="active"):
        ring.retire_master_key("m2")
    with pytest.raises(KeyRingError):
        ring.retire_master_key("m99")
    ring.retire_master_key("m1")
    assert ring.master_keys["m1"].is_retired
    # Retired keys still unwrap, and the change was saved.
    assert unwrap_data_key(ring, old, data_key_id=9) == dk
    reloaded = KeyRing.load(tmp_path / "keys.json")
    assert reloaded.active_master_id == "m2"
    assert reloaded.master_keys["m1"].is_retired
    assert reloaded.master("m1") == ring.master("m1")
    assert unwrap_data_key(reloaded, new, data_key_id=9) == dk
    assert reloaded.add_master_key() == "m3"


def test_master_unknown_raises() -> None:
    ring = KeyRing.generate()
    with pytest.raises(KeyRingError):
        ring.master("m2")


def test_unwrap_with_removed_master_key_is_keyring_error() -> None:
    ring = KeyRing.generate()
    blob = wrap_data_key(ring, new_data_key(), data_key_id=1)
    ring.add_master_key()
    del ring.master_keys["m1"]
    with pytest.raises(KeyRingError):
        unwrap_data_key(ring, blob, data_key_id=1)


def test_in_memory_ring_rotation_and_save() -> None:
    ring = KeyRing.generate()
    assert ring.path is None
    assert ring.add_master_key() == "m2"
    with pytest.raises(KeyRingError):
        ring.save()


# --------------------------------------------------------------------------- key ring file


@posix_only
def test_create_mode_and_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "sub" / "keys.json"
    ring = KeyRing.create(path)
    assert ring.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    before = path.read_bytes()
    with pytest.raises(KeyRingError, match="exists"):
        KeyRing.create(path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["keys.json"]  # no temp files left

    data = json.loads(before)
    assert data["format"] == 1
    assert data["active_master"] == "m1"
    assert set(data["master_keys"]["m1"]) == {"key", "created_at", "retired"}
    assert data["master_keys"]["m1"]["retired"] is False
    for name in ("blind_index_key", "audit_key", "pseudonym_key"):
        assert len(base64.b64decode(data[name])) == 32

    loaded = KeyRing.load(path)
    assert loaded.master("m1") == ring.master("m1")
    assert loaded.blind_index_key == ring.blind_index_key
    assert loaded.audit_key == ring.audit_key
    assert loaded.pseudonym_key == ring.pseudonym_key


@posix_only
def test_save_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    ring = KeyRing.create(path)
    ring.add_master_key()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyRing.load(path).active_master_id == "m2"


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_load_refuses_loose_mode(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keys.json"
    KeyRing.create(path)
    path.chmod(mode)
    with pytest.raises(KeyRingError) as exc:
        KeyRing.load(path)
    assert f"chmod 600 {path}" in str(exc.value)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyRingError, match="does not exist"):
        KeyRing.load(tmp_path / "nope.json")


def test_load_directory(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(KeyRingError):
        KeyRing.load(d)


def _good_doc() -> dict[str, Any]:
    def k() -> str:
        return base64.b64encode(os.urandom(32)).decode()

    return {
        "format": 1,
        "active_master": "m1",
        "master_keys": {
            "m1": {"key": k(), "created_at": "2026-01-01T00:00:00+00:00", "retired": False}
        },
        "blind_index_key": k(),
        "audit_key": k(),
        "pseudonym_key": k(),
    }


def _write(path: Path, content: str | bytes) -> Path:
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def test_load_good_doc(tmp_path: Path) -> None:
    ring = KeyRing.load(_write(tmp_path / "k.json", json.dumps(_good_doc())))
    assert ring.active_master_id == "m1"


def _mutations() -> list[tuple[str, Any]]:
    """(description, function doc -> doc or raw text) pairs for malformed files."""

    def set_(path: list[str], value: Any) -> Any:
        def f(doc: dict[str, Any]) -> Any:
            d: Any = doc
            for p in path[:-1]:
                d = d[p]
            d[path[-1]] = value
            return doc

        return f

    def drop(path: list[str]) -> Any:
        def f(doc: dict[str, Any]) -> Any:
            d: Any = doc
            for p in path[:-1]:
                d = d[p]
            del d[path[-1]]
            return doc

        return f

    short = base64.b64encode(b"x" * 16).decode()
    return [
        ("empty file", lambda d: ""),
        ("not json", lambda d: "{not json"),
        ("binary", lambda d: b"\xff\xfe\x00"),
        ("json list", lambda d: []),
        ("json null", lambda d: None),
        ("format 2", set_(["format"], 2)),
        ("format string", set_(["format"], "1")),
        ("format true", set_(["format"], True)),
        ("no format", drop(["format"])),
        ("no active", drop(["active_master"])),
        ("active unknown", set_(["active_master"], "m7")),
        ("active not str", set_(["active_master"], 1)),
        ("no master_keys", drop(["master_keys"])),
        ("master_keys empty", set_(["master_keys"], {})),
        ("master_keys list", set_(["master_keys"], [])),
        ("master entry str", set_(["master_keys", "m1"], "abc")),
        ("master no key", drop(["master_keys", "m1", "key"])),
        ("master no created", drop(["master_keys", "m1", "created_at"])),
        ("master no retired", drop(["master_keys", "m1", "retired"])),
        ("master retired str", set_(["master_keys", "m1", "retired"], "no")),
        ("active retired", set_(["master_keys", "m1", "retired"], True)),
        ("created not str", set_(["master_keys", "m1", "created_at"], 5)),
        ("master key bad b64", set_(["master_keys", "m1", "key"], "!!!notbase64")),
        ("master key non-ascii", set_(["master_keys", "m1", "key"], "åäö")),
        ("master key short", set_(["master_keys", "m1", "key"], short)),
        ("master key int", set_(["master_keys", "m1", "key"], 12)),
        ("bad key id", lambda d: {**d, "master_keys": {"m 1": d["master_keys"]["m1"]}}),
        ("no blind", drop(["blind_index_key"])),
        ("no audit", drop(["audit_key"])),
        ("no pseudonym", drop(["pseudonym_key"])),
        ("blind short", set_(["blind_index_key"], short)),
        ("audit bad b64", set_(["audit_key"], "a")),
        ("pseudonym null", set_(["pseudonym_key"], None)),
        ("zero key", set_(["audit_key"], base64.b64encode(bytes(32)).decode())),
        ("reused key", lambda d: {**d, "audit_key": d["blind_index_key"]}),
        ("master reused", lambda d: {**d, "audit_key": d["master_keys"]["m1"]["key"]}),
    ]


@pytest.mark.parametrize(("name", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_load_malformed_raises_keyring_error(tmp_path: Path, name: str, mutate: Any) -> None:
    result = mutate(_good_doc())
    content = result if isinstance(result, str | bytes) else json.dumps(result)
    path = _write(tmp_path / "k.json", content)
    with pytest.raises(KeyRingError) as exc:
        KeyRing.load(path)
    assert "\n" not in str(exc.value)


def test_generated_rings_are_distinct() -> None:
    a, b = KeyRing.generate(), KeyRing.generate()
    assert a.master("m1") != b.master("m1")
    keys = {a.master("m1"), a.blind_index_key, a.audit_key, a.pseudonym_key}
    assert len(keys) == 4 and all(len(k) == 32 for k in keys)


# --------------------------------------------------------------------------- keyed hashes


def test_blind_index() -> None:
    ring = KeyRing.generate()
    v = blind_index(ring, "pnr", "191212121212")
    assert v == blind_index(ring, "pnr", "191212121212")
    assert len(v) == 64 and int(v, 16) >= 0
    assert v != blind_index(ring, "snr", "191212121212")
    assert v != blind_index(ring, "pnr", "191212121213")
    assert v != blind_index(KeyRing.generate(), "pnr", "191212121212")
    assert "191212121212" not in v
    # Domain separation: the kind/value boundary cannot be shifted.
    assert blind_index(ring, "pn", "r\x00x") != blind_index(ring, "pnr", "x")
    for bad in ("", "a\x00b"):
        with pytest.raises(VaultError):
            blind_index(ring, bad, "x")


def test_pseudonym() -> None:
    ring = KeyRing.generate()
    p = pseudonym(ring, "patient-1")
    assert p == pseudonym(ring, "patient-1")
    assert p.startswith("P-") and len(p) == 18
    int(p[2:], 16)
    assert p != pseudonym(ring, "patient-2")
    assert p != pseudonym(KeyRing.generate(), "patient-1")
    # Different key from the blind index.
    assert p[2:] != blind_index(ring, "x", "patient-1")[:16]


def test_the_fingerprint_survives_rotation_and_tells_rings_apart(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "ring.json")
    before = ring.fingerprint()
    ring.add_master_key()
    assert ring.fingerprint() == before == KeyRing.load(tmp_path / "ring.json").fingerprint()
    other = KeyRing.generate()  # the same master key id "m1", other keys
    assert other.fingerprint() != before
    text = ring._to_json()
    assert before not in text and len(before.replace("-", "")) == 16
