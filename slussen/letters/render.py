"""Letters as PDF: ReportLab platypus on an A4 canvas, in the fields of SS 03 43 21.

Page one has the letterhead (utgivarfält: the unit's name, address and phone) top left, the
reference field (referensfält: date in Swedish form and the case reference) top right, the address
field exactly inside the envelope window (position and size from the settings, in millimetres) and
the message field below. The lower-right 150 × 30 mm of every letter page stays empty for
PostNord's sorting codes. Enclosed forms follow the letter as paper questionnaires drawn from their
`forms/` definition, each page marked with the case reference and the form id.

Nothing here reads the database or a personnummer: `LetterData` holds exactly what is printed,
built by slussen.letters.services. Rendering is deterministic (ReportLab's invariant mode: fixed
creation date and document id), so the same data gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from xml.sax.saxutils import escape

import segno
from babel.dates import format_date
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Frame, Paragraph, Spacer, Table, TableStyle

from slussen.config import local_zone
from slussen.letters.definitions import DEMO_VALUES, LetterTemplate, blocks
from slussen.letters.pdfjoin import PdfJoiner
from slussen.pdf import register_fonts

PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN_LEFT = 20 * mm
MARGIN_RIGHT = 20 * mm
#: PostNord keeps this corner of the envelope side free for sorting codes (domain facts §4.5).
FREE_ZONE_WIDTH = 150 * mm
FREE_ZONE_HEIGHT = 30 * mm
#: The message field ends above the free zone.
MARGIN_BOTTOM = FREE_ZONE_HEIGHT + 4 * mm
#: Padding between the window's edge and the address text (envelopes shift a little).
WINDOW_PADDING = 4 * mm
ADDRESS_FONT_SIZE = 11
ADDRESS_MIN_FONT_SIZE = 8
#: Letters per ReportLab document when a batch is rendered; memory stays bounded by this.
CHUNK_SIZE = 20

_LOCALES = {"sv": "sv_SE", "en": "en_GB"}
_WORDS = {
    "sv": {
        "date": "Datum",
        "reference": "Ärende",
        "page": "Sida",
        "phone": "Telefon",
        "answer_title": "Svara på nätet",
        "answer_go": "Gå till",
        "answer_code": "Skriv in koden",
        "answer_qr": "Du kan också läsa av QR-koden med mobilens kamera.",
        "answer_once": "Koden gäller en gång.",
        "who": "Vem",
        "when": "När",
        "by": "senast",
        "where": "Plats",
        "time": "Tid",
        "contact": "Kontakt",
        "next_times": "Nästa tillfällen",
        "cost": "Kostnad",
        "free": "Det kostar inget",
        "bring": "Ta med",
        "actor_patient": "Du",
        "actor_coach": "Din hälsocoach",
        "actor_companion": "Du och en följeslagare",
        "form": "Formulär",
        "version": "version",
        "tick_one": "Kryssa i en ruta för varje fråga.",
        "tick_many": "Du kan kryssa i flera rutor.",
        "write": "Skriv här:",
        "cover": "Utskrift av brev",
        "forwarding": "Brev att vidarebefordra (skyddad identitet)",
        "letters": "Brev",
        "pages": "Sidor",
        "batch": "Omgång",
        "unit": "Enhet",
        "total": "Totalt",
        "kind": "Slag av brev",
        "count": "Antal",
        "cover_note": "Sidorna ligger i postnummerordning. Skriv ut enkelsidigt.",
        "forwarding_note": (
            "Breven har ingen adress. Skicka dem enligt rutinen för skyddad identitet."
        ),
    },
    "en": {
        "date": "Date",
        "reference": "Case",
        "page": "Page",
        "phone": "Phone",
        "answer_title": "Answer online",
        "answer_go": "Go to",
        "answer_code": "Enter the code",
        "answer_qr": "You can also scan the QR code with your phone's camera.",
        "answer_once": "The code works once.",
        "who": "Who",
        "when": "When",
        "by": "by",
        "where": "Place",
        "time": "Time",
        "contact": "Contact",
        "next_times": "Next times",
        "cost": "Cost",
        "free": "It is free",
        "bring": "Bring",
        "actor_patient": "You",
        "actor_coach": "Your health coach",
        "actor_companion": "You and a companion",
        "form": "Form",
        "version": "version",
        "tick_one": "Tick one box for each question.",
        "tick_many": "You may tick several boxes.",
        "write": "Write here:",
    },
}


def words(language: str) -> dict[str, str]:
    return {**_WORDS["sv"], **_WORDS.get(language, {})}


def format_letter_date(day: dt.date, language: str = "sv") -> str:
    """ "23 november 2026" (Swedish long form), "23 November 2026" in English."""
    return str(format_date(day, "long", locale=_LOCALES.get(language, "sv_SE")))


def format_letter_moment(moment: dt.datetime, language: str = "sv") -> str:
    """ "tisdag 5 mars 2030 kl. 10.00" in Swedish time (dates for patients are written out)."""
    local = moment.astimezone(local_zone())
    day = str(format_date(local.date(), "full", locale=_LOCALES.get(language, "sv_SE")))
    if language == "en":
        return f"{day} at {local:%H.%M}"
    return f"{day} kl. {local:%H.%M}"


# --- what is printed ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Letterhead:
    name: str
    street: str
    postal_line: str
    phone: str
    phone_hours: str


@dataclass(frozen=True)
class StepText:
    """One step of the action plan as printed."""

    text: str
    actor: str = "patient"
    due_on: dt.date | None = None
    #: The activity's details from the directory, when known: title, when (its next occasions,
    #: one a line), place, contact, bring (what to bring) and cost ("" for free of charge).
    activity: dict[str, str] | None = None


@dataclass(frozen=True)
class LetterData:
    """Everything one letter prints, in clear text. Never holds a personnummer."""

    letter_id: int
    template_id: str
    language: str
    letter_date: dt.date
    case_reference: str
    letterhead: Letterhead
    #: The lines in the envelope window; empty for a patient with protected identity.
    address: tuple[str, ...]
    #: Values of the inline placeholders.
    values: dict[str, str]
    plan_steps: tuple[StepText, ...] = ()
    answer_code: str | None = None
    answer_url: str | None = None
    #: Sort key of the batch (postcode digits).
    postcode: str = ""


@dataclass(frozen=True)
class Layout:
    """The envelope window in millimetres (settings letter_window_*) and the forms' print size."""

    window_top_mm: float = 45
    window_left_mm: float = 20
    window_width_mm: float = 90
    window_height_mm: float = 35
    large_print: bool = False

    @classmethod
    def from_settings(cls, settings: Any, *, large_print: bool | None = None) -> Layout:
        return cls(
            window_top_mm=settings.letter_window_top_mm,
            window_left_mm=settings.letter_window_left_mm,
            window_width_mm=settings.letter_window_width_mm,
            window_height_mm=settings.letter_window_height_mm,
            large_print=settings.letter_forms_large_print if large_print is None else large_print,
        )

    def window(self) -> tuple[float, float, float, float]:
        """The window rectangle in PDF points: (x0, y0, x1, y1), origin bottom left."""
        x0 = self.window_left_mm * mm
        y1 = PAGE_HEIGHT - self.window_top_mm * mm
        return x0, y1 - self.window_height_mm * mm, x0 + self.window_width_mm * mm, y1


@dataclass
class RenderContext:
    """The compiled templates, the parsed forms (`content.documents["forms"]`) and the layout."""

    templates: dict[str, LetterTemplate]
    forms: dict[str, dict[str, Any]]
    layout: Layout = field(default_factory=Layout)


# --- styles -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Styles:
    body: ParagraphStyle
    subject: ParagraphStyle
    bullet: ParagraphStyle
    detail: ParagraphStyle
    small: ParagraphStyle
    form_title: ParagraphStyle
    form_text: ParagraphStyle
    form_item: ParagraphStyle
    form_small: ParagraphStyle


def _styles(large_print: bool = False) -> _Styles:
    regular, bold = register_fonts()
    size = 16 if large_print else 12
    body = ParagraphStyle("body", fontName=regular, fontSize=12, leading=16, spaceAfter=8)
    return _Styles(
        body=body,
        subject=ParagraphStyle("subject", parent=body, fontName=bold, fontSize=14, leading=18),
        bullet=ParagraphStyle(
            "bullet", parent=body, leftIndent=14, bulletIndent=2, spaceAfter=3, bulletFontName=bold
        ),
        detail=ParagraphStyle(
            "detail", parent=body, leftIndent=14, fontSize=11, leading=14, spaceAfter=6
        ),
        small=ParagraphStyle("small", parent=body, fontSize=10, leading=13, spaceAfter=2),
        form_title=ParagraphStyle(
            "form_title",
            parent=body,
            fontName=bold,
            fontSize=size + 6,
            leading=size + 10,
            spaceAfter=10,
        ),
        form_text=ParagraphStyle(
            "form_text", parent=body, fontSize=size, leading=size * 1.35, spaceAfter=8
        ),
        form_item=ParagraphStyle(
            "form_item",
            parent=body,
            fontName=bold,
            fontSize=size,
            leading=size * 1.3,
            spaceAfter=4,
        ),
        form_small=ParagraphStyle(
            "form_small", parent=body, fontSize=9, leading=11, textColor=colors.black
        ),
    )


def _text(value: str) -> str:
    """Plain text as Paragraph markup: escaped, line breaks kept."""
    return escape(value).replace("\n", "<br/>")


# --- flowing text over pages --------------------------------------------------------------------


def _fill(frame: Frame, story: list[Flowable], canvas: Canvas) -> None:
    """Put as much of `story` into `frame` as fits, splitting a paragraph at the frame's end."""
    while story:
        head = story[0]
        if frame.add(head, canvas, trySplit=1):
            story.pop(0)
            continue
        parts = frame.split(head, canvas)
        if parts and frame.add(parts[0], canvas, trySplit=1):
            story[0:1] = parts[1:]
        return


def _flow(
    canvas: Canvas,
    story: list[Flowable],
    first: Frame,
    later: Callable[[int], Frame],
) -> int:
    """Lay `story` out on as many pages as it needs; `later(n)` draws page n's header and returns
    its frame. Returns the number of pages; refuses (ValueError) content larger than a page."""
    pages = 1
    frame = first
    while True:
        _fill(frame, story, canvas)
        if not story:
            return pages
        if frame._atTop:
            raise ValueError("a part of the letter is larger than a page")
        canvas.showPage()
        pages += 1
        frame = later(pages)


def _frame(x: float, y: float, width: float, height: float) -> Frame:
    return Frame(x, y, width, height, leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)


# --- the letter ---------------------------------------------------------------------------------


def address_font_size(lines: tuple[str, ...], layout: Layout) -> int | None:
    """The largest font size (11 down to 8 pt) at which the address fits inside the window, or
    None when it cannot fit (the letter is then held back)."""
    regular, _bold = register_fonts()
    x0, y0, x1, y1 = layout.window()
    width = x1 - x0 - 2 * WINDOW_PADDING
    height = y1 - y0 - 2 * WINDOW_PADDING
    for size in range(ADDRESS_FONT_SIZE, ADDRESS_MIN_FONT_SIZE - 1, -1):
        leading = size * 1.2
        widest = max((stringWidth(line, regular, size) for line in lines), default=0)
        if widest <= width and leading * len(lines) <= height:
            return size
    return None


def _draw_first_page(canvas: Canvas, data: LetterData, layout: Layout, language: str) -> None:
    regular, bold = register_fonts()
    w = words(language)
    head = data.letterhead
    x0, _y0, _x1, y1 = layout.window()
    # Letterhead (utgivarfält): top left, above the window.
    top = PAGE_HEIGHT - 14 * mm
    canvas.setFont(bold, 12)
    canvas.drawString(MARGIN_LEFT, top, head.name)
    canvas.setFont(regular, 9)
    lines = [head.street, head.postal_line, f"{w['phone']} {head.phone}"]
    if head.phone_hours:
        lines.append(head.phone_hours)
    for index, line in enumerate(lines, start=1):
        canvas.drawString(MARGIN_LEFT, top - 4 * mm - (index - 1) * 11, line)
    # Reference field (referensfält): top right, above any window (settings keep its top
    # at 38 mm or lower, below the letterhead and this field).
    ref_x = 120 * mm
    canvas.setFont(regular, 8)
    canvas.drawString(ref_x, top + 1, w["date"])
    canvas.drawString(ref_x + 45 * mm, top + 1, w["reference"])
    canvas.setFont(regular, 11)
    canvas.drawString(ref_x, top - 13, format_letter_date(data.letter_date, language))
    canvas.drawString(ref_x + 45 * mm, top - 13, data.case_reference)
    # Address field: inside the window.
    if data.address:
        size = address_font_size(data.address, layout) or ADDRESS_MIN_FONT_SIZE
        canvas.setFont(regular, size)
        baseline = y1 - WINDOW_PADDING - size
        for line in data.address:
            canvas.drawString(x0 + WINDOW_PADDING, baseline, line)
            baseline -= size * 1.2


def _draw_later_page(
    canvas: Canvas, data: LetterData, language: str, number: int, label: str = ""
) -> None:
    regular, _bold = register_fonts()
    w = words(language)
    canvas.setFont(regular, 9)
    y = PAGE_HEIGHT - 14 * mm
    canvas.drawString(MARGIN_LEFT, y, data.letterhead.name + (f" · {label}" if label else ""))
    canvas.drawRightString(
        PAGE_WIDTH - MARGIN_RIGHT,
        y,
        f"{w['reference']} {data.case_reference} · {w['page']} {number}",
    )


class _QrCode(Flowable):  # type: ignore[misc]
    """A QR code drawn as one filled rectangle per run of dark modules.

    segno (already a dependency, for TOTP enrolment) computes the matrix; ReportLab's
    QrCodeWidget draws the same code as thousands of validated shape objects, which took 150 ms
    a letter, more than the rest of the letter together."""

    def __init__(self, data: str, size: float) -> None:
        super().__init__()

        self.matrix = segno.make(data, error="m", micro=False).matrix
        self.width = self.height = size

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        count = len(self.matrix)
        module = self.width / (count + 4)  # two modules of quiet zone on each side
        canvas = self.canv
        canvas.setFillColor(colors.black)
        for row_index, row in enumerate(self.matrix):
            y = self.height - (row_index + 3) * module
            start = None
            for col, dark in enumerate([*row, 0]):
                if dark and start is None:
                    start = col
                elif not dark and start is not None:
                    canvas.rect(
                        (start + 2) * module, y, (col - start) * module, module, stroke=0, fill=1
                    )
                    start = None


class _AnswerBox(Flowable):  # type: ignore[misc]
    """The answer code, the address and a QR code, in a box that is never split."""

    def __init__(self, data: LetterData, language: str, styles: _Styles) -> None:
        super().__init__()
        w = words(language)
        code = data.answer_code or ""
        url = data.answer_url or ""
        qr_size = 30 * mm
        drawing = _QrCode(url, qr_size)
        base = url.rsplit("/", 1)[0] if "/" in url else url
        text = [
            Paragraph(f"<b>{escape(w['answer_title'])}</b>", styles.body),
            Paragraph(f"{escape(w['answer_go'])} {escape(base)}", styles.small),
            Paragraph(f"{escape(w['answer_code'])}: <b>{escape(code)}</b>", styles.body),
            Paragraph(f"{escape(w['answer_qr'])} {escape(w['answer_once'])}", styles.small),
        ]
        self.table = Table([[drawing, text]], colWidths=[qr_size + 6 * mm, None])
        self.table.setStyle(
            TableStyle(
                [
                    ("BOX", (0, 0), (-1, -1), 0.8, colors.black),
                    ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                    ("LEFTPADDING", (0, 0), (-1, -1), 3 * mm),
                    ("TOPPADDING", (0, 0), (-1, -1), 2 * mm),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 2 * mm),
                ]
            )
        )

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        width, height = self.table.wrap(available_width, available_height)
        self.width, self.height = width, height + 20
        return self.width, self.height

    def draw(self) -> None:
        self.table.drawOn(self.canv, 0, 12)


def _step_flowables(data: LetterData, language: str, styles: _Styles) -> list[Flowable]:
    w = words(language)
    out: list[Flowable] = []
    for step in data.plan_steps:
        out.append(Paragraph(f"<b>{_text(step.text)}</b>", styles.bullet, bulletText="•"))
        details = [f"{w['who']}: {w.get('actor_' + step.actor, step.actor)}"]
        if step.due_on is not None:
            details.append(f"{w['when']}: {w['by']} {format_letter_date(step.due_on, language)}")
        activity = step.activity or {}
        if activity.get("title") and activity["title"] != step.text:
            details.append(activity["title"])
        times = [t for t in activity.get("when", "").split("\n") if t]
        if len(times) == 1:
            details.append(f"{w['time']}: {times[0]}")
        elif times:
            details.append(f"{w['next_times']}:")
            details.extend(f"– {t}" for t in times)
        for key, label in (("place", "where"), ("contact", "contact"), ("bring", "bring")):
            if activity.get(key):
                details.append(f"{w[label]}: {activity[key]}")
        if "cost" in activity:
            details.append(f"{w['cost']}: {activity['cost'] or w['free']}")
        out.append(Paragraph("<br/>".join(_text(d) for d in details), styles.detail))
    return out


def _body_flowables(
    data: LetterData, template: LetterTemplate, context: RenderContext, styles: _Styles
) -> list[Flowable]:
    language = data.language if data.language in template.variants else "sv"
    variant = template.variant(language)
    values = {
        **data.values,
        "answer_code": data.answer_code or "",
        "answer_url": data.answer_url or "",
    }
    story: list[Flowable] = [Paragraph(_text(variant.subject.format(**values)), styles.subject)]
    for kind, part in blocks(variant.body):
        if kind == "block":
            if part == "plan_steps":
                story.extend(_step_flowables(data, language, styles))
            elif part == "enclosures":
                for form_id in template.enclose:
                    title = context.forms.get(form_id, {}).get("title", {})
                    name = title.get(language) or title.get("sv") or form_id
                    story.append(Paragraph(_text(name), styles.bullet, bulletText="•"))
                story.append(Spacer(1, 4))
            elif part == "answer_box":
                story.append(_AnswerBox(data, language, styles))
        elif kind == "list":
            story.extend(
                Paragraph(_text(item.format(**values)), styles.bullet, bulletText="•")
                for item in part
            )
            story.append(Spacer(1, 5))
        else:
            story.append(Paragraph(_text(part.format(**values)), styles.body))
    return story


def draw_letter(canvas: Canvas, data: LetterData, context: RenderContext) -> int:
    """Draw one letter and its enclosures on `canvas`, each on new pages; returns the pages."""
    template = context.templates[data.template_id]
    language = data.language if data.language in template.variants else "sv"
    styles = _styles()
    layout = context.layout
    _x0, y0, _x1, _y1 = layout.window()
    _draw_first_page(canvas, data, layout, language)
    message_top = y0 - 12 * mm
    width = PAGE_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    first = _frame(MARGIN_LEFT, MARGIN_BOTTOM, width, message_top - MARGIN_BOTTOM)

    def later(number: int) -> Frame:
        _draw_later_page(canvas, data, language, number)
        top = PAGE_HEIGHT - 24 * mm
        return _frame(MARGIN_LEFT, MARGIN_BOTTOM, width, top - MARGIN_BOTTOM)

    pages = _flow(canvas, _body_flowables(data, template, context, styles), first, later)
    canvas.showPage()
    for form_id in template.enclose:
        pages += draw_form(
            canvas,
            context.forms[form_id],
            form_id,
            data.case_reference,
            language,
            large_print=layout.large_print,
        )
    return pages


# --- enclosed forms -----------------------------------------------------------------------------


class _TickBoxes(Flowable):  # type: ignore[misc]
    """An item's options as tick boxes, one per line, never split from each other."""

    def __init__(self, labels: list[str], style: ParagraphStyle) -> None:
        super().__init__()
        self.labels = labels
        self.style = style
        self.box = style.fontSize * 1.05
        self.row = style.fontSize * 1.9

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        self.width = available_width
        self.height = self.row * len(self.labels) + 4
        return self.width, self.height

    def draw(self) -> None:
        canvas = self.canv
        canvas.setLineWidth(1)
        canvas.setFont(self.style.fontName, self.style.fontSize)
        y = self.height - self.row
        for label in self.labels:
            canvas.rect(12, y + 2, self.box, self.box, stroke=1, fill=0)
            canvas.drawString(12 + self.box + 8, y + 2 + self.box * 0.18, label)
            y -= self.row


class _WriteLines(Flowable):  # type: ignore[misc]
    def __init__(self, count: int, size: float) -> None:
        super().__init__()
        self.count = count
        self.gap = size * 2

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        self.width = available_width
        self.height = self.gap * self.count + 4
        return self.width, self.height

    def draw(self) -> None:
        self.canv.setLineWidth(0.5)
        for index in range(1, self.count + 1):
            y = self.height - index * self.gap
            self.canv.line(12, y, self.width, y)


class _Together(Flowable):  # type: ignore[misc]
    """Flowables kept on one page (an item with its options)."""

    def __init__(self, parts: list[Flowable]) -> None:
        super().__init__()
        self.parts = parts
        self.sizes: list[tuple[float, float]] = []

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        self.sizes = [p.wrap(available_width, available_height) for p in self.parts]
        self.width = available_width
        self.height = sum(h for _w, h in self.sizes) + sum(
            p.getSpaceAfter() for p in self.parts[:-1]
        )
        return self.width, self.height

    def draw(self) -> None:
        y = self.height
        for part, (_w, h) in zip(self.parts, self.sizes, strict=True):
            y -= h
            part.drawOn(self.canv, 0, y)
            y -= part.getSpaceAfter()

    def getSpaceAfter(self) -> float:
        return 12


def _label(value: Any, language: str, fallback: str = "") -> str:
    if isinstance(value, dict):
        return str(value.get(language) or value.get("sv") or fallback)
    return str(value) if isinstance(value, str) else fallback


def _options(form: dict[str, Any], item: dict[str, Any]) -> list[dict[str, Any]]:
    options = item.get("options", [])
    if isinstance(options, str):
        options = form.get("option_sets", {}).get(options, {}).get("options", [])
    return [o for o in options if isinstance(o, dict)] if isinstance(options, list) else []


def _ordered_items(form: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """(group title or None, item) in the order the groups list them, then any left over."""
    items = {i.get("id"): i for i in form.get("items", []) if isinstance(i, dict)}
    ordered: list[tuple[str | None, dict[str, Any]]] = []
    seen: set[Any] = set()
    for group in form.get("groups", []) or []:
        first = True
        for item_id in group.get("items", []):
            if item_id in items and item_id not in seen:
                ordered.append((group.get("id") if first else None, items[item_id]))
                seen.add(item_id)
                first = False
    ordered.extend((None, item) for item_id, item in items.items() if item_id not in seen)
    return ordered


def form_story(
    form: dict[str, Any], form_id: str, language: str, *, large_print: bool = False
) -> list[Flowable]:
    """A form definition (the parsed forms/*.toml) as flowables of a paper questionnaire."""
    styles = _styles(large_print)
    w = words(language)
    story: list[Flowable] = [
        Paragraph(_text(_label(form.get("title"), language, form_id)), styles.form_title)
    ]
    if form.get("instructions"):
        story.append(Paragraph(_text(_label(form["instructions"], language)), styles.form_text))
    if form.get("recall_period"):
        story.append(Paragraph(_text(_label(form["recall_period"], language)), styles.form_text))
    groups = {g.get("id"): g for g in form.get("groups", []) or [] if isinstance(g, dict)}
    kinds = {i.get("type", "choice") for i in form.get("items", []) if isinstance(i, dict)}
    hint = w["tick_one"] if kinds <= {"choice"} else w["tick_many"]
    story.append(Paragraph(_text(hint), styles.form_text))
    # Tick items (an interest area each) are one box each, beside their text; the boxes of a
    # group are drawn together, never split from each other.
    ticks: list[str] = []

    def end_ticks() -> None:
        if ticks:
            story.append(_TickBoxes(list(ticks), styles.form_text))
            story.append(Spacer(1, 6))
            ticks.clear()

    number = 0
    for group_id, item in _ordered_items(form):
        if group_id is not None and len(groups) > 1:
            end_ticks()
            title = _label(groups[group_id].get("title"), language)
            if title:
                story.append(Paragraph(_text(title), styles.form_title))
        kind = item.get("type", "choice")
        text = _label(item.get("text"), language, item.get("id", ""))
        if kind == "tick":
            ticks.append(text)
            continue
        end_ticks()
        number += 1
        parts: list[Flowable] = [Paragraph(f"{number}. " + _text(text), styles.form_item)]
        if kind == "text":
            parts.append(Paragraph(_text(w["write"]), styles.form_text))
            parts.append(_WriteLines(3, styles.form_text.fontSize))
        else:
            labels = [_label(o, language, str(o.get("code", ""))) for o in _options(form, item)]
            if kind == "checklist":
                parts.append(Paragraph(_text(w["tick_many"]), styles.form_text))
            parts.append(_TickBoxes(labels, styles.form_text))
        story.append(_Together(parts))
    end_ticks()
    if form.get("copyright"):
        story.append(Spacer(1, 6))
        story.append(Paragraph(_text(str(form["copyright"])), styles.form_small))
    return story


def draw_form(
    canvas: Canvas,
    form: dict[str, Any],
    form_id: str,
    case_reference: str,
    language: str,
    *,
    large_print: bool = False,
) -> int:
    """Draw an enclosed form on new pages; every page carries the case reference and the form
    id (so a returned page can be matched); returns the number of pages."""
    regular, _bold = register_fonts()
    w = words(language)
    version = form.get("version", 1)
    width = PAGE_WIDTH - MARGIN_LEFT - MARGIN_RIGHT

    def marks(number: int) -> Frame:
        canvas.setFont(regular, 10)
        label = (
            f"{w['reference']} {case_reference} · {w['form']} {form_id} "
            f"({w['version']} {version}) · {w['page']} {number}"
        )
        canvas.drawString(MARGIN_LEFT, PAGE_HEIGHT - 12 * mm, label)
        canvas.drawString(MARGIN_LEFT, 12 * mm, label)
        return _frame(MARGIN_LEFT, 20 * mm, width, PAGE_HEIGHT - 40 * mm)

    story = form_story(form, form_id, language, large_print=large_print)
    pages = _flow(canvas, story, marks(1), marks)
    canvas.showPage()
    return pages


# --- documents ----------------------------------------------------------------------------------


def new_canvas(buffer: BinaryIO, title: str = "Slussen") -> Canvas:
    """A canvas in invariant mode: fixed creation date and document id, same bytes every time."""
    canvas = Canvas(buffer, pagesize=A4, invariant=1, pageCompression=1)
    canvas.setTitle(title)
    canvas.setAuthor("Slussen")
    canvas.setCreator("Slussen")
    return canvas


def render_letter(data: LetterData, context: RenderContext) -> bytes:
    """One letter with its enclosures as a PDF (the preview, and a test's unit)."""
    return render_chunk([data], context)


def render_chunk(letters: Iterable[LetterData], context: RenderContext) -> bytes:
    buffer = io.BytesIO()
    canvas = new_canvas(buffer)
    for data in letters:
        draw_letter(canvas, data, context)
    canvas.save()
    return buffer.getvalue()


@dataclass(frozen=True)
class Cover:
    """The batch's cover sheet: no patient data, counts per letter type."""

    batch_id: int
    unit_name: str
    printed_on: dt.date
    counts: list[tuple[str, int]]
    is_forwarding: bool = False


def render_cover(cover: Cover) -> bytes:
    regular, bold = register_fonts()
    w = words("sv")
    buffer = io.BytesIO()
    canvas = new_canvas(buffer)
    y = PAGE_HEIGHT - 30 * mm
    canvas.setFont(bold, 20)
    canvas.drawString(MARGIN_LEFT, y, w["forwarding"] if cover.is_forwarding else w["cover"])
    canvas.setFont(regular, 12)
    rows = [
        (w["batch"], str(cover.batch_id)),
        (w["unit"], cover.unit_name),
        (w["date"], format_letter_date(cover.printed_on)),
    ]
    y -= 14 * mm
    for label, value in rows:
        canvas.drawString(MARGIN_LEFT, y, label)
        canvas.drawString(MARGIN_LEFT + 40 * mm, y, value)
        y -= 7 * mm
    y -= 6 * mm
    canvas.setFont(bold, 12)
    canvas.drawString(MARGIN_LEFT, y, w["kind"])
    canvas.drawRightString(MARGIN_LEFT + 120 * mm, y, w["count"])
    canvas.setFont(regular, 12)
    for label, count in cover.counts:
        y -= 7 * mm
        canvas.drawString(MARGIN_LEFT, y, label)
        canvas.drawRightString(MARGIN_LEFT + 120 * mm, y, str(count))
    y -= 9 * mm
    canvas.setFont(bold, 12)
    canvas.drawString(MARGIN_LEFT, y, w["total"])
    canvas.drawRightString(MARGIN_LEFT + 120 * mm, y, str(sum(c for _l, c in cover.counts)))
    canvas.setFont(regular, 11)
    canvas.drawString(
        MARGIN_LEFT, y - 14 * mm, w["forwarding_note"] if cover.is_forwarding else w["cover_note"]
    )
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def sample_letter(context: RenderContext, template_id: str = "appointment") -> bytes:
    """A letter with demo data and the envelope window and PostNord's free zone outlined with
    dashes: print it, fold it and hold it behind the envelope (`slussen letters test-print`)."""
    data = LetterData(
        letter_id=0,
        template_id=template_id,
        language="sv",
        letter_date=dt.date(2026, 11, 23),
        case_reference=DEMO_VALUES["case_reference"],
        letterhead=Letterhead(
            DEMO_VALUES["unit_name"],
            DEMO_VALUES["unit_street"],
            DEMO_VALUES["unit_postal_line"],
            DEMO_VALUES["unit_phone"],
            DEMO_VALUES["unit_phone_hours"],
        ),
        address=(DEMO_VALUES["patient_name"], "Storgatan 12 lgh 1101", "722 15 Västerås"),
        values=dict(DEMO_VALUES),
        plan_steps=(StepText("Gå med i promenadgruppen", due_on=dt.date(2026, 12, 1)),),
        answer_code=DEMO_VALUES["answer_code"],
        answer_url=DEMO_VALUES["answer_url"] + "/K7QM4TZX9C",
    )
    buffer = io.BytesIO()
    canvas = new_canvas(buffer)
    x0, y0, x1, y1 = context.layout.window()
    canvas.saveState()
    canvas.setDash(3, 3)
    canvas.setLineWidth(0.5)
    canvas.rect(x0, y0, x1 - x0, y1 - y0)
    canvas.rect(PAGE_WIDTH - FREE_ZONE_WIDTH, 0, FREE_ZONE_WIDTH, FREE_ZONE_HEIGHT)
    canvas.restoreState()
    draw_letter(canvas, data, context)
    canvas.save()
    return buffer.getvalue()


def _chunks(letters: Iterable[LetterData], size: int) -> Iterator[list[LetterData]]:
    chunk: list[LetterData] = []
    for data in letters:
        chunk.append(data)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_batch(
    out: BinaryIO,
    cover: Cover,
    letters: Iterable[LetterData],
    context: RenderContext,
    *,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, str]:
    """Write the cover sheet and every letter, in the order given, as one PDF to `out`.

    `letters` may be a generator: it is consumed `chunk_size` letters at a time, each chunk
    rendered and copied to `out` before the next is built, so memory does not grow with the
    batch. `progress(n)` is called with the number of letters done. Returns (pages, sha256 of
    the PDF's content)."""
    joiner = PdfJoiner(out, title=f"Slussen omgang {cover.batch_id}")
    joiner.add(render_cover(cover))
    done = 0
    for chunk in _chunks(letters, chunk_size):
        joiner.add(render_chunk(chunk, context))
        done += len(chunk)
        if progress:
            progress(done)
    fingerprint = joiner.close()
    return joiner.page_count, fingerprint
