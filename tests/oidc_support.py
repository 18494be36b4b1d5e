"""The identity providers of the federated-login tests.

`LocalProvider` is a real OpenID provider (panva's oidc-provider on Node, tests/oidc_provider/),
started on 127.0.0.1 on a free port and stopped by the test; `npm ci` installs it from the
committed package-lock.json when node_modules is missing. Without Node or npm the tests skip
saying why; with SLUSSEN_REQUIRE_OIDC=1 or SLUSSEN_REQUIRE_OPS=1 (CI) they fail instead.

`TokenProvider` serves a discovery document, a JWKS and a token endpoint from this process, and
answers the code exchange with whatever ID token the test signed (joserfc): the wrong tokens a
real provider never issues (unknown key, expired, another audience, another nonce).

`ProviderBrowser` plays the person at the real provider without a browser: it follows the
provider's redirects with its own cookies, fills in the provider's login form, and stops at the
redirect back to Slussen.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
REQUIRE = "1" in (os.environ.get("SLUSSEN_REQUIRE_OIDC"), os.environ.get("SLUSSEN_REQUIRE_OPS"))
CLIENT_ID = "slussen"
CLIENT_SECRET = "test-client-secret-that-is-long-enough-0123"
#: The authentication levels the local provider offers; the tests count "loa3" as strong.
ACR_STRONG = "http://id.elegnamnden.se/loa/1.0/loa3"
ACR_WEAK = "http://id.elegnamnden.se/loa/1.0/loa2"


def need_node() -> None:
    """Skip (fail with SLUSSEN_REQUIRE_OIDC=1 or SLUSSEN_REQUIRE_OPS=1) without Node and npm."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        message = (
            f"OpenID provider tests skipped: {' and '.join(missing)} not found "
            "(apt-get install nodejs npm)"
        )
        if REQUIRE:
            pytest.fail(message + " (SLUSSEN_REQUIRE_OIDC=1 or SLUSSEN_REQUIRE_OPS=1)")
        pytest.skip(message)


def oidc_settings(issuer: str, **extra: Any) -> dict[str, Any]:
    """Slussen's settings for a provider at `issuer` with the tests' client."""
    return {
        "oidc_issuer": issuer,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "oidc_strong_acr_values": ACR_STRONG,
        "oidc_hsa_id_claim": "hsa_id",
        **extra,
    }


def install_provider() -> None:
    """`npm ci` the provider when node_modules is missing; one test process at a time."""
    with (PROVIDER_DIR / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=PROVIDER_DIR,
                check=True,
                timeout=300,
            )


@dataclass
class LocalProvider:
    issuer: str
    process: subprocess.Popen[str]


@contextmanager
def local_provider(
    base_url: str, accounts: dict[str, dict[str, Any]] | None = None
) -> Iterator[LocalProvider]:
    """Run the local OpenID provider with one client, Slussen at `base_url`, and `accounts`
    (subject: claims); stop it at the end."""
    need_node()
    install_provider()
    config = {
        "clients": [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [f"{base_url}/login/oidc/svar"],
                "post_logout_redirect_uris": [f"{base_url}/login"],
            }
        ],
        "acr_values": [ACR_WEAK, ACR_STRONG],
        "accounts": accounts or {},
    }
    process = subprocess.Popen(
        ["node", "provider.mjs"],
        cwd=PROVIDER_DIR,
        env={**os.environ, "SLUSSEN_OIDC_TEST_CONFIG": json.dumps(config)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the provider prints its issuer once it listens
        if not line.startswith("{"):
            raise AssertionError(f"the OpenID provider did not start (exit {process.poll()})")
        yield LocalProvider(json.loads(line)["issuer"], process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


class _Forms(HTMLParser):
    """The forms of a page: action, method and the named inputs with their values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "id": a.get("id", ""), "fields": {}})
        elif tag in ("input", "select") and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")


@dataclass
class ProviderBrowser:
    """A person's browser at the provider, without Chromium (see the module's docstring)."""

    stop_at: str
    http: requests.Session = field(default_factory=requests.Session)
    #: The provider's last page (its login or logout form), for the test to look at.
    last_page: str = ""

    def follow(self, url: str, **form: str) -> str:
        """Follow `url` through the provider until it sends the browser to a URL starting with
        `stop_at`, which is returned; a form on the way (login, logout) is submitted with
        `form`'s values."""
        method, data = "GET", None
        for _ in range(20):
            if url.startswith(self.stop_at):
                return url
            response = self.http.request(method, url, data=data, allow_redirects=False)
            if response.is_redirect:
                url, method, data = urljoin(url, response.headers["Location"]), "GET", None
                continue
            assert response.status_code == 200, (response.status_code, response.text[:500])
            self.last_page = response.text
            parser = _Forms()
            parser.feed(response.text)
            assert parser.forms, f"the provider's page has no form: {response.text[:500]}"
            chosen = parser.forms[-1]
            data = {**chosen["fields"], **form}
            url, method = urljoin(url, chosen["action"] or url), "POST"
        raise AssertionError("the provider never sent the browser back")


def callback_path(url: str) -> str:
    """The path and query of the provider's redirect back to Slussen."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# --- a provider whose tokens the test signs ------------------------------------------------------


@dataclass
class TokenProvider:
    """Discovery, JWKS and token endpoint on 127.0.0.1; the token endpoint answers with
    `next_token(code)`, and a code is accepted once."""

    issuer: str = ""
    keys: list[RSAKey] = field(default_factory=list)
    next_token: Callable[[str], str] | None = None
    used_codes: set[str] = field(default_factory=set)
    jwks_requests: int = 0

    def new_key(self) -> RSAKey:
        return RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4), "use": "sig"})

    def sign(self, claims: dict[str, Any], key: RSAKey | None = None) -> str:
        key = key or self.keys[0]
        header = {"alg": "RS256", "kid": key.kid}
        return jwt.encode(header, claims, key)

    def claims(self, nonce: str, /, **changes: Any) -> dict[str, Any]:
        """Good ID token claims for a login with `nonce`, changed by `changes`."""
        now = int(time.time())
        return {
            "iss": self.issuer,
            "sub": "person-1",
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "acr": ACR_STRONG,
            **changes,
        }

    def _app(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/.well-known/openid-configuration":
            body: Any = {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/auth",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
            }
        elif request.path == "/jwks":
            self.jwks_requests += 1
            body = {"keys": [key.as_dict(private=False) for key in self.keys]}
        elif request.path == "/token" and request.method == "POST":
            code = request.form.get("code", "")
            if code in self.used_codes or self.next_token is None:
                response = Response(json.dumps({"error": "invalid_grant"}), 400)
                response.content_type = "application/json"
                return response(environ, start_response)
            self.used_codes.add(code)
            body = {"access_token": "x", "token_type": "Bearer", "id_token": self.next_token(code)}
        else:
            return Response("not found", 404)(environ, start_response)
        response = Response(json.dumps(body))
        response.content_type = "application/json"
        return response(environ, start_response)


@contextmanager
def token_provider() -> Iterator[TokenProvider]:
    provider = TokenProvider()
    server = make_server("127.0.0.1", 0, provider._app, threaded=True)
    provider.issuer = f"http://127.0.0.1:{server.server_port}"
    provider.keys.append(provider.new_key())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        thread.join(timeout=10)
