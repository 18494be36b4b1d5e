"""Server-side sessions in the `web_sessions` table (ASVS 7.2–7.4).

The cookie holds only a random token (`secrets.token_urlsafe(32)`, 256 bits); the table holds the
SHA-256 of the token as the row id, the session's data, the logged-in user, and two timestamps.
Because the data lives on the server, a session can be ended there: logout, the idle and absolute
timeouts, and disabling an account delete the row, and the old cookie is then worth nothing.

A new token is issued at login (`regenerate()`, against session fixation) and at logout. An
anonymous visitor gets a row only when something is stored in their session (the CSRF token of
the login form, the chosen language). `last_seen_at` is written at most once a minute, so an
ordinary page view costs one primary-key read and no write.

The interface talks to the database through its own short sessions from the app's sessionmaker,
never through the request's session: the view commits its own work once, and a failed view must
not take the session store down with it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from flask import Flask, abort, current_app, flash, g, redirect, request, session, url_for
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface, SessionMixin
from flask.typing import ResponseReturnValue
from flask.wrappers import Request, Response
from flask_babel import gettext as _
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import CallbackDict, MultiDict

from slussen.accounts.models import WebSession
from slussen.config import Settings
from slussen.db import db_session, utcnow

#: `last_seen_at` is refreshed at most this often (or a quarter of a shorter idle timeout); the
#: idle timeout is therefore exact to a minute. Any request renews it: a form's draft being saved
#: as the user types keeps the session of an open form alive.
TOUCH_INTERVAL = dt.timedelta(minutes=1)
#: Longer cookie values are not ours; they are not even hashed.
_MAX_TOKEN_LENGTH = 100
#: Kept across logout and timeouts: the visitor's language is not a secret.
_CARRIED_OVER = ("lang",)
#: Flask-Login's key for the logged-in user's id.
_USER_KEY = "_user_id"
#: Flask-WTF's key for the session's raw CSRF token.
_CSRF_KEY = "csrf_token"
#: app.extensions key: {endpoint: keeper} for the forms whose post is kept when the session has
#: timed out (see `_keep_expired_post`).
POST_KEEPERS = "slussen.post_keepers"
#: Session key while a kept post waits for its user to log in again: {"user_id", "next"}.
KEPT_POST_KEY = "kept_post"
#: Session key after a logged-in session timed out: {"user_id", "csrf", "at"} (who it was, its
#: raw CSRF token, when it ended), so the forms its pages still submit are kept for that user.
#: Dropped at the next login and logout; server-side like all session data.
ENDED_KEY = "ended"

_serializer = TaggedJSONSerializer()


#: A session row as `_open` reads it (plain columns: this runs on every request).
_OPEN = select(
    WebSession.user_id, WebSession.data, WebSession.created_at, WebSession.last_seen_at
).where(WebSession.id == bindparam("sid"))


def token_hash(token: str) -> str:
    """The row id of a cookie token."""
    return hashlib.sha256(token.encode()).hexdigest()


class ServerSession(CallbackDict[str, Any], SessionMixin):
    """The session of one request: a dict that knows its row and what must happen to it."""

    def __init__(
        self,
        initial: dict[str, Any] | None = None,
        *,
        sid: str | None = None,
        created_at: dt.datetime | None = None,
        last_seen_at: dt.datetime | None = None,
        had_cookie: bool = False,
        store_unavailable: bool = False,
    ) -> None:
        def on_update(self: ServerSession) -> None:
            self.modified = True

        super().__init__(initial, on_update)
        #: The id (token hash) of the row this session was read from; None for a new session.
        self.sid = sid
        self.created_at = created_at
        self.last_seen_at = last_seen_at
        #: The browser sent a cookie, valid or not; an unusable one is deleted.
        self.had_cookie = had_cookie
        #: The database could not be read: serve the request anonymously and write nothing.
        self.store_unavailable = store_unavailable
        self.modified = False
        #: Delete the old row and issue a new token when the response is saved.
        self.regenerate_requested = False
        #: Why the previous session ended ("idle" or "absolute"), told to the user once.
        self.expired_reason: str | None = None

    def regenerate(self) -> None:
        """Give this session a new token and row (the data stays); the old cookie stops working."""
        self.regenerate_requested = True
        self.modified = True


def _close_request_session() -> None:
    request_db: Session | None = g.pop("db_session", None)
    if request_db is not None:
        request_db.close()


def _sessionmaker(app: Flask) -> sessionmaker[Session]:
    result: sessionmaker[Session] = app.extensions["slussen.sessionmaker"]
    return result


def _settings(app: Flask) -> Settings:
    result: Settings = app.extensions["slussen.settings"]
    return result


def _user_id(data: dict[str, Any]) -> int | None:
    try:
        return int(data[_USER_KEY])
    except (KeyError, TypeError, ValueError):
        return None


class _SessionTimes(Protocol):
    """What the timeouts read of a session (a `WebSession` or a row of `_OPEN`)."""

    @property
    def created_at(self) -> dt.datetime: ...

    @property
    def last_seen_at(self) -> dt.datetime: ...


def expiry_reason(settings: Settings, row: _SessionTimes, now: dt.datetime) -> str | None:
    """'absolute' or 'idle' when the session is over, else None."""
    if now - row.created_at > dt.timedelta(hours=settings.session_absolute_hours):
        return "absolute"
    if now - row.last_seen_at > settings.session_idle_timeout:
        return "idle"
    return None


def touch_interval(settings: Settings) -> dt.timedelta:
    """How often `last_seen_at` is written: once a minute, or four times per idle timeout."""
    return min(TOUCH_INTERVAL, settings.session_idle_timeout / 4)


class DatabaseSessionInterface(SessionInterface):
    """Flask sessions stored in `web_sessions`; see the module docstring."""

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        token = request.cookies.get(self.get_cookie_name(app))
        if not token:
            return ServerSession()
        if len(token) > _MAX_TOKEN_LENGTH:
            return ServerSession(had_cookie=True)
        try:
            return self._open(app, token)
        except OperationalError:
            # Nothing is written for this request; `_refuse_without_store` answers 503.
            app.logger.exception("session store unavailable")
            _close_request_session()
            return ServerSession(had_cookie=True, store_unavailable=True)

    def _open(self, app: Flask, token: str) -> ServerSession:
        sid = token_hash(token)
        now = utcnow()
        # The request's own session reads it (one connection and transaction per request);
        # `save_session` closes that session before it writes.
        db = db_session()
        row = db.execute(_OPEN, {"sid": sid}).one_or_none()
        if row is None:
            return ServerSession(had_cookie=True)
        try:
            data = _serializer.loads(row.data)
            if not isinstance(data, dict):
                raise TypeError("session data is not a mapping")
        except (ValueError, TypeError):
            data = {}
        reason = expiry_reason(_settings(app), row, now)
        if reason is not None:
            was_logged_in = row.user_id is not None
            db.execute(delete(WebSession).where(WebSession.id == sid))
            db.commit()
            fresh = ServerSession(had_cookie=True)
            fresh.update({k: data[k] for k in _CARRIED_OVER if k in data})
            fresh.expired_reason = reason if was_logged_in else None
            csrf = data.get(_CSRF_KEY)
            if was_logged_in:
                fresh[ENDED_KEY] = {
                    "user_id": row.user_id,
                    "csrf": csrf if isinstance(csrf, str) else "",
                    "at": now.timestamp(),
                }
            return fresh
        return ServerSession(
            data, sid=sid, created_at=row.created_at, last_seen_at=row.last_seen_at
        )

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSession)
        if session.store_unavailable:
            return
        # The request's own database session is finished (the view committed what it meant to);
        # close it now so our write does not wait for its lock (SQLite) or get rolled back with
        # its savepoint (tests).
        _close_request_session()
        try:
            self._write(app, session, response)
        except OperationalError:
            # The database went away during the request: the page already says so (503), or
            # the view's work was committed before. Only this session change is lost; the next
            # request finds the store again.
            app.logger.exception("session store unavailable; the session was not saved")

    def _write(self, app: Flask, session: ServerSession, response: Response) -> None:
        now = utcnow()
        if session.sid is None or session.regenerate_requested:
            self._save_new(app, session, response, now)
            return
        if not session:
            with _sessionmaker(app)() as db:
                db.execute(delete(WebSession).where(WebSession.id == session.sid))
                db.commit()
            self._delete_cookie(app, response)
            return
        values: dict[str, Any] = {}
        if session.modified:
            values.update(data=_serializer.dumps(dict(session)), user_id=_user_id(session))
        if session.modified or (
            session.last_seen_at is None
            or now - session.last_seen_at >= touch_interval(_settings(app))
        ):
            values["last_seen_at"] = now
        if not values:
            return
        with _sessionmaker(app)() as db:
            result = db.execute(
                update(WebSession)
                .where(WebSession.id == session.sid)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            db.commit()
        if getattr(result, "rowcount", 1) == 0:
            # Ended elsewhere meanwhile (logout in another tab, account disabled): stay ended.
            self._delete_cookie(app, response)

    def _save_new(
        self, app: Flask, session: ServerSession, response: Response, now: dt.datetime
    ) -> None:
        if session.sid is None and not session:
            if session.had_cookie:
                self._delete_cookie(app, response)
            return
        token: str | None = None
        with _sessionmaker(app)() as db:
            if session.sid is not None:
                db.execute(delete(WebSession).where(WebSession.id == session.sid))
            if session:
                token = secrets.token_urlsafe(32)
                db.add(
                    WebSession(
                        id=token_hash(token),
                        user_id=_user_id(session),
                        data=_serializer.dumps(dict(session)),
                        created_at=now,
                        last_seen_at=now,
                    )
                )
            db.commit()
        if token is not None:
            response.set_cookie(
                self.get_cookie_name(app),
                token,
                domain=self.get_cookie_domain(app),
                path=self.get_cookie_path(app),
                secure=self.get_cookie_secure(app),
                httponly=self.get_cookie_httponly(app),
                samesite=self.get_cookie_samesite(app),
            )
            response.vary.add("Cookie")
        elif session.sid is not None or session.had_cookie:
            self._delete_cookie(app, response)

    def _delete_cookie(self, app: Flask, response: Response) -> None:
        response.delete_cookie(
            self.get_cookie_name(app),
            domain=self.get_cookie_domain(app),
            path=self.get_cookie_path(app),
            secure=self.get_cookie_secure(app),
            httponly=self.get_cookie_httponly(app),
            samesite=self.get_cookie_samesite(app),
        )


def current_session() -> ServerSession:
    """The request's server-side session."""
    current = session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(current, ServerSession):
        raise RuntimeError("the app does not use DatabaseSessionInterface")
    return current


def regenerate() -> None:
    """Issue a new session token for this session's data (at every login step)."""
    current_session().regenerate()


def end() -> None:
    """End this session: its row is deleted and the visitor starts a fresh, anonymous one (which
    keeps only the chosen language, so a goodbye message can still be shown)."""
    current = current_session()
    kept = {k: current[k] for k in _CARRIED_OVER if k in current}
    current.clear()
    current.update(kept)
    current.regenerate()


def _tell_why_session_ended() -> None:
    reason = getattr(session, "expired_reason", None)
    if reason == "idle":
        flash(_("You have been logged out because you were inactive for a while."), "info")
    elif reason == "absolute":
        flash(_("You have been logged in for a long time and need to log in again."), "info")


#: What a keeper does with the post of a timed-out session: (user id, the view's arguments, the
#: posted form) → where to go after logging in again to save it ("" for a post kept as a draft
#: only), or None (not kept).
PostKeeper = Callable[[int, dict[str, Any], MultiDict[str, str]], str | None]


def _ended_session() -> tuple[int, str] | None:
    """Who was logged in to the session that timed out in this browser, and its raw CSRF
    token; None when none did (or longer ago than a session may last)."""
    ended = session.get(ENDED_KEY)
    if not isinstance(ended, dict):
        return None
    user_id, token, at = ended.get("user_id"), ended.get("csrf"), ended.get("at")
    if not isinstance(user_id, int) or not isinstance(token, str):
        return None
    age = utcnow().timestamp() - float(at or 0)
    if not 0 <= age <= _settings(current_app).session_absolute_hours * 3600:
        return None
    return user_id, token


def _sent_by_ended_session(raw_token: str) -> bool:
    """The post carries the CSRF token of the session that ended (Flask-WTF's signed form of
    it), so it was the user's own page that sent it, not another site."""
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return True
    sent = request.form.get(_CSRF_KEY) or request.headers.get("X-CSRFToken")
    if not sent or not raw_token:
        return False
    secret = str(current_app.config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key)
    try:
        token = URLSafeTimedSerializer(secret, salt="wtf-csrf-token").loads(sent)
    except BadData:
        return False
    return isinstance(token, str) and hmac.compare_digest(token, raw_token)


def _keep_expired_post() -> ResponseReturnValue | None:
    """A form submitted just after its session timed out is not lost: the form's keeper (see
    POST_KEEPERS) keeps it for the user, sealed, and the user is asked to log in again, after
    which it is saved. Only a post with the ended session's CSRF token is kept; a page may send
    several (a draft being saved, then the form), each is kept."""
    if request.method != "POST" or request.endpoint is None or _USER_KEY in session:
        return None
    keeper: PostKeeper | None = current_app.extensions.get(POST_KEEPERS, {}).get(request.endpoint)
    ended = _ended_session() if keeper is not None else None
    if keeper is None or ended is None or not _sent_by_ended_session(ended[1]):
        return None
    current = current_session()
    user_id = ended[0]
    resume = keeper(user_id, dict(request.view_args or {}), request.form)
    if resume is None:
        return None
    current.expired_reason = None  # the login page says it instead, with what happens next
    if resume:
        current[KEPT_POST_KEY] = {"user_id": user_id, "next": resume}
    return redirect(url_for("accounts.login", next=resume or None))


def _refuse_without_store() -> None:
    """A session that could not be read (the database is away) answers 503, "try again": a
    logged-in user is not treated as a stranger and sent to the login page."""
    if getattr(session, "store_unavailable", False) and request.endpoint != "static":
        abort(503)


def init_app(app: Flask) -> None:
    """Use server-side sessions. Call before other extensions add their before-request hooks, so
    the timeout message is flashed before a login redirect or a CSRF error page."""
    app.session_interface = DatabaseSessionInterface()
    app.before_request(_refuse_without_store)
    # Before CSRF protection, which would refuse the token of the session that ended.
    app.before_request(_keep_expired_post)
    app.before_request(_tell_why_session_ended)
