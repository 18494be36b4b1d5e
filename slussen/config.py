"""Typed, frozen settings read once in create_app.

Layers, later ones winning: `config/default.toml`, `config/<env>.toml` when present, the TOML file
named by `SLUSSEN_CONFIG`, `SLUSSEN_*` environment variables, and the mapping given to
`create_app(config=...)`. Every value is checked at start; an unknown key or a bad value raises
`ConfigError` with one line naming the key and where it came from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from slussen.identifiers import ReserveFormat
from slussen.paths import shipped_dir

ENVIRONMENTS = ("development", "testing", "production")
#: The zone of dates and clock times people see, unless `timezone` says otherwise.
DEFAULT_TIMEZONE = "Europe/Stockholm"
#: Environment variables with the SLUSSEN_ prefix that are not settings.
_NOT_SETTINGS = ("SLUSSEN_CONFIG",)
_NOT_SETTINGS_PREFIXES = ("SLUSSEN_TEST_", "SLUSSEN_REQUIRE_", "SLUSSEN_BENCH_")
#: Secrets that ship in examples and must never run in production.
_KNOWN_DEFAULT_SECRETS = {"", "REPLACE-ME", "change-me", "changeme", "secret", "dev", "development"}


class ConfigError(Exception):
    """A setting is unknown or invalid; the message is one line a person can act on."""


@dataclass(frozen=True)
class Settings:
    """Every setting Slussen reads. Add a field here and a documented default in default.toml."""

    env: str = "development"
    secret_key: str = field(default="", repr=False)
    database_url: str = ""
    #: The schema owner's URL, for `slussen init-db` only; empty means `database_url`. On
    #: PostgreSQL the app's own role must not own the access log's tables.
    migration_database_url: str = ""
    instance_dir: str = "instance"
    keyring_path: str = ""
    #: The file `slussen audit checkpoint` appends the access-log chains' heads to.
    audit_checkpoint_path: str = ""
    content_dir: str = ""
    default_locale: str = "sv"
    timezone: str = DEFAULT_TIMEZONE
    session_idle_minutes: int = 20
    #: The idle timeout in seconds instead, when above 0: for tests and demonstrations of the
    #: timeout only (refused in production).
    session_idle_seconds: int = 0
    session_absolute_hours: int = 10
    ratelimit_storage_uri: str = "memory://"
    require_totp: bool = False
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    serve_host: str = "127.0.0.1"
    serve_port: int = 5000
    serve_workers: int = 2
    #: Small-number suppression in evaluation: counts below k are hidden, no statistic on < k.
    suppression_k: int = 5
    #: How many reverse proxies (nginx…) stand in front and set X-Forwarded-For/-Proto; their
    #: values are trusted only when this is at least 1 (werkzeug's ProxyFix).
    proxy_count: int = 0
    #: Only tests switch CSRF off, and never in the CSRF tests.
    csrf_enabled: bool = True
    #: Days an answer code printed on a letter stays valid.
    answer_code_days: int = 60
    #: Let forms whose text is a DEMO placeholder (a licensed instrument) be used. Development only.
    use_demo_forms: bool = False
    #: The envelope window of letters, in millimetres from the sheet's top and left edges.
    letter_window_top_mm: int = 45
    letter_window_left_mm: int = 20
    letter_window_width_mm: int = 90
    letter_window_height_mm: int = 35
    #: Print enclosed forms in large print (16 pt instead of 12 pt).
    letter_forms_large_print: bool = False
    #: Slussen's public address (https://slussen.example.se): every absolute URL (letters' QR
    #: codes and answer links, the iCal feed) is built on it, never on a request's Host header.
    #: Required in production; empty elsewhere means http://<serve_host>:<serve_port>.
    public_base_url: str = ""
    #: The region's reservnummer (reserve identity numbers for people without a personnummer):
    #: the issuing system's OID (empty: no reservnummer can be entered), the value's shape as a
    #: regular expression (upper case, no spaces or hyphens), its check digit rule ("none" or
    #: "luhn") and an example for the field's hint (it must be valid itself).
    reserve_number_issuer: str = ""
    reserve_number_pattern: str = "[A-Z0-9]{4,20}"
    reserve_number_check: str = "none"
    reserve_number_example: str = ""
    #: Federated staff login (OpenID Connect): the region's identity provider. An empty issuer
    #: turns it off. The issuer is the URL its discovery document lives under
    #: (<issuer>/.well-known/openid-configuration); https:// in production.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = field(default="", repr=False)
    #: Scopes asked for, space separated ("openid" is always among them).
    oidc_scopes: str = "openid profile"
    #: How a login finds its user: "subject" (the provider's `sub`, linked by the administrator
    #: or at just-in-time provisioning) or "hsa_id" (the claim `oidc_hsa_id_claim`).
    oidc_match_on: str = "subject"
    #: The claim carrying the person's HSA-id, and the one carrying the HSA-id (or a list of
    #: HSA-ids) of the units they work in; empty: not read. With a unit claim, the user's units
    #: follow it at every login; without one they come from the administrator.
    oidc_hsa_id_claim: str = ""
    oidc_unit_claim: str = ""
    #: The `acr` values that count as strong authentication (space or comma separated): a login
    #: with another value (or none) may log in but never reaches patient data.
    oidc_strong_acr_values: str = ""
    #: Create a user at their first federated login; off means the administrator links each one.
    oidc_jit_provisioning: bool = False
    #: The role a just-in-time provisioned user gets.
    oidc_jit_role: str = "staff"
    #: How far the provider's clock may differ from ours when checking `exp` and `iat` (seconds).
    oidc_clock_skew_seconds: int = 60
    #: Seconds an unanswered call to the provider may take.
    oidc_timeout_seconds: int = 10
    #: Local passwords off for the whole installation: only federated login.
    local_passwords_disabled: bool = False

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    @property
    def oidc_strong_acrs(self) -> frozenset[str]:
        """The accepted strong-authentication `acr` values."""
        return frozenset(self.oidc_strong_acr_values.replace(",", " ").split())

    @property
    def reserve_format(self) -> ReserveFormat | None:
        """The region's reservnummer format, or None when it has none."""
        if not self.reserve_number_issuer:
            return None
        return ReserveFormat(
            issuer=self.reserve_number_issuer,
            pattern=self.reserve_number_pattern,
            check=self.reserve_number_check,
            example=self.reserve_number_example,
        )

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def instance_path(self) -> Path:
        return Path(self.instance_dir).resolve()

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver SQLAlchemy should use."""
        if not self.database_url:
            return f"sqlite:///{self.instance_path / 'slussen.sqlite3'}"
        return _with_driver(self.database_url)

    @property
    def migration_sqlalchemy_url(self) -> str:
        """The URL that changes the schema: the owner's, or the app's when none is set."""
        if not self.migration_database_url:
            return self.sqlalchemy_url
        return _with_driver(self.migration_database_url)

    @property
    def base_url(self) -> str:
        """The address every absolute URL starts with (no trailing slash)."""
        base = self.public_base_url or f"http://{self.serve_host}:{self.serve_port}"
        return base.rstrip("/")

    def absolute_url(self, path: str) -> str:
        """`path` within Slussen (e.g. "/svar/K7QM4TZX9C") as an absolute URL on `base_url`."""
        return f"{self.base_url}/{path.lstrip('/')}"

    @property
    def session_idle_timeout(self) -> dt.timedelta:
        """How long a session may go without a request (`session_idle_seconds` or minutes)."""
        if self.session_idle_seconds:
            return dt.timedelta(seconds=self.session_idle_seconds)
        return dt.timedelta(minutes=self.session_idle_minutes)

    @property
    def totp_required(self) -> bool:
        return self.require_totp or self.is_production

    @property
    def resolved_keyring_path(self) -> Path:
        if self.keyring_path:
            return Path(self.keyring_path)
        return self.instance_path / "keyring.json"

    @property
    def resolved_audit_checkpoint_path(self) -> Path:
        if self.audit_checkpoint_path:
            return Path(self.audit_checkpoint_path)
        return self.instance_path / "audit-checkpoints.jsonl"

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied and validated again."""
        return _validated(dataclasses.replace(self, **changes), "replace()")


def _with_driver(database_url: str) -> str:
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


_FIELDS = {f.name: f for f in fields(Settings)}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _FIELDS[name].type
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
            return False
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
    elif kind == "str":
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a new field type needs a branch here
        raise AssertionError(f"no coercion for {kind}")
    raise ConfigError(f"setting {name!r} from {source} must be a {kind}, not {value!r}")


def _layer(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r} in {source}")
        out[key] = _coerce(key, value, source)
    return out


def _environ_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("SLUSSEN_") or name in _NOT_SETTINGS:
            continue
        if name.startswith(_NOT_SETTINGS_PREFIXES):
            continue
        key = name[len("SLUSSEN_") :].lower()
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting {key!r} in environment variable {name}")
        values[key] = _coerce(key, value, f"environment variable {name}")
    return values


def _validated(settings: Settings, source: str) -> Settings:
    if settings.env not in ENVIRONMENTS:
        raise ConfigError(f"setting 'env' ({source}) must be one of {', '.join(ENVIRONMENTS)}")
    for name in ("database_url", "migration_database_url"):
        try:
            url = make_url(
                settings.sqlalchemy_url
                if name == "database_url"
                else settings.migration_sqlalchemy_url
            )
        except ArgumentError:
            raise ConfigError(
                f"setting {name!r} is not a database URL: {getattr(settings, name)!r}"
            ) from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ConfigError(
                f"setting {name!r} must be sqlite:///PATH or postgresql://USER@HOST/DB, "
                f"not {url.get_backend_name()!r}"
            )
    for name in (
        "session_idle_minutes",
        "session_absolute_hours",
        "serve_workers",
        "answer_code_days",
    ):
        if getattr(settings, name) < 1:
            raise ConfigError(f"setting {name!r} must be at least 1")
    if settings.session_idle_seconds < 0 or (
        settings.is_production and settings.session_idle_seconds
    ):
        raise ConfigError(
            "setting 'session_idle_seconds' is for tests only: use session_idle_minutes"
        )
    if settings.suppression_k < 1:
        raise ConfigError("setting 'suppression_k' must be at least 1")
    if not 0 <= settings.proxy_count <= 5:
        raise ConfigError("setting 'proxy_count' must be between 0 and 5")
    if not 1 <= settings.serve_port <= 65535:
        raise ConfigError("setting 'serve_port' must be between 1 and 65535")
    if settings.default_locale not in ("sv", "en"):
        raise ConfigError("setting 'default_locale' must be 'sv' or 'en'")
    top, left = settings.letter_window_top_mm, settings.letter_window_left_mm
    width, height = settings.letter_window_width_mm, settings.letter_window_height_mm
    if not (left >= 0 and left + width <= 210 and top >= 38 and top + height <= 130):
        raise ConfigError(
            "settings 'letter_window_*' must put the window below the letterhead on the upper "
            "part of an A4 sheet (left + width <= 210 mm, top >= 38 mm, top + height <= 130 mm)"
        )
    if width < 50 or height < 20:
        raise ConfigError("the letter window must be at least 50 x 20 mm (letter_window_*)")
    if settings.public_base_url and not settings.public_base_url.startswith(
        ("https://", "http://")
    ):
        raise ConfigError("setting 'public_base_url' must start with https://")
    try:
        settings.reserve_format  # noqa: B018 - built to check it
    except ValueError as exc:
        raise ConfigError(f"settings 'reserve_number_*': {exc}") from None
    _check_oidc(settings)
    if settings.argon2_time_cost < 1 or settings.argon2_memory_kib < 8:
        raise ConfigError("settings 'argon2_time_cost'/'argon2_memory_kib' are too small")
    if settings.is_production:
        if settings.secret_key in _KNOWN_DEFAULT_SECRETS or len(settings.secret_key) < 32:
            raise ConfigError(
                "setting 'secret_key' is missing or a default: production needs a random secret of "
                "at least 32 characters (SLUSSEN_SECRET_KEY)"
            )
        if not settings.keyring_path:
            raise ConfigError("setting 'keyring_path' is required in production (SLUSSEN_KEYRING)")
        if settings.use_demo_forms:
            raise ConfigError(
                "setting 'use_demo_forms' is refused in production: DEMO placeholder text is not "
                "an instrument (supply the licensed text instead, see docs/forms.md)"
            )
        if settings.argon2_time_cost < 2 or settings.argon2_memory_kib < 19456:
            raise ConfigError("argon2 cost below OWASP's minimum is not allowed in production")
        if not settings.public_base_url.startswith("https://"):
            raise ConfigError(
                "setting 'public_base_url' (https://…) is required in production "
                "(SLUSSEN_PUBLIC_BASE_URL)"
            )
    return settings


def _check_oidc(settings: Settings) -> None:
    """The federated login's settings hang together (only checked when it is turned on)."""
    if settings.local_passwords_disabled and not settings.oidc_enabled:
        raise ConfigError(
            "setting 'local_passwords_disabled' needs 'oidc_issuer': nobody could log in"
        )
    if not settings.oidc_enabled:
        return
    if not settings.oidc_issuer.startswith(("https://", "http://")):
        raise ConfigError("setting 'oidc_issuer' must be the provider's https:// URL")
    if settings.is_production and not settings.oidc_issuer.startswith("https://"):
        raise ConfigError("setting 'oidc_issuer' must start with https:// in production")
    if not settings.oidc_client_id or not settings.oidc_client_secret:
        raise ConfigError("settings 'oidc_client_id' and 'oidc_client_secret' are required")
    if settings.oidc_match_on not in ("subject", "hsa_id"):
        raise ConfigError("setting 'oidc_match_on' must be 'subject' or 'hsa_id'")
    if settings.oidc_match_on == "hsa_id" and not settings.oidc_hsa_id_claim:
        raise ConfigError("setting 'oidc_match_on' = 'hsa_id' needs 'oidc_hsa_id_claim'")
    if not settings.oidc_strong_acrs:
        raise ConfigError(
            "setting 'oidc_strong_acr_values' must name the acr values of strong authentication"
        )
    if not 0 <= settings.oidc_clock_skew_seconds <= 300:
        raise ConfigError("setting 'oidc_clock_skew_seconds' must be between 0 and 300")
    if not 1 <= settings.oidc_timeout_seconds <= 60:
        raise ConfigError("setting 'oidc_timeout_seconds' must be between 1 and 60")


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate every layer; raise ConfigError naming the first bad key."""
    environ = os.environ if environ is None else environ
    config_dir = shipped_dir("config")
    default_layer = _layer(_read_toml(config_dir / "default.toml"), "config/default.toml")

    file_layer: dict[str, Any] = {}
    if environ.get("SLUSSEN_CONFIG"):
        path = Path(environ["SLUSSEN_CONFIG"])
        file_layer = _layer(_read_toml(path), str(path))
    env_vars = dict(environ)
    # SLUSSEN_KEYRING is the documented name of the key ring path (README, docs/install.md).
    if "SLUSSEN_KEYRING" in env_vars:
        env_vars["SLUSSEN_KEYRING_PATH"] = env_vars.pop("SLUSSEN_KEYRING")
    environ_layer = _environ_layer(env_vars)
    override_layer = _layer(overrides or {}, "create_app(config=...)")

    env = "development"
    for layer in (default_layer, file_layer, environ_layer, override_layer):
        env = layer.get("env", env)
    env_file = config_dir / f"{env}.toml"
    env_layer = _layer(_read_toml(env_file), f"config/{env}.toml") if env_file.exists() else {}

    merged: dict[str, Any] = {}
    for layer in (default_layer, env_layer, file_layer, environ_layer, override_layer):
        merged.update(layer)
    return _validated(Settings(**merged), "configuration")


def local_zone(settings: Settings | None = None) -> ZoneInfo:
    """The zone of the dates and clock times people see: `Settings.timezone` of `settings`, else
    of the current app; outside any app (a pure calculation in a test or script) the default."""
    if settings is None and has_app_context():
        settings = current_app.extensions.get("slussen.settings")
    return _zone(settings.timezone if settings is not None else DEFAULT_TIMEZONE)


@functools.cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def today_local(settings: Settings | None = None) -> dt.date:
    """Today's date in the local zone (see `local_zone`)."""
    return dt.datetime.now(local_zone(settings)).date()
