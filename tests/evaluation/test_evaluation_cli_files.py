"""`slussen evaluation export --format csv|codebook`: the command writes the same files as the
page, the CSV with its byte order mark and one header row, the codebook naming its columns."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from click.testing import CliRunner

from slussen.cli import cli
from tests.conftest import DemoSite


def test_the_command_writes_the_csv_and_its_codebook(demo_site: DemoSite, tmp_path: Path) -> None:
    runner = CliRunner()
    data, book = tmp_path / "data.csv", tmp_path / "kodbok.txt"
    made = runner.invoke(cli, ["evaluation", "export", "--format", "csv", "--out", str(data)])
    assert made.exit_code == 0, made.output
    described = runner.invoke(
        cli, ["evaluation", "export", "--format", "codebook", "--out", str(book)]
    )
    assert described.exit_code == 0, described.output
    raw = data.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfpseudonym,")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    text = book.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "Kodbok för utvärderingens datamängd (CSV)"
    for name in rows[0]:
        assert name in lines, name
    assert all(len(row) == len(rows[0]) for row in rows[1:])
