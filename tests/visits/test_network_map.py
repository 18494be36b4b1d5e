"""The network map never clips a name: names wrap at spaces, a shortened one keeps its full name
as the dot's tooltip, and the picture's box holds every label wherever its dot sits."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from flask import Flask
from reportlab.pdfbase.pdfmetrics import stringWidth

from slussen.pdf import register_fonts
from slussen.visits.services import NetworkInput
from slussen.visits.views import label_lines, network_svg

SVG = "{http://www.w3.org/2000/svg}"

LONG = "Anna-Karin Wilhelmsdotter Strömberg-Lindqvist"


def member(label: str, closeness: int) -> NetworkInput:
    return NetworkInput(label, "friend", closeness, "monthly")


def test_short_names_are_whole_and_long_ones_wrap_at_spaces() -> None:
    assert label_lines("Mormor") == ["Mormor"]
    assert label_lines("Grannen  på tredje  våningen") == ["Grannen på", "tredje våningen"]
    lines = label_lines(LONG)
    assert len(lines) == 2 and lines[0] == "Anna-Karin" and lines[-1].endswith("…")
    assert all(len(line) <= 16 for line in lines)
    assert label_lines("Donaudampfschifffahrtsgesellschaft") == ["Donaudampfschif…"]


@pytest.mark.parametrize("count", [1, 4, 9])
def test_every_label_lies_inside_the_picture(app: Flask, count: int) -> None:
    names = [LONG, "Syster Ingrid", "Kören i Badelunda församling", "Bo", "Grannen Sture"]
    entries = [member(names[i % len(names)], 1 + i % 3) for i in range(count)]
    with app.test_request_context():
        svg = str(network_svg(entries))
    root = ET.fromstring(svg)  # noqa: S314 (our own output, not untrusted input)
    left, top, width, height = (float(v) for v in root.attrib["viewBox"].split())
    font = register_fonts()[0]
    checked = 0
    for text in root.iter(f"{SVG}text"):
        anchor = text.attrib.get("text-anchor", "start")
        size = float(text.attrib["font-size"])
        for span in text.iter(f"{SVG}tspan"):
            x, y = float(span.attrib["x"]), float(span.attrib["y"])
            w = stringWidth(span.text or "", font, size)
            start = x - w / 2 if anchor == "middle" else x - w if anchor == "end" else x
            assert left <= start and start + w <= left + width, (span.text, start, w)
            assert top <= y - size and y <= top + height, span.text
            checked += 1
    assert checked >= count
    # Each dot carries its member's whole name, so a shortened one is never lost.
    titles = [t.text for g in root.iter(f"{SVG}g") for t in g.iter(f"{SVG}title")]
    assert titles == [" ".join(n.split()) for n in (e.label for e in entries_in_rings(entries))]


def entries_in_rings(entries: list[NetworkInput]) -> list[NetworkInput]:
    """The order the map draws them: innermost ring first, as entered within a ring."""
    return sorted(entries, key=lambda e: e.closeness)
