"""create_app: builds the Flask app from validated settings, extensions and blueprints."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, g, render_template, request, session
from flask.typing import ResponseReturnValue
from flask_babel import Babel
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter, Map

from slussen import capabilities, db
from slussen.accesslog.markers import NO_STORE_FLAG
from slussen.accesslog.views import bp as accesslog_bp
from slussen.accounts import auth, sessions, throttle
from slussen.accounts.oidc import provider_origins
from slussen.accounts.views import bp as accounts_bp
from slussen.admin.views import bp as admin_bp
from slussen.associations.views import bp as associations_bp
from slussen.cases.views import bp as cases_bp
from slussen.config import Settings, load_settings
from slussen.core.views import bp as core_bp
from slussen.directory.views import bp as directory_bp
from slussen.errors import DomainError, Invalid
from slussen.evaluation.views import bp as evaluation_bp
from slussen.intake.views import bp as intake_bp
from slussen.letters.views import bp as letters_bp
from slussen.questionnaires.views import bp as questionnaires_bp
from slussen.questionnaires.views import questionnaire_panel
from slussen.visits.views import POST_KEEPERS as visits_post_keepers
from slussen.visits.views import bp as visits_bp
from slussen.visits.views import case_page_panel as visits_panel

csrf = CSRFProtect()
babel = Babel()

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)


def _select_locale() -> str:
    chosen = session.get("lang")
    if chosen in ("sv", "en"):
        return str(chosen)
    settings: Settings = g.get("settings") or _settings()
    return settings.default_locale


def _install_fast_gettext(app: Flask) -> None:
    """Templates translate through the catalog the page's context carries (`_translations`,
    from a context processor): flask_babel looks the catalog up anew for every string (about
    15 µs), and a page has dozens. Templates without that context (imported macros) fall back to
    flask_babel's lookup."""
    from flask_babel import get_translations
    from jinja2 import pass_context
    from jinja2.runtime import Context

    def catalog(context: Context) -> Any:
        return context.get("_translations") or get_translations()

    @pass_context
    def gettext(context: Context, string: str) -> str:
        return str(catalog(context).ugettext(string))

    @pass_context
    def ngettext(context: Context, singular: str, plural: str, n: int) -> str:
        return str(catalog(context).ungettext(singular, plural, n))

    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=gettext, ngettext=ngettext, newstyle=True
    )

    @app.context_processor
    def _catalog() -> dict[str, object]:
        return {"_translations": get_translations()}


def _settings() -> Settings:
    from flask import current_app

    result: Settings = current_app.extensions["slussen.settings"]
    return result


def _secret_key(settings: Settings) -> str:
    """The configured secret; in development a random one kept in the instance folder."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.instance_path / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


class IdConverter(IntegerConverter):
    """`<int:…>` in every path: a whole number that fits a database id (signed 64 bits). A larger
    one does not match the rule, so it is a plain 404 instead of an overflow in the driver."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, max=_LARGEST_ID)


#: The largest value a BIGINT (PostgreSQL) or INTEGER (SQLite) column holds.
_LARGEST_ID = 2**63 - 1


def create_app(config: Mapping[str, Any] | Settings | None = None) -> Flask:
    """Build the app. `config` is a mapping of settings overriding every other layer, or a
    ready Settings. Raises ConfigError (one line) on bad configuration or content."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.extensions["slussen.settings"] = settings
    app.config.update(
        SECRET_KEY=_secret_key(settings),
        WTF_CSRF_ENABLED=settings.csrf_enabled,
        WTF_CSRF_TIME_LIMIT=None,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        SESSION_COOKIE_NAME="slussen_session",
        MAX_CONTENT_LENGTH=1024 * 1024,
        BABEL_DEFAULT_LOCALE=settings.default_locale,
        BABEL_DEFAULT_TIMEZONE=settings.timezone,
        TESTING=settings.env == "testing",
    )

    if settings.proxy_count:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Trust exactly the proxies we run: the client address (rate limits, access log) and
        # the scheme come from their X-Forwarded-For/-Proto headers.
        n = settings.proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]

    db.init_app(app, settings.sqlalchemy_url)
    sessions.init_app(app)  # first: its timeout message precedes the login redirect and CSRF
    throttle.init_app(app, settings)
    csrf.init_app(app)
    babel.init_app(app, locale_selector=_select_locale)
    _install_fast_gettext(app)

    app.extensions["slussen.content"] = capabilities.load_content(settings)
    # The case page shows what the capabilities above cases add to it, in this order.
    app.extensions["slussen.case_panels"] = (visits_panel, questionnaire_panel)
    # The long forms whose post is kept when the session timed out before it was submitted.
    app.extensions[sessions.POST_KEEPERS] = dict(visits_post_keepers)

    auth.init_app(app)
    # Before any rule is added: every <int:…> in a path is a database id.
    app.url_map.converters["int"] = IdConverter
    app.register_blueprint(accounts_bp)
    app.register_blueprint(core_bp)
    app.register_blueprint(accesslog_bp)
    app.register_blueprint(intake_bp)
    app.register_blueprint(cases_bp)
    app.register_blueprint(visits_bp)
    app.register_blueprint(directory_bp)
    app.register_blueprint(questionnaires_bp)
    app.register_blueprint(evaluation_bp)
    app.register_blueprint(letters_bp)
    app.register_blueprint(associations_bp)
    app.register_blueprint(admin_bp)

    _register_error_pages(app)
    _register_security_headers(app)

    @app.before_request
    def _remember_settings() -> None:
        g.settings = settings

    @app.before_request
    def _refuse_nul() -> None:
        # No person types a NUL, and PostgreSQL refuses one in any text: the request is garbage
        # or an attack, refused before any view reads it (the forms refuse other control
        # characters next to the field, keeping what was typed).
        values = [*request.args.values(), *request.form.values(), request.path]
        if any("\x00" in value for value in values):
            raise Invalid("Förfrågan innehöll ett tecken som inte är tillåtet.")

    return app


def _csp() -> str:
    """The Content-Security-Policy. With the federated login on, a form may also lead to the
    identity provider: the logout button's POST is answered with a redirect to the provider's
    end-session endpoint, and browsers hold a form's redirects to `form-action` too."""
    settings = _settings()
    if not settings.oidc_enabled:
        return CSP
    client = current_app.extensions.get("slussen.oidc")
    origins = " ".join(sorted(provider_origins(settings, client)))
    return CSP.replace("form-action 'self'", f"form-action 'self' {origins}")


def _register_security_headers(app: Flask) -> None:
    @app.after_request
    def _headers(response: Any) -> Any:
        response.headers["Content-Security-Policy"] = _csp()
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if g.get(NO_STORE_FLAG) or request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        return response


def _register_error_pages(app: Flask) -> None:
    def _page(code: int) -> ResponseReturnValue:
        return render_template("error.html", code=code), code

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        code = exc.code or 500
        return render_template("error.html", code=code), code

    @app.errorhandler(DomainError)
    def _refused(exc: DomainError) -> ResponseReturnValue:
        # The one place a service's refusal becomes a page: its status and its Swedish message.
        # The response's status rolls the request's transaction back (slussen.db).
        return render_template("error.html", code=exc.status, message=exc.message), exc.status

    @app.errorhandler(CSRFError)
    def _csrf_error(_exc: CSRFError) -> ResponseReturnValue:
        return render_template("error.html", code=400, csrf=True), 400

    @app.errorhandler(OperationalError)
    def _database_unavailable(_exc: OperationalError) -> ResponseReturnValue:
        app.logger.exception("database error")
        return render_template("error.html", code=503), 503

    @app.errorhandler(Exception)
    def _server_error(_exc: Exception) -> ResponseReturnValue:
        app.logger.exception("unhandled error")
        return _page(500)
