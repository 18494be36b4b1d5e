"""Join PDFs that Slussen's ReportLab code made into one PDF, streaming, in bounded memory.

A batch of a thousand letters is rendered in chunks of a few letters; each chunk is a small,
complete ReportLab PDF. `PdfJoiner` copies every chunk's objects to the output file as it arrives,
renumbered, and keeps only the byte offset of each object and the page numbers; at `close()` it
writes one page tree, the catalogue, the cross-reference table and a trailer whose /ID is the
SHA-256 of everything written, so the same chunks always give the same bytes.

This is not a general PDF parser. It relies on what ReportLab writes (and refuses anything else
with JoinError): a classic cross-reference table, objects `N 0 obj … endobj` at the offsets the
table gives, and stream data after the object's dictionary. References (`N 0 R`) are renumbered in
the dictionary part only; stream data (compressed page content, font files) is copied untouched.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from typing import BinaryIO

_XREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF\s*$")
_REF = re.compile(rb"(?<![\d.])(\d+) 0 R\b")
_HEADER = re.compile(rb"^(\d+) 0 obj\b")
_TRAILER_REF = re.compile(rb"/(Root|Info) (\d+) 0 R")
_KIDS = re.compile(rb"/Kids\s*\[([^\]]*)\]")


class JoinError(ValueError):
    """A chunk is not the kind of PDF this joiner understands."""


def _objects(pdf: bytes) -> tuple[dict[int, bytes], dict[str, int]]:
    """The chunk's objects by number (the text between `N 0 obj` and `endobj`) and its trailer
    references (Root, Info)."""
    match = _XREF.search(pdf[-64:])
    if match is None:
        raise JoinError("no startxref at the end")
    start = int(match.group(1))
    if pdf[start : start + 4] != b"xref":
        raise JoinError("not a classic cross-reference table")
    lines = pdf[start:].split(b"\n")
    first, count = (int(x) for x in lines[1].split())
    if first != 0:
        raise JoinError("cross-reference table with several sections")
    offsets = []
    for number in range(1, count):
        fields = lines[2 + number].split()
        if fields[2] != b"n":
            raise JoinError("free objects in the table")
        offsets.append((int(fields[0]), number))
    offsets.sort()
    ends = [off for off, _n in offsets[1:]] + [start]
    objects: dict[int, bytes] = {}
    for (offset, number), end in zip(offsets, ends, strict=True):
        chunk = pdf[offset:end].rstrip()
        header = _HEADER.match(chunk)
        if header is None or int(header.group(1)) != number or not chunk.endswith(b"endobj"):
            raise JoinError(f"object {number} is not where the table says")
        objects[number] = chunk[header.end() : -len(b"endobj")].strip(b"\r\n")
    trailer = pdf[start:]
    refs = {name.decode(): int(num) for name, num in _TRAILER_REF.findall(trailer)}
    if "Root" not in refs:
        raise JoinError("no /Root in the trailer")
    return objects, refs


def _split_stream(body: bytes) -> tuple[bytes, bytes]:
    """(dictionary part, stream part) of an object; the stream part is copied untouched."""
    index = body.find(b"\nstream\n")
    if index < 0:
        return body, b""
    return body[:index], body[index:]


def _ref_number(body: bytes, key: bytes) -> int:
    match = re.search(rb"/" + key + rb" (\d+) 0 R", body)
    if match is None:
        raise JoinError(f"/{key.decode()} missing")
    return int(match.group(1))


class PdfJoiner:
    """Append ReportLab PDFs to `out` page by page; `close()` finishes the file."""

    #: Object numbers reserved for the joined file's own page tree, catalogue and info.
    PAGES, CATALOG, INFO = 1, 2, 3

    def __init__(self, out: BinaryIO, *, title: str = "Slussen") -> None:
        self.out = out
        self.title = title
        self.digest = hashlib.sha256()
        self.position = 0
        #: Byte offset of each object, by object number (index 0 unused); arrays of machine
        #: integers, so a batch of thousands of pages keeps 8 bytes per object, not an int object.
        self.offsets = array("q", [0, 0, 0, 0])
        self.pages = array("q")
        self._write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.digest.update(data)
        self.position += len(data)

    def _object(self, number: int, body: bytes) -> None:
        self.offsets[number] = self.position
        self._write(b"%d 0 obj\n" % number + body + b"\nendobj\n")

    @property
    def page_count(self) -> int:
        return len(self.pages)

    def add(self, pdf: bytes) -> int:
        """Copy every page of `pdf` (with what the pages use) to the output; returns its page
        count. Refuses a PDF this joiner does not understand (JoinError)."""
        objects, refs = _objects(pdf)
        catalog = objects[refs["Root"]]
        root_pages = _ref_number(catalog, b"Pages")
        kids_match = _KIDS.search(objects[root_pages])
        if kids_match is None:
            raise JoinError("the page tree has no /Kids")
        kids = [int(n) for n in _REF.findall(kids_match.group(1))]
        for kid in kids:
            if b"/Type /Page" not in objects[kid] or b"/Type /Pages" in objects[kid]:
                raise JoinError("a nested page tree")
        skipped = {refs["Root"], root_pages, refs.get("Info", -1)}
        mapping: dict[int, int] = {root_pages: self.PAGES}
        base = len(self.offsets)
        for number in sorted(objects):
            if number not in skipped:
                mapping[number] = base
                base += 1
                self.offsets.append(0)

        def renumber(match: re.Match[bytes]) -> bytes:
            old = int(match.group(1))
            if old not in mapping:
                raise JoinError(f"a reference to object {old}, which is not copied")
            return b"%d 0 R" % mapping[old]

        for number in sorted(objects):
            if number in skipped:
                continue
            head, stream = _split_stream(objects[number])
            self._object(mapping[number], _REF.sub(renumber, head) + stream)
        self.pages.extend(mapping[kid] for kid in kids)
        return len(kids)

    def close(self) -> str:
        """Write the page tree, catalogue, info, table and trailer; return the file's SHA-256
        over everything before the trailer (also its /ID)."""
        if not self.pages:
            raise JoinError("no pages to write")
        kids = b" ".join(b"%d 0 R" % n for n in self.pages)
        self._object(
            self.PAGES,
            b"<< /Type /Pages /Count %d /Kids [ %s ] >>" % (len(self.pages), kids),
        )
        self._object(self.CATALOG, b"<< /Type /Catalog /Pages %d 0 R >>" % self.PAGES)
        title = self.title.encode("ascii", "replace").replace(b"(", b"").replace(b")", b"")
        self._object(self.INFO, b"<< /Producer (Slussen) /Title (%s) >>" % title)
        fingerprint = self.digest.hexdigest()
        xref_at = self.position
        table = [b"xref\n0 %d\n" % len(self.offsets), b"0000000000 65535 f \n"]
        table.extend(b"%010d 00000 n \n" % off for off in self.offsets[1:])
        self._write(b"".join(table))
        identifier = fingerprint[:32].encode()
        self._write(
            b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R /ID [<%s><%s>] >>\n"
            % (len(self.offsets), self.CATALOG, self.INFO, identifier, identifier)
        )
        self._write(b"startxref\n%d\n%%%%EOF\n" % xref_at)
        return fingerprint
