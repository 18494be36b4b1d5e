"""The action plan form offers the directory's suggestions for the mapped interests and barriers;
a step chosen from them keeps its activity (and takes its title when no text is written); an
activity the directory does not have is refused with the reason and nothing is saved."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask.testing import FlaskClient

from slussen.audit import Actor
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.config import today_local
from slussen.directory.schedule import WEEKDAY_CODES
from slussen.keystore import Keystore
from slussen.visits.services import Mapping, current_plan, save_mapping
from tests.builders import make_case, publish_activity
from tests.conftest import TEST_PASSWORD


def mapped_for_walks(store: Keystore, workflow: Workflow, coach: Actor, unit: Any) -> Case:
    case = make_case(store.session, store.ring, workflow, coach, unit.id, "mapping_booked")
    save_mapping(
        store,
        coach,
        case,
        Mapping(interests=["nature_walks"], barriers=["cost"], area="Centrum"),
        workflow=workflow,
        known_interests={"nature_walks", "crafts"},
        known_barriers={"cost"},
    )
    store.session.flush()
    return case


def publish_near(session: Any, coordinator: Any, **changes: Any) -> Any:
    """An activity every week from tomorrow (so it has occasions in the next 60 days)."""
    first = today_local() + dt.timedelta(days=1)
    return publish_activity(
        session,
        coordinator,
        first_date=first,
        rrule="FREQ=WEEKLY;BYDAY=" + WEEKDAY_CODES[first.weekday()],
        **changes,
    )


def plan_form(case: Case, **fields: str) -> dict[str, str]:
    return {
        "version": str(case.version),
        "interest": "nature_walks",
        "barrier": "cost",
        "area": "Centrum",
        "goals": "Komma ut och träffa folk",
        "record": "0",
        **fields,
    }


def test_the_plan_form_suggests_by_the_mapping_and_a_chosen_step_keeps_its_activity(
    client: FlaskClient,
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    make_user: Any,
) -> None:
    case = mapped_for_walks(store, workflow, coach, unit)
    coordinator = make_user("coordinator", "katalogen")
    walk = publish_near(store.session, coordinator, title="Stavgång i parken")
    publish_near(store.session, coordinator, title="Stickcafé", categories=["crafts"])
    publish_near(store.session, coordinator, title="Dyr vandring", cost_sek=200)
    store.session.flush()
    client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})

    page = client.get(f"/arenden/{case.id}/kartlaggning").get_data(as_text=True)
    offered = page.split('<ol class="suggestions"', 1)[1].split("</ol>", 1)[0]
    # Walks, free of charge (the cost barrier); not crafts, not the walk that costs.
    assert "Stavgång i parken" in offered and "Kostnadsfritt" in offered
    assert "Stickcafé" not in offered and "Dyr vandring" not in offered
    assert f'<option value="{walk.activity_id}">Stavgång i parken (' in page

    response = client.post(
        f"/arenden/{case.id}/kartlaggning",
        data=plan_form(
            case,
            **{"step-0-activity": str(walk.activity_id), "step-1-text": "Ringa systern"},
        ),
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    store.session.expire_all()
    plan = current_plan(store, case)
    assert plan is not None
    assert [(s.text, s.activity_id) for s in plan.steps] == [
        ("Stavgång i parken", walk.activity_id),
        ("Ringa systern", None),
    ]
    # Shown again, the step's activity is selected.
    again = client.get(f"/arenden/{case.id}/kartlaggning").get_data(as_text=True)
    assert f'<option value="{walk.activity_id}" selected>Stavgång i parken (' in again


def test_a_step_with_an_activity_the_directory_does_not_have_is_refused(
    client: FlaskClient, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = mapped_for_walks(store, workflow, coach, unit)
    client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    response = client.post(
        f"/arenden/{case.id}/kartlaggning",
        data=plan_form(case, **{"step-0-activity": "999999", "step-0-text": "Kören"}),
    )
    assert response.status_code == 422
    assert (
        "Aktiviteten i ett steg finns inte i aktivitetskatalogen. Välj en annan."
        in response.get_data(as_text=True)
    )
    store.session.expire_all()
    assert current_plan(store, case) is None


def test_saving_with_times_of_day_comes_back_to_suggestions_ranked_by_them(
    client: FlaskClient,
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    make_user: Any,
) -> None:
    case = mapped_for_walks(store, workflow, coach, unit)
    coordinator = make_user("coordinator", "katalogen")
    publish_near(store.session, coordinator, title="Morgonpromenad", start_time=dt.time(9, 0))
    publish_near(store.session, coordinator, title="Kvällspromenad", start_time=dt.time(18, 0))
    store.session.flush()
    client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})

    def offered(html: str) -> list[str]:
        """The two walks in the order the suggestions list them."""
        listed = html.split('<ol class="suggestions"', 1)[1].split("</ol>", 1)[0]
        walks = [t for t in ("Morgonpromenad", "Kvällspromenad") if t in listed]
        return sorted(walks, key=listed.index)

    plain = client.get(f"/arenden/{case.id}/kartlaggning").get_data(as_text=True)
    assert offered(plain) == ["Morgonpromenad", "Kvällspromenad"]  # the sooner first
    response = client.post(
        f"/arenden/{case.id}/kartlaggning",
        data={**plan_form(case, record="suggest"), "goals": "", "tid": "evening"},
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith(
        f"/arenden/{case.id}/kartlaggning?tid=evening#h-suggestions"
    )
    ranked = client.get(response.headers["Location"]).get_data(as_text=True)
    assert offered(ranked) == ["Kvällspromenad", "Morgonpromenad"]
    assert 'id="tid-evening" name="tid" value="evening" checked' in ranked
    assert "Passar tiden på dagen: kl. 18.00" in ranked
