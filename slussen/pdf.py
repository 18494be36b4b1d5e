"""Fonts for every PDF Slussen makes: a TrueType font that covers Swedish, embedded in the file.

ReportLab's standard Helvetica is not embedded and its Latin-1 encoding breaks on some characters;
Bitstream Vera (shipped inside ReportLab itself, free licence) covers å ä ö é ü and is embedded.
"""

from __future__ import annotations

from pathlib import Path

import reportlab
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT_DIR = Path(reportlab.__file__).resolve().parent / "fonts"
#: (name used in PDFs, file in ReportLab's fonts folder)
FONTS = (
    ("SlussenSans", "Vera.ttf"),
    ("SlussenSans-Bold", "VeraBd.ttf"),
    ("SlussenSans-Italic", "VeraIt.ttf"),
    ("SlussenSans-BoldItalic", "VeraBI.ttf"),
)


def register_fonts() -> dict[str, str]:
    """Register the fonts once; return {"regular", "bold", "italic", "bold_italic"} → name."""
    registered = set(pdfmetrics.getRegisteredFontNames())
    for name, filename in FONTS:
        if name not in registered:
            pdfmetrics.registerFont(TTFont(name, str(FONT_DIR / filename)))
    pdfmetrics.registerFontFamily(
        "SlussenSans",
        normal="SlussenSans",
        bold="SlussenSans-Bold",
        italic="SlussenSans-Italic",
        boldItalic="SlussenSans-BoldItalic",
    )
    return {
        "regular": "SlussenSans",
        "bold": "SlussenSans-Bold",
        "italic": "SlussenSans-Italic",
        "bold_italic": "SlussenSans-BoldItalic",
    }
