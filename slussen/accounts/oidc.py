"""The OpenID Connect client of the federated staff login: the region's identity provider (e.g. a
SITHS eID gateway) authenticates, Slussen checks what it says.

The flow is the authorisation code flow with PKCE (S256), a `state` that ties the answer to the
browser session that asked, and a `nonce` that ties the ID token to it. Authlib makes the
authorisation request and exchanges the code (client_secret_basic); the ID token's signature is
checked with joserfc against the provider's JWKS, and its claims here: `iss` is the issuer of the
discovery document, `aud` holds our client id (and `azp` is ours when there are several), `exp`
and `iat` within `oidc_clock_skew_seconds`, and `nonce` the one we sent. The discovery document
and the JWKS are cached per process; a token signed with a key id the cache does not know makes
one fresh fetch of the JWKS (the provider rotated its keys) before it is refused.

Every refusal is an `OidcRefused` with a message a person can read and a short reason for the
access log.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from slussen.config import Settings
from slussen.errors import Invalid

#: How long a discovery document is trusted before it is fetched again.
DISCOVERY_TTL_SECONDS = 3600
#: Signature algorithms an ID token may use (never "none", never a symmetric one).
ALGORITHMS = ("RS256", "PS256", "ES256", "RS384", "RS512", "PS384", "PS512", "ES384", "ES512")
#: The longest an ID token may be (a gateway's tokens are a few kilobytes).
MAX_TOKEN_LENGTH = 16_384

START_AGAIN = "Börja om med att logga in igen."


class OidcRefused(Invalid):
    """The identity provider's answer is not accepted. `reason` says why, for the access log;
    `subject` is the provider's subject when it is known (a verified ID token)."""

    def __init__(self, message: str, *, reason: str, subject: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.subject = subject


class ProviderUnavailable(OidcRefused):
    """The provider did not answer, or answered with something that is not OpenID Connect."""

    def __init__(self, what: str) -> None:
        super().__init__(
            "Regionens inloggningstjänst svarar inte just nu. Försök igen om en stund.",
            reason=f"identitetstjänsten svarade inte ({what})",
        )


@dataclass(frozen=True)
class Metadata:
    """What Slussen uses of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    #: RP-initiated logout; None when the provider offers none.
    end_session_endpoint: str | None


@dataclass(frozen=True)
class Pending:
    """A login started here and sent to the provider: kept in the browser's server-side session
    until the provider's answer comes back, then dropped (one answer per start)."""

    state: str
    nonce: str
    code_verifier: str
    next_url: str
    started_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "nonce": self.nonce,
            "code_verifier": self.code_verifier,
            "next": self.next_url,
            "since": self.started_at,
        }

    @classmethod
    def from_dict(cls, value: object) -> Pending | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                str(value["state"]),
                str(value["nonce"]),
                str(value["code_verifier"]),
                str(value["next"]),
                float(value["since"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class VerifiedLogin:
    """A checked ID token: who the provider says logged in, and how strongly."""

    subject: str
    claims: dict[str, Any]
    acr: str
    #: The raw ID token, for the provider's logout (`id_token_hint`).
    id_token: str


class OidcClient:
    """One provider's client: its discovery document and keys (cached), the authorisation
    request, and the checked answer. One per app; safe to share between threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._metadata: Metadata | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        #: How many times the JWKS was fetched (the tests count the cache's refreshes).
        self.jwks_fetches = 0

    # --- the provider's documents -------------------------------------------------------------

    @property
    def cached_metadata(self) -> Metadata | None:
        """The discovery document if it was fetched (never fetches)."""
        return self._metadata

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = requests.get(url, timeout=self.settings.oidc_timeout_seconds)
            response.raise_for_status()
            value = response.json()
        except (requests.RequestException, ValueError):
            raise ProviderUnavailable(what) from None
        if not isinstance(value, dict):
            raise ProviderUnavailable(what)
        return value

    def metadata(self) -> Metadata:
        """The provider's discovery document, fetched at most once per DISCOVERY_TTL_SECONDS.
        Refuses (ProviderUnavailable) one that is missing an endpoint or names another issuer."""
        with self._lock:
            if self._metadata and time.monotonic() - self._metadata_at < DISCOVERY_TTL_SECONDS:
                return self._metadata
        issuer = self.settings.oidc_issuer.rstrip("/")
        doc = self._get_json(f"{issuer}/.well-known/openid-configuration", "discovery")
        try:
            metadata = Metadata(
                issuer=str(doc["issuer"]),
                authorization_endpoint=str(doc["authorization_endpoint"]),
                token_endpoint=str(doc["token_endpoint"]),
                jwks_uri=str(doc["jwks_uri"]),
                end_session_endpoint=(
                    str(doc["end_session_endpoint"]) if doc.get("end_session_endpoint") else None
                ),
            )
        except KeyError:
            raise ProviderUnavailable("discovery utan slutpunkter") from None
        if metadata.issuer.rstrip("/") != issuer:
            raise ProviderUnavailable("discovery med annan utfärdare")
        with self._lock:
            self._metadata, self._metadata_at = metadata, time.monotonic()
        return metadata

    def _fetch_keys(self) -> KeySet:
        doc = self._get_json(self.metadata().jwks_uri, "nycklar")
        try:
            keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError):
            raise ProviderUnavailable("nycklar") from None
        with self._lock:
            self._keys = keys
            self.jwks_fetches += 1
        return keys

    def _key_for(self, kid: str | None) -> Any:
        """The provider's signing key with this key id: from the cache, else from one fresh
        fetch of the JWKS; refuses a key id the provider does not publish."""
        keys, fresh = self._keys, False
        if keys is None:
            keys, fresh = self._fetch_keys(), True
        while True:
            try:
                return keys.get_by_kid(kid)
            except (ValueError, KeyError, JoseError):
                if fresh:
                    break
            keys, fresh = self._fetch_keys(), True
        raise OidcRefused(
            "Inloggningen kunde inte kontrolleras: intyget från inloggningstjänsten är "
            "signerat med en nyckel som tjänsten inte har. " + START_AGAIN,
            reason="identitetsintyget var signerat med en okänd nyckel",
        )

    def _oauth(self, redirect_uri: str) -> OAuth2Session:
        return OAuth2Session(
            client_id=self.settings.oidc_client_id,
            client_secret=self.settings.oidc_client_secret,
            scope=self.settings.oidc_scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
        )

    # --- the login ----------------------------------------------------------------------------

    def start(self, redirect_uri: str, next_url: str) -> tuple[str, Pending]:
        """The provider's authorisation URL for a new login, and what the session keeps."""
        pending = Pending(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),
            next_url=next_url,
            started_at=time.time(),
        )
        with self._oauth(redirect_uri) as oauth:
            url, _state = oauth.create_authorization_url(
                self.metadata().authorization_endpoint,
                state=pending.state,
                code_verifier=pending.code_verifier,
                nonce=pending.nonce,
                # Asks for strong authentication (voluntary, OIDC Core 3.1.2.1): whatever the
                # provider does, the ID token's acr decides.
                acr_values=" ".join(sorted(self.settings.oidc_strong_acrs)),
            )
        return str(url), pending

    def finish(
        self, pending: Pending | None, args: dict[str, str], redirect_uri: str
    ) -> VerifiedLogin:
        """Check the provider's answer (the callback's query `args`) against the login the
        session started, exchange the code and check the ID token. Refuses (OidcRefused): an
        answer to no login started here or with another `state`, one naming another issuer
        (`iss`, RFC 9207), the provider's own error, a code the provider does not accept (used
        already, or too old), and an ID token that is badly signed, by an unknown key, from
        another issuer, for another client, expired, issued in the future, or for another
        login (`nonce`)."""
        state = args.get("state", "")
        if pending is None or not secrets.compare_digest(state, pending.state):
            raise OidcRefused(
                "Svaret från inloggningstjänsten hör inte till någon inloggning som du har "
                "påbörjat i den här webbläsaren. " + START_AGAIN,
                reason="svaret hörde inte till någon påbörjad inloggning",
            )
        # RFC 9207: a provider that names itself in the answer must be ours (mix-up attacks).
        if args.get("iss") and args["iss"].rstrip("/") != self.metadata().issuer.rstrip("/"):
            raise OidcRefused(
                "Svaret kommer inte från regionens inloggningstjänst. " + START_AGAIN,
                reason="svaret kom från fel utfärdare",
            )
        if args.get("error"):
            raise OidcRefused(
                "Inloggningstjänsten avbröt inloggningen. " + START_AGAIN,
                reason="identitetstjänsten avbröt inloggningen",
            )
        code = args.get("code", "")
        if not code:
            raise OidcRefused(
                "Svaret från inloggningstjänsten saknar inloggningskod. " + START_AGAIN,
                reason="svaret saknade inloggningskod",
            )
        with self._oauth(redirect_uri) as oauth:
            try:
                token = oauth.fetch_token(
                    self.metadata().token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=pending.code_verifier,
                    timeout=self.settings.oidc_timeout_seconds,
                )
            except OAuthError:
                raise OidcRefused(
                    "Inloggningstjänsten godtog inte inloggningskoden: den är redan använd "
                    "eller för gammal. " + START_AGAIN,
                    reason="inloggningskoden godtogs inte (redan använd eller för gammal)",
                ) from None
            except (requests.RequestException, ValueError):
                raise ProviderUnavailable("kodväxling") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise OidcRefused(
                "Inloggningstjänsten skickade inget identitetsintyg. " + START_AGAIN,
                reason="inget identitetsintyg i svaret",
            )
        return self.verify_id_token(id_token, nonce=pending.nonce)

    def verify_id_token(self, id_token: str, *, nonce: str) -> VerifiedLogin:
        """The checked claims of `id_token` (see `finish` for what is refused)."""
        bad = OidcRefused(
            "Intyget från inloggningstjänsten gick inte att kontrollera. " + START_AGAIN,
            reason="identitetsintygets signatur stämmer inte",
        )
        if len(id_token) > MAX_TOKEN_LENGTH:
            raise bad
        try:
            header = jws.extract_compact(id_token.encode()).headers()
        except (JoseError, ValueError):
            raise bad from None
        if header.get("alg") not in ALGORITHMS:
            raise bad
        key = self._key_for(header.get("kid"))
        try:
            obj = jws.deserialize_compact(id_token, key, algorithms=list(ALGORITHMS))
            claims = json.loads(obj.payload)
        except (JoseError, ValueError):
            raise bad from None
        if not isinstance(claims, dict):
            raise bad
        self._check_claims(claims, nonce)
        acr = claims.get("acr")
        return VerifiedLogin(
            subject=str(claims["sub"]),
            claims=claims,
            acr=acr if isinstance(acr, str) else "",
            id_token=id_token,
        )

    def _check_claims(self, claims: dict[str, Any], nonce: str) -> None:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise OidcRefused(
                "Intyget från inloggningstjänsten saknar uppgift om vem du är. " + START_AGAIN,
                reason="identitetsintyget saknade subjekt",
            )

        def refuse(message: str, reason: str) -> OidcRefused:
            return OidcRefused(message + " " + START_AGAIN, reason=reason, subject=subject)

        if str(claims.get("iss", "")).rstrip("/") != self.metadata().issuer.rstrip("/"):
            raise refuse(
                "Intyget kommer inte från regionens inloggningstjänst.",
                "identitetsintyget kom från fel utfärdare",
            )
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        client_id = self.settings.oidc_client_id
        if client_id not in audiences or (len(audiences) > 1 and claims.get("azp") != client_id):
            raise refuse(
                "Intyget från inloggningstjänsten är utfärdat för ett annat system.",
                "identitetsintyget var utfärdat för ett annat system",
            )
        now = time.time()
        skew = self.settings.oidc_clock_skew_seconds
        expires, issued = claims.get("exp"), claims.get("iat")
        if not isinstance(expires, int | float) or not isinstance(issued, int | float):
            raise refuse(
                "Intyget från inloggningstjänsten saknar giltighetstid.",
                "identitetsintyget saknade giltighetstid",
            )
        if float(expires) + skew < now:
            raise refuse(
                "Intyget från inloggningstjänsten har gått ut.",
                "identitetsintyget hade gått ut",
            )
        if float(issued) - skew > now:
            raise refuse(
                "Intyget från inloggningstjänsten är utfärdat senare än nu: klockorna går olika.",
                "identitetsintyget var utfärdat i framtiden",
            )
        if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(
            claims["nonce"], nonce
        ):
            raise refuse(
                "Intyget från inloggningstjänsten hör till en annan inloggning.",
                "identitetsintyget hörde till en annan inloggning",
            )

    # --- logout -------------------------------------------------------------------------------

    def logout_url(self, id_token: str, post_logout_redirect_uri: str) -> str | None:
        """Where the browser goes to end the provider's session too (RP-initiated logout), or
        None when the provider's discovery offers no end_session_endpoint."""
        try:
            endpoint = self.metadata().end_session_endpoint
        except ProviderUnavailable:
            return None
        if endpoint is None:
            return None
        query = {
            "client_id": self.settings.oidc_client_id,
            "post_logout_redirect_uri": post_logout_redirect_uri,
        }
        if id_token:
            query["id_token_hint"] = id_token
        separator = "&" if "?" in endpoint else "?"
        return endpoint + separator + urlencode(query)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def provider_origins(settings: Settings, client: OidcClient | None) -> set[str]:
    """The provider's origins a page's form may lead to (the Content-Security-Policy's
    form-action): the issuer's, and the end-session endpoint's once the discovery document is
    known (it is fetched at the first login, before any logout button is shown)."""
    origins = {_origin(settings.oidc_issuer)}
    metadata = client.cached_metadata if client is not None else None
    if metadata is not None and metadata.end_session_endpoint:
        origins.add(_origin(metadata.end_session_endpoint))
    return origins
