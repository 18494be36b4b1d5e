"""Intake pages: the in-app referral form and the public self-referral at /anmalan."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select

from slussen.accounts.auth import public, require
from slussen.accounts.models import Unit
from slussen.accounts.roles import Permission
from slussen.accounts.throttle import limiter
from slussen.audit import PUBLIC
from slussen.cases.access import current_actor
from slussen.cases.engine import current_workflow
from slussen.db import db_session
from slussen.errors import Conflict, Invalid, NotPermitted
from slussen.identifiers import IdentifierError
from slussen.intake.forms import ReferralForm, SelfReferralForm, choices
from slussen.intake.services import refer_patient
from slussen.keystore import keystore
from slussen.patients.services import PatientIdentity

bp = Blueprint("intake", __name__, template_folder="templates")

#: Self-referrals per client address; the 31st within the hour is refused (429).
SELF_REFERRAL_LIMIT = "30 per hour"


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
        if result.is_attached:
            flash(
                _(
                    "The patient already has an open case (%(ref)s). The referral was added to it "
                    "and the coach is told.",
                    ref=result.case.reference,
                ),
                "info",
            )
        else:
            flash(
                _(
                    "Thank you. Case %(ref)s is created and the coach takes it from here.",
                    ref=result.case.reference,
                ),
                "success",
            )
        return redirect(url_for("cases.flagged" if g.identity.role == "staff" else "intake.refer"))
    return render_template("intake/refer.html", form=form), 422 if form.errors else 200


@bp.route("/anmalan", methods=["GET", "POST"])
@public
@limiter.limit(SELF_REFERRAL_LIMIT, methods=["POST"])
def self_referral() -> ResponseReturnValue:
    """The public self-referral form: no login, plain Swedish, CSRF, honeypot, rate limited."""
    session = db_session()
    form = SelfReferralForm()
    form.unit.choices = choices(
        (u.id, u.name) for u in session.scalars(select(Unit).order_by(Unit.name))
    )
    if form.validate_on_submit():
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
    """The receipt repeats nothing the person typed."""
    return render_template("intake/received.html")
