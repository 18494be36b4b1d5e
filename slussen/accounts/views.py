"""Login in one or two steps, TOTP enrolment, password change and logout.

A login is: the password (`/login`); then, when the account has TOTP, a code (`/login/kod`); or,
when TOTP is required and not yet set up, the enrolment (`/konto/tvastegsverifiering`). Between
the steps the user is not logged in: the session holds only `pending_login` (who, which step,
since when) for a few minutes. The session gets a new token at every step (against fixation).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import segno
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from slussen.accounts import services, sessions
from slussen.accounts.auth import FEDERATED_KEY, Identity, LoginUser, public
from slussen.accounts.forms import CodeForm, LoginForm, PasswordChangeForm, TotpEnrolForm
from slussen.accounts.models import User
from slussen.accounts.oidc import OidcClient, OidcRefused, Pending
from slussen.accounts.passwords import (
    MIN_LENGTH_SINGLE_FACTOR,
    MIN_LENGTH_WITH_SECOND_FACTOR,
    PasswordRejected,
    verify_password,
)
from slussen.accounts.throttle import throttle_code_step, throttle_password_step
from slussen.config import Settings
from slussen.db import attempt, commit_request, db_session
from slussen.errors import Invalid
from slussen.keystore import current_key_ring, keystore

bp = Blueprint("accounts", __name__, template_folder="templates")

PENDING_KEY = "pending_login"
#: A federated login sent to the provider and not yet answered (`oidc.Pending`).
OIDC_PENDING_KEY = "oidc_pending"
#: How long the provider may take to send the person back: time to find the card and PIN.
PENDING_OIDC_SECONDS = 15 * 60
SETUP_KEY = "totp_setup"
#: How long the code step may wait after the password: time to find the phone, not more.
PENDING_CODE_SECONDS = 5 * 60
#: Installing an app and scanning a code takes longer than typing one.
PENDING_ENROL_SECONDS = 15 * 60
_PENDING_LIMITS = {"code": PENDING_CODE_SECONDS, "enrol": PENDING_ENROL_SECONDS}


def _settings() -> Settings:
    result: Settings = current_app.extensions["slussen.settings"]
    return result


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths; anything else goes to the start page."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("core.index")


def _start_pending(user: User, step: str, next_url: str) -> None:
    sessions.regenerate()
    session[PENDING_KEY] = {
        "user_id": user.id,
        "step": step,
        "since": int(time.time()),
        "next": next_url,
    }


def _pending(step: str) -> tuple[User, str] | None:
    """The user half-way through logging in at `step`, and where they go next; None (and the
    pending state dropped) when there is none, it is too old, or the account was disabled."""
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict) or pending.get("step") != step:
        return None
    age = time.time() - float(pending.get("since", 0))
    user = db_session().get(User, int(pending.get("user_id", 0)))
    if not 0 <= age <= _PENDING_LIMITS[step] or user is None or not user.is_active:
        session.pop(PENDING_KEY, None)
        return None
    return user, _safe_next(pending.get("next"))


def _log_in(user: User) -> None:
    """Make `user` the logged-in user of a fresh session token with a fresh CSRF token."""
    session.pop(PENDING_KEY, None)
    session.pop(SETUP_KEY, None)
    session.pop(sessions.KEPT_POST_KEY, None)
    session.pop(sessions.ENDED_KEY, None)
    session.pop("csrf_token", None)
    g.pop("csrf_token", None)
    sessions.regenerate()
    login_user(LoginUser(Identity.of(user)))


def _login_again() -> ResponseReturnValue:
    flash(_("The login took too long. Please log in again."), "info")
    return redirect(url_for("accounts.login"))


@bp.route("/login", methods=["GET", "POST"])
@public
@throttle_password_step
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("core.index"))
    form = LoginForm()
    settings = _settings()
    if form.validate_on_submit():
        db = db_session()
        ring = current_key_ring()
        if settings.local_passwords_disabled:
            return _password_refused(form, None)
        user = services.check_password_login(db, settings, form.username.data, form.password.data)
        if user is not None and services.local_password_refusal(settings, user):
            return _password_refused(form, user)
        if user is None:
            services.record_failed_login(db, ring, form.username.data)
            # The failed attempt stays on record though the answer is an error (401).
            commit_request()
            flash(_("Wrong username or password."), "error")
            return render_template(
                "accounts/login.html", form=form, kept_for=_kept_post_user()
            ), 401
        next_url = _safe_next(request.args.get("next"))
        if services.has_second_factor(user):
            _start_pending(user, "code", next_url)
            return redirect(url_for("accounts.login_code"))
        if services.needs_totp_enrolment(settings, user):
            _start_pending(user, "enrol", next_url)
            return redirect(url_for("accounts.totp_enrol"))
        services.complete_login(db, settings, ring, user, method="password")
        _log_in(user)
        return redirect(next_url)
    return _login_page(form)


def _login_page(form: LoginForm, status: int = 200) -> ResponseReturnValue:
    settings = _settings()
    kept_for = _kept_post_user()
    if kept_for is not None and not form.is_submitted():
        form.username.data = kept_for.username
    return render_template(
        "accounts/login.html",
        form=form,
        federated=settings.oidc_enabled,
        passwords=not settings.local_passwords_disabled,
        next_url=request.args.get("next"),
        kept_for=kept_for,
    ), status


def _kept_post_user() -> User | None:
    """Whose form, submitted after their session timed out, waits to be saved (the login page
    then asks them to log in again, and says so)."""
    kept = session.get(sessions.KEPT_POST_KEY)
    if not isinstance(kept, dict):
        return None
    user = db_session().get(User, int(kept.get("user_id") or 0))
    return user if user is not None and user.is_active else None


def _password_refused(form: LoginForm, user: User | None) -> ResponseReturnValue:
    """Refuse a local password login where passwords are off (installation-wide: before the
    password is checked; per user: only after it was right, so the answer tells a stranger
    nothing), with an access-log row."""
    message = services.local_password_refusal(_settings(), user) or ""
    services.record_failed_login(
        db_session(),
        current_key_ring(),
        form.username.data,
        user=user,
        reason="lösenordsinloggning är avstängd",
    )
    commit_request()
    flash(message, "error")
    return _login_page(form, 403)


# --- federated login (OpenID Connect) -------------------------------------------------------------


def _oidc() -> OidcClient:
    """The app's OpenID Connect client (its caches live as long as the app); 404 when the
    federated login is not configured."""
    settings = _settings()
    if not settings.oidc_enabled:
        abort(404)
    client: OidcClient | None = current_app.extensions.get("slussen.oidc")
    if client is None:
        client = current_app.extensions["slussen.oidc"] = OidcClient(settings)
    return client


def _redirect_uri() -> str:
    return _settings().absolute_url(url_for("accounts.oidc_callback"))


def _oidc_refused(refusal: OidcRefused, user: User | None = None) -> ResponseReturnValue:
    services.record_federated_refusal(db_session(), current_key_ring(), refusal, user=user)
    commit_request()
    return render_template("accounts/oidc_refused.html", message=str(refusal)), 403


@bp.route("/login/oidc")
@public
def oidc_start() -> ResponseReturnValue:
    """Send the browser to the region's identity provider."""
    client = _oidc()
    if current_user.is_authenticated:
        return redirect(url_for("core.index"))
    try:
        url, pending = client.start(_redirect_uri(), _safe_next(request.args.get("next")))
    except OidcRefused as exc:
        return _oidc_refused(exc)
    session[OIDC_PENDING_KEY] = pending.as_dict()
    return redirect(url)


@bp.route("/login/oidc/svar")
@public
def oidc_callback() -> ResponseReturnValue:
    """The provider's answer: check it, find the user, log in. Every refusal is on record."""
    client = _oidc()
    pending = Pending.from_dict(session.pop(OIDC_PENDING_KEY, None))
    if pending is not None and not 0 <= time.time() - pending.started_at <= PENDING_OIDC_SECONDS:
        pending = None
    args = {k: v for k, v in request.args.items() if isinstance(v, str)}
    db = db_session()
    settings = _settings()
    try:
        verified = client.finish(pending, args, _redirect_uri())
        with attempt():
            user = services.federated_user(db, settings, verified)
    except OidcRefused as exc:
        return _oidc_refused(exc)
    assert pending is not None  # finish refuses an answer without a pending login
    strong = verified.acr in settings.oidc_strong_acrs
    what = "inloggning" if strong else "inloggning utan stark autentisering"
    services.complete_login(
        db,
        settings,
        current_key_ring(),
        user,
        method=services.federated_purpose(what, verified.subject, verified.acr),
    )
    _log_in(user)
    session[FEDERATED_KEY] = {
        "subject": verified.subject,
        "acr": verified.acr,
        "strong": strong,
        "id_token": verified.id_token,
    }
    if not strong:
        flash(
            _(
                "You logged in without strong authentication (such as a SITHS card): you cannot "
                "open patient data in this session."
            ),
            "info",
        )
    return redirect(pending.next_url)


@bp.route("/login/kod", methods=["GET", "POST"])
@public
@throttle_code_step
def login_code() -> ResponseReturnValue:
    """The second step: a TOTP code or a recovery code."""
    pending = _pending("code")
    if pending is None:
        return _login_again()
    user, next_url = pending
    form = CodeForm()
    if form.validate_on_submit():
        db = db_session()
        ring = current_key_ring()
        try:
            with attempt():
                used = services.use_second_factor(db, ring, user, form.code.data)
        except services.SecondFactorRefused as exc:
            services.record_failed_login(db, ring, user.username, user=user, reason="wrong code")
            # The failed attempt stays on record though the answer is an error (401).
            commit_request()
            form.code.errors.append(str(exc))
            return render_template("accounts/login_code.html", form=form), 401
        method = (
            "password and recovery code" if used.method == "recovery_code" else "password and TOTP"
        )
        services.complete_login(db, _settings(), ring, user, method=method)
        _log_in(user)
        if used.recovery_codes_left is not None:
            flash(
                _(
                    "You logged in with a recovery code. You have %(count)d left.",
                    count=used.recovery_codes_left,
                ),
                "info",
            )
        return redirect(next_url)
    return render_template("accounts/login_code.html", form=form)


def _qr_data_uri(uri: str) -> str:
    """The QR code as an SVG data URI: an <img> the CSP allows (no inline style or script)."""
    result: str = segno.make(uri, error="m").svg_data_uri(scale=5, border=4, light="#fff")
    return result


def _group(secret: str) -> str:
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@bp.route("/konto/tvastegsverifiering", methods=["GET", "POST"])
@public
def totp_enrol() -> ResponseReturnValue:
    """Set up TOTP. Reached in two ways, hence public: half-way through a login when TOTP is
    required (the user is not logged in until they confirm a code), or by a logged-in user who
    turns it on themself (they confirm with their password too)."""
    if current_user.is_authenticated:
        user: User = current_user.user
        forced = False
        next_url = url_for("core.index")
    else:
        pending = _pending("enrol")
        if pending is None:
            return _login_again()
        user, next_url = pending
        forced = True
    if services.has_second_factor(user):
        return render_template("accounts/totp_on.html")

    # The session keeps the new secret only sealed with the user's data key.
    store = keystore()
    setup = session.get(SETUP_KEY)
    secret = None
    if isinstance(setup, dict) and setup.get("user_id") == user.id:
        sealed = setup.get("sealed")
        if isinstance(sealed, bytes):
            secret = services.pending_totp_secret(store, user, sealed)
    if secret is None:
        secret, sealed = services.start_totp_enrolment(store, user)
        session[SETUP_KEY] = {"user_id": user.id, "sealed": sealed}
    form = TotpEnrolForm()
    status = 200
    if form.validate_on_submit():
        db = db_session()
        settings = _settings()
        ring = current_key_ring()
        if not forced and not verify_password(
            settings, user.password_hash, form.password.data or ""
        ):
            form.password.errors.append(_("The password is wrong."))
            status = 400
        else:
            try:
                codes = services.enrol_totp(db, ring, user, secret, form.code.data)
            except services.SecondFactorRefused as exc:
                form.code.errors.append(str(exc))
                status = 400
            else:
                if forced:
                    services.complete_login(
                        db, settings, ring, user, method="password and new TOTP"
                    )
                session.pop(SETUP_KEY, None)
                if forced:
                    _log_in(user)
                else:
                    sessions.regenerate()
                return render_template(
                    "accounts/recovery_codes.html", codes=codes, next_url=next_url
                )
    elif form.is_submitted():
        status = 400
    return render_template(
        "accounts/totp_enrol.html",
        form=form,
        forced=forced,
        qr=_qr_data_uri(services.totp_uri(secret, user.username)),
        secret=_group(secret),
    ), status


@bp.route("/konto/losenord", methods=["GET", "POST"])
def change_password() -> ResponseReturnValue:
    """Change one's own password; other sessions of the account end."""
    user: User = current_user.user
    form = PasswordChangeForm()
    status = 200
    if form.validate_on_submit():
        db = db_session()
        current = sessions.current_session()
        try:
            services.change_password(
                db,
                _settings(),
                user,
                form.current_password.data,
                form.new_password.data,
                keep_session_id=current.sid,
            )
        except PasswordRejected as exc:
            form.new_password.errors.append(str(exc))
            status = 400
        except Invalid as exc:
            form.current_password.errors.append(str(exc))
            status = 400
        else:
            sessions.regenerate()
            flash(_("Your password is changed."), "info")
            return redirect(url_for("core.index"))
    elif form.is_submitted():
        status = 400
    minimum = (
        MIN_LENGTH_WITH_SECOND_FACTOR
        if services.has_second_factor(user)
        else MIN_LENGTH_SINGLE_FACTOR
    )
    return render_template("accounts/password.html", form=form, minimum=minimum), status


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    """End the Slussen session; after a federated login, also the provider's session where
    its discovery offers RP-initiated logout (the provider sends the browser back to /login)."""
    db = db_session()
    user: User = current_user.user
    federated = session.get(FEDERATED_KEY)
    provider_logout = None
    purpose = "logout"
    if isinstance(federated, dict) and _settings().oidc_enabled:
        provider_logout = _oidc().logout_url(
            str(federated.get("id_token", "")),
            _settings().absolute_url(url_for("accounts.login")),
        )
        what = "utloggning, även hos regionens inloggning" if provider_logout else "utloggning"
        purpose = services.federated_purpose(what, str(federated.get("subject", "")))
    services.record_logout(db, current_key_ring(), user, purpose=purpose)
    logout_user()
    sessions.end()
    flash(_("You are logged out."), "info")
    return redirect(provider_logout or url_for("accounts.login"))
