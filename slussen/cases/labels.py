"""Words for the case codes stored in the database (channels, contact ways, due dates, history
events), in the user's language, for the templates of every capability."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask_babel import gettext as _

from slussen.cases.engine import current_workflow
from slussen.i18n import localised


@functools.cache
def labels(language: str) -> dict[str, Callable[[str], str]]:
    """Label functions by template name; built once per UI language. An unknown code is shown as
    it is; an event's label comes from the workflow file."""
    channels = {
        "staff_flag": _("Flagged by staff"),
        "self_referral": _("Self-referral"),
        "phone": _("Phone call"),
        "message_1177": _("1177 message"),
    }
    contacts = {"post": _("Post"), "phone": _("Phone"), "1177": _("1177")}
    dues = {
        "first_contact": _("Send the invitation"),
        "reminder": _("Reminder"),
        "no_response": _("Close if no answer"),
        "book_visit": _("Book the mapping visit"),
        "mapping_visit": _("Mapping visit"),
        "follow_up_1": _("Follow-up 1"),
        "follow_up_2": _("Follow-up 2"),
        "evaluation": _("Six-month evaluation"),
        "evaluation_no_response": _("Close if the evaluation is not answered"),
        "reopened": _("Take up the reopened case"),
        "handover_answer": _("The association answers the hand-over request"),
        "handover_unanswered": _("The association has not answered: contact them"),
    }
    opened = str(_("Case opened"))

    def event_label(event: str) -> str:
        if event == "open":
            return opened
        transition = current_workflow().transitions.get(event)
        return localised(transition.label) if transition else event

    return {
        "channel_label": lambda code: channels.get(code, code),
        "contact_label": lambda code: contacts.get(code, code),
        "due_label": lambda code: dues.get(code, code.replace("_", " ")),
        "event_label": event_label,
    }
