"""Account rules: creating and disabling users, the two login steps, TOTP and recovery codes,
password changes, and ending sessions.

A user's TOTP secret is sealed with the user's own data key (`_seal`/`_unseal`, the one place an
account secret is encrypted), so a copy of the database gives no second factor away; resetting
TOTP destroys that key."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import pyotp
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from slussen import audit, vault
from slussen.accounts.models import Membership, RecoveryCode, Unit, User, WebSession
from slussen.accounts.oidc import OidcRefused, VerifiedLogin
from slussen.accounts.passwords import (
    check_password_rules,
    dummy_verify,
    hash_password,
    verify_password,
)
from slussen.accounts.roles import PATIENT_DATA_ROLES, Permission, Role, grants
from slussen.audit import Actor
from slussen.config import Settings
from slussen.db import utcnow
from slussen.errors import Invalid, NotFound, NotPermitted
from slussen.keystore import Keystore, current_key_ring
from slussen.text import is_digits

#: TOTP per RFC 6238 as authenticator apps expect: 6 digits, 30-second steps (ASVS 6.5.5).
TOTP_DIGITS = 6
TOTP_STEP_SECONDS = 30
#: Steps accepted either side of now, for clocks that drift (ASVS/WEB-8: ±1 step).
TOTP_WINDOW = 1
TOTP_ISSUER = "Slussen"
#: Recovery codes: ten of ten characters from an alphabet without 0/O, 1/I/L (about 50 bits each,
#: too few to withstand a search of a plain hash: stored keyed, see `_recovery_hash`).
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_LENGTH = 10
RECOVERY_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


class SecondFactorRefused(Invalid):
    """A TOTP or recovery code is wrong, already used, or the account has no second factor."""


def unit_id_of(session: Session, hsa_id: str) -> int:
    """The id of the unit with this HSA-id; refuses (NotFound) an unknown one."""
    unit_id = session.scalar(select(Unit.id).where(Unit.hsa_id == hsa_id))
    if unit_id is None:
        raise NotFound(f"Ingen enhet har HSA-id {hsa_id}.")
    return unit_id


def check_new_password(
    session: Session,
    password: str,
    *,
    username: str,
    display_name: str,
    unit_ids: Iterable[int],
    has_second_factor: bool,
    current_password: str | None = None,
) -> None:
    """The one check of a password about to be set (creating a user, changing a password):
    refuses (PasswordRejected, in Swedish, saying which rule) one that is too short or too long,
    equals `current_password`, contains the username, "slussen" or the name of one of the units
    `unit_ids`, is on the block list, or is easy to guess (zxcvbn, knowing the username, display
    name and unit names); see `passwords.check_password_rules`."""
    ids = list(unit_ids)
    unit_names = session.scalars(select(Unit.name).where(Unit.id.in_(ids))).all() if ids else []
    check_password_rules(
        password,
        has_second_factor=has_second_factor,
        username=username,
        display_name=display_name,
        unit_names=unit_names,
        current_password=current_password,
    )


def create_user(
    session: Session,
    settings: Settings,
    *,
    username: str,
    display_name: str,
    role: str,
    password: str | None,
    unit_ids: list[int] | tuple[int, ...] = (),
    unit_hsa_ids: list[str] | tuple[str, ...] = (),
    password_hash: str | None = None,
) -> User:
    """Create a user with an argon2id password hash, member of the units named by id or by
    HSA-id; with `password` None the user has no password yet (`NO_PASSWORD`: they set one
    through an administrator's one-time link). Refuses an unknown role, a taken username, an
    unknown unit, and (PasswordRejected) a password that `check_new_password` refuses."""
    unit_ids = [*unit_ids, *(unit_id_of(session, hsa_id) for hsa_id in unit_hsa_ids)]
    username = username.strip().lower()
    if not username or len(username) > 80:
        raise Invalid("Användarnamnet måste ha 1–80 tecken.", field="username")
    try:
        Role(role)
    except ValueError:
        raise Invalid(f"Okänd roll: {role}.") from None
    if session.scalar(select(func.count()).where(User.username == username)):
        raise Invalid(f"Användarnamnet {username} är redan taget.", field="username")
    display_name = display_name.strip() or username
    if password is not None:
        check_new_password(
            session,
            password,
            username=username,
            display_name=display_name,
            unit_ids=unit_ids,
            has_second_factor=False,
        )
    user = User(
        username=username,
        display_name=display_name,
        role=role,
        # A caller creating many users with one password (the demo) may pass its hash.
        password_hash=password_hash
        or (NO_PASSWORD if password is None else hash_password(settings, password)),
    )
    for unit_id in unit_ids:
        if session.get(Unit, unit_id) is None:
            raise Invalid(f"Enheten {unit_id} finns inte.")
        user.memberships.append(Membership(unit_id=unit_id))
    session.add(user)
    session.flush()
    return user


def check_password_login(
    session: Session, settings: Settings, username: str, password: str
) -> User | None:
    """The active user with this username and password, or None; changes nothing. Refuses an
    unknown username, a wrong password and a disabled account alike, spending the same time on an
    unknown username as on a wrong password."""
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        dummy_verify(settings)
        return None
    if not verify_password(settings, user.password_hash, password) or not user.is_active:
        return None
    return user


def authenticate(session: Session, settings: Settings, username: str, password: str) -> User | None:
    """Like `check_password_login`, and records the login time. For password-only callers; the
    web login goes through `check_password_login` and `complete_login`."""
    user = check_password_login(session, settings, username, password)
    if user is not None:
        user.last_login_at = utcnow()
    return user


def has_second_factor(user: User) -> bool:
    return user.totp_secret_enc is not None


# --- sealed account secrets ----------------------------------------------------------------------

#: Where each sealed account secret is bound (table, column; the row is the user's id).
TOTP_SECRET_FIELD = ("users", "totp_secret")
PENDING_TOTP_FIELD = ("web_sessions", "totp_setup")


def _seal(store: Keystore, user: User, field: tuple[str, str], text: str) -> bytes:
    """Encrypt a secret of `user` with the user's data key (made now if the user has none),
    bound to `field` and the user's id."""
    if user.data_key_id is None:
        user.data_key_id = store.new_key().id
    table, column = field
    return store.cipher(user.data_key_id).encrypt(text, table=table, column=column, row_id=user.id)


def _unseal(store: Keystore, user: User, field: tuple[str, str], blob: bytes) -> str:
    """Decrypt what `_seal` wrote; refuses (VaultError) a blob not sealed for this user and
    field, or whose key was destroyed."""
    if user.data_key_id is None:
        raise vault.DecryptionError("the account has no data key")
    table, column = field
    return store.cipher(user.data_key_id).decrypt_str(
        blob, table=table, column=column, row_id=user.id
    )


def needs_totp_enrolment(settings: Settings, user: User) -> bool:
    """Whether the user must set up TOTP before they may log in: required (production, or
    `require_totp`) for every role that sees patient data, and not yet set up."""
    if not settings.totp_required or has_second_factor(user):
        return False
    try:
        return Role(user.role) in PATIENT_DATA_ROLES
    except ValueError:
        return True  # an unknown role gets the stricter rule


def complete_login(
    session: Session, settings: Settings, ring: vault.KeyRing, user: User, *, method: str
) -> None:
    """Record a finished login: the time on the user, an audit row `login` naming `method`, and
    a purge of expired sessions (cheap, and keeps the table small between daily ticks). Refuses
    (Invalid) a disabled account. The caller commits."""
    if not user.is_active:
        raise Invalid("Kontot är avstängt.")
    user.last_login_at = utcnow()
    audit.record(session, ring, Actor.of(user), "login", "user", user.id, purpose=method)
    purge_expired_sessions(session, settings)
    session.flush()


def record_failed_login(
    session: Session,
    ring: vault.KeyRing,
    username_attempted: str,
    *,
    user: User | None = None,
    reason: str = "wrong username or password",
) -> None:
    """Write an audit row `login_failed`. Before the password is known to be right the actor is
    only the name typed (the row must not say whether the account exists); after it, the user.
    The caller commits."""
    if user is not None:
        actor = Actor.of(user)
        object_id: str | int = user.id
    else:
        actor = Actor(None, username_attempted.strip()[:80], "unknown")
        object_id = "-"
    audit.record(session, ring, actor, "login_failed", "user", object_id, purpose=reason)


def record_logout(
    session: Session, ring: vault.KeyRing, user: User, *, purpose: str = "logout"
) -> None:
    """Write an audit row `logout`. The caller commits."""
    audit.record(session, ring, Actor.of(user), "logout", "user", user.id, purpose=purpose)


# --- federated login (OpenID Connect) ------------------------------------------------------------

#: A password hash no password matches: a user made by federated login has no local password.
NO_PASSWORD = "!"  # noqa: S105 - not a password: a hash that matches none
#: What the access log calls a person the provider named but Slussen does not know.
UNKNOWN_PERSON = "(okänd)"


def local_password_refusal(settings: Settings, user: User | None) -> str | None:
    """Why a local password may not be used (for the whole installation, or for `user`), as a
    sentence for the login page; None when it may."""
    if settings.local_passwords_disabled:
        return "Inloggning med lösenord är avstängd i Slussen. Logga in med regionens inloggning."
    if user is not None and user.is_local_password_disabled:
        return (
            "Inloggning med lösenord är avstängd för ditt konto. Logga in med regionens inloggning."
        )
    return None


def _claim_text(claims: dict[str, object], name: str) -> str:
    value = claims.get(name) if name else None
    return value.strip() if isinstance(value, str) else ""


def _claim_list(claims: dict[str, object], name: str) -> list[str]:
    value = claims.get(name) if name else None
    if isinstance(value, str):
        return [value.strip()]
    if isinstance(value, list):
        return [v.strip() for v in value if isinstance(v, str)]
    return []


def _free_username(session: Session, wanted: str) -> str:
    base = re.sub(r"[^a-z0-9._-]+", "-", wanted.lower()).strip("-")[:70] or "person"
    name, number = base, 1
    while session.scalar(select(func.count()).where(User.username == name)):
        number += 1
        name = f"{base}-{number}"
    return name


def federated_user(session: Session, settings: Settings, login: VerifiedLogin) -> User:
    """The user a verified federated login is: the one linked to the provider's subject, or
    (`oidc_match_on = "hsa_id"`) the one with the HSA-id of the claim `oidc_hsa_id_claim`, who is
    then linked to the subject. With just-in-time provisioning on, a person not yet known is
    created with the role `oidc_jit_role` and no local password. With `oidc_unit_claim`, the
    user's units are set to the units (by HSA-id) that claim names, at every login.

    Refuses (OidcRefused) a person who matches no user while provisioning is off, a subject
    linked to another user than the HSA-id's, and a disabled account. The caller commits."""
    hsa_id = _claim_text(login.claims, settings.oidc_hsa_id_claim)[:31]
    by_subject = session.scalar(select(User).where(User.oidc_subject == login.subject))
    user = by_subject
    if settings.oidc_match_on == "hsa_id":
        user = session.scalar(select(User).where(User.hsa_id == hsa_id)) if hsa_id else None
        if user is not None and by_subject is not None and by_subject.id != user.id:
            raise OidcRefused(
                "Din inloggning är kopplad till ett annat konto än ditt HSA-id. Kontakta "
                "Slussens administratör.",
                reason="subjektet var kopplat till ett annat konto än HSA-id:t",
                subject=login.subject,
            )
    if user is None:
        if not settings.oidc_jit_provisioning:
            raise OidcRefused(
                "Du har inget konto i Slussen. Be Slussens administratör att lägga upp dig; "
                "inloggningen hos regionen fungerade.",
                reason="ingen användare i Slussen är kopplad till personen",
                subject=login.subject,
            )
        user = User(
            username=_free_username(session, hsa_id or f"idp-{login.subject}"),
            display_name=(_claim_text(login.claims, "name") or hsa_id or login.subject)[:200],
            role=Role(settings.oidc_jit_role).value,
            password_hash=NO_PASSWORD,
            hsa_id=hsa_id or None,
            is_active=True,
            is_local_password_disabled=True,
        )
        session.add(user)
    if user.oidc_subject is None:
        user.oidc_subject = login.subject
    if hsa_id and user.hsa_id is None:
        user.hsa_id = hsa_id
    if not user.is_active:
        raise OidcRefused(
            "Ditt konto i Slussen är avstängt. Kontakta Slussens administratör.",
            reason="kontot är avstängt",
            subject=login.subject,
        )
    if settings.oidc_unit_claim:
        wanted = set(_claim_list(login.claims, settings.oidc_unit_claim))
        unit_ids = (
            set(session.scalars(select(Unit.id).where(Unit.hsa_id.in_(wanted))))
            if wanted
            else set()
        )
        user.memberships[:] = [m for m in user.memberships if m.unit_id in unit_ids]
        for unit_id in sorted(unit_ids - user.unit_ids):
            user.memberships.append(Membership(unit_id=unit_id))
    session.flush()
    return user


def federated_purpose(what: str, subject: str, acr: str = "") -> str:
    """An access-log purpose of the federated login, naming the provider's subject."""
    level = f", nivå {acr}" if acr else ""
    return f"{what} (regionens inloggning, subjekt {subject or UNKNOWN_PERSON}{level})"[:200]


def record_federated_refusal(
    session: Session,
    ring: vault.KeyRing,
    refusal: OidcRefused,
    *,
    user: User | None = None,
    acr: str = "",
) -> None:
    """Write the audit row `login_failed` of a refused federated login (or of a weak one
    refused patient data), naming the reason and the provider's subject. The caller commits."""
    record_failed_login(
        session,
        ring,
        refusal.subject or UNKNOWN_PERSON,
        user=user,
        reason=federated_purpose(f"nekad: {refusal.reason}", refusal.subject, acr),
    )


def link_oidc_subject(
    session: Session,
    ring: vault.KeyRing,
    actor: Actor,
    user: User,
    subject: str,
    hsa_id: str = "",
) -> None:
    """Link `user` to the provider's subject (and their HSA-id), so a federated login with it
    is this user; the audit row `update user` names the subject. Refuses (Invalid) a subject or
    HSA-id another user has. The caller commits."""
    subject = subject.strip()
    if not subject or len(subject) > 255:
        raise Invalid("Subjektet måste ha 1–255 tecken.")
    other = session.scalar(select(User).where(User.oidc_subject == subject, User.id != user.id))
    if other is not None:
        raise Invalid(f"Subjektet är redan kopplat till {other.username}.")
    if hsa_id:
        other = session.scalar(select(User).where(User.hsa_id == hsa_id, User.id != user.id))
        if other is not None:
            raise Invalid(f"HSA-id:t är redan kopplat till {other.username}.")
        user.hsa_id = hsa_id
    user.oidc_subject = subject
    purpose = f"kopplad till regionens inloggning (subjekt {subject})"
    audit.record(session, ring, actor, "update", "user", user.id, purpose=purpose)
    session.flush()


def set_local_password(
    session: Session, ring: vault.KeyRing, actor: Actor, user: User, *, disabled: bool
) -> None:
    """Turn `user`'s local password login off (only the region's login) or on again, with the
    audit row `update user`. The caller commits."""
    user.is_local_password_disabled = disabled
    purpose = "lösenordsinloggning avstängd" if disabled else "lösenordsinloggning påslagen"
    audit.record(session, ring, actor, "update", "user", user.id, purpose=purpose)
    session.flush()


# --- TOTP ----------------------------------------------------------------------------------------


def new_totp_secret() -> str:
    """A random base32 TOTP secret (160 bits from the OS CSPRNG, ASVS 6.5.3)."""
    return pyotp.random_base32(32)


def start_totp_enrolment(store: Keystore, user: User) -> tuple[str, bytes]:
    """A new TOTP secret for `user` to enrol, and the same secret sealed with the user's data key
    (made now if the user has none), which is what the web session keeps until the user
    confirms a code: the session row never holds the secret in clear. Refuses
    (SecondFactorRefused) an account that has TOTP. The caller commits."""
    if has_second_factor(user):
        raise SecondFactorRefused("Tvåstegsverifiering är redan påslagen för kontot.")
    secret = new_totp_secret()
    return secret, _seal(store, user, PENDING_TOTP_FIELD, secret)


def pending_totp_secret(store: Keystore, user: User, sealed: bytes) -> str | None:
    """The secret `start_totp_enrolment` sealed for `user`; None when it cannot be opened (made
    for another user, or the user's data key was destroyed by a reset since)."""
    try:
        return _unseal(store, user, PENDING_TOTP_FIELD, sealed)
    except vault.VaultError:
        return None


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_SECONDS)


def totp_uri(secret: str, username: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return _totp(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)


def _matching_step(secret: str, code: str, now: dt.datetime, *, after: int | None) -> int | None:
    """The time step within ±TOTP_WINDOW of `now` whose code is `code`, later than `after`."""
    if not re.fullmatch(rf"\d{{{TOTP_DIGITS}}}", code):
        return None
    totp = _totp(secret)
    current = totp.timecode(now)
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if after is not None and step <= after:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _clean_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code).upper()


#: The blind-index kind of a recovery code's keyed hash; migration 0016 writes it too.
RECOVERY_HASH_KIND = "recovery-code"


def _recovery_hash(ring: vault.KeyRing, clean: str) -> str:
    # 31^10 codes (about 50 bits): a plain SHA-256 in a database copy is searched through in
    # hours, for every user at once. Keyed as an answer code is (questionnaires.codes.code_hash):
    # the blind index of the code's SHA-256, so 0016 converted the old hashes without the codes.
    plain = hashlib.sha256(clean.encode()).hexdigest()
    return vault.blind_index(ring, RECOVERY_HASH_KIND, plain)


def new_recovery_codes(session: Session, ring: vault.KeyRing, user: User) -> list[str]:
    """Replace the user's recovery codes with fresh ones and return them formatted `ABCDE-FGHJK`
    for showing once; only their keyed hashes (under `ring`) are stored."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [
        "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=_recovery_hash(ring, c)) for c in codes)
    session.flush()
    half = RECOVERY_CODE_LENGTH // 2
    return [f"{c[:half]}-{c[half:]}" for c in codes]


def unused_recovery_codes(session: Session, user: User) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def enrol_totp(
    session: Session,
    ring: vault.KeyRing,
    user: User,
    secret: str,
    code: str,
    *,
    now: dt.datetime | None = None,
) -> list[str]:
    """Turn on TOTP for `user` with `secret` once they prove their app shows `code`: the secret is
    sealed with the user's data key (made now if the user has none); write the audit row
    `totp_enrol` and return ten new recovery codes to show once. Refuses
    (SecondFactorRefused) a wrong code, and an account that already has TOTP (changing it is an
    administrator's reset). The caller commits."""
    if has_second_factor(user):
        raise SecondFactorRefused("Tvåstegsverifiering är redan påslagen för kontot.")
    step = _matching_step(secret, _clean_code(code), now or utcnow(), after=None)
    if step is None:
        raise SecondFactorRefused(
            "Koden stämmer inte. Kontrollera klockan i telefonen och försök igen."
        )
    user.totp_secret_enc = _seal(Keystore(session, ring), user, TOTP_SECRET_FIELD, secret)
    user.totp_last_counter = step
    user.totp_enrolled_at = utcnow()
    codes = new_recovery_codes(session, ring, user)
    audit.record(session, ring, Actor.of(user), "totp_enrol", "user", user.id, purpose="totp enrol")
    session.flush()
    return codes


@dataclass(frozen=True)
class SecondFactorUsed:
    """How the second step was passed: "totp" or "recovery_code" (then how many are left)."""

    method: str
    recovery_codes_left: int | None = None


def use_second_factor(
    session: Session,
    ring: vault.KeyRing,
    user: User,
    code: str,
    *,
    now: dt.datetime | None = None,
) -> SecondFactorUsed:
    """Accept a 6-digit TOTP code or an unused recovery code for `user`, and spend it: the TOTP
    time step is remembered so the same code (or an earlier one) is refused next time, and a
    recovery code is marked used. Refuses (SecondFactorRefused) anything else, including a user
    without TOTP. The caller commits."""
    refused = SecondFactorRefused("Koden stämmer inte eller är redan använd.")
    if user.totp_secret_enc is None:
        raise refused
    clean = _clean_code(code)
    if is_digits(clean):
        secret = _unseal(Keystore(session, ring), user, TOTP_SECRET_FIELD, user.totp_secret_enc)
        step = _matching_step(secret, clean, now or utcnow(), after=user.totp_last_counter)
        if step is None:
            raise refused
        # Conditional update: two requests racing with one code cannot both win.
        won = session.execute(
            update(User)
            .where(User.id == user.id)
            .where(or_(User.totp_last_counter.is_(None), User.totp_last_counter < step))
            .values(totp_last_counter=step)
            .execution_options(synchronize_session=False)
        )
        if getattr(won, "rowcount", 1) != 1:
            raise refused
        user.totp_last_counter = step
        session.flush()
        return SecondFactorUsed("totp")
    if len(clean) != RECOVERY_CODE_LENGTH or set(clean) - set(RECOVERY_ALPHABET):
        raise refused
    used = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _recovery_hash(ring, clean),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(used, "rowcount", 0) != 1:
        raise refused
    session.flush()
    return SecondFactorUsed("recovery_code", unused_recovery_codes(session, user))


# --- passwords, disabling, sessions ------------------------------------------------------------


def change_password(
    session: Session,
    settings: Settings,
    user: User,
    current_password: str,
    new_password: str,
    *,
    keep_session_id: str | None = None,
) -> None:
    """Set a new password after checking the current one, and end the user's other sessions
    (every session but `keep_session_id`). Refuses (Invalid) a wrong current password and
    (PasswordRejected) a new password `check_new_password` refuses, the current one included:
    8 characters are enough with TOTP, 15 without. The caller commits."""
    if not verify_password(settings, user.password_hash, current_password):
        raise Invalid("Det nuvarande lösenordet stämmer inte.")
    check_new_password(
        session,
        new_password,
        username=user.username,
        display_name=user.display_name,
        unit_ids=[m.unit_id for m in user.memberships],
        has_second_factor=has_second_factor(user),
        current_password=current_password,
    )
    user.password_hash = hash_password(settings, new_password)
    others = delete(WebSession).where(WebSession.user_id == user.id)
    if keep_session_id is not None:
        others = others.where(WebSession.id != keep_session_id)
    session.execute(others)
    session.flush()


def disable_user(
    session: Session, actor: Actor, user: User, *, ring: vault.KeyRing | None = None
) -> None:
    """Disable `user`: they can no longer log in, and every session they have open ends at once
    (ASVS 7.4.2); writes the audit row `account_disable`. Refuses (NotPermitted) an actor who is
    not an administrator or the system, and an administrator disabling themself (so the last
    administrator cannot lock everyone out by mistake). `ring` defaults to the app's key ring.
    The caller commits."""
    if not (grants(actor.role, Permission.ADMINISTER) or actor.role == "system"):
        raise NotPermitted("Bara en administratör kan stänga av konton.")
    if actor.user_id is not None and actor.user_id == user.id:
        raise NotPermitted("Du kan inte stänga av ditt eget konto.")
    if ring is None:
        ring = current_key_ring()
    user.is_active = False
    end_user_sessions(session, user)
    audit.record(
        session, ring, actor, "account_disable", "user", user.id, purpose="kontot stängdes av"
    )
    session.flush()


def reset_totp(session: Session, ring: vault.KeyRing, actor: Actor, user: User) -> None:
    """Turn TOTP off for `user` (a lost phone): the user's data key is destroyed, so the sealed
    secret, and any secret pending in a half-done enrolment, can never be read again; the
    recovery codes are deleted and the user's sessions end. The user sets up TOTP afresh at the
    next login. Writes the audit row `totp_reset`. Refuses (NotPermitted) an actor who is not an
    administrator or the system, and (Invalid) an account without TOTP. The caller commits."""
    if not (grants(actor.role, Permission.ADMINISTER) or actor.role == "system"):
        raise NotPermitted("Bara en administratör kan återställa tvåstegsverifiering.")
    if not has_second_factor(user):
        raise Invalid(f"Kontot {user.username} har ingen tvåstegsverifiering.")
    if user.data_key_id is not None:
        Keystore(session, ring).destroy(user.data_key_id)
    user.data_key_id = None
    user.totp_secret_enc = None
    user.totp_last_counter = None
    user.totp_enrolled_at = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    end_user_sessions(session, user)
    audit.record(
        session,
        ring,
        actor,
        "totp_reset",
        "user",
        user.id,
        purpose="tvåstegsverifieringen återställdes",
    )
    session.flush()


def end_user_sessions(session: Session, user: User) -> int:
    """Delete every session of `user` (they are logged out everywhere); return how many."""
    result = session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    return int(getattr(result, "rowcount", 0) or 0)


def purge_expired_sessions(
    session: Session, settings: Settings, *, now: dt.datetime | None = None
) -> int:
    """Delete every session past its idle or absolute timeout, logged in or anonymous; return
    how many. Expired sessions are refused when used anyway; this keeps the table small (called
    at each login and meant for the daily tick). The caller commits."""
    now = now or utcnow()
    result = session.execute(
        delete(WebSession).where(
            or_(
                WebSession.last_seen_at < now - dt.timedelta(minutes=settings.session_idle_minutes),
                WebSession.created_at < now - dt.timedelta(hours=settings.session_absolute_hours),
            )
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def set_opening_hours(
    session: Session, unit: Unit, *, opens: str, closes: str, weekdays: str
) -> Unit:
    """Set a unit's opening hours (local clock times "08.00" or "08:00", and the open weekdays
    as ISO digits, "12345" for Monday to Friday); a visit booked outside them warns the coach.

    Refuses a time that is not a clock time, a closing time not after the opening time, and
    weekdays other than the digits 1–7 (Invalid)."""

    def clock(text: str, what: str, field: str) -> dt.time:
        try:
            return dt.datetime.strptime(text.strip().replace(".", ":"), "%H:%M").time()
        except ValueError:
            raise Invalid(f"{what} ska vara en tid, till exempel 08.00.", field=field) from None

    opens_at = clock(opens, "Öppningstiden", "opens")
    closes_at = clock(closes, "Stängningstiden", "closes")
    if closes_at <= opens_at:
        raise Invalid("Vårdcentralen måste stänga senare än den öppnar.", field="closes")
    days = "".join(sorted(set(weekdays.strip())))
    if not days or not set(days) <= set("1234567"):
        raise Invalid(
            "Ange öppna veckodagar som siffror 1–7 (1 är måndag), till exempel 12345.",
            field="weekdays",
        )
    unit.opens_at, unit.closes_at, unit.open_weekdays = opens_at, closes_at, days
    session.flush()
    return unit
