"""The floor under every Slussen page that shows patient data, served like Slussen.

Slussen itself (`create_app()`, as `slussen serve` builds it: session, login, CSRF, Babel,
security headers, the base layout) plus three bench-only pages that do nothing else:

* `/golv/inloggad`: a logged-in coach's page with the base layout and one line of text;
* `/golv/granskad`: the same, plus what SPEC §7 requires of every page that reads patient data:
  one access-log row appended to the keyed hash chain and committed ("no audit row, no data");
* `/golv/lista`: the same, with the rows a list of 50 patients must append instead (one per
  patient shown, with its pseudonym, as `patients.services.names_for_list` writes them): the
  floor under the worklist and `/enhet`, whatever their queries, names and template cost.

`bench/bench_cases.py --floor` measures them against the bare page in the same run, so the
worklist's and the case page's ratios can be read against what no page of patient data can go
below. Not part of the product: the pages exist only in this module. Served by gunicorn with
Slussen's worker settings:

    gunicorn --chdir REPO --worker-class gthread --threads 4 'bench.floor_app:create()'
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, render_template
from flask.typing import ResponseReturnValue

from slussen import audit
from slussen.accesslog.markers import shows_patient_data
from slussen.accounts.auth import require
from slussen.accounts.roles import Permission
from slussen.cases.access import current_actor
from slussen.cases.services import PAGE_SIZE
from slussen.db import db_session
from slussen.keystore import current_key_ring
from slussen.patients.services import LISTED

floor = Blueprint(
    "bench_floor", __name__, template_folder=str(Path(__file__).parent / "floor_templates")
)


@floor.route("/golv/inloggad")
@require(Permission.WORK_CASES)
def logged_in() -> ResponseReturnValue:
    return render_template("floor.html", message="inloggad")


@floor.route("/golv/granskad")
@require(Permission.WORK_CASES)
@shows_patient_data
def audited() -> ResponseReturnValue:
    session = db_session()
    audit.record(
        session, current_key_ring(), current_actor(), "read", "case_list", "golv", purpose="golv"
    )
    session.commit()
    return render_template("floor.html", message="granskad")


@floor.route("/golv/lista")
@require(Permission.WORK_CASES)
@shows_patient_data
def listed() -> ResponseReturnValue:
    session = db_session()
    actor = current_actor()
    unit_id = min(actor.unit_ids, default=None)
    entries = [
        audit.Entry("read", LISTED, n, "golv", patient_id=n, unit_id=unit_id)
        for n in range(1, PAGE_SIZE + 1)
    ]
    audit.record_entries(session, current_key_ring(), actor, entries)
    session.commit()
    return render_template("floor.html", message="lista")


def create() -> Flask:
    """Slussen with the floor pages (a gunicorn factory: `bench.floor_app:create()`)."""
    from slussen.app import create_app

    app = create_app()
    app.register_blueprint(floor)
    return app
