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
import secrets
from typing import Any, Protocol

from flask import Flask, abort, flash, g, request, session
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface, SessionMixin
from flask.wrappers import Request, Response
from flask_babel import gettext as _
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import CallbackDict

from slussen.accounts.models import WebSession
from slussen.config import Settings
from slussen.db import db_session, utcnow

#: `last_seen_at` is refreshed at most this often; the idle timeout is therefore exact to a minute.
TOUCH_INTERVAL = dt.timedelta(minutes=1)
#: Longer cookie values are not ours; they are not even hashed.
_MAX_TOKEN_LENGTH = 100
#: Kept across logout and timeouts: the visitor's language is not a secret.
_CARRIED_OVER = ("lang",)
#: Flask-Login's key for the logged-in user's id.
_USER_KEY = "_user_id"

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
    if now - row.last_seen_at > dt.timedelta(minutes=settings.session_idle_minutes):
        return "idle"
    return None


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
            session.last_seen_at is None or now - session.last_seen_at >= TOUCH_INTERVAL
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
    app.before_request(_tell_why_session_ended)
