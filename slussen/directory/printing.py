"""The printable occasion list as PDF (ReportLab): what a coach hands a patient. Swedish text in
an embedded font; the same list renders to the same bytes."""

from __future__ import annotations

import io
from itertools import groupby
from xml.sax.saxutils import escape

from babel.dates import format_date
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether, Paragraph, Spacer

from slussen.directory.services import CalendarFilters, OccasionRow
from slussen.pdf import a4_document, register_fonts


def _styles() -> dict[str, ParagraphStyle]:
    regular, bold = register_fonts()
    base = ParagraphStyle("base", fontName=regular, fontSize=11, leading=15)
    return {
        "title": ParagraphStyle("title", parent=base, fontName=bold, fontSize=18, leading=23),
        "day": ParagraphStyle(
            "day", parent=base, fontName=bold, fontSize=13, leading=18, spaceBefore=8
        ),
        "item": ParagraphStyle("item", parent=base, leftIndent=4 * mm, spaceAfter=4),
        "small": ParagraphStyle("small", parent=base, fontSize=9.5, leading=13),
    }


def _clock(moment: object) -> str:
    return f"{moment.hour:02d}.{moment.minute:02d}"  # type: ignore[attr-defined]


def occasion_list_pdf(
    filters: CalendarFilters, rows: list[OccasionRow], labels: dict[str, str]
) -> bytes:
    """A4 PDF of the occasions in `rows`, grouped by day, in Swedish."""
    styles = _styles()
    buffer = io.BytesIO()
    doc = a4_document(buffer, title="Aktiviteter")
    start = format_date(filters.start, "d MMMM y", locale="sv")
    end = format_date(filters.end, "d MMMM y", locale="sv")
    story: list[object] = [
        Paragraph("Aktiviteter nära dig", styles["title"]),
        Paragraph(escape(f"{start} – {end}"), styles["item"]),
        Spacer(1, 4 * mm),
    ]
    if not rows:
        story.append(Paragraph("Inga tillfällen passar valen.", styles["item"]))
    for day, group in groupby(rows, key=lambda r: r.starts_at.date()):
        heading = format_date(day, "full", locale="sv")
        items: list[object] = [Paragraph(escape(heading[:1].upper() + heading[1:]), styles["day"])]
        for row in group:
            rev = row.revision
            place = ", ".join(p for p in (rev.place_name, rev.street, rev.town) if p)
            cost = "Kostnadsfritt" if rev.is_free else f"{rev.cost_sek} kr"
            lines = [
                f"<b>kl. {_clock(row.starts_at)}–{_clock(row.ends_at)} {escape(rev.title)}</b>",
                escape(f"{row.organisation_name}. {place}. {cost}."),
            ]
            if rev.has_companion:
                lines.append("Någon kan möta dig och följa med första gången.")
            if rev.accessibility_notes:
                lines.append(escape("Tillgänglighet: " + rev.accessibility_notes))
            contact = " ".join(p for p in (rev.contact_name, rev.contact_phone) if p)
            if contact:
                lines.append(escape("Kontakt: " + contact))
            items.append(Paragraph("<br/>".join(lines), styles["item"]))
        story.append(KeepTogether(items[:2]))
        story.extend(items[2:])
    story.append(Spacer(1, 6 * mm))
    story.append(
        Paragraph(
            "Det är frivilligt att gå. Ring kontakten om du undrar något eller vill ha sällskap.",
            styles["small"],
        )
    )
    doc.build(story)
    return buffer.getvalue()
