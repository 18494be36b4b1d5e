"""The restore drill (security.md §5.4): back up, restore into a fresh database with the key ring
restored apart, and check schema, row counts, decryption and the access log."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from slussen import migrate, vault
from slussen.audit import SYSTEM
from slussen.backup import table_counts
from slussen.db import make_engine
from slussen.keystore import Keystore, current_key_ring
from slussen.patients.models import Patient
from slussen.patients.services import read_patient
from tests.conftest import BACKENDS
from tests.ops.conftest import Site, make_site


def counts(site: Site) -> dict[str, int]:
    engine = site.app().extensions["slussen.engine"]
    try:
        return table_counts(engine)
    finally:
        engine.dispose()


def ring_secrets(path: Path) -> set[bytes]:
    """Every long string in the key ring file (the keys themselves)."""
    found: set[bytes] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and len(value) >= 40:
            found.add(value.encode())

    walk(json.loads(path.read_text()))
    assert found
    return found


def read_sample(site: Site, ids: list[int]) -> dict[int, tuple[str, str]]:
    app = site.app()
    factory = app.extensions["slussen.sessionmaker"]
    with app.app_context(), factory() as session:
        store = Keystore(session, current_key_ring())
        out = {}
        for patient in session.scalars(select(Patient).where(Patient.id.in_(ids))):
            identity = read_patient(store, SYSTEM, patient, purpose="restore drill")
            out[patient.id] = (identity.identifier.value, identity.name)
        session.rollback()  # the drill's reads leave no trace in the restored log
    app.extensions["slussen.engine"].dispose()
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_restore_drill(backend: str, tmp_path: Path) -> None:
    with make_site(tmp_path, backend, "live") as live, make_site(tmp_path, backend, "fresh") as new:
        live.seed(cases=12)
        before = counts(live)
        assert before["cases"] == 12 and before["patients"] > 12 and before["audit_events"] > 0
        patient_ids = sorted(random.Random(9).sample(range(1, before["patients"] + 1), 6))
        expected = read_sample(live, patient_ids)

        backup_file = tmp_path / "slussen.backup"
        made = live.cli("backup", str(backup_file))
        assert "Back up the key ring separately" in made.output
        assert backup_file.stat().st_mode & 0o777 == 0o600
        data = backup_file.read_bytes()
        assert not any(secret in data for secret in ring_secrets(live.keyring))

        # The key ring comes back from its own backup, to where the new server keeps it.
        new.keyring.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(live.keyring, new.keyring)
        restored = new.cli("restore", str(backup_file))
        assert f"The schema is up to date (revision {migrate.head_revision()})" in restored.output
        assert re.search(rf"^  cases +{before['cases']} rows$", restored.output, re.MULTILINE)
        assert "lacks master key" not in restored.output

        assert counts(new) == before
        assert read_sample(new, patient_ids) == expected
        verified = new.cli("audit", "verify")
        assert f"är hel: {before['audit_events']} rader" in verified.output

        again = new.cli("restore", str(backup_file), ok=False)
        assert again.exit_code == 1
        assert "the target database holds data" in again.output
        assert counts(new) == before
        assert new.cli("restore", "--force", str(backup_file)).exit_code == 0
        assert counts(new) == before


def test_restore_without_the_key_ring_says_so(tmp_path: Path) -> None:
    with make_site(tmp_path, "sqlite", "live") as live, make_site(tmp_path, "sqlite", "new") as new:
        live.seed(cases=0)
        backup_file = tmp_path / "b.sqlite3"
        live.cli("backup", str(backup_file))
        result = new.cli("restore", str(backup_file))
        assert f"There is no key ring at {new.keyring}" in result.output
        assert not new.keyring.exists()  # restore never invents one


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    with make_site(tmp_path, "sqlite", "new") as new:
        junk = tmp_path / "notes.txt"
        junk.write_text("not a database")
        result = new.cli("restore", str(junk), ok=False)
        assert result.exit_code == 1
        assert "is not a Slussen backup" in result.output
        missing = new.cli("restore", str(tmp_path / "nowhere.backup"), ok=False)
        assert "does not exist" in missing.output


def test_restore_of_an_old_backup_asks_for_init_db(tmp_path: Path) -> None:
    with make_site(tmp_path, "sqlite", "old") as old, make_site(tmp_path, "sqlite", "new") as new:
        engine = make_engine(old.database_url)
        migrate.upgrade(engine, "0002")
        engine.dispose()
        backup_file = tmp_path / "old.sqlite3"
        old.cli("backup", str(backup_file))
        result = new.cli("restore", str(backup_file))
        assert "The schema is at revision 0002" in result.output
        assert "run `slussen init-db`" in result.output


@pytest.mark.parametrize("backend", BACKENDS)
def test_restore_refuses_a_fresh_key_ring_with_the_same_ids(backend: str, tmp_path: Path) -> None:
    with make_site(tmp_path, backend, "live") as live, make_site(tmp_path, backend, "fresh") as new:
        live.seed(cases=2)
        backup_file = tmp_path / "slussen.backup"
        live.cli("backup", str(backup_file))
        expected = vault.KeyRing.load(live.keyring).fingerprint()

        new.keyring.parent.mkdir(parents=True, exist_ok=True)
        wrong = vault.KeyRing.create(new.keyring)  # "m1" as well, but other keys
        result = new.cli("restore", str(backup_file), ok=False)
        assert result.exit_code == 1
        assert (
            f"Nothing was restored: the key ring {new.keyring} (fingerprint {wrong.fingerprint()},"
            f" master keys m1) cannot open the canary of the backup: it needs the key ring with"
            f" fingerprint {expected} holding master keys m1; the target database was not"
            " changed." in result.output
        )
        assert not {"patients", "cases"} & set(counts(new))  # the database was not touched

        new.keyring.unlink()
        shutil.copy2(live.keyring, new.keyring)
        restored = new.cli("restore", str(backup_file))
        assert "Restored" in restored.output
        assert counts(new) == counts(live)
        assert "opens the database's canary" in new.cli("keys", "status").output
