"""Words people see: every page a demo user can reach by following links, the letters' text, the
activity calendar feed and the access-log view say things in Swedish words. No workflow state or
event name, letter kind, category or role code, no English placeholder ("case 6", "None"), and
times of day as "14.00", never "14:00" (issue #18).

The pages are crawled with the test client from each role's start page over the demo data (every
same-site link that a GET may follow, bounded per role); what is checked is the text a person
reads or hears: text nodes and the title, alt, aria-label and placeholder attributes, not element
ids, form values or URLs."""

from __future__ import annotations

import io
import re
import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy import select

from slussen.paths import shipped_dir
from tests import builders

pytestmark = pytest.mark.slow

DEMO_PASSWORD = "ett långt demolösenord för orden"
ROLES = ("personal", "coach", "koordinator", "utvarderare", "admin", "forening")
#: Pages per role the crawl reads at most (the demo's lists are long; every kind of page is
#: reached well before this).
PAGES_PER_ROLE = 400
#: Links a GET must not follow (they change something or end the session) or whose output is not
#: a page (files are checked on their own).
SKIP = re.compile(r"^/(logout|loggaut|static/)|\.(pdf|csv|ics|json|png|svg|ico)$|/(utskrift|pdf)\b")
#: English words that are never Swedish, as whole words.
ENGLISH = re.compile(
    r"\b(None|True|False|null|undefined|case \d+|Case \d+|letter|event|state|todo|TODO)\b"
)
#: Codes that are Swedish words as well (or names in Swedish text).
SWEDISH_TOO = {"coach", "admin", "kallelse"}
CLOCK = re.compile(r"\b([01]?\d|2[0-3]):[0-5]\d\b")


class VisibleText(HTMLParser):
    """The text a person reads or hears on a page, and the page's same-site links."""

    SEEN_ATTRIBUTES = ("title", "alt", "aria-label", "placeholder")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "template"):
            self._hidden += 1
        values = dict(attrs)
        self.parts.extend(v for k, v in attrs if k in self.SEEN_ATTRIBUTES and v)
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "template") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(data.strip())


def read(html: str) -> VisibleText:
    parser = VisibleText()
    parser.feed(html)
    return parser


def codes(app: Flask) -> set[str]:
    """Every internal name a person must never read: the workflow's states and events, the
    letters' kinds, the directory's categories, barriers, kinds and sectors, the roles."""
    from slussen.accounts.roles import Role
    from slussen.directory import categories

    workflow = tomllib.loads((shipped_dir("workflows") / "sluss.toml").read_text("utf-8"))
    names: set[str] = set(workflow.get("states", {})) | set(workflow.get("events", {}))
    names |= {path.stem for path in shipped_dir("letters").glob("*.toml")}
    names |= {role.value for role in Role}
    names |= {*categories.BARRIERS, *categories.KINDS, *categories.SECTORS, *categories.AGE_GROUPS}
    with app.app_context():
        names |= set(categories.category_labels("sv"))
    # A code with an underscore is never a word; without one, only those that are not also
    # Swedish words people write.
    return {name for name in names if "_" in name or name not in SWEDISH_TOO}


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app, _report = builders.demo_app(
        tmp_path_factory.mktemp("words"), DEMO_PASSWORD, csrf_enabled=False
    )
    yield app
    app.extensions["slussen.engine"].dispose()


def login(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": DEMO_PASSWORD})
    assert response.status_code == 302, f"{username} cannot log in"
    return client


def crawl(client: FlaskClient, start: str = "/") -> Iterator[tuple[str, str]]:
    """(path, visible text) of every page reachable from `start` by same-site GET links."""
    seen: set[str] = set()
    queue = [start]
    while queue and len(seen) < PAGES_PER_ROLE:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        response = client.get(path)
        if response.status_code in (301, 302, 303):
            queue.append(urlsplit(response.headers["Location"]).path)
            continue
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        page = read(response.get_data(as_text=True))
        yield path, "\n".join(page.parts)
        for href in page.links:
            target = urlsplit(urljoin(path, href))
            if target.netloc or not target.path.startswith("/") or SKIP.search(target.path):
                continue
            queue.append(target.path + (f"?{target.query}" if target.query else ""))


def problems(text: str, names: set[str]) -> list[str]:
    """Each wrong word with the line it is on."""
    found = []
    for line in text.splitlines():
        found += [
            f"code {name!r} in {line!r}"
            for name in names
            if re.search(rf"\b{re.escape(name)}\b", line)
        ]
        found += [f"English {m.group(0)!r} in {line!r}" for m in ENGLISH.finditer(line)]
        found += [f"time {m.group(0)!r} in {line!r}" for m in CLOCK.finditer(line)]
    return found


@pytest.mark.parametrize("username", ROLES)
def test_every_page_a_role_reaches_is_in_swedish_words(demo_app: Flask, username: str) -> None:
    names = codes(demo_app)
    client = login(demo_app, username)
    found: dict[str, list[str]] = {}
    pages = 0
    for path, text in crawl(client):
        pages += 1
        wrong = problems(text, names)
        if wrong:
            found[path] = sorted(set(wrong))
    assert pages >= 1, f"{username} reached no page"
    assert not found, "\n".join(f"{path}: {', '.join(w)}" for path, w in sorted(found.items()))


#: The properties of a calendar event a person reads in their calendar.
SAID_IN_A_FEED = ("CATEGORIES", "SUMMARY", "DESCRIPTION", "LOCATION")


def test_the_activity_feed_names_categories_in_words(demo_app: Flask) -> None:
    response = demo_app.test_client().get("/aktiviteter.ics")
    assert response.status_code == 200
    # Unfold (RFC 5545: a line starting with a space continues the previous one).
    lines = response.get_data(as_text=True).replace("\r\n ", "").splitlines()
    said = [
        line.split(":", 1)[1]
        for line in lines
        if line.split(";", 1)[0].split(":", 1)[0] in SAID_IN_A_FEED
    ]
    assert any(line.startswith("CATEGORIES:") for line in lines)
    text = "\n".join(said).replace("\\,", ",").replace("\\n", "\n")
    wrong = problems(text, codes(demo_app))
    assert not wrong, "\n".join(wrong)


def test_every_kind_of_letter_the_demo_prints_is_in_swedish_words(demo_app: Flask) -> None:
    from slussen.db import session_scope
    from slussen.letterqueue import QueuedLetter

    with demo_app.app_context(), session_scope(demo_app) as session:
        by_kind: dict[str, list[int]] = {}
        for row in session.scalars(select(QueuedLetter).order_by(QueuedLetter.id)):
            by_kind.setdefault(row.letter, []).append(row.id)
    client = login(demo_app, "koordinator")
    names = codes(demo_app)
    found: dict[str, list[str]] = {}
    read_kinds = set()
    for kind, letter_ids in sorted(by_kind.items()):
        # A letter that cannot be printed yet (no address) answers 422: read another of its kind.
        response = next(
            (r for r in (client.get(f"/brev/{i}.pdf") for i in letter_ids) if r.status_code == 200),
            None,
        )
        if response is None:
            continue
        read_kinds.add(kind)
        pages = PdfReader(io.BytesIO(response.data)).pages
        wrong = problems("\n".join(page.extract_text() for page in pages), names)
        if wrong:
            found[kind] = wrong
    assert len(read_kinds) >= 3, f"only {sorted(read_kinds)} of {sorted(by_kind)} were read"
    assert not found, "\n".join(f"{kind}: {', '.join(w)}" for kind, w in found.items())


def test_the_timeline_names_people_not_usernames(demo_app: Flask) -> None:
    from slussen.accounts.models import User
    from slussen.db import session_scope

    with demo_app.app_context(), session_scope(demo_app) as session:
        users = {u.username: u.display_name for u in session.scalars(select(User))}
    client = login(demo_app, "coach")
    worklist = client.get("/mina-arenden").get_data(as_text=True)
    timelines = []
    for case_id in sorted(set(re.findall(r'href="/arenden/(\d+)"', worklist)))[:10]:
        page = client.get(f"/arenden/{case_id}").get_data(as_text=True)
        found = re.search(r'<ol class="timeline">(.*?)</ol>', page, re.DOTALL)
        assert found, f"case {case_id} has no timeline"
        timelines.append(read(found.group(1)).parts)
    said = [part for parts in timelines for part in parts]
    assert any(users["coach"] in part for part in said), "the coach's own steps name them"
    named = {name for name in users if any(re.search(rf"· {name}$", part) for part in said)}
    assert not named, f"usernames in a timeline: {sorted(named)}"
