"""Drafts of the long staff forms: what a coach has typed in a case's form and not saved yet.

A draft is kept per user, case and form (`FormDraft`), sealed with the patient's data key like
every other free text about the patient, and replaced as the coach types. The form's page
restores it; saving the form or discarding the draft deletes it, and erasing the patient deletes
all of theirs (`slussen.patients.services.erase_patient`). A draft may also be the kept post of a
session that timed out on submit: it waits, flagged, until its user has logged in again.

The caller loads and authorises the case (its unit) and passes the case's ids; these functions
only check that the actor is a person who may see patient data.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select

from slussen.audit import Actor
from slussen.db import utcnow
from slussen.errors import Invalid, NotPermitted
from slussen.keystore import Keystore
from slussen.patients.models import DRAFT_FORMS, FormDraft
from slussen.patients.services import seal, unseal

#: A draft holds at most this many fields and characters: a form's worth, not a file store.
MAX_FIELDS = 400
MAX_CHARACTERS = 200_000
#: A field's name is the form's own (`notes`, `net-3-label`), never long.
MAX_NAME = 40


@dataclass(frozen=True)
class Draft:
    """A draft in clear text: the form's fields as posted, in order."""

    fields: list[tuple[str, str]]
    updated_at: dt.datetime
    is_kept_post: bool


def _check(actor: Actor, form: str) -> None:
    if actor.user_id is None or actor.role not in ("coach", "coordinator"):
        raise NotPermitted("Bara den som arbetar med ärendet kan spara ett utkast.")
    if form not in DRAFT_FORMS:
        raise Invalid("Okänt formulär.")


def _row(store: Keystore, actor: Actor, case_id: int, form: str) -> FormDraft | None:
    return store.session.scalar(
        select(FormDraft).where(
            FormDraft.user_id == actor.user_id,
            FormDraft.case_id == case_id,
            FormDraft.form == form,
        )
    )


def save_draft(
    store: Keystore,
    actor: Actor,
    *,
    case_id: int,
    patient_id: int,
    form: str,
    fields: Iterable[tuple[str, str]],
    is_kept_post: bool = False,
) -> FormDraft:
    """Keep what `actor` has typed in `form` of the case (replacing their earlier draft), sealed
    with the patient's data key. The CSRF token is not kept.

    Refuses an actor who is not a coach or coordinator (NotPermitted), an unknown form, and a
    draft larger than a form (more than MAX_FIELDS fields or MAX_CHARACTERS characters)."""
    _check(actor, form)
    kept = [(name, value) for name, value in fields if name != "csrf_token"]
    if len(kept) > MAX_FIELDS or any(len(name) > MAX_NAME for name, _ in kept):
        raise Invalid("Utkastet har fler fält än formuläret.")
    if sum(len(value) for _, value in kept) > MAX_CHARACTERS:
        shown = f"{MAX_CHARACTERS:,}".replace(",", "\u00a0")
        raise Invalid(f"Utkastet får vara högst {shown} tecken.")
    row = _row(store, actor, case_id, form)
    if row is None:
        assert actor.user_id is not None  # _check
        row = FormDraft(
            user_id=actor.user_id,
            case_id=case_id,
            patient_id=patient_id,
            form=form,
            fields_enc=b"",
        )
        store.session.add(row)
        store.session.flush()
    text = json.dumps(kept, ensure_ascii=False, separators=(",", ":"))
    row.fields_enc = seal(store, patient_id, "form_drafts", "fields", row.id, text)
    row.is_kept_post = is_kept_post
    row.updated_at = utcnow()
    store.session.flush()
    return row


def read_draft(store: Keystore, actor: Actor, *, case_id: int, form: str) -> Draft | None:
    """`actor`'s draft of `form` in the case, decrypted; None when there is none. The caller
    audits the read (the form's page does)."""
    _check(actor, form)
    row = _row(store, actor, case_id, form)
    if row is None:
        return None
    text = unseal(store, row.patient_id, "form_drafts", "fields", row.id, row.fields_enc)
    pairs = json.loads(text)
    return Draft(
        fields=[(str(name), str(value)) for name, value in pairs],
        updated_at=row.updated_at,
        is_kept_post=row.is_kept_post,
    )


def discard_draft(store: Keystore, actor: Actor, *, case_id: int, form: str) -> bool:
    """Delete `actor`'s draft of `form` in the case (saved, or thrown away); True when there
    was one. Refuses what `save_draft` refuses of the actor and the form."""
    _check(actor, form)
    result = store.session.execute(
        delete(FormDraft).where(
            FormDraft.user_id == actor.user_id,
            FormDraft.case_id == case_id,
            FormDraft.form == form,
        )
    )
    store.session.flush()
    return bool(getattr(result, "rowcount", 0))


__all__ = ["Draft", "discard_draft", "read_draft", "save_draft"]
