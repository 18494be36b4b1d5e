"""Where the shipped content lives: inside the wheel, or beside the package in a checkout.

The top-level `workflows/`, `forms/`, `letters/`, `config/` and `migrations/` directories are data,
never imported. A built wheel carries them under `slussen/_content/`; a source checkout (editable
install, `make run`) reads them from the repository root.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent

SHIPPED = ("workflows", "forms", "letters", "config", "migrations")


def shipped_dir(name: str) -> Path:
    """Return the shipped directory `name`; raise FileNotFoundError naming both places looked in."""
    if name not in SHIPPED:
        raise ValueError(f"unknown content directory {name!r}")
    for candidate in (_PACKAGE / "_content" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    looked = f"{_PACKAGE / '_content'} and {_PACKAGE.parent}"
    raise FileNotFoundError(f"the {name}/ directory is missing (looked in {looked})")
