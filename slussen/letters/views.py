"""The letters page (the coordinator's queue, held letters, forwarding queue, batches), a coach's
own letters page (the letters of their cases), printing a batch, printing it again, and a coach's
preview of any queued letter."""

from __future__ import annotations

import re
import tempfile
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from slussen.accesslog.markers import NO_STORE_FLAG, render_audited
from slussen.accounts.auth import require
from slussen.accounts.models import Unit
from slussen.accounts.roles import Permission
from slussen.cases.access import current_actor
from slussen.db import attempt, db_session
from slussen.errors import Invalid
from slussen.i18n import ui_language
from slussen.keystore import keystore
from slussen.letters import services
from slussen.letters.labels import labels as letter_labels
from slussen.patients.services import record_shown

bp = Blueprint("letters", __name__, template_folder="templates")


@bp.app_context_processor
def _labels() -> dict[str, object]:
    return {**letter_labels(ui_language()), "letter_title": letter_title}


def letter_title(letter_id: str) -> str:
    """A letter's title in the user's language ("Kallelse"), for every page naming a letter."""
    template = current_app.extensions["slussen.content"].compiled["letters"].get(letter_id)
    return letter_id if template is None else str(template.title[ui_language()])


def _context(large_print: bool | None = None) -> Any:
    return services.render_context(
        current_app.extensions["slussen.content"],
        current_app.extensions["slussen.settings"],
        large_print=large_print,
    )


def _unit() -> Unit:
    """The unit chosen with ?enhet= among the user's units (the first one by default)."""
    actor = current_actor()
    try:
        wanted = int(request.values.get("enhet", "0"))
    except ValueError:
        wanted = 0
    ids = sorted(actor.unit_ids)
    if not ids:
        abort(404)
    unit = db_session().get(Unit, wanted if wanted in ids else ids[0])
    if unit is None:
        abort(404)
    return unit


def _pdf(data: bytes, filename: str, *, inline: bool) -> ResponseReturnValue:
    response = make_response(data)
    response.headers["Content-Type"] = "application/pdf"
    disposition = "inline" if inline else "attachment"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    g.setdefault(NO_STORE_FLAG, True)
    return response


@bp.route("/brev")
@require(Permission.COORDINATE_UNIT)
def index() -> ResponseReturnValue:
    """Queued and held letters, the forwarding queue and recent batches. No patient names: the
    case reference links to the case; each case shown is recorded in its patient's access log."""
    return _queue_page(own=False)


@bp.route("/brev/mina")
@require(Permission.PRINT_OWN_LETTERS)
def own() -> ResponseReturnValue:
    """A coach's letters: the queued and held letters of the cases they are the coach of, and
    the batches they printed; as the letters page, narrowed to them."""
    return _queue_page(own=True)


def _queue_page(*, own: bool) -> ResponseReturnValue:
    unit = _unit()
    store = keystore()
    actor = current_actor()
    coach_id = actor.user_id if own else None
    units = [db_session().get(Unit, uid) for uid in sorted(actor.unit_ids)]
    pending = services.pending_letters(store, unit.id, forwarding=False, coach_id=coach_id)
    forwarding = services.pending_letters(store, unit.id, forwarding=True, coach_id=coach_id)
    # Each case the queue shows is recorded once in its patient's access log.
    shown = {c.id: (c.id, c.unit_id, c.patient_id) for _letter, c in [*pending, *forwarding]}
    record_shown(store, actor, shown.values(), shown_in="letters")
    return render_template(
        "letters/index.html",
        own=own,
        unit=unit,
        units=[u for u in units if u is not None],
        pending=pending,
        forwarding=forwarding,
        batches=services.unit_batches(store, unit.id, created_by_id=coach_id),
    )


@bp.route("/brev/skriv-ut", methods=["POST"])
@require(Permission.COORDINATE_UNIT)
def print_batch() -> ResponseReturnValue:
    """Print all queued letters of the unit, or the ticked ones, as one batch."""
    return _print(own=False)


@bp.route("/brev/mina/skriv-ut", methods=["POST"])
@require(Permission.PRINT_OWN_LETTERS)
def print_own() -> ResponseReturnValue:
    """Print the queued letters of the coach's own cases, or the ticked ones, as one batch; a
    letter of another's case is refused with 404."""
    return _print(own=True)


def _print(*, own: bool) -> ResponseReturnValue:
    back = "letters.own" if own else "letters.index"
    unit = _unit()
    selected = [int(v) for v in request.form.getlist("letter") if re.fullmatch(r"[0-9]{1,9}", v)]
    forwarding = request.form.get("forwarding") == "1"
    with tempfile.TemporaryFile() as sink:
        try:
            with attempt():
                result = services.print_batch(
                    keystore(),
                    current_actor(),
                    unit.id,
                    sink,
                    context=_context(),
                    settings=current_app.extensions["slussen.settings"],
                    letter_ids=selected or None,
                    forwarding=forwarding,
                    own_cases=own,
                )
        except Invalid as exc:
            flash(str(exc), "error")
            return redirect(url_for(back, enhet=unit.id))
    for _letter_id, reason in result.held[:5]:
        flash(_("A letter was held back: %(reason)s", reason=reason), "error")
    if result.batch is None:
        flash(_("There were no letters to print."), "info")
        return redirect(url_for(back, enhet=unit.id))
    flash(
        _(
            "Batch %(id)s is ready: %(n)s letters. Download the PDF and print it.",
            id=result.batch.id,
            n=result.printed,
        ),
        "success",
    )
    return redirect(url_for(back, enhet=unit.id))


@bp.route("/brev/omgang/<int:batch_id>.pdf")
@require(Permission.PRINT_OWN_LETTERS)
def batch_pdf(batch_id: int) -> ResponseReturnValue:
    """The batch's PDF, rendered again from the same letters (the same bytes): the unit's
    coordinators, or the coach who printed it (`services.may_reprint`); others get 404."""
    with tempfile.TemporaryFile() as out:
        try:
            with attempt():
                result = services.reprint_batch(
                    keystore(),
                    current_actor(),
                    batch_id,
                    out,
                    context=_context(),
                    settings=current_app.extensions["slussen.settings"],
                )
        except Invalid as exc:
            flash(str(exc), "error")
            return redirect(url_for("letters.index"))
        out.seek(0)
        pdf = out.read()
    response = make_response(_pdf(pdf, f"brev-omgang-{batch_id}.pdf", inline=False))
    if not result.is_identical:
        # The data changed since the first print (an address, a booked time).
        response.headers["X-Slussen-Batch-Changed"] = "1"
    return response


@bp.route("/brev/<int:letter_id>.pdf")
@require(Permission.WORK_CASES)
def preview(letter_id: int) -> ResponseReturnValue:
    """A coach's preview of a queued (or printed) letter, as it prints; an audited read.
    `?storstil=1` prints the enclosed forms in large print (to print one by hand)."""
    large_print = True if request.args.get("storstil") == "1" else None
    try:
        pdf = services.preview_letter(
            keystore(),
            current_actor(),
            letter_id,
            context=_context(large_print),
            settings=current_app.extensions["slussen.settings"],
        )
    except services.LetterIncomplete as exc:
        g.setdefault(NO_STORE_FLAG, True)
        # The audited read stays on record though the answer is an error.
        return render_audited("letters/incomplete.html", status=422, reason=str(exc))
    return _pdf(pdf, f"brev-{letter_id}.pdf", inline=True)
