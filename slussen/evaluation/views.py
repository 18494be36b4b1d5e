"""The evaluator's page (/utvardering) and its CSV and PDF downloads. Evaluators only."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from slussen.accesslog.markers import render_audited
from slussen.accounts.auth import require
from slussen.accounts.roles import Permission
from slussen.cases.access import current_actor
from slussen.cases.engine import current_workflow
from slussen.cases.models import CHANNELS
from slussen.db import db_session
from slussen.evaluation import charts, labels
from slussen.evaluation.codebook import CSV_ENCODING, codebook_text
from slussen.evaluation.dataset import AGE_BANDS, DIMENSIONS, SEXES, Filters
from slussen.evaluation.forms import FilterForm
from slussen.evaluation.pdf import render_report
from slussen.evaluation.report import CLASSES
from slussen.evaluation.services import (
    Context,
    build_report,
    unit_names,
    write_dataset,
)
from slussen.keystore import current_key_ring

bp = Blueprint("evaluation", __name__, template_folder="templates")


def _context() -> Context:
    return Context(
        current_app.extensions["slussen.content"],
        current_workflow(),
        current_app.extensions["slussen.settings"],
    )


def _form() -> FilterForm:
    actor = current_actor()
    form = FilterForm(request.args)
    every = _("All")
    units = unit_names(db_session(), actor.unit_ids or None)
    form.unit.choices = [(None, every), *units.items()]
    form.channel.choices = [(None, every)] + [(c, labels.channel_label(c)) for c in CHANNELS]
    form.age_band.choices = [(None, every)] + [(b, labels.age_band_label(b)) for b in AGE_BANDS]
    form.sex.choices = [(None, every)] + [(s, labels.sex_label(s)) for s in SEXES]
    return form


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")


@bp.route("/utvardering")
@require(Permission.EVALUATE)
def index() -> ResponseReturnValue:
    """The flow, the outcomes and their charts for the chosen filters; every view is audited."""
    form = _form()
    if not form.validate():
        return render_template("evaluation/index.html", form=form, report=None), 422
    report = build_report(
        db_session(), current_key_ring(), current_actor(), _context(), form.filters()
    )
    query: dict[str, Any] = {k: v for k, v in request.args.items() if v}
    return render_audited(
        "evaluation/index.html",
        form=form,
        report=report,
        charts=charts.for_report(report),
        to_svg=charts.to_svg,
        bin_label=charts.bin_label,
        workflow=current_workflow(),
        labels=labels,
        classes=CLASSES,
        dimensions=DIMENSIONS,
        csv_url=url_for("evaluation.export_csv", **query),
        pdf_url=url_for("evaluation.export_pdf", **query),
        codebook_url=url_for("evaluation.export_codebook", **query),
    )


def _header(filters: Filters) -> list[str]:
    """What a download covers: when it was made, the period, the filters and k."""
    return labels.header_lines(
        filters,
        _context().settings.suppression_k,
        unit_names(db_session()),
        dt.datetime.now(dt.UTC).isoformat(timespec="minutes"),
    )


@bp.route("/utvardering/data.csv")
@require(Permission.EVALUATE)
def export_csv() -> ResponseReturnValue:
    """The pseudonymised dataset, one row per case (audited as an export): one header row and
    the data, UTF-8 with a byte order mark (slussen/evaluation/codebook.py says why)."""
    form = _form()
    if not form.validate():
        abort(422)
    out = io.StringIO()
    write_dataset(
        db_session(), current_key_ring(), current_actor(), _context(), form.filters(), out
    )
    return Response(
        out.getvalue().encode(CSV_ENCODING),
        mimetype="text/csv",
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="utvardering-{_stamp()}.csv"',
        },
    )


@bp.route("/utvardering/kodbok.txt")
@require(Permission.EVALUATE)
def export_codebook() -> ResponseReturnValue:
    """The dataset's codebook for the same filters: what the download covers, the file's format,
    every column's meaning, values and missing values, the small-numbers rule and the analysis
    choices. It holds no data about any case."""
    form = _form()
    if not form.validate():
        abort(422)
    context = _context()
    text = codebook_text(
        context.workflow,
        context.definitions,
        _header(form.filters()),
        context.settings.suppression_k,
    )
    return Response(
        text.encode("utf-8"),
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Disposition": f'attachment; filename="utvardering-kodbok-{_stamp()}.txt"',
        },
    )


@bp.route("/utvardering/rapport.pdf")
@require(Permission.EVALUATE)
def export_pdf() -> ResponseReturnValue:
    """The report as a PDF for a commissioner (audited as an export)."""
    form = _form()
    if not form.validate():
        abort(422)
    report = build_report(
        db_session(), current_key_ring(), current_actor(), _context(), form.filters(), as_pdf=True
    )
    pdf = render_report(report, current_workflow())
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="utvardering-{_stamp()}.pdf"'},
    )
