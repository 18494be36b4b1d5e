"""Intake pages: the in-app referral form and the public self-referral at /anmalan."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask import session as flask_session
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from slussen.accesslog.markers import render_audited, shows_patient_data
from slussen.accounts.auth import public, require
from slussen.accounts.models import Unit
from slussen.accounts.roles import Permission
from slussen.accounts.throttle import limiter
from slussen.audit import PUBLIC
from slussen.cases.access import current_actor
from slussen.cases.engine import current_workflow, opening_due
from slussen.config import today_local
from slussen.db import db_session, load_authorised
from slussen.errors import Conflict, Invalid, NotPermitted
from slussen.identifiers import IdentifierError
from slussen.intake.forms import ReferralForm, SelfReferralForm, choices, unit_choices
from slussen.intake.models import ForwardedReferral
from slussen.intake.services import (
    accept_forwarded_referral,
    decline_forwarded_referral,
    incoming_referrals,
    incoming_view,
    may_decide,
    refer_patient,
)
from slussen.keystore import keystore
from slussen.patients.services import PatientIdentity, record_shown

bp = Blueprint("intake", __name__, template_folder="templates")

#: Self-referrals per client address; the 31st within the hour is refused (429).
SELF_REFERRAL_LIMIT = "30 per hour"

#: The session key holding the unit the last self-referral went to, for its receipt.
RECEIPT_UNIT = "self_referral_unit"


def _identity(form: ReferralForm | SelfReferralForm, **extra: object) -> PatientIdentity:
    return PatientIdentity(
        identifier=form.personnummer.parsed,
        name=form.name.data.strip(),
        street=(form.street.data or "").strip(),
        postcode=form.postcode.data or "",
        town=(form.town.data or "").strip(),
        phone=(form.phone.data or "").strip(),
        **extra,  # type: ignore[arg-type]
    )


@bp.route("/remiss", methods=["GET", "POST"])
@require(Permission.FLAG_PATIENT)
def refer() -> ResponseReturnValue:
    """Staff flag a patient; coaches register a call or a 1177 message. One screen."""
    session = db_session()
    units = session.scalars(
        select(Unit).where(Unit.id.in_(g.identity.unit_ids)).order_by(Unit.name)
    )
    form = ReferralForm()
    form.unit.choices = choices((u.id, u.name) for u in units)
    if g.identity.role == "staff":
        form.channel.choices = [c for c in form.channel.choices if c.value == "staff_flag"]
    if form.validate_on_submit():
        try:
            identity = _identity(
                form,
                preferred_language=form.preferred_language.data,
                is_protected_identity=form.is_protected_identity.data,
            )
            result = refer_patient(
                keystore(),
                current_actor(),
                workflow=current_workflow(),
                identity=identity,
                unit_id=form.unit.data,
                channel=form.channel.data,
                reason=form.reason.data,
                is_consent_to_contact=bool(form.consent.data),
                contact_channel=form.contact_channel.data,
            )
        except (Invalid, Conflict, NotPermitted, IdentifierError) as exc:
            flash(str(exc), "error")
            return render_template("intake/refer.html", form=form), 422
        if result.is_attached and result.case is not None:
            # Same unit: the referrer may know the unit's own case.
            flash(
                _(
                    "The patient already has an open case (%(ref)s). The referral was added to it "
                    "and the coach is told.",
                    ref=result.case.reference,
                ),
                "info",
            )
        else:
            # A new case and a referral forwarded to another unit answer alike: the referrer
            # must not learn that the person is a patient elsewhere (no oracle across units).
            flash(_("The referral is received."), "success")
        return redirect(url_for("cases.flagged" if g.identity.role == "staff" else "intake.refer"))
    return render_template("intake/refer.html", form=form), 422 if form.errors else 200


@bp.route("/anmalan", methods=["GET", "POST"])
@public
@limiter.limit(SELF_REFERRAL_LIMIT, methods=["POST"])
def self_referral() -> ResponseReturnValue:
    """The public self-referral form: no login, plain Swedish, CSRF, honeypot, rate limited."""
    session = db_session()
    form = SelfReferralForm()
    form.unit.choices = unit_choices(session.scalars(select(Unit).order_by(Unit.town, Unit.name)))
    if form.validate_on_submit():
        # The receipt names the unit chosen; kept in the session, never in the address.
        flask_session[RECEIPT_UNIT] = form.unit.data
        if form.website.data:
            # A robot filled the hidden field: answer as if it worked, store nothing.
            return redirect(url_for("intake.self_referral_received"))
        try:
            refer_patient(
                keystore(),
                PUBLIC,
                workflow=current_workflow(),
                identity=_identity(form),
                unit_id=form.unit.data,
                channel="self_referral",
                reason=form.wish.data,
                is_consent_to_contact=bool(form.consent.data),
                contact_channel=form.contact_channel.data,
            )
        except (Invalid, Conflict, NotPermitted, IdentifierError) as exc:
            flash(str(exc), "error")
            return render_template("intake/self_referral.html", form=form), 422
        return redirect(url_for("intake.self_referral_received"))
    return render_template("intake/self_referral.html", form=form), 422 if form.errors else 200


@bp.route("/anmalan/tack")
@public
def self_referral_received() -> ResponseReturnValue:
    """The receipt names the health centre chosen, its phone and when it answers, and the day
    by which the person hears from it; it repeats nothing the person typed."""
    unit_id = flask_session.get(RECEIPT_UNIT)
    unit = db_session().get(Unit, unit_id) if isinstance(unit_id, int) else None
    return render_template(
        "intake/received.html",
        unit=unit,
        # The earliest due date a new case starts with: by then the unit has been in touch.
        contact_by=min(opening_due(current_workflow(), today_local()).values(), default=None),
    )


def load_forwarded(forwarded_id: int) -> ForwardedReferral:
    """The forwarded referral if the current user is a coordinator of the receiving unit;
    refuses with NotFound (404) otherwise."""
    actor = current_actor()
    return load_authorised(
        db_session(),
        ForwardedReferral,
        forwarded_id,
        allowed=lambda forwarded: may_decide(actor, forwarded),
        message="Remissen finns inte.",
    )


@bp.route("/inkomna-remisser")
@require(Permission.COORDINATE_UNIT)
def incoming() -> ResponseReturnValue:
    """Referrals from other units for patients with an open case here, waiting for a decision:
    referring unit, date, channel and case reference (no patient data; each case shown is
    recorded in its patient's access log)."""
    actor = current_actor()
    rows = incoming_referrals(db_session(), actor)
    shown = {row.case_id: (row.case_id, row.case_unit_id, row.patient_id) for row in rows}
    record_shown(keystore(), actor, shown.values(), shown_in="incoming")
    return render_template("intake/incoming.html", rows=rows)


@bp.route("/inkomna-remisser/<int:forwarded_id>")
@require(Permission.COORDINATE_UNIT)
@shows_patient_data
def incoming_show(forwarded_id: int) -> ResponseReturnValue:
    """One forwarded referral: the patient (audited read), the text, accept or decline."""
    view = incoming_view(keystore(), current_actor(), load_forwarded(forwarded_id))
    return render_audited("intake/incoming_show.html", view=view)


@bp.route("/inkomna-remisser/<int:forwarded_id>/godta", methods=["POST"])
@require(Permission.COORDINATE_UNIT)
def incoming_accept(forwarded_id: int) -> ResponseReturnValue:
    """Attach the forwarded referral to the unit's open case."""
    forwarded = load_forwarded(forwarded_id)
    try:
        case = accept_forwarded_referral(
            keystore(), current_actor(), forwarded, workflow=current_workflow()
        )
    except Invalid as exc:
        flash(str(exc), "error")
        return redirect(url_for("intake.incoming_show", forwarded_id=forwarded_id))
    flash(_("The referral is added to case %(ref)s.", ref=case.reference), "success")
    return redirect(url_for("intake.incoming"))


@bp.route("/inkomna-remisser/<int:forwarded_id>/avboj", methods=["POST"])
@require(Permission.COORDINATE_UNIT)
def incoming_decline(forwarded_id: int) -> ResponseReturnValue:
    """Decline the forwarded referral with a reason."""
    forwarded = load_forwarded(forwarded_id)
    try:
        decline_forwarded_referral(
            keystore(), current_actor(), forwarded, reason=request.form.get("reason", "")
        )
    except Invalid as exc:
        flash(str(exc), "error")
        return redirect(url_for("intake.incoming_show", forwarded_id=forwarded_id))
    flash(_("The referral is declined."), "success")
    return redirect(url_for("intake.incoming"))
