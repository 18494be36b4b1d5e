"""Files with health data are 0600 and written whole: the helper, the SQLite file, a CLI export."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from slussen.cli import cli
from slussen.db import make_engine
from slussen.privatefiles import private_file, private_part, remove_stale_parts, write_private


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def test_a_private_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        write_private(tmp_path / "export.csv", b"a;b\n")
    finally:
        os.umask(old)
    assert mode(tmp_path / "export.csv") == 0o600
    assert (tmp_path / "export.csv").read_bytes() == b"a;b\n"
    assert os.listdir(tmp_path) == ["export.csv"]


def test_an_error_leaves_neither_the_file_nor_its_part(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), private_file(tmp_path / "export.csv") as sink:
        sink.write(b"half")
        raise RuntimeError("stopped")
    assert os.listdir(tmp_path) == []


def test_stale_parts_are_removed_but_not_one_being_written(tmp_path: Path) -> None:
    killed = tmp_path / ".export.csv.x1y2.part"  # what a killed run leaves
    killed.write_bytes(b"half")
    other = tmp_path / ".other.csv.x1y2.part"
    other.write_bytes(b"")
    (tmp_path / "export.csv.part").write_bytes(b"not ours")
    with private_part(tmp_path, "export.csv") as running:
        assert remove_stale_parts(tmp_path, "export.csv") == [killed]
        assert running.path.exists()
    assert sorted(os.listdir(tmp_path)) == [".other.csv.x1y2.part", "export.csv.part"]


def test_a_new_sqlite_database_and_its_wal_are_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'slussen.sqlite3'}")
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        files = sorted(p.name for p in tmp_path.iterdir())
        assert "slussen.sqlite3-wal" in files, files
        assert {p.name: mode(p) for p in tmp_path.iterdir()} == dict.fromkeys(files, 0o600)
        engine.dispose()
    finally:
        os.umask(old)


def test_export_hsds_writes_0600_and_clears_a_killed_runs_part(cli_env: Path) -> None:
    assert CliRunner().invoke(cli, ["init-db"]).exit_code == 0
    assert mode(cli_env / "slussen.sqlite3") == 0o600
    stale = cli_env / ".katalog.json.k1ll3d.part"
    stale.write_bytes(b"{")
    out = cli_env / "katalog.json"
    result = CliRunner().invoke(cli, ["directory", "export-hsds", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o600 and not stale.exists()
    assert "Removed 1 unfinished file(s)" in result.output
    assert sorted(p.name for p in cli_env.iterdir() if p.name.startswith(".katalog")) == []


def test_backup_clears_a_killed_backups_part(cli_env: Path, tmp_path: Path) -> None:
    assert CliRunner().invoke(cli, ["init-db"]).exit_code == 0
    stale = tmp_path / ".nightly.backup.k1ll3d.part"
    stale.write_bytes(b"SQLite format 3\x00")
    result = CliRunner().invoke(cli, ["backup", str(tmp_path / "nightly.backup")])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and "Removed 1 unfinished file(s)" in result.output
    assert mode(tmp_path / "nightly.backup") == 0o600
