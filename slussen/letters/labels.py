"""Words for the letter queue's statuses, in the user's language, for the templates."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask_babel import gettext as _


@functools.cache
def labels(language: str) -> dict[str, Callable[[str], str]]:
    """Label functions by template name; built once per UI language."""
    statuses = {
        "queued": _("waiting to be printed"),
        "held": _("held back"),
        "printed": _("printed"),
        "cancelled": _("cancelled"),
    }
    return {"letter_status": lambda code: statuses.get(code, code)}
