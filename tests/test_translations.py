"""Every UI string has a Swedish translation, and the compiled catalog matches the source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "slussen" / "translations"


def _ids(catalog: object) -> set[str]:
    return {m.id if isinstance(m.id, str) else m.id[0] for m in catalog if m.id}  # type: ignore[attr-defined]


def test_every_string_in_the_code_has_a_swedish_translation(tmp_path: Path) -> None:
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "-o",
            str(pot),
            "--no-location",
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    with pot.open("rb") as fh:
        wanted = _ids(read_po(fh))
    with (TRANSLATIONS / "sv" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        swedish = read_po(fh)
    translated = {m.id if isinstance(m.id, str) else m.id[0] for m in swedish if m.id and m.string}
    missing = sorted(wanted - translated)
    assert missing == [], f"add Swedish for: {missing} (run `make translations`)"


def test_compiled_catalog_matches_source() -> None:
    with (TRANSLATIONS / "sv" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        source = {m.id: m.string for m in read_po(fh) if m.id}
    with (TRANSLATIONS / "sv" / "LC_MESSAGES" / "messages.mo").open("rb") as fh:
        compiled = {m.id: m.string for m in read_mo(fh) if m.id}
    assert compiled == source, "run `make translations` to compile the catalog"
