"""HL7 FHIR R4 export: each form as a `Questionnaire`, a case's answers as
`QuestionnaireResponse`s (plain JSON dicts; the tests validate them with fhir.resources).

Only elements that exist unchanged in FHIR R4 (4.0.1) are written. The patient is never named: a
response's subject is the case reference, which only the key ring links to a person.
"""

from __future__ import annotations

import re
from typing import Any

from slussen.questionnaires.definitions import FormDef, Item
from slussen.questionnaires.models import QuestionnaireResponse
from slussen.questionnaires.scoring import Answer

DEFAULT_BASE = "https://slussen.example/fhir"
ORDINAL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
CASE_SYSTEM = "urn:slussen:case-reference"


def fhir_id(text: str) -> str:
    """A FHIR id ([A-Za-z0-9-.]{1,64}) for one of our ids (which may hold "_")."""
    return re.sub(r"[^A-Za-z0-9.-]", "-", text)[:64]


def canonical(form: FormDef, base: str = DEFAULT_BASE) -> str:
    return f"{base.rstrip('/')}/Questionnaire/{fhir_id(form.id)}"


def _coding(form: FormDef, item: Item, code: int, base: str) -> dict[str, Any]:
    option = item.option(code)
    coding: dict[str, Any] = {
        "system": f"{canonical(form, base)}/{fhir_id(item.id)}",
        "code": str(code),
    }
    if option is not None:
        coding["display"] = option.text.sv
    coding["extension"] = [{"url": ORDINAL, "valueDecimal": code}]
    return coding


def _question(form: FormDef, item: Item, base: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"linkId": item.id, "text": item.text.sv}
    if item.type == "choice":
        entry["type"] = "choice"
        entry["required"] = item.required
        entry["answerOption"] = [
            {"valueCoding": _coding(form, item, o.code, base)} for o in item.options
        ]
    elif item.type == "tick":
        entry["type"] = "boolean"
        entry["required"] = False
    else:
        entry["type"] = "text"
        entry["required"] = False
        entry["maxLength"] = 2000
    return entry


def questionnaire(form: FormDef, base: str = DEFAULT_BASE) -> dict[str, Any]:
    """The form as a FHIR R4 Questionnaire (Swedish text; groups as group items)."""
    resource: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": fhir_id(form.id),
        "url": canonical(form, base),
        "version": str(form.version),
        "name": "".join(part.capitalize() for part in form.id.split("_")),
        "title": form.title.sv,
        "status": "active" if form.enabled else "draft",
        "language": "sv",
        "subjectType": ["Patient"],
        "item": [
            {
                "linkId": group.id,
                "type": "group",
                "text": group.title.sv,
                "item": [_question(form, form.item(i), base) for i in group.items],
            }
            for group in form.groups
        ],
    }
    if form.instructions.sv:
        resource["description"] = form.instructions.sv
    if form.citation:
        resource["purpose"] = form.citation
    if form.copyright:
        resource["copyright"] = form.copyright
    return resource


def _answer(form: FormDef, item: Item, value: Answer, base: str) -> dict[str, Any] | None:
    if item.type == "text":
        return {"valueString": str(value)} if value else None
    if not isinstance(value, int):
        return None
    if item.type == "tick":
        return {"valueBoolean": bool(value)}
    return {"valueCoding": _coding(form, item, value, base)}


def questionnaire_response(
    form: FormDef,
    response: QuestionnaireResponse,
    answers: dict[str, Answer],
    *,
    case_reference: str,
    base: str = DEFAULT_BASE,
) -> dict[str, Any]:
    """One stored response as a FHIR R4 QuestionnaireResponse (unanswered items left out)."""
    groups = []
    for group in form.groups:
        items = []
        for item_id in group.items:
            item = form.item(item_id)
            value = answers.get(item_id)
            answer = _answer(form, item, value, base) if value is not None else None
            if answer is not None:
                items.append({"linkId": item.id, "text": item.text.sv, "answer": [answer]})
        if items:
            groups.append({"linkId": group.id, "text": group.title.sv, "item": items})
    return {
        "resourceType": "QuestionnaireResponse",
        "id": fhir_id(f"{case_reference}-{response.id}"),
        "questionnaire": f"{canonical(form, base)}|{response.form_version}",
        "status": "completed" if response.is_verified else "amended",
        "subject": {"identifier": {"system": CASE_SYSTEM, "value": case_reference}},
        "authored": response.submitted_at.isoformat(),
        "item": groups,
    }
