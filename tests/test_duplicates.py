"""No rule written twice: pylint's similarity checker over slussen/ finds no repeated code.

Plain `pylint --enable=duplicate-code` compares whole files with each other, to the letter. A rule
copied inside one module, or copied with its variables renamed, slips past that. So this test feeds
pylint's checker (`Symilar`, configured in pyproject.toml's `[tool.pylint.similarities]`) one piece
per top-level definition, with the definition's own local names (arguments, assigned names) folded
to one placeholder: two functions that do the same with other variable names then look alike,
while what they call, the attributes they touch and their literals still have to match.
Templates are not domain logic and are not read."""

from __future__ import annotations

import ast
import contextlib
import io
import re
import sys
import tokenize
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from pylint.checkers.symilar import Symilar

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "slussen"
SETTINGS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pylint"]["similarities"]
LOCAL = "_"


@dataclass(frozen=True)
class Piece:
    """One top-level definition of a module: its name for Symilar and where its lines start."""

    name: str
    path: str
    first_line: int


def _local_names(node: ast.AST) -> set[str]:
    """The names a definition binds itself: arguments, assignment and loop targets."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.arg):
            names.add(sub.arg)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.add(sub.id)
        elif isinstance(sub, ast.ExceptHandler) and sub.name:
            names.add(sub.name)
    return names


def _fold_locals(lines: list[str], local: set[str]) -> list[str]:
    """The lines with every use of a local name replaced by one placeholder (not attributes of the
    same name, nor keyword arguments), so that the line numbers stay as they are."""
    out = [list(line) for line in lines]
    tokens = list(tokenize.generate_tokens(io.StringIO("".join(lines)).readline))
    depth = 0
    for index, token in enumerate(tokens):
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
        if token.type != tokenize.NAME or token.string not in local:
            continue
        before = tokens[index - 1].string if index else ""
        after = tokens[index + 1].string if index + 1 < len(tokens) else ""
        if before == "." or (depth and after == "="):
            continue
        (row, start), (_, end) = token.start, token.end
        out[row - 1][start:end] = [LOCAL] + [""] * (end - start - 1)
    return ["".join(chars) for chars in out]


def _pieces(symilar: Symilar) -> dict[str, Piece]:
    pieces: dict[str, Piece] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines(keepends=True)
        relative = path.relative_to(ROOT).as_posix()
        for node in ast.parse(source).body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            assert node.end_lineno is not None
            chunk = lines[first - 1 : node.end_lineno]
            functions = node.body if isinstance(node, ast.ClassDef) else [node]
            for function in functions:
                if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    assert function.end_lineno is not None
                    start, end = function.lineno - first, function.end_lineno - first + 1
                    chunk[start:end] = _fold_locals(chunk[start:end], _local_names(function))
            name = f"{relative}@{first}"
            pieces[name] = Piece(name, relative, first)
            symilar.append_stream(name, io.StringIO("".join(chunk)))
    return pieces


REPORT = re.compile(r"^==(?P<name>\S+@\d+):\[(?P<start>\d+):(?P<end>\d+)\]$")


def find_duplicates() -> list[tuple[str, ...]]:
    """Each group of places sharing `min-similarity-lines` or more lines, as `path:first-last`."""
    symilar = Symilar(
        min_lines=SETTINGS["min-similarity-lines"],
        ignore_comments=SETTINGS["ignore-comments"],
        ignore_docstrings=SETTINGS["ignore-docstrings"],
        ignore_imports=SETTINGS["ignore-imports"],
        ignore_signatures=SETTINGS["ignore-signatures"],
    )
    pieces = _pieces(symilar)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        symilar.run()
    groups: list[tuple[str, ...]] = []
    current: list[str] = []
    for line in printed.getvalue().splitlines():
        match = REPORT.match(line)
        if match:
            piece = pieces[match["name"]]
            start = piece.first_line + int(match["start"])
            end = piece.first_line + int(match["end"]) - 1
            current.append(f"{piece.path}:{start}-{end}")
        elif current:
            groups.append(tuple(sorted(current)))
            current = []
    return groups


# Deliberate exceptions, each `path:first-last ~ path:first-last` as the failure lists it, with the
# reason beside it. None today: give a repeated rule one home instead of adding a line here.
ALLOWED: frozenset[str] = frozenset()


def test_no_rule_is_written_twice() -> None:
    """Each rule has one home: no six lines of slussen/ stand in two places (see the module's
    docstring for what counts as the same)."""
    found = [" ~ ".join(group) for group in find_duplicates()]
    repeated = [group for group in found if group not in ALLOWED]
    assert not repeated, "The same code stands in more than one place (give it one home):\n" + (
        "\n".join(repeated)
    )
    assert not ALLOWED - set(found), (
        f"No longer repeated, remove from ALLOWED: {ALLOWED - set(found)}"
    )


def test_the_check_sees_a_copy_with_other_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule copied inside one module with its variables renamed is found."""
    rule = """
def {name}({arg}, {other}):
    if {arg}.role not in ("system", "public") and {other} not in {arg}.unit_ids:
        {total} = 0
        for {item} in {arg}.unit_ids:
            {total} += {item}
        print({total})
        raise ValueError("Du arbetar inte på den enheten.")
    return {other}
"""
    package = tmp_path / "slussen"
    package.mkdir()
    (package / "module.py").write_text(
        rule.format(name="one", arg="actor", other="unit_id", total="n", item="i")
        + rule.format(name="two", arg="user", other="unit", total="total", item="u")
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert [set(group) for group in find_duplicates()] == [
        {"slussen/module.py:3-9", "slussen/module.py:12-18"}
    ]


if __name__ == "__main__":
    for group in find_duplicates():
        print(" ~ ".join(group))
