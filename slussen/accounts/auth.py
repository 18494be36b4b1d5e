"""Login required everywhere except an explicit public list; roles checked in one place."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, abort, current_app, g, redirect, render_template, request, session, url_for
from flask_login import AnonymousUserMixin, LoginManager, current_user
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from slussen.accounts.models import Membership, User
from slussen.accounts.oidc import OidcRefused
from slussen.accounts.roles import PATIENT_DATA_ROLES, Permission, grants
from slussen.accounts.services import record_federated_refusal
from slussen.db import commit_request, db_session
from slussen.keystore import current_key_ring

F = TypeVar("F", bound=Callable[..., Any])

login_manager = LoginManager()


@dataclass(frozen=True)
class Identity:
    """Who is logged in, as every request needs it: read with one small query, no ORM objects."""

    id: int
    username: str
    display_name: str
    role: str
    unit_ids: frozenset[int]

    @classmethod
    def of(cls, user: User) -> Identity:
        return cls(user.id, user.username, user.display_name, user.role, user.unit_ids)


_IDENTITY = (
    select(User.id, User.username, User.display_name, User.role, Membership.unit_id)
    .outerjoin(Membership, Membership.user_id == User.id)
    .where(User.id == bindparam("user_id"), User.is_active.is_(True))
)


def load_identity(session: Session, user_id: int) -> Identity | None:
    """The active user's identity and units; None for an unknown or disabled account."""
    rows = session.execute(_IDENTITY, {"user_id": user_id}).all()
    if not rows:
        return None
    first = rows[0]
    units = frozenset(row.unit_id for row in rows if row.unit_id is not None)
    return Identity(first.id, first.username, first.display_name, first.role, units)


class LoginUser:
    """What Flask-Login keeps for a logged-in person: their identity and role checks; the User
    row itself is loaded only by the views that change it."""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    @functools.cached_property
    def user(self) -> User:
        user = db_session().get(User, self.identity.id)
        assert user is not None  # the identity was just read in this request
        return user

    def get_id(self) -> str:
        return str(self.identity.id)

    @property
    def id(self) -> int:
        return self.identity.id

    @property
    def role(self) -> str:
        return self.identity.role

    @property
    def display_name(self) -> str:
        return self.identity.display_name

    def can(self, permission: Permission) -> bool:
        return grants(self.identity.role, permission)


class Anonymous(AnonymousUserMixin):  # type: ignore[misc]
    role = ""

    def can(self, _permission: Permission) -> bool:
        return False


def public(view: F) -> F:
    """Mark a view as reachable without login. Every such view is listed in the public-URL test."""
    view.is_public = True  # type: ignore[attr-defined]
    return view


#: Permissions over patient data. A role that never sees patient data (evaluator, org_rep,
#: admin) gets 404 for such pages, not 403: it learns nothing about what exists there.
PATIENT_PERMISSIONS = frozenset(
    {
        Permission.FLAG_PATIENT,
        Permission.VIEW_OWN_FLAGS,
        Permission.WORK_CASES,
        Permission.COORDINATE_UNIT,
        Permission.PRINT_OWN_LETTERS,
        Permission.VIEW_UNIT,
        Permission.REVIEW_ACCESS_LOG,
    }
)


#: The session's record of a federated login: the provider's subject, the `acr` and whether it
#: counts as strong authentication, and the ID token (for the provider's logout).
FEDERATED_KEY = "federated_login"


def has_strong_authentication() -> bool:
    """Whether this session may reach patient data: a local login (password, and TOTP where
    required) may; a federated login only with an `acr` the settings count as strong."""
    login = session.get(FEDERATED_KEY)
    return not isinstance(login, dict) or login.get("strong") is True


def _refuse_weak_authentication() -> Any:
    """The page refusing patient data to a login without strong authentication, on record."""
    login = session.get(FEDERATED_KEY) or {}
    refusal = OidcRefused(
        "",
        reason="inloggningen saknar stark autentisering, patientuppgifter visas inte",
        subject=str(login.get("subject", "")),
    )
    record_federated_refusal(
        db_session(),
        current_key_ring(),
        refusal,
        user=current_user.user,
        acr=str(login.get("acr", "")),
    )
    commit_request()
    return render_template("accounts/strong_authentication.html"), 403


def require(permission: Permission) -> Callable[[F], F]:
    """Refuse a logged-in user whose role lacks `permission`: 403, or 404 for a patient-data
    page and a role without patient access. A patient-data page also refuses (403, with a page
    saying why, and an access-log row) a login without strong authentication
    (`has_strong_authentication`)."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.can(permission):
                if permission in PATIENT_PERMISSIONS and current_user.role not in {
                    r.value for r in PATIENT_DATA_ROLES
                }:
                    abort(404)
                abort(403)
            if permission in PATIENT_PERMISSIONS and not has_strong_authentication():
                return _refuse_weak_authentication()
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def is_public_endpoint(endpoint: str | None) -> bool:
    if endpoint is None:
        return True  # no route matched: let the 404 handler answer
    if endpoint == "static":
        return True
    view = current_app.view_functions.get(endpoint)
    return bool(getattr(view, "is_public", False))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "accounts.login"
    login_manager.login_message = None  # type: ignore[assignment]
    login_manager.anonymous_user = Anonymous

    @login_manager.user_loader  # type: ignore[untyped-decorator]
    def _load(user_id: str) -> LoginUser | None:
        try:
            identity = load_identity(db_session(), int(user_id))
        except ValueError:
            return None
        return LoginUser(identity) if identity else None

    @app.before_request
    def _require_login() -> Any:
        if is_public_endpoint(request.endpoint):
            return None
        if not current_user.is_authenticated:
            return redirect(url_for("accounts.login", next=request.full_path.rstrip("?")))
        g.identity = current_user.identity
        return None
