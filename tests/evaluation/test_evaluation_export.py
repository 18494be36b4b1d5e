"""`slussen evaluation export` holds no write transaction while it reads the cases or draws the
PDF: another unit's page (or job) can append to the access log meanwhile, even to the region
chain the export's own audit row goes to; and that audit row is committed before the data is
handed out (no audit row, no data). On SQLite and PostgreSQL, committed for real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from slussen.cli import cli
from slussen.evaluation import cli as evaluation_cli
from slussen.evaluation import pdf, services
from tests.conftest import DemoSite

#: Seconds another writer may take to append its audit row while the export runs (it waits
#: at most two before failing; unhindered it takes milliseconds).
BOUND = 1.0


def _a_unit(site: DemoSite) -> int:
    engine = create_engine(site.url)
    with engine.connect() as conn:
        unit_id: int = conn.execute(text("SELECT min(id) FROM units")).scalar_one()
    engine.dispose()
    return unit_id


@pytest.mark.parametrize(("kind", "object_id"), [("csv", "dataset.csv"), ("pdf", "report.pdf")])
def test_the_export_holds_no_write_lock_and_is_audited_before_it_is_handed_out(
    demo_site: DemoSite,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    object_id: str,
) -> None:
    unit_id = _a_unit(demo_site)
    out = tmp_path / f"ut.{kind}"
    waits: dict[str, float] = {}

    def others_write(moment: str) -> None:
        waits[moment] = max(
            demo_site.append_audit_row(unit_id),  # another unit's page
            demo_site.append_audit_row(None),  # the region chain, the export's own
        )

    real_records = services._records

    def records(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for batch in real_records(*args, **kwargs):
            others_write("while reading the cases")
            yield batch

    real_render = pdf.render_report

    def render(*args: Any, **kwargs: Any) -> bytes:
        assert demo_site.audited("export", "evaluation") == [object_id]
        others_write("while drawing the PDF")
        return real_render(*args, **kwargs)

    real_write_private = evaluation_cli.write_private

    def write_private(path: Path, data: bytes) -> None:
        if path == out:
            assert demo_site.audited("export", "evaluation") == [object_id], "no audit row, no data"
            others_write("while handing the data out")
        real_write_private(path, data)

    monkeypatch.setattr(services, "_records", records)
    monkeypatch.setattr(pdf, "render_report", render)
    monkeypatch.setattr(evaluation_cli, "write_private", write_private)
    result = CliRunner().invoke(cli, ["evaluation", "export", "--format", kind, "--out", str(out)])
    assert result.exit_code == 0, result.output
    expected = {"while reading the cases", "while handing the data out"}
    if kind == "pdf":
        expected.add("while drawing the PDF")
    assert set(waits) == expected
    assert max(waits.values()) < BOUND, waits
    assert out.read_bytes()
