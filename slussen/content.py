"""The content directories (workflows/, forms/, letters/): found, parsed and checked at start.

Each capability that owns content (the workflow engine, questionnaires, letters) writes a checker;
`slussen.capabilities` lists them in order, and `slussen content check` and create_app run them
all and refuse invalid content with file-and-line messages. This module knows no capability.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slussen.config import ConfigError, Settings
from slussen.paths import shipped_dir

CONTENT_KINDS = ("workflows", "forms", "letters")


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    message: str
    is_warning: bool = False

    def __str__(self) -> str:
        kind = "warning" if self.is_warning else "error"
        return f"{self.path}:{self.line}: {kind}: {self.message}"


class ContentError(ConfigError):
    """Content is invalid; `problems` holds every message, the text the first few."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__(f"invalid content: {shown}{more}")


@dataclass
class Content:
    """The parsed content files, by kind and file stem."""

    root: dict[str, Path]
    documents: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    sources: dict[str, dict[str, Path]] = field(default_factory=dict)
    #: What capabilities built from the documents (the workflow engine, form definitions…).
    compiled: dict[str, Any] = field(default_factory=dict)


#: A capability's content checker: returns problems and may fill `content.compiled`.
Checker = Callable[[Content], list[Problem]]


def content_dirs(settings: Settings, override: str | Path | None = None) -> dict[str, Path]:
    """Where each kind of content is read from: the deployer's directory wins per kind."""
    base = (
        Path(override)
        if override
        else (Path(settings.content_dir) if settings.content_dir else None)
    )
    dirs: dict[str, Path] = {}
    for kind in CONTENT_KINDS:
        if base is not None and (base / kind).is_dir():
            dirs[kind] = base / kind
        else:
            dirs[kind] = shipped_dir(kind)
    return dirs


_LINE_RE = re.compile(r"\(at line (\d+)")


def parse_documents(content: Content) -> list[Problem]:
    problems: list[Problem] = []
    for kind, directory in content.root.items():
        content.documents[kind] = {}
        content.sources[kind] = {}
        for path in _files(kind, directory):
            try:
                with path.open("rb") as fh:
                    content.documents[kind][path.stem] = tomllib.load(fh)
                content.sources[kind][path.stem] = path
            except tomllib.TOMLDecodeError as exc:
                match = _LINE_RE.search(str(exc))
                line = int(match.group(1)) if match else 1
                problems.append(Problem(path, line, f"not valid TOML: {exc}"))
            except UnicodeDecodeError:
                problems.append(Problem(path, 1, "not UTF-8 text"))
    return problems


def _files(kind: str, directory: Path) -> list[Path]:
    """The files of one kind. A deployer's forms/ replaces shipped forms file by file (so a
    licensed instrument can be supplied alone); workflows/ and letters/ are replaced whole."""
    paths = {p.stem: p for p in sorted(directory.glob("*.toml"))}
    shipped = shipped_dir(kind)
    if kind == "forms" and directory.resolve() != shipped.resolve():
        paths = {p.stem: p for p in sorted(shipped.glob("*.toml"))} | paths
    return [paths[stem] for stem in sorted(paths)]


def run_checkers(
    settings: Settings, checkers: Sequence[Checker], override: str | Path | None = None
) -> tuple[Content, list[Problem]]:
    """Parse all content and run `checkers` in order (unless a file is not even valid TOML);
    return the content with every problem found (errors and warnings)."""
    content = Content(root=content_dirs(settings, override))
    problems = parse_documents(content)
    if not any(not p.is_warning for p in problems):
        for checker in checkers:
            problems.extend(checker(content))
    return content, problems


def refuse_errors(content: Content, problems: list[Problem]) -> Content:
    """`content` when no problem is an error (warnings are allowed); else raise ContentError."""
    errors = [p for p in problems if not p.is_warning]
    if errors:
        raise ContentError(errors)
    return content
