"""The bare baseline: the least a Flask + SQLAlchemy page can do, served like Slussen.

One page runs one small SELECT on the `units` table and renders a tiny Jinja template; there
is no login, no CSRF, no session, no translations, no security headers. Slussen's pages are
compared with it (ratios) in the same run. Served by gunicorn with Slussen's worker settings:

    gunicorn --chdir REPO --worker-class gthread --threads 4 'bench.bare_app:create()'

The database URL (SQLAlchemy form) comes from SLUSSEN_BENCH_DATABASE_URL, which Slussen's own
settings ignore.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, render_template
from jinja2 import DictLoader
from sqlalchemy import create_engine, text

PAGE = """<!doctype html>
<html lang="sv"><head><meta charset="utf-8"><title>Enheter</title></head>
<body><h1>Enheter</h1><ul>{% for unit in units %}<li>{{ unit.name }} ({{ unit.hsa_id }})</li>
{% endfor %}</ul></body></html>
"""

QUERY = text("SELECT id, name, hsa_id FROM units ORDER BY id LIMIT 5")


def create() -> Flask:
    """Build the baseline app (a gunicorn factory: `bench.bare_app:create()`)."""
    url = os.environ.get("SLUSSEN_BENCH_DATABASE_URL", "")
    if not url:
        raise SystemExit("bench.bare_app: set SLUSSEN_BENCH_DATABASE_URL")
    connect_args: dict[str, Any] = {"check_same_thread": False} if url.startswith("sqlite") else {}
    engine = create_engine(url, connect_args=connect_args)

    app = Flask(__name__)
    # A loader (not render_template_string) so the template is compiled once and cached.
    app.jinja_loader = DictLoader({"page.html": PAGE})

    @app.route("/")
    def page() -> str:
        with engine.connect() as conn:
            units = conn.execute(QUERY).all()
        return render_template("page.html", units=units)

    @app.route("/healthz")
    def healthz() -> dict[str, str]:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    return app
