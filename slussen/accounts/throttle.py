"""Rate limits (Flask-Limiter): login throttling now, the public forms later.

`limiter` is the app's one Limiter; other capabilities decorate their views with it:

    from slussen.accounts.throttle import limiter

    @limiter.limit("10 per hour", methods=["POST"])

Counts live where `settings.ratelimit_storage_uri` says: `memory://` counts in this process, so
`slussen serve` then runs one process with threads (`slussen.serve.plan`) and every limit is
exact; `redis://…` shares the counts between worker processes and restarts. A limit is checked
before the view and a failure counted after it, so attempts sent at the same moment may all be
answered: at most one more per request being served at once. Keys are the client address as the
app sees it: behind a reverse proxy that is the proxy's address unless the proxy's forwarded
address is trusted (werkzeug's ProxyFix).

Login is throttled per client address and per account, counting only failed attempts (a 401), so
a clinic behind one address is not locked out by its own morning logins, and one attacker cannot
lock every account (SecureDrop's "throttle is not global"). Either limit answers 429 whether or
not the account exists, and the right password does not get past it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, request, session
from flask.wrappers import Response
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from slussen.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

#: Failed logins per client address, over both login steps. A clinic's staff share an address.
LOGIN_LIMIT_PER_ADDRESS = "20 per 10 minutes"
#: Failed logins per account (ASVS 6.3.1, NIST 800-63B §5.2.2: well under 100 a day). The daily
#: cap bounds a slow guesser; a person who forgot their password waits at most a day.
LOGIN_LIMIT_PER_ACCOUNT = "10 per 10 minutes; 50 per day"

limiter = Limiter(
    get_remote_address,
    # Exact over any 10 minutes, unlike a fixed window that allows a double burst at its edge.
    strategy="moving-window",
    key_prefix="slussen",
)


def _failed(response: Response) -> bool:
    return response.status_code == 401


def _submitted_username() -> str:
    """The account a password attempt is for, as the login looks it up."""
    name = str(request.form.get("username", "")).strip().lower()[:80]
    return "user:" + (name or "-")


def _pending_account() -> str:
    """The account whose second step is being tried (kept in the server-side session)."""
    pending = session.get("pending_login")
    user_id = pending.get("user_id") if isinstance(pending, dict) else None
    return f"user-id:{user_id if user_id is not None else '-'}"


def _per_address() -> Any:
    return limiter.shared_limit(
        LOGIN_LIMIT_PER_ADDRESS,
        scope="login-address",
        methods=["POST"],
        deduct_when=_failed,
    )


def _throttle_login_step(view: F, account_key: Callable[[], str]) -> F:
    """Throttle a login step's failed attempts per address and per account (`account_key`)."""
    per_account = limiter.limit(
        LOGIN_LIMIT_PER_ACCOUNT,
        key_func=account_key,
        methods=["POST"],
        deduct_when=_failed,
    )
    result: F = _per_address()(per_account(view))
    return result


def throttle_password_step(view: F) -> F:
    """Throttle failed password attempts per address and per submitted username."""
    return _throttle_login_step(view, _submitted_username)


def throttle_code_step(view: F) -> F:
    """Throttle failed second-step codes per address and per account."""
    return _throttle_login_step(view, _pending_account)


def init_app(app: Flask, settings: Settings) -> None:
    """Count in `settings.ratelimit_storage_uri`. Each app gets fresh storage (tests rely on it)."""
    app.config["RATELIMIT_STORAGE_URI"] = settings.ratelimit_storage_uri
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    limiter.init_app(app)
