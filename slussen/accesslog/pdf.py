"""The patient's log extract as a PDF (ReportLab platypus, A4, an embedded TrueType font).

The extract goes to the patient, so it is the one document that prints a personnummer. Its text
is gettext with English msgids rendered in the patient's language (Swedish by default), in plain
words: which unit opened the record, when, and what was done.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from flask_babel import force_locale, gettext
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle
from reportlab.platypus.flowables import Flowable

from slussen.accesslog.services import ExtractEntry, PatientExtract
from slussen.accounts.roles import ROLE_LABELS, Role
from slussen.patients.services import LISTED, SHOWN_IN
from slussen.pdf import a4_document, register_fonts


def _(text: str, **variables: Any) -> str:
    return str(gettext(text, **variables))


def _action_text(entry: ExtractEntry) -> str:
    if entry.object_type == "access_log":
        return _("Looked at who has accessed your details")
    if entry.object_type == "patient_log_extract":
        return _("Made a log extract for you")
    if entry.object_type == LISTED:
        lists = {
            SHOWN_IN["worklist"]: _("Shown in a coach's worklist"),
            SHOWN_IN["unit"]: _("Shown in the care unit's list"),
            SHOWN_IN["flagged"]: _("Shown in a staff member's list of flagged patients"),
            SHOWN_IN["letters"]: _("Shown in the letter queue"),
            SHOWN_IN["incoming"]: _("Shown in the list of referrals from other units"),
        }
        return lists.get(entry.purpose, _("Shown in a list"))
    texts = {
        "create": _("Registered your details"),
        "read": _("Read your details"),
        "search": _("Searched for you"),
        "update": _("Changed your details"),
        "print": _("Printed a document about you"),
        "export": _("Exported your details"),
        "erase": _("Erased your details"),
    }
    return texts.get(entry.action, _("Other access"))


def _role_text(role: str, language: str) -> str:
    if role == "system":
        return _("Slussen itself (automatic)")
    if role == "public":
        return _("You, through the web form")
    try:
        sv, en = ROLE_LABELS[Role(role)]
    except ValueError:
        return role
    return en if language == "en" else sv


def _footer(canvas: Canvas, doc: SimpleDocTemplate) -> None:
    canvas.saveState()
    canvas.setFont(register_fonts()[0], 8)
    canvas.drawRightString(A4[0] - 20 * mm, 12 * mm, _("Page %(page)s", page=doc.page))
    canvas.restoreState()


def render_log_extract(extract: PatientExtract, *, timezone: str, language: str = "sv") -> bytes:
    """Render the extract to PDF bytes: heading, the patient's name and personnummer, a short
    plain-language explanation, and one table row per access (time, unit, what, role)."""
    regular, bold = register_fonts()
    zone = ZoneInfo(timezone)

    def when(moment: dt.datetime) -> str:
        clock = "'at' HH:mm" if language == "en" else "'kl.' HH.mm"
        return format_datetime(moment, f"d MMMM y {clock}", tzinfo=zone, locale=language)

    base = ParagraphStyle("body", fontName=regular, fontSize=10, leading=14)
    heading = ParagraphStyle("h1", parent=base, fontName=bold, fontSize=16, leading=20)
    small = ParagraphStyle("cell", parent=base, fontSize=9, leading=11)
    with force_locale(language):
        story: list[Flowable] = [
            Paragraph(_("Log extract — access to your details in Slussen"), heading),
            Spacer(1, 6 * mm),
            _labelled(_("Name"), extract.name, base),
            _labelled(_("Personnummer"), extract.identifier, base),
            _labelled(_("Made on"), when(extract.generated_at), base),
            Spacer(1, 5 * mm),
            Paragraph(
                _(
                    "Here you can see every time your details in Slussen were opened, "
                    "changed, printed or taken out, which care unit did it and in which role. "
                    "The list starts with the oldest."
                ),
                base,
            ),
            Paragraph(
                _(
                    "If something looks wrong, or you have questions, contact your "
                    "vårdcentral. You have the right to this information under the Patient "
                    "Data Act (patientdatalagen 8 kap. 5 §)."
                ),
                base,
            ),
            Spacer(1, 5 * mm),
        ]
        head = [_("Date and time"), _("Care unit"), _("What was done"), _("Role")]
        data = [[Paragraph(f"<b>{_escape(text)}</b>", small) for text in head]]
        for entry in extract.entries:
            data.append(
                [
                    Paragraph(when(entry.occurred_at), small),
                    Paragraph(_escape(entry.unit_name or _("No care unit")), small),
                    Paragraph(_escape(_action_text(entry)), small),
                    Paragraph(_escape(_role_text(entry.actor_role, language)), small),
                ]
            )
        if not extract.entries:
            data.append([Paragraph(_("No access is recorded."), small), "", "", ""])
        table = LongTable(data, colWidths=[38 * mm, 50 * mm, 52 * mm, 30 * mm], repeatRows=1)
        table.setStyle(
            TableStyle(
                [
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
                    ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.grey),
                    ("TOPPADDING", (0, 0), (-1, -1), 3),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
                ]
            )
        )
        story.append(table)
        story.append(Spacer(1, 5 * mm))
        story.append(Paragraph(_("Number of accesses: %(n)s", n=len(extract.entries)), base))
        buffer = io.BytesIO()
        doc = a4_document(buffer, title=_("Log extract"), top_mm=20)
        doc.build(story, onFirstPage=_footer, onLaterPages=_footer)
    return buffer.getvalue()


def _labelled(label: str, value: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(f"<b>{_escape(label)}:</b> {_escape(value)}", style)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
