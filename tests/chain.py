"""The sluss chain through the real pages, one step a method, for the tests that walk it whole
(tests/test_workflow_words.py on a renamed workflow, tests/test_sentinels.py with a sentinel in
every free-text field).

Each step does what a person does in the browser: it reads the page the form is on (the case's
version comes from its hidden field, as the browser posts it), posts the form and expects the
redirect of a success. Answer codes are made with the case page's button and read from the
page it shows, as a coach reads one out on the phone."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from slussen.questionnaires import services as answers
from slussen.questionnaires.definitions import FormDef
from slussen.visits.services import swedish_holidays
from tests.questionnaires.test_questionnaires import answer_every_step

_VERSION = re.compile(r'name="version" value="(\d+)"')
_CODE = re.compile(r"Svarskod ([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{2}):")
_HANDOVER = re.compile(r'/arenden/\d+/overlamning/(\d+)"')
_STEP_OPTION = re.compile(r'<select id="ho-step" name="step_id">(.*?)</select>', re.DOTALL)
_OPTION = re.compile(r'<option value="(\d+)">')
_REFUSED = re.compile(r'<p class="flash flash-error">(.*?)</p>')


@dataclass(frozen=True)
class NetworkRow:
    """One row of the mapping page's network table."""

    label: str
    relation: str = "friend"
    closeness: int = 2
    frequency: str = "monthly"
    is_could_deepen: bool = False
    is_could_resume: bool = False


@dataclass(frozen=True)
class PlanStepRow:
    """One row of the action plan's steps."""

    text: str
    actor: str = "patient"
    note: str = ""


class ChainWalk:
    """One case walked through the pages by a logged-in coach (`staff`) and the patient
    (`patient`, anonymous, answering at /svar). `event` turns a shipped event name into the
    name the app's workflow gives it (a renamed workflow)."""

    def __init__(
        self,
        app: Flask,
        staff: FlaskClient,
        patient: FlaskClient,
        case_id: int,
        *,
        event: Callable[[str], str] = str,
    ) -> None:
        self.app = app
        self.staff = staff
        self.patient = patient
        self.case_id = case_id
        self.event = event
        self.codes: list[str] = []

    @property
    def url(self) -> str:
        return f"/arenden/{self.case_id}"

    def page(self, path: str = "") -> str:
        """The case page (or one of its pages, `path`), as the staff member sees it."""
        response = self.staff.get(self.url + path)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data(as_text=True)

    def post(self, path: str, data: dict[str, Any], *, form_page: str | None = "") -> str:
        """Post a form of the case and return the page the success redirects to, refusing one
        that says an error (a small form's refusal redirects too). The case's version is read
        from `form_page` (the page the form is on), as the browser sends it."""
        if form_page is not None:
            found = _VERSION.search(self.page(form_page))
            assert found, f"no version on {self.url}{form_page}"
            data = {"version": found.group(1), **data}
        response = self.staff.post(self.url + path, data=data)
        assert response.status_code == 302, response.get_data(as_text=True)
        page = self.page()
        refused = _REFUSED.search(page)
        assert refused is None, f"{path}: {refused and refused.group(1)}"
        return page

    # --- the steps -----------------------------------------------------------------------------

    def fire(self, name: str, text: str = "") -> str:
        """A simple event of the case page's buttons (`text`: its reason or note)."""
        return self.post(f"/handelse/{self.event(name)}", {"text": text} if text else {})

    def confirm(self, name: str, text: str) -> str:
        """An event that asks first (`confirm = true`): answered on its confirmation page."""
        path = f"/handelse/{self.event(name)}"
        return self.post(path, {"confirmed": "1", "text": text}, form_page=f"{path}/bekrafta")

    def forms(self, occasion: str) -> list[FormDef]:
        """The forms the patient answers on `occasion`, as the app's settings choose them."""
        content = self.app.extensions["slussen.content"]
        return answers.occasion_forms(
            content.compiled["workflow"],
            content.compiled["forms"],
            occasion,
            demo_forms=self.app.extensions["slussen.settings"].use_demo_forms,
        )

    def answer(
        self,
        occasion: str,
        pick: Callable[[Any], int],
        *,
        text: str = "Jag tycker om att gå i skogen",
    ) -> str:
        """A new answer code from the case page, then the patient answers every form of
        `occasion` online with it (`pick`: the code of each item, `text`: every free-text
        answer) and sends them. Returns the code."""
        shown = self.staff.post(self.url + "/svarskod", data={"occasion": occasion})
        assert shown.status_code == 200, shown.get_data(as_text=True)
        found = _CODE.search(shown.get_data(as_text=True))
        assert found, "the page shows no new answer code"
        code = found.group(1)
        self.codes.append(code)
        start = self.patient.post("/svar", data={"code": code})
        assert start.status_code == 302, start.get_data(as_text=True)
        answer_every_step(self.patient, self.forms(occasion), pick, start, text=text)
        sent = self.patient.post("/svar/skicka")
        assert sent.status_code == 302, sent.get_data(as_text=True)
        return code

    def resolve_screening(self, reason: str = "") -> str:
        """The coach continues in the sluss after a positive screening."""
        return self.post("/screening", {"decision": "continue", "reason": reason})

    def book(self, place: str = "Rum 3", *, day: dt.date | None = None) -> str:
        """Book the mapping visit at 10:00 on `day` (by default the first weekday ten days
        ahead or later that is no holiday, so the booking page does not warn)."""
        if day is None:
            day = dt.date.today() + dt.timedelta(days=10)
            while day.weekday() >= 5 or day in swedish_holidays(day.year):
                day += dt.timedelta(days=1)
        data = {"day": day.isoformat(), "time": "10:00", "place": place, "duration": "45"}
        return self.post("/boka", data, form_page="/boka")

    def map_and_plan(
        self,
        *,
        network: Sequence[NetworkRow] = (),
        interests: Sequence[str] = (),
        barriers: Sequence[str] = (),
        barrier_notes: str = "",
        notes: str = "",
        area: str = "",
        goals: str = "Träffa andra",
        steps: Sequence[PlanStepRow] = (PlanStepRow("Promenadgruppen"),),
    ) -> str:
        """The mapping page, saved and the visit recorded with the action plan."""
        data: dict[str, Any] = {
            "interest": list(interests),
            "barrier": list(barriers),
            "barrier_notes": barrier_notes,
            "notes": notes,
            "area": area,
            "goals": goals,
            "record": "1",
        }
        for i, row in enumerate(network):
            data[f"net-{i}-label"] = row.label
            data[f"net-{i}-relation"] = row.relation
            data[f"net-{i}-closeness"] = str(row.closeness)
            data[f"net-{i}-frequency"] = row.frequency
            if row.is_could_deepen:
                data[f"net-{i}-deepen"] = "1"
            if row.is_could_resume:
                data[f"net-{i}-resume"] = "1"
        for i, step in enumerate(steps):
            data[f"step-{i}-text"] = step.text
            data[f"step-{i}-actor"] = step.actor
            if step.note:
                data[f"step-{i}-note"] = step.note
        return self.post("/kartlaggning", data, form_page="/kartlaggning")

    def hand_over(
        self,
        organisation: str,
        *,
        companion: str,
        meeting_place: str,
        note: str = "",
        day: dt.date | None = None,
    ) -> str:
        """Sluss 2: ask `organisation` to meet the patient for the plan's first step, record that
        it accepted, who meets the patient, when and where, and then that the first occasion
        went well."""
        page = self.page()
        options = _STEP_OPTION.search(page)
        step_ids = _OPTION.findall(options.group(1)) if options else []
        assert step_ids, "the case page offers no plan step for a hand-over"
        before = set(_HANDOVER.findall(page))
        page = self.post(
            "/overlamning", {"organisation": organisation, "step_id": step_ids[0]}, form_page=None
        )
        (handover_id,) = set(_HANDOVER.findall(page)) - before
        day = day or dt.date.today() + dt.timedelta(days=14)
        agreed = {
            "companion_name": companion,
            "meeting_day": day.isoformat(),
            "meeting_time": "18:00",
            "meeting_place": meeting_place,
        }
        path = f"/overlamning/{handover_id}"
        self.post(path, {"status": "accepted", **agreed, "note": note}, form_page=None)
        return self.post(path, {"status": "done", **agreed, "outcome": "went"}, form_page=None)

    def follow_up(self, how_it_went: str = "Bra", problem_solving: str = "") -> str:
        """Record the follow-up the case is due for (1 at the unit's page, 2 by phone)."""
        data = {"how_it_went": how_it_went, "problem_solving": problem_solving, "mode": "phone"}
        return self.post("/uppfoljning", data, form_page="/uppfoljning")
