"""`slussen evaluation export --format csv|codebook|pdf [--out FILE]`: the pseudonymised dataset,
its codebook or the report, for the whole region or filtered, written by the operator and
audited as an export.

The command only reads, plus its audit row: the reads hold no write lock, and the audit row is
committed in a short transaction of its own before the PDF is drawn or the data handed out (no
audit row, no data), so pages and other jobs do not wait for an export."""

from __future__ import annotations

import datetime as dt
import getpass
import io
import sys
from pathlib import Path
from typing import Any

import click

from slussen.clitools import Failure, clear_stale_parts, command_app
from slussen.privatefiles import write_private

# The command imports the evaluation (numpy, scipy, reportlab) when it runs, not when `slussen`
# starts: every other command and `slussen --help` stay quick.


@click.group("evaluation", help="The evaluation: pseudonymised dataset and report.")
def evaluation_cli() -> None:
    pass


def _day(value: Any) -> dt.date | None:
    return value.date() if value is not None else None


@evaluation_cli.command(
    "export", help="Write the dataset (CSV), its codebook (text) or the report (PDF)."
)
@click.option("--format", "kind", type=click.Choice(["csv", "codebook", "pdf"]), required=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: standard output for CSV and codebook; required for PDF).",
)
@click.option(
    "--from",
    "date_from",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Referred on or after this day.",
)
@click.option(
    "--to",
    "date_to",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Referred on or before this day.",
)
@click.option("--unit", "unit_hsa", default=None, help="Only this unit (its HSA-id).")
@click.option(
    "--channel",
    default=None,
    type=click.Choice(["staff_flag", "self_referral", "phone", "message_1177"]),
)
@click.option(
    "--age-band",
    default=None,
    type=click.Choice(["0-17", "18-29", "30-44", "45-64", "65-79", "80+", "unknown"]),
)
@click.option("--sex", default=None, type=click.Choice(["female", "male", "unknown"]))
def export(
    kind: str,
    out: Path | None,
    date_from: Any,
    date_to: Any,
    unit_hsa: str | None,
    channel: str | None,
    age_band: str | None,
    sex: str | None,
) -> None:
    from flask_babel import force_locale
    from sqlalchemy import select

    from slussen.accounts.models import Unit
    from slussen.audit import Actor
    from slussen.cases.engine import current_workflow
    from slussen.db import session_scope
    from slussen.errors import DomainError
    from slussen.evaluation import labels
    from slussen.evaluation.codebook import CSV_ENCODING, codebook_text
    from slussen.evaluation.dataset import Filters
    from slussen.evaluation.pdf import render_report
    from slussen.evaluation.services import (
        Context,
        build_report,
        unit_names,
        write_dataset,
    )
    from slussen.keystore import current_key_ring
    from slussen.vault import VaultError

    if kind == "pdf" and out is None:
        raise Failure("A PDF needs --out FILE.")
    if date_from and date_to and date_to < date_from:
        raise Failure("--to is before --from.")
    if out is not None:
        clear_stale_parts(out.parent, out.name)
    app = command_app()
    actor = Actor(None, f"(cli) {getpass.getuser()}"[:80], "system")
    settings = app.extensions["slussen.settings"]
    with app.app_context(), force_locale(settings.default_locale):
        try:
            # Reads take no write lock (SQLite) and the one write, the audit row, is committed
            # when the scope ends: only then is the PDF drawn and the data handed out.
            with session_scope(app, reading_only=True) as session:
                unit_id = None
                if unit_hsa:
                    unit_id = session.scalar(select(Unit.id).where(Unit.hsa_id == unit_hsa))
                    if unit_id is None:
                        raise Failure(f"No unit has the HSA-id {unit_hsa}.")
                filters = Filters(
                    date_from=_day(date_from),
                    date_to=_day(date_to),
                    unit_id=unit_id,
                    channel=channel,
                    age_band=age_band,
                    sex=sex,
                )
                context = Context(app.extensions["slussen.content"], current_workflow(), settings)
                ring = current_key_ring()
                if kind == "csv":
                    buffer = io.StringIO()
                    rows = write_dataset(session, ring, actor, context, filters, buffer)
                    data: bytes = buffer.getvalue().encode(CSV_ENCODING)
                    summary = f"{rows} cases"
                elif kind == "codebook":
                    header = labels.header_lines(
                        filters,
                        settings.suppression_k,
                        unit_names(session),
                        dt.datetime.now(dt.UTC).isoformat(timespec="minutes"),
                    )
                    text = codebook_text(
                        context.workflow, context.definitions, header, settings.suppression_k
                    )
                    data = text.encode("utf-8")
                    summary = "the codebook"
                else:
                    report = build_report(session, ring, actor, context, filters, as_pdf=True)
                    summary = f"report on {report.referred.text(report.k)} cases"
            if kind == "pdf":
                data = render_report(report, current_workflow())
        except (DomainError, VaultError) as exc:
            raise Failure(str(exc)) from None
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        write_private(out, data)
        click.echo(f"Wrote {out} ({summary}).", err=True)
