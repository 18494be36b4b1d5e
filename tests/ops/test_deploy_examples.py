"""The example files in deploy/ and config/production.example.toml work as docs/install.md says.

- `config/production.example.toml`, with only its paths, secret and database pointed at a
  temporary folder, is what every command here runs with (env = "production").
- `deploy/nginx/slussen.conf`, with its ports, certificate and log paths moved to a temporary
  folder, passes `nginx -t`; then nginx runs in the foreground on free high ports of 127.0.0.1
  in front of `slussen serve` (gunicorn), and serves /healthz over TLS with HSTS, sends plain HTTP
  to HTTPS, and passes the client's address (not a forged one) on to Slussen's access log.
- `deploy/systemd/*`: `systemd-analyze verify` accepts the units; every command they start is a
  real `slussen` subcommand; the tick and backup services' command lines, run as systemd would
  run them, do their job.

nginx is never started as a daemon and never on port 80/443. Without nginx (or systemd-analyze)
the test says it was skipped and why; with SLUSSEN_REQUIRE_OPS=1 (CI) a missing nginx fails.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.ops.conftest import PYTHON, ROOT, free_port

pytestmark = [pytest.mark.slow]

DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
INSTALLED_SLUSSEN = "/opt/slussen/bin/slussen"
REQUIRE_OPS = os.environ.get("SLUSSEN_REQUIRE_OPS") == "1"
SERVER_NAME = "slussen.example.se"


def need_tool(name: str, *, required_in_ci: bool) -> str:
    """The tool's path; skip (or fail under SLUSSEN_REQUIRE_OPS=1) when it is not installed."""
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()), None
    )
    if found:
        return found
    message = f"{name} is not installed (Debian: apt-get install {name})"
    if required_in_ci and REQUIRE_OPS:
        pytest.fail(message + " (SLUSSEN_REQUIRE_OPS=1)")
    pytest.skip(message)


# --- one production-configured installation on SQLite ---------------------------------------------


@dataclass
class Install:
    root: Path
    config: Path
    database: Path

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SLUSSEN_") or k.startswith(("SLUSSEN_TEST_", "SLUSSEN_REQUIRE_"))
        }
        env["SLUSSEN_CONFIG"] = str(self.config)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        return env

    def slussen(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [PYTHON, "-m", "slussen.cli", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"slussen {' '.join(args)}: {done.stdout}{done.stderr}"
        return done


def production_config(folder: Path) -> str:
    """config/production.example.toml with the machine-specific values moved into `folder`."""
    text = (ROOT / "config" / "production.example.toml").read_text()
    replacements = {
        'secret_key = "REPLACE-ME"': f'secret_key = "{secrets.token_urlsafe(48)}"',
        '"postgresql://slussen@/slussen?host=/var/run/postgresql"': (
            f'"sqlite:///{folder / "slussen.sqlite3"}"'
        ),
        '"postgresql://slussen_owner@127.0.0.1/slussen"': '""',
        '"/var/lib/slussen"': f'"{folder / "state"}"',
        '"/etc/slussen/keyring.json"': f'"{folder / "keyring.json"}"',
        '"redis://127.0.0.1:6379/0"': '"memory://"',
        "serve_workers = 4": "serve_workers = 1",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"config/production.example.toml no longer has {old}"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    """Install steps of docs/install.md: settings, `keys init`, `init-db`."""
    root = tmp_path_factory.mktemp("deploy")
    config = root / "slussen.toml"
    config.write_text(production_config(root))
    config.chmod(0o600)
    site = Install(root, config, root / "slussen.sqlite3")
    site.slussen("keys", "init")
    assert (root / "keyring.json").stat().st_mode & 0o777 == 0o600
    site.slussen("init-db")
    return site


# --- nginx ----------------------------------------------------------------------------------------


@dataclass
class Nginx:
    binary: str
    prefix: Path
    conf: Path
    http_port: int
    tls_port: int
    app_port: int

    def command(self, *extra: str) -> list[str]:
        errors = str(self.prefix / "logs" / "error.log")
        return [self.binary, "-p", str(self.prefix), "-c", str(self.conf), "-e", errors, *extra]


def self_signed_certificate(folder: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True)
    (folder / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "privkey.pem").chmod(0o600)


def site_for_test(text: str, prefix: Path, http_port: int, tls_port: int, app_port: int) -> str:
    """deploy/nginx/slussen.conf with ports and paths moved; fails if the file's shape changed."""
    replacements = [
        ("    listen 80;\n", f"    listen 127.0.0.1:{http_port};\n"),
        ("    listen [::]:80;\n", ""),
        ("    listen 443 ssl http2;\n", f"    listen 127.0.0.1:{tls_port} ssl http2;\n"),
        ("    listen [::]:443 ssl http2;\n", ""),
        (f"/etc/letsencrypt/live/{SERVER_NAME}/", f"{prefix}/certs/"),
        ("/var/log/nginx/", f"{prefix}/logs/"),
        ("/var/www/letsencrypt", f"{prefix}/www"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{app_port};"),
    ]
    for old, new in replacements:
        assert old in text, f"deploy/nginx/slussen.conf no longer has {old.strip()!r}"
        text = text.replace(old, new)
    leftovers = re.findall(r"(?m)^[^#]*?(/etc/\S*|/var/\S*|listen [^1]\S*)", text)
    assert leftovers == [], f"paths or ports the test does not move: {leftovers}"
    return text


@pytest.fixture
def nginx(tmp_path: Path) -> Nginx:
    binary = need_tool("nginx", required_in_ci=True)
    prefix = tmp_path / "nginx"
    for sub in ("logs", "www", "temp"):
        (prefix / sub).mkdir(parents=True)
    self_signed_certificate(prefix / "certs")
    ports = Nginx(binary, prefix, prefix / "nginx.conf", free_port(), free_port(), free_port())
    site = prefix / "slussen.conf"
    site.write_text(
        site_for_test(
            (DEPLOY / "nginx" / "slussen.conf").read_text(),
            prefix,
            ports.http_port,
            ports.tls_port,
            ports.app_port,
        )
    )
    temp = prefix / "temp"
    # Debian's /etc/nginx/nginx.conf reduced to what the site needs, everything under `prefix`.
    ports.conf.write_text(
        f"""{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site};
}}
"""
    )
    return ports


def test_the_nginx_example_passes_nginx_t(nginx: Nginx) -> None:
    done = subprocess.run(nginx.command("-t"), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def wait_for(check: object, what: str, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{what} did not come up within {timeout:.0f} s ({last})")


@contextmanager
def running(command: list[str], env: dict[str, str] | None, log: Path) -> Iterator[None]:
    """A foreground process for the length of the block; stopped (TERM, then KILL) afterwards."""
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def answers(url_port: int, path: str = "/healthz") -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", url_port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    finally:
        connection.close()


def tls(nginx: Nginx, source: str = "127.0.0.1") -> http.client.HTTPSConnection:
    """A TLS connection to nginx (certificate not verified: it is self-signed) from `source`."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection(
        "127.0.0.1", nginx.tls_port, context=context, timeout=20, source_address=(source, 0)
    )


def test_nginx_serves_slussen_over_tls_with_the_client_address(
    nginx: Nginx, install: Install
) -> None:
    serve = [PYTHON, "-m", "slussen.cli", "serve", "--host", "127.0.0.1"]
    serve += ["--port", str(nginx.app_port), "--workers", "1"]
    with running(serve, install.env(), install.root / "gunicorn.log"):
        wait_for(lambda: answers(nginx.app_port), "slussen serve")
        with running(
            nginx.command("-g", "daemon off;"), None, nginx.prefix / "logs" / "stdout.log"
        ):
            wait_for(lambda: tls_answers(nginx), "nginx")

            # Plain HTTP only redirects to HTTPS.
            plain = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=10)
            plain.request("GET", "/aktiviteter", headers={"Host": SERVER_NAME})
            redirect = plain.getresponse()
            assert redirect.status == 301
            assert redirect.getheader("Location") == f"https://{SERVER_NAME}/aktiviteter"
            plain.close()

            # The health check through TLS: ok, HSTS from nginx, the app's own headers too.
            connection = tls(nginx)
            connection.request("GET", "/healthz", headers={"Host": SERVER_NAME})
            health = connection.getresponse()
            assert health.status == 200
            assert json.loads(health.read()) == {"status": "ok"}
            assert "max-age=63072000" in (health.getheader("Strict-Transport-Security") or "")
            assert "frame-ancestors 'none'" in (health.getheader("Content-Security-Policy") or "")
            assert health.getheader("Server") == "nginx"  # no version (server_tokens off)
            connection.close()

            # A failed login from 127.0.0.2 that forges X-Forwarded-For: nginx replaces the header
            # and Slussen (proxy_count = 1) logs the real client, not nginx and not the forgery.
            failed_login_through(nginx, source="127.0.0.2", forged="203.0.113.66")

    with sqlite3.connect(install.database) as db:
        logged = {row[0] for row in db.execute("SELECT client_address FROM audit_events")}
    assert "127.0.0.2" in logged
    assert "203.0.113.66" not in logged


def tls_answers(nginx: Nginx) -> bool:
    connection = tls(nginx)
    try:
        connection.request("GET", "/healthz", headers={"Host": SERVER_NAME})
        return connection.getresponse().status == 200
    finally:
        connection.close()


def failed_login_through(nginx: Nginx, *, source: str, forged: str) -> None:
    connection = tls(nginx, source)
    connection.request("GET", "/login", headers={"Host": SERVER_NAME})
    page = connection.getresponse()
    body = page.read().decode()
    assert page.status == 200
    cookie = (page.getheader("Set-Cookie") or "").split(";")[0]
    assert cookie.startswith("slussen_session=")
    assert "Secure" in (page.getheader("Set-Cookie") or "")  # production over HTTPS
    token = re.search(r'name="csrf_token" value="([^"]+)"', body)
    assert token, "no CSRF token on the login page"
    form = {"csrf_token": token.group(1), "username": "ingen-sadan", "password": "fel lösenord"}
    connection.request(
        "POST",
        "/login",
        body=urlencode(form),
        headers={
            "Host": SERVER_NAME,
            "Cookie": cookie,
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": f"https://{SERVER_NAME}/login",
            "X-Forwarded-For": forged,
        },
    )
    refused = connection.getresponse()
    refused.read()
    assert refused.status == 401
    connection.close()


# --- systemd --------------------------------------------------------------------------------------


def unit_file(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values]}}: keys repeat (ExecStart), which configparser
    does not allow, so this reads the simple subset the examples use."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], {})
            continue
        assert current is not None and "=" in stripped, f"{path.name}:{number}: {line!r}"
        key, value = stripped.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unescape(value: str) -> str:
    """What systemd hands the program: %% becomes %, $$ becomes $."""
    return value.replace("%%", "%").replace("$$", "$")


UNIT_FILES = sorted(UNITS.glob("slussen*.*"))


def test_the_systemd_units_are_complete() -> None:
    names = {p.name for p in UNIT_FILES}
    assert {
        "slussen.service",
        "slussen-tick.service",
        "slussen-tick.timer",
        "slussen-backup.service",
        "slussen-backup.timer",
    } <= names
    for path in UNIT_FILES:
        unit = unit_file(path)
        if path.suffix == ".timer":
            assert path.with_suffix(".service").name in names  # the timer's service exists
            assert unit["Timer"]["Persistent"] == ["true"]  # a missed run happens at boot
            assert unit["Install"]["WantedBy"] == ["timers.target"]
            continue
        service = unit["Service"]
        assert service["User"] == ["slussen"], f"{path.name} must not run as root"
        assert service["Environment"] == ["SLUSSEN_CONFIG=/etc/slussen/slussen.toml"]
        assert service["UMask"] == ["0077"]


def slussen_commands(path: Path) -> list[str]:
    """The `slussen` subcommands ("tick", "directory refresh"…) that a unit's Exec lines start."""
    found = []
    for key in ("ExecStart", "ExecStartPre", "ExecStartPost"):
        for line in unit_file(path).get("Service", {}).get(key, []):
            for after in line.split(INSTALLED_SLUSSEN)[1:]:
                words = []
                for word in after.split():
                    if word.startswith(("-", "/", '"', "'")):
                        break
                    words.append(word)
                found.append(" ".join(words))
    return found


def test_every_unit_command_is_a_slussen_subcommand(install: Install) -> None:
    commands = [command for path in UNIT_FILES for command in slussen_commands(path)]
    assert sorted(commands) == ["audit checkpoint", "backup", "directory refresh", "serve", "tick"]
    for command in commands:
        help_text = install.slussen(*command.split(), "--help").stdout
        assert help_text.startswith("Usage:"), help_text


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = need_tool("systemd-analyze", required_in_ci=False)
    # verify checks that ExecStart's program exists: point it at this checkout's `slussen`.
    program = shutil.which("slussen", path=str(Path(PYTHON).parent)) or shutil.which("slussen")
    if program is None:
        pytest.skip("no `slussen` console script next to this Python (pip install -e .)")
    for path in UNIT_FILES:
        (tmp_path / path.name).write_text(path.read_text().replace(INSTALLED_SLUSSEN, program))
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / p.name) for p in UNIT_FILES)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == ""


def as_run_here(line: str, backups: Path) -> list[str]:
    """An Exec line as systemd hands it over, with the install's paths moved to the test's."""
    line = unescape(line).replace(INSTALLED_SLUSSEN, f"{PYTHON} -m slussen.cli")
    return shlex.split(line.replace("/var/backups/slussen", str(backups)))


def test_the_tick_and_backup_services_do_their_job(install: Install, tmp_path: Path) -> None:
    tick = unit_file(UNITS / "slussen-tick.service")["Service"]
    for line in tick["ExecStart"]:
        words = shlex.split(unescape(line))
        assert words[0] == INSTALLED_SLUSSEN
        install.slussen(*words[1:])

    backups = tmp_path / "backups"
    backups.mkdir(mode=0o700)
    old = backups / "slussen-2000-01-01.backup"
    old.write_bytes(b"an old backup")
    forty_days_ago = time.time() - 40 * 86400
    os.utime(old, (forty_days_ago, forty_days_ago))
    service = unit_file(UNITS / "slussen-backup.service")["Service"]
    for key in ("ExecStart", "ExecStartPost"):
        for line in service[key]:
            done = subprocess.run(
                as_run_here(line, backups),
                env=install.env(),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, f"{key}: {done.stdout}{done.stderr}"
    today = dt.date.today().isoformat()
    made = backups / f"slussen-{today}.backup"
    assert made.exists(), sorted(p.name for p in backups.iterdir())
    assert made.stat().st_mode & 0o777 == 0o600
    assert made.read_bytes().startswith(b"SQLite format 3")
    assert not old.exists(), "the backup older than 35 days was not deleted"
