"""Open data: the directory as Open Referral's Human Services Data Specification (HSDS 3) JSON.

Mapping (Slussen → HSDS): organisation → `organization` (sector as `legal_status`); activity →
`service` (title → name, cost → `fees_description` and `cost_options`, last verified →
`assured_date`, age groups → `minimum_age`/`maximum_age`, languages → `languages`, contact →
`contacts`, place → `service_at_locations[].location` with `addresses` and `accessibility`,
interest categories → `attributes` with taxonomy terms); the schedule → `schedules` (the RRULE's
parts as freq/interval/byday/bymonthday/until/count, extra dates as one-off schedules). What HSDS
has no field for (exception dates, companion, capacity, kind) travels in an `x_slussen` object on
each service, which HSDS allows and other tools ignore. The export is the HSDS API's paginated
list shape (`contents` with organizations and their services).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from slussen.accounts.models import User
from slussen.db import SLICE_SIZE, in_slices, reading
from slussen.directory.categories import AGE_GROUPS, AGE_RANGES, SECTORS, category_labels
from slussen.directory.models import Activity, ActivityRevision, Organisation
from slussen.directory.schedule import ScheduleError, describe, normalise_rrule
from slussen.directory.services import (
    ActivityData,
    InvalidActivity,
    can_moderate,
    check_activity,
    check_organisation,
    create_organisation,
    schedule_of,
    submit_activity,
    submit_revision,
    update_organisation,
)
from slussen.errors import Invalid

NAMESPACE = uuid.UUID("5d0c7a8e-3f0b-4b59-9a43-2b8c1f3e9d11")
TAXONOMY = "slussen-intresseomraden"


class HsdsError(Invalid):
    """The file cannot be imported; the message names the item and what is wrong."""


def _id(*parts: object) -> str:
    """A stable UUID for a sub-record, so exports are deterministic."""
    return str(uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts)))


def _schedules(activity: Activity, rev: ActivityRevision) -> list[dict[str, Any]]:
    base_id = activity.public_id
    end = (
        dt.datetime.combine(rev.first_date, rev.start_time)
        + dt.timedelta(minutes=rev.duration_minutes)
    ).time()
    times = {"opens_at": rev.start_time.strftime("%H:%M"), "closes_at": end.strftime("%H:%M")}
    main: dict[str, Any] = {
        "id": _id(base_id, "schedule"),
        "service_id": base_id,
        "dtstart": rev.first_date.isoformat(),
        "valid_from": rev.first_date.isoformat(),
        "description": describe(schedule_of(rev)),
        **times,
    }
    parts = dict(p.split("=", 1) for p in rev.rrule.split(";")) if rev.rrule else {}
    # HSDS knows weekly and monthly rules; others travel only in x_slussen.rrule.
    if parts.get("FREQ") in ("WEEKLY", "MONTHLY"):
        main["freq"] = parts["FREQ"]
        main["interval"] = int(parts.get("INTERVAL", "1"))
        for key in ("BYDAY", "BYMONTHDAY", "BYWEEKNO", "WKST"):
            if key in parts:
                main[key.lower()] = parts[key]
        if "COUNT" in parts:
            main["count"] = int(parts["COUNT"])
        if "UNTIL" in parts:
            until = dt.datetime.strptime(parts["UNTIL"][:8], "%Y%m%d").date().isoformat()
            main["until"] = until
            main["valid_to"] = until
    elif not parts:
        main["valid_to"] = rev.first_date.isoformat()
    out = [main]
    for day in rev.extra_dates:
        out.append(
            {
                "id": _id(base_id, "schedule", day),
                "service_id": base_id,
                "dtstart": day,
                "valid_from": day,
                "valid_to": day,
                "description": "Enstaka tillfälle",
                **times,
            }
        )
    return out


def _service(activity: Activity, rev: ActivityRevision, labels: dict[str, str]) -> dict[str, Any]:
    pid = activity.public_id
    service: dict[str, Any] = {
        "id": pid,
        "organization_id": activity.organisation.public_id,
        "name": rev.title,
        "description": rev.description,
        "status": "inactive" if activity.is_withdrawn else "active",
        "fees_description": "Kostnadsfritt"
        if rev.is_free
        else f"{rev.cost_sek} kr {rev.cost_note}".strip(),
        "schedules": _schedules(activity, rev),
        "languages": [
            {"id": _id(pid, "language", code), "service_id": pid, "code": code}
            for code in rev.languages
        ],
        "attributes": [
            {
                "id": _id(pid, "attribute", code),
                "link_id": pid,
                "link_type": "service",
                "taxonomy_term": {
                    "id": _id(TAXONOMY, code),
                    "code": code,
                    "name": labels.get(code, code),
                    "description": labels.get(code, code),
                    "vocabulary": TAXONOMY,
                },
            }
            for code in rev.categories
        ],
        "x_slussen": {
            "kind": rev.kind,
            "categories": rev.categories,
            "first_date": rev.first_date.isoformat(),
            "start_time": rev.start_time.strftime("%H:%M"),
            "duration_minutes": rev.duration_minutes,
            "rrule": rev.rrule,
            "extra_dates": rev.extra_dates,
            "exception_dates": rev.exception_dates,
            "age_groups": rev.age_groups,
            "has_companion": rev.has_companion,
            "capacity": rev.capacity,
            "area": rev.area,
            "cost_note": rev.cost_note,
            "bring": rev.bring,
        },
    }
    if activity.last_verified_on:
        service["assured_date"] = activity.last_verified_on.isoformat()
    if rev.cost_sek is not None:
        service["cost_options"] = [
            {
                "id": _id(pid, "cost"),
                "service_id": pid,
                "amount": rev.cost_sek,
                "currency": "SEK",
                "option": rev.cost_note,
            }
        ]
    if rev.age_groups:
        ranges = [AGE_RANGES[a] for a in rev.age_groups if a in AGE_RANGES]
        service["minimum_age"] = min(r[0] for r in ranges)
        service["maximum_age"] = max(r[1] for r in ranges)
        service["eligibility_description"] = ", ".join(AGE_GROUPS[a][0] for a in rev.age_groups)
    if rev.contact_name or rev.contact_phone or rev.contact_email:
        contact: dict[str, Any] = {"id": _id(pid, "contact"), "service_id": pid}
        if rev.contact_name:
            contact["name"] = rev.contact_name
        if rev.contact_email:
            contact["email"] = rev.contact_email
        if rev.contact_phone:
            contact["phones"] = [{"id": _id(pid, "contact-phone"), "number": rev.contact_phone}]
        service["contacts"] = [contact]
    location: dict[str, Any] = {
        "id": _id(pid, "location"),
        "location_type": "physical",
        "name": rev.place_name,
        "addresses": [
            {
                "id": _id(pid, "address"),
                "location_id": _id(pid, "location"),
                "address_1": rev.street,
                "city": rev.town,
                "region": rev.area,
                "state_province": "",
                "postal_code": rev.postcode,
                "country": "SE",
                "address_type": "physical",
            }
        ],
    }
    if rev.accessibility_notes:
        location["accessibility"] = [
            {
                "id": _id(pid, "accessibility"),
                "location_id": _id(pid, "location"),
                "description": rev.accessibility_notes,
            }
        ]
    service["service_at_locations"] = [
        {"id": _id(pid, "service-at-location"), "service_id": pid, "location": location}
    ]
    return service


def _organization(org: Organisation, services: list[dict[str, Any]]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": org.public_id,
        "name": org.name,
        "description": org.description,
        "legal_status": SECTORS[org.sector],
        "services": services,
        "x_slussen": {"sector": org.sector, "area": org.area, "contact_name": org.contact_name},
    }
    if org.email:
        item["email"] = org.email
    if org.website:
        item["website"] = org.website
    if org.phone:
        item["phones"] = [{"id": _id(org.public_id, "phone"), "number": org.phone}]
    return item


def export_directory(session: Session, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The published directory as an HSDS 3 paginated organization list (one page)."""
    if labels is None:
        labels = category_labels("sv")
    organisations = session.scalars(
        select(Organisation)
        .options(
            selectinload(Organisation.activities).selectinload(Activity.published),
        )
        .order_by(Organisation.name, Organisation.id)
    )
    contents = []
    for org in organisations:
        services = [
            _service(activity, activity.published, labels)
            for activity in org.activities
            if activity.published is not None
        ]
        contents.append(_organization(org, services))
    return {
        "total_items": len(contents),
        "total_pages": 1,
        "page_number": 1,
        "size": len(contents),
        "first_page": True,
        "last_page": True,
        "empty": not contents,
        "contents": contents,
    }


# --- Import --------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any, limit: int = 4000) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _data_from_service(service: dict[str, Any], where: str) -> ActivityData:
    """Slussen's activity from an HSDS service: the `x_slussen` object when present (our own
    export), otherwise the standard fields."""
    ext = _dict(service.get("x_slussen"))
    schedules = _dicts(service.get("schedules"))
    main = next((s for s in schedules if s.get("freq")), schedules[0] if schedules else {})
    try:
        first_date = dt.date.fromisoformat(
            str(ext.get("first_date") or main.get("dtstart") or main.get("valid_from"))
        )
        start_raw = str(ext.get("start_time") or main.get("opens_at") or "")[:5]
        start_time = dt.time.fromisoformat(start_raw)
    except ValueError:
        raise HsdsError(f"{where}: schemat saknar startdatum eller starttid.") from None
    duration = ext.get("duration_minutes")
    if not isinstance(duration, int):
        closes = str(main.get("closes_at") or "")[:5]
        try:
            end = dt.datetime.combine(first_date, dt.time.fromisoformat(closes))
            duration = int((end - dt.datetime.combine(first_date, start_time)).seconds / 60)
        except ValueError:
            duration = 60
    rule = ext.get("rrule")
    if not isinstance(rule, str):
        rule = ""
        if main.get("freq"):
            parts = [f"FREQ={main['freq']}"]
            if main.get("interval") and int(main["interval"]) != 1:
                parts.append(f"INTERVAL={int(main['interval'])}")
            for key in ("byday", "bymonthday", "byweekno", "wkst"):
                if main.get(key):
                    parts.append(f"{key.upper()}={main[key]}")
            if main.get("count"):
                parts.append(f"COUNT={int(main['count'])}")
            elif main.get("until"):
                parts.append("UNTIL=" + str(main["until"]).replace("-", "")[:8])
            rule = ";".join(parts)
    try:
        rule = normalise_rrule(rule)
    except ScheduleError as exc:
        raise HsdsError(f"{where}: {exc}") from None
    extra = ext.get("extra_dates")
    if not isinstance(extra, list):
        extra = [str(s.get("dtstart")) for s in schedules if s is not main and s.get("dtstart")]
    cost_options = _dicts(service.get("cost_options"))
    cost = None
    if cost_options and isinstance(cost_options[0].get("amount"), int | float):
        cost = int(cost_options[0]["amount"]) or None
    contacts = _dicts(service.get("contacts"))
    contact = contacts[0] if contacts else {}
    phones = _dicts(contact.get("phones"))
    sal = _dicts(service.get("service_at_locations"))
    location = _dict(sal[0].get("location")) if sal else {}
    addresses = _dicts(location.get("addresses"))
    address = addresses[0] if addresses else {}
    access = _dicts(location.get("accessibility"))
    categories = ext.get("categories")
    if not isinstance(categories, list):
        categories = [
            _dict(a.get("taxonomy_term")).get("code") for a in _dicts(service.get("attributes"))
        ]
    ages = ext.get("age_groups")
    if not isinstance(ages, list):
        low, high = service.get("minimum_age"), service.get("maximum_age")
        ages = []
        if isinstance(low, int | float) and isinstance(high, int | float):
            ages = [g for g, (a, b) in AGE_RANGES.items() if a <= high and b >= low]
    return ActivityData(
        title=_text(service.get("name"), 200),
        description=_text(service.get("description")),
        categories=[str(c) for c in categories if c],
        kind=str(ext.get("kind") or "leisure"),
        first_date=first_date,
        start_time=start_time,
        duration_minutes=int(duration),
        rrule=rule,
        extra_dates=[str(d) for d in extra],
        exception_dates=[str(d) for d in ext.get("exception_dates") or []],
        place_name=_text(location.get("name"), 200),
        street=_text(address.get("address_1"), 200),
        postcode=_text(address.get("postal_code"), 6),
        town=_text(address.get("city"), 100),
        area=_text(ext.get("area") or address.get("region"), 100),
        accessibility_notes=_text(access[0].get("description")) if access else "",
        cost_sek=cost,
        cost_note=_text(ext.get("cost_note"), 200),
        bring=_text(ext.get("bring"), 200),
        age_groups=[str(a) for a in ages],
        languages=[
            str(lang.get("code")) for lang in _dicts(service.get("languages")) if lang.get("code")
        ],
        has_companion=bool(ext.get("has_companion")),
        capacity=ext.get("capacity") if isinstance(ext.get("capacity"), int) else None,
        contact_name=_text(contact.get("name"), 200),
        contact_phone=_text(phones[0].get("number"), 40) if phones else "",
        contact_email=_text(contact.get("email"), 200),
    )


def _sector(item: dict[str, Any]) -> str:
    ext = _dict(item.get("x_slussen"))
    if ext.get("sector") in SECTORS:
        return str(ext["sector"])
    by_label = {label.casefold(): code for code, label in SECTORS.items()}
    return by_label.get(str(item.get("legal_status", "")).casefold(), "ideburen")


@dataclass
class _Service:
    """One checked service of the file: where it is, its HSDS id, the activity it describes."""

    where: str
    hsds_id: str
    data: ActivityData
    assured_on: dt.date | None
    is_inactive: bool


@dataclass
class _Organisation:
    """One checked organisation of the file with its services."""

    index: int
    hsds_id: str
    values: dict[str, str]
    services: list[_Service]


def _read_organisation(
    session: Session,
    index: int,
    item: Any,
    known: set[str],
    owners: dict[str, str],
) -> _Organisation:
    """Organisation `index` of the file parsed and checked, writing nothing; `owners` maps each
    service id seen so far in the file to its organisation's id. Refuses (HsdsError) the first
    bad field, or a service that belongs to another organisation (in the file or the directory)."""
    if not isinstance(item, dict) or not _text(item.get("id")) or not _text(item.get("name")):
        raise HsdsError(f"Organisation {index}: id och name krävs.")
    hsds_id = _text(item["id"], 36)
    ext = _dict(item.get("x_slussen"))
    phones = _dicts(item.get("phones"))
    values = {
        "name": _text(item.get("name"), 200),
        "sector": _sector(item),
        "description": _text(item.get("description")),
        "email": _text(item.get("email"), 200),
        "website": _text(item.get("website"), 300),
        "phone": _text(phones[0].get("number"), 40) if phones else "",
        "area": _text(ext.get("area"), 100),
        "contact_name": _text(ext.get("contact_name"), 200),
    }
    try:
        check_organisation(values)
    except InvalidActivity as exc:
        raise HsdsError(f"Organisation {index} ({values['name']}): {exc}") from None
    services = item.get("services") or []
    if not isinstance(services, list):
        raise HsdsError(f"Organisation {index}: services måste vara en lista.")
    checked = []
    for number, service in enumerate(services, start=1):
        where = f"Organisation {index}, aktivitet {number}"
        if not isinstance(service, dict) or not _text(service.get("id")):
            raise HsdsError(f"{where}: id krävs.")
        data = _data_from_service(service, where)
        data.categories = [c for c in data.categories if c in known]
        try:
            check_activity(data, known)
        except InvalidActivity as exc:
            raise HsdsError(f"{where} ({data.title}): {exc}") from None
        service_id = _text(service["id"], 36)
        owner = owners.get(service_id) or session.scalar(
            select(Organisation.public_id)
            .join(Activity, Activity.organisation_id == Organisation.id)
            .where(Activity.public_id == service_id)
        )
        if owner is not None and owner != hsds_id:
            raise HsdsError(f"{where}: aktiviteten hör till en annan organisation.")
        owners[service_id] = hsds_id
        assured_on = None
        if isinstance(service.get("assured_date"), str):
            with contextlib.suppress(ValueError):
                assured_on = dt.date.fromisoformat(service["assured_date"])
        checked.append(
            _Service(where, service_id, data, assured_on, service.get("status") == "inactive")
        )
    return _Organisation(index, hsds_id, values, checked)


def _write_organisation(
    session: Session,
    actor: User,
    item: _Organisation,
    *,
    known: set[str],
    today: dt.date,
    counts: dict[str, int],
) -> None:
    """Add or update one checked organisation and its activities, counting what changed."""
    org = session.scalar(select(Organisation).where(Organisation.public_id == item.hsds_id))
    try:
        if org is None:
            org = create_organisation(session, actor, **item.values)
            org.public_id = item.hsds_id
            counts["organisations"] += 1
        elif any(getattr(org, k) != v for k, v in item.values.items()):
            update_organisation(session, actor, org, **item.values)
            counts["organisations"] += 1
    except InvalidActivity as exc:
        raise HsdsError(f"Organisation {item.index} ({item.values['name']}): {exc}") from None
    for service in item.services:
        activity = session.scalar(select(Activity).where(Activity.public_id == service.hsds_id))
        if activity is not None and activity.organisation_id != org.id:
            # Checked before the first write; only a change made since then gets here.
            raise HsdsError(f"{service.where}: aktiviteten hör till en annan organisation.")
        data = service.data
        try:
            if activity is None:
                revision = submit_activity(
                    session, actor, org, data, known_categories=known, today=today
                )
                revision.activity.public_id = service.hsds_id
                activity = revision.activity
                counts["activities"] += 1
            elif (
                activity.published is None or ActivityData.from_revision(activity.published) != data
            ):
                submit_revision(session, actor, activity, data, known_categories=known, today=today)
                counts["activities"] += 1
            else:
                counts["unchanged"] += 1
        except InvalidActivity as exc:
            raise HsdsError(f"{service.where} ({data.title}): {exc}") from None
        if service.assured_on is not None:
            activity.last_verified_on = service.assured_on
        if service.is_inactive and not activity.is_withdrawn:
            activity.is_withdrawn = True
    session.flush()


def import_directory(
    session: Session,
    actor: User,
    document: Any,
    *,
    known_categories: list[str],
    today: dt.date,
    commit: Callable[[], None] | None = None,
    slice_size: int = SLICE_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Add or update organisations and activities from an HSDS organization list (coordinator
    only). Records are matched by their HSDS id; an activity whose content is unchanged gets no
    new revision, so importing the same file twice changes nothing. Imported content is approved
    by the importing coordinator.

    First the whole file is read and checked, writing nothing (with `commit`, in a reading
    transaction of its own: on SQLite it holds no write lock): it is refused (HsdsError) on the
    first bad item, whose message names it. Then each organisation is written with its
    activities as one item of `db.in_slices`: given `commit` (the CLI's `slice_commit`), slices
    of `slice_size` organisations are committed one by one, so pages do not wait for the import,
    and an import stopped half way keeps the slices before; the same file imported again
    finishes the rest and counts what was done as unchanged. Without `commit` (a web request)
    everything stays in the caller's transaction. `progress(done, total)` after each
    organisation once its slice is committed."""
    if not can_moderate(actor):
        raise HsdsError("Bara samordnaren kan importera.")
    items = document.get("contents") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise HsdsError("Filen är inte en HSDS-lista med organisationer (contents saknas).")
    known = set(known_categories)
    owners: dict[str, str] = {}
    if commit is not None:
        commit()  # the caller's transaction ends: the check's own takes no write lock
    with reading():
        checked = [
            _read_organisation(session, index, item, known, owners)
            for index, item in enumerate(items, start=1)
        ]
    counts = {"organisations": 0, "activities": 0, "unchanged": 0}

    def write(item: _Organisation) -> tuple[int]:
        _write_organisation(session, actor, item, known=known, today=today, counts=counts)
        return (item.index,)

    if commit is not None:
        commit()  # the check's reads end; each slice is a write transaction of its own
    written = in_slices(checked, write, commit=commit, size=slice_size)
    for done, _index in enumerate(written, start=1):
        if progress is not None:
            progress(done, len(checked))
    return counts
