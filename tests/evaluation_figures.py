"""The evaluation's figures on the demo data, written so that runs on different days, on SQLite
and PostgreSQL, and before and after a change of where the evaluation reads compare equal.

`figures(app, session)` seeds nothing: `seed_demo` loads `DEMO_CASES` demo cases over
`DEMO_UNITS` units first (the demo walks the real services; case i is the same case on every
run). Then, for each filter of `filter_sets`, the report (every count, mark, quartile and
statistic the page and the PDF show), the CSV's rows and, unfiltered, the PDF's text.

What moves from run to run is written relative to the run: days as days from the run's day,
months as months from the run's month, units by HSA-id (PostgreSQL's ids move between tests),
floats with ten significant digits; the pseudonym column is left out (the key ring is new each
run) and the CSV's rows are sorted (their order is not part of the dataset); the unfiltered
CSV's rows are kept whole, the others' as a count and a SHA-256. The time an output
was made is left out.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import math
import re
from typing import Any

from flask import Flask
from flask_babel import force_locale
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.accounts.models import Unit
from slussen.audit import Actor
from slussen.config import today_local
from slussen.demo import cases as demo
from slussen.demo.context import DemoContext
from slussen.evaluation.dataset import Filters
from slussen.evaluation.definitions import ScoreDefinition
from slussen.evaluation.pdf import render_report
from slussen.evaluation.services import Context, build_report, write_dataset
from slussen.keystore import current_key_ring
from tests.conftest import TEST_PASSWORD

DEMO_CASES = 400
DEMO_UNITS = 3
OPERATOR = Actor(None, "(test) utvärdering", "system")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def seed_demo(app: Flask) -> None:
    """`slussen demo --cases DEMO_CASES --units DEMO_UNITS`'s cases, through the test's app."""
    ctx = DemoContext(
        app=app,
        settings=app.extensions["slussen.settings"],
        password=TEST_PASSWORD,
        cases=DEMO_CASES,
        units=DEMO_UNITS,
    )
    with app.app_context(), app.extensions["slussen.sessionmaker"]() as work:
        demo.seed_cases(work, ctx)
        work.commit()


def filter_sets(session: Session, today: dt.date) -> dict[str, Filters]:
    """The filters compared: none, each dimension, the run's day, and a period with no case."""
    first_unit = session.scalar(select(Unit.id).order_by(Unit.hsa_id).limit(1))
    return {
        "all": Filters(),
        "unit": Filters(unit_id=first_unit),
        "channel": Filters(channel="phone"),
        # Every demo patient is born in 1944: the one other band they could be in is empty.
        "age_band": Filters(age_band="65-79"),
        "sex": Filters(sex="female"),
        "today": Filters(date_from=today, date_to=today),
        "from_tomorrow": Filters(date_from=today + dt.timedelta(days=1)),
        "combined": Filters(unit_id=first_unit, sex="male", date_to=today),
    }


def _number(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.10g}"


def _plain(value: Any, hsa: dict[int, str]) -> Any:
    """`value` as JSON: dataclasses as dicts, floats as text, units by HSA-id."""
    if isinstance(value, ScoreDefinition):
        return value.key
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), hsa)
            for f in dataclasses.fields(value)
            if f.name not in ("generated_at", "filters", "unit_names")
        }
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        return {str(_plain(k, hsa)): _plain(v, hsa) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, hsa) for v in value]
    return _number(float(value))  # numpy numbers


def _report(report: Any, hsa: dict[int, str]) -> Any:
    plain = _plain(report, hsa)
    for breakdown in plain["breakdowns"]:
        if breakdown["dimension"] == "unit":
            breakdown["rows"] = [[hsa[int(group)], counts] for group, counts in breakdown["rows"]]
    for outcome in plain["outcomes"]:
        for group in outcome["by_group"]["unit"]:
            group["group"] = hsa[int(group["group"])]
    return plain


def _month_offset(text: str, today: dt.date) -> str:
    found = _MONTH.match(text)
    if not found:
        return text
    months = (int(found[1]) - today.year) * 12 + int(found[2]) - today.month
    return f"month{months:+d}"


def _csv(text: str, today: dt.date, *, full: bool) -> dict[str, Any]:
    """The CSV as it compares: its rows in full when `full`, else their number and digest."""
    rows = list(csv.reader(io.StringIO(text)))
    header, data = rows[0], rows[1:]
    keep = [i for i, name in enumerate(header) if name != "pseudonym"]
    normalised = sorted(
        ",".join(_month_offset(row[i], today) for i in keep)
        for row in data  # the run's months, relative
    )
    return {
        "header": [header[i] for i in keep],
        "pseudonyms": len({row[header.index("pseudonym")] for row in data}),
        "rows": normalised if full else len(normalised),
        "sha256": hashlib.sha256("\n".join(normalised).encode()).hexdigest(),
    }


def _pdf_text(pdf: bytes, today: dt.date) -> list[str]:
    reader = PdfReader(io.BytesIO(pdf))
    lines = "\n".join(page.extract_text() for page in reader.pages).splitlines()
    return [
        line.replace(today.isoformat(), "<today>")
        for line in lines
        if not re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", line)
    ]


def figures(app: Flask, session: Session) -> dict[str, Any]:
    """Every figure the page, the CSV and the PDF show for each of `filter_sets`."""
    content = app.extensions["slussen.content"]
    settings = app.extensions["slussen.settings"]
    workflow = content.compiled["workflow"]
    context = Context(content, workflow, settings)
    result: dict[str, Any] = {"reports": {}, "csv": {}}
    with app.test_request_context(), force_locale(settings.default_locale):
        ring = current_key_ring()
        today = today_local()
        hsa = {u: h for u, h in session.execute(select(Unit.id, Unit.hsa_id))}
        for name, filters in filter_sets(session, today).items():
            report = build_report(session, ring, OPERATOR, context, filters)
            result["reports"][name] = _report(report, hsa)
            out = io.StringIO()
            write_dataset(session, ring, OPERATOR, context, filters, out)
            result["csv"][name] = _csv(out.getvalue(), today, full=name == "all")
            if name == "all":
                result["pdf"] = _pdf_text(render_report(report, workflow), today)
    return result
