"""Shared PDF helpers: the embedded TrueType fonts every Slussen PDF uses, and its A4 page.

Core PDF fonts (Helvetica…) are not embedded and cover Swedish only through the reader's own
substitutes; letters must print every character the same everywhere, so Slussen embeds Bitstream
Vera, which ships inside ReportLab (`reportlab/fonts/Vera.ttf`, `VeraBd.ttf`; a free licence that
allows embedding) and covers Latin-1 (å ä ö é ü and the rest) plus typographic dashes and quotes.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import BinaryIO

import reportlab
from reportlab.lib.fonts import addMapping
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont, TTFontFile
from reportlab.platypus import SimpleDocTemplate

#: The names the fonts are registered under (the access-log extract uses the same names).
REGULAR = "SlussenVera"
BOLD = "SlussenVera-Bold"
_FILES = {REGULAR: "Vera.ttf", BOLD: "VeraBd.ttf"}


def font_path(name: str = REGULAR) -> Path:
    """The TrueType file behind a registered Slussen font name."""
    return Path(reportlab.__file__).parent / "fonts" / _FILES[name]


def register_fonts() -> tuple[str, str]:
    """Register the embedded TrueType fonts once and return their (regular, bold) names."""
    registered = pdfmetrics.getRegisteredFontNames()
    if REGULAR not in registered or BOLD not in registered:
        for name in (REGULAR, BOLD):
            if name not in registered:
                pdfmetrics.registerFont(TTFont(name, str(font_path(name))))
        # <b> in a Paragraph picks the bold face (no italic face: italics print upright).
        addMapping(REGULAR, 0, 0, REGULAR)
        addMapping(REGULAR, 1, 0, BOLD)
        addMapping(REGULAR, 0, 1, REGULAR)
        addMapping(REGULAR, 1, 1, BOLD)
        addMapping(BOLD, 0, 0, BOLD)
        addMapping(BOLD, 1, 0, BOLD)
        addMapping(BOLD, 0, 1, BOLD)
        addMapping(BOLD, 1, 1, BOLD)
    return REGULAR, BOLD


@cache
def _covered() -> frozenset[int]:
    regular = TTFontFile(str(font_path(REGULAR)))
    bold = TTFontFile(str(font_path(BOLD)))
    return frozenset(regular.charToGlyph) & frozenset(bold.charToGlyph)


def missing_glyphs(text: str) -> list[str]:
    """Characters of `text` the letter fonts cannot print (in order of first appearance)."""
    covered = _covered()
    seen: list[str] = []
    for char in text:
        if char not in "\n\r\t" and ord(char) not in covered and char not in seen:
            seen.append(char)
    return seen


def a4_document(
    buffer: BinaryIO, *, title: str, side_mm: float = 20, top_mm: float = 18
) -> SimpleDocTemplate:
    """An A4 document for Slussen's reports: margins in millimetres (top and bottom alike),
    `title` in the metadata (which leaves the PDF too: never a name or personnummer), and
    invariant output (the same content gives the same bytes)."""
    return SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=side_mm * mm,
        rightMargin=side_mm * mm,
        topMargin=top_mm * mm,
        bottomMargin=top_mm * mm,
        title=title,
        author="Slussen",
        invariant=True,
    )
