"""Benchmark: letters against a bare ReportLab letter, and batch memory and time per page.

Run: python bench/bench_letters.py [--letters 1000] [--small 100]

1. One appointment letter: `render_letter` (Slussen's layout, window, fonts, placeholders) against
   a bare ReportLab one-page letter (SimpleDocTemplate, the same embedded Vera font, the same
   amount of text), interleaved rounds, best of each. Limit: at least 50 % of the bare rate.
2. A batch of `--letters` kallelse letters with their enclosure, through the real service
   (`print_batch`: patient reads, audit rows, answer codes, postcode order, the PDF written to a
   file), against a batch of `--small`: tracemalloc peak of the large one at most 2x the small
   one's, and time per page at most 1.5x the time per page of printing one letter the same way.

Data: a fresh SQLite database in a temporary folder with seeded cases (fixed random seed) made
through the real intake and workflow services. Exits 1 when a limit is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

MIN_SINGLE_RATIO = 0.5
MAX_MEMORY_RATIO = 2.0
MAX_PAGE_TIME_RATIO = 1.5
TODAY = dt.date(2026, 11, 23)
FIRST = ["Anna", "Bertil", "Åsa", "Örjan", "Märta", "Sven", "Eva", "Göran", "Ingrid", "Lars"]
LAST = ["Berg", "Lind", "Öberg", "Ström", "Åkesson", "Nilsson", "Ek", "Holm", "Sjö", "Dahl"]
TOWNS = ["Västerås", "Köping", "Sala", "Arboga", "Fagersta", "Norberg", "Surahammar"]


def bare_letter(text: list[str], regular: str, bold: str) -> bytes:
    """A plain ReportLab one-page letter: letterhead, date, address, subject, paragraphs."""
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, invariant=1, topMargin=90 * mm)
    body = ParagraphStyle("b", fontName=regular, fontSize=12, leading=16, spaceAfter=8)
    head = ParagraphStyle("h", parent=body, fontName=bold, fontSize=14)

    def first_page(canvas: Any, _doc: Any) -> None:
        canvas.setFont(bold, 12)
        canvas.drawString(20 * mm, 283 * mm, "Vårdcentralen Solgläntan")
        canvas.setFont(regular, 9)
        for i, line in enumerate(["Solgatan 4", "722 15 Västerås", "Telefon 021-12 34 56"]):
            canvas.drawString(20 * mm, 279 * mm - i * 11, line)
        canvas.setFont(regular, 11)
        canvas.drawString(128 * mm, 278 * mm, "23 november 2026")
        for i, line in enumerate(["Anna Berg", "Storgatan 12", "722 15 Västerås"]):
            canvas.drawString(24 * mm, 244 * mm - i * 13, line)

    story: list[Any] = [Paragraph("Din tid för ett samtal", head), Spacer(1, 4)]
    story.extend(Paragraph(p.replace("\n", "<br/>"), body) for p in text)
    doc.build(story, onFirstPage=first_page)
    return buffer.getvalue()


def best_rate(fn: Any, seconds: float = 1.5, rounds: int = 5) -> float:
    best = 0.0
    for _ in range(rounds):
        count = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            count += 1
        best = max(best, count / (time.perf_counter() - start))
    return best


def seed(app: Any, unit_name: str, hsa: str, cases: int, rng: random.Random) -> tuple[int, Any]:
    """A unit with a coordinator and `cases` invited cases (a kallelse each, queued)."""
    from slussen.accounts.models import Unit
    from slussen.accounts.services import create_user
    from slussen.audit import Actor
    from slussen.cases.engine import current_workflow, fire
    from slussen.db import session_scope
    from slussen.identifiers import luhn_check_digit, parse_person_identifier
    from slussen.intake.services import refer_patient
    from slussen.keystore import Keystore, current_key_ring
    from slussen.patients.services import PatientIdentity

    with app.app_context(), session_scope(app) as session:
        unit = Unit(
            name=unit_name,
            hsa_id=hsa,
            street="Solgatan 4",
            postcode="722 15",
            town="Västerås",
            phone="021-12 34 56",
            phone_hours="vardagar 8.00–10.00",
        )
        session.add(unit)
        session.flush()
        user = create_user(
            session,
            app.extensions["slussen.settings"],
            username=f"samordnare-{hsa[-4:].lower()}",
            display_name="Samordnare",
            role="coordinator",
            password="ett långt bänklösenord för test",
            unit_ids=[unit.id],
        )
        session.flush()
        actor = Actor.of(user)
        store = Keystore(session, current_key_ring())
        workflow = current_workflow()
        base = rng.randrange(10**5)
        for n in range(cases):
            k = base + n
            birth = dt.date(1940, 1, 1) + dt.timedelta(days=k // 20)
            nine = f"{birth:%y%m%d}{980 + k % 20}"
            pnr = f"{birth:%Y%m%d}{980 + k % 20}{luhn_check_digit(nine)}"
            identity = PatientIdentity(
                identifier=parse_person_identifier(pnr),
                name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                street=f"Storgatan {rng.randrange(1, 120)}",
                postcode=f"{rng.randrange(100, 990)} {rng.randrange(0, 100):02d}",
                town=rng.choice(TOWNS),
                phone="070-000 00 00",
            )
            case = refer_patient(
                store,
                actor,
                workflow=workflow,
                identity=identity,
                unit_id=unit.id,
                channel="phone",
                reason="",
                is_consent_to_contact=True,
            ).case
            fire(store, case, "invite", actor, workflow=workflow)
        return unit.id, actor


def print_unit(app: Any, unit_id: int, actor: Any, *, memory: bool) -> tuple[float, int, int]:
    """Print the unit's queue through print_batch into a file, roll back; (seconds, pages,
    tracemalloc peak bytes or 0)."""
    from slussen.keystore import Keystore, current_key_ring
    from slussen.letters import services

    settings = app.extensions["slussen.settings"]
    context = services.render_context(app.extensions["slussen.content"], settings)
    with app.app_context():
        session = app.extensions["slussen.sessionmaker"]()
        store = Keystore(session, current_key_ring())
        try:
            with tempfile.TemporaryFile() as out:
                if memory:
                    tracemalloc.start()
                start = time.perf_counter()
                result = services.print_batch(
                    store, actor, unit_id, out, context=context, settings=settings, today=TODAY
                )
                seconds = time.perf_counter() - start
                peak = tracemalloc.get_traced_memory()[1] if memory else 0
                if memory:
                    tracemalloc.stop()
            assert result.batch is not None
            return seconds, result.batch.page_count, peak
        finally:
            session.rollback()
            session.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=1000)
    parser.add_argument("--small", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(20261123)

    from slussen import migrate
    from slussen.app import create_app
    from slussen.db import engine
    from slussen.letters import services
    from slussen.letters.definitions import DEMO_VALUES, blocks
    from slussen.letters.render import (
        LetterData,
        Letterhead,
        render_letter,
    )
    from slussen.pdf import register_fonts

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "env": "testing",
                "instance_dir": tmp,
                "database_url": f"sqlite:///{tmp}/bench.sqlite3",
                "secret_key": "bench-secret-key-that-is-long-enough-123",
            }
        )
        with app.app_context():
            migrate.upgrade(engine())
        settings = app.extensions["slussen.settings"]
        context = services.render_context(app.extensions["slussen.content"], settings)
        regular, bold = register_fonts()

        # 1. One appointment letter against a bare ReportLab letter with the same text.
        template = context.templates["appointment"]
        values = dict(DEMO_VALUES)
        data = LetterData(
            letter_id=1,
            template_id="appointment",
            language="sv",
            letter_date=TODAY,
            case_reference="S26-000123",
            letterhead=Letterhead(
                "Vårdcentralen Solgläntan",
                "Solgatan 4",
                "722 15 Västerås",
                "021-12 34 56",
                "vardagar 8.00–10.00",
            ),
            address=("Anna Berg", "Storgatan 12", "722 15 Västerås"),
            values=values,
        )
        text = [
            part.format(**values) if kind == "p" else "\n".join(part)
            for kind, part in blocks(template.variants["sv"].body)
            if kind != "block"
        ]
        ours = render_letter(data, context)
        assert ours == render_letter(data, context), "rendering is not deterministic"
        bare_rate = slussen_rate = 0.0
        for _ in range(3):  # interleaved
            bare_rate = max(
                bare_rate, best_rate(lambda: bare_letter(text, regular, bold), rounds=1)
            )
            slussen_rate = max(
                slussen_rate, best_rate(lambda: render_letter(data, context), rounds=1)
            )
        single_ratio = slussen_rate / bare_rate

        # 2. Batches through the real service.
        small_unit, small_actor = seed(
            app, "Vårdcentralen Liten", "SE2321000016-BNC1", args.small, rng
        )
        big_unit, big_actor = seed(
            app, "Vårdcentralen Stor", "SE2321000016-BNC2", args.letters, rng
        )
        one_unit, one_actor = seed(app, "Vårdcentralen En", "SE2321000016-BNC3", 1, rng)
        print_unit(app, one_unit, one_actor, memory=False)  # warm up
        one = min(print_unit(app, one_unit, one_actor, memory=False) for _ in range(5))
        one_per_page = one[0] / (one[1] - 1)  # without the cover sheet
        big_time = print_unit(app, big_unit, big_actor, memory=False)
        big_per_page = big_time[0] / (big_time[1] - 1)
        small_mem = print_unit(app, small_unit, small_actor, memory=True)[2]
        big_mem = print_unit(app, big_unit, big_actor, memory=True)[2]

    memory_ratio = big_mem / small_mem
    page_ratio = big_per_page / one_per_page
    print(
        f"single letter: bare ReportLab {bare_rate:.1f}/s,"
        f" Slussen appointment {slussen_rate:.1f}/s,"
        f" ratio {single_ratio:.2f} (limit >= {MIN_SINGLE_RATIO})"
    )
    print(
        f"one kallelse through print_batch: {one[0] * 1000:.1f} ms, {one[1] - 1} pages,"
        f" {one_per_page * 1000:.1f} ms/page"
    )
    print(
        f"batch of {args.letters}: {big_time[0]:.1f} s, {big_time[1]} pages (with cover),"
        f" {big_per_page * 1000:.1f} ms/page,"
        f" ratio {page_ratio:.2f} (limit <= {MAX_PAGE_TIME_RATIO})"
    )
    print(
        f"tracemalloc peak: batch of {args.small} {small_mem / 1e6:.1f} MB, batch of"
        f" {args.letters} {big_mem / 1e6:.1f} MB,"
        f" ratio {memory_ratio:.2f} (limit <= {MAX_MEMORY_RATIO})"
    )
    ok = (
        single_ratio >= MIN_SINGLE_RATIO
        and memory_ratio <= MAX_MEMORY_RATIO
        and page_ratio <= MAX_PAGE_TIME_RATIO
    )
    print("OK" if ok else "LIMIT MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
