"""Patient rules: the only way to write or read a patient's identity.

Every function here encrypts or decrypts through the Keystore and writes the audit row in the
caller's transaction, so the easy way to touch a patient field is the encrypted, audited way.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from slussen import audit, vault
from slussen.accounts.roles import PATIENT_DATA_ROLES, Role
from slussen.audit import Actor
from slussen.db import utcnow
from slussen.errors import Conflict, Invalid, NotFound, NotPermitted
from slussen.identifiers import IdentifierError, PersonIdentifier, normalise_postcode
from slussen.keystore import Keystore
from slussen.patients.models import (
    FormDraft,
    OfferedDetails,
    Patient,
    PatientCorrection,
    PatientLookup,
)
from slussen.research.services import erase_subjects

LANGUAGES = ("sv", "en")

#: The access log's object type of a patient shown in a list (one row per patient shown).
LISTED = "listed_case"
#: Why a patient is shown in each list, as the access log records it: Swedish words, which the
#: coordinator's review and the patient's own log extract show as they are.
SHOWN_IN = {
    "worklist": "visad i arbetslista",
    "unit": "visad i enhetens lista",
    "flagged": "visad i mina flaggningar",
    "letters": "visad i brevkön",
    "incoming": "visad i inkomna remisser",
    "search": "visad i sökresultat",
    "caseload": "visad i mina ärenden",
}


class DuplicatePatient(Conflict):
    """A patient with this identifier exists already; `patient_id` names it."""

    def __init__(self, patient_id: int) -> None:
        super().__init__("Patienten finns redan registrerad.")
        self.patient_id = patient_id


class PatientErased(NotFound):
    """The patient's data was erased: nothing is left to read or change."""


@dataclass(frozen=True)
class PatientIdentity:
    """A patient's identity in clear text: lives in memory for one request, never stored."""

    identifier: PersonIdentifier
    name: str
    street: str = ""
    postcode: str = ""
    town: str = ""
    phone: str = ""
    preferred_language: str = "sv"
    is_protected_identity: bool = False

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise Invalid("Namn saknas.")
        if self.preferred_language not in LANGUAGES:
            raise Invalid("Okänt språk.")
        if self.postcode:
            object.__setattr__(self, "postcode", normalise_postcode(self.postcode))

    @property
    def has_postal_address(self) -> bool:
        return bool(self.street and self.postcode and self.town)


def _check_actor(actor: Actor, *, creating: bool = False) -> None:
    if actor.role in {r.value for r in PATIENT_DATA_ROLES} or actor.role == "system":
        return
    if creating and actor.role == "public":
        return  # a self-referral registers the person referring themself
    raise NotPermitted("Din roll får inte se patientuppgifter.")


def _lookup_digest(ring: vault.KeyRing, identifier: PersonIdentifier) -> str:
    # pnr and snr share one namespace: a number is either, never both.
    kind = "reserv:" + (identifier.issuer or "") if identifier.kind == "reserv" else "pnr"
    return vault.blind_index(ring, kind, identifier.value)


def _clear_values(identity: PatientIdentity) -> dict[str, str]:
    return {
        "identifier": identity.identifier.value,
        "name": identity.name.strip(),
        "street": identity.street.strip(),
        "postcode": identity.postcode,
        "town": identity.town.strip(),
        "phone": identity.phone.strip(),
    }


def _data_key_id(store: Keystore, patient: Patient | int) -> int:
    if isinstance(patient, Patient):
        return patient.data_key_id
    # A page unseals many fields of one patient by id; the session's identity map holds the
    # loaded patient only while something refers to it, so remember its key id instead.
    key_id = store.owner_keys.get(patient)
    if key_id is None:
        key_id = store.session.scalar(select(Patient.data_key_id).where(Patient.id == patient))
        assert key_id is not None
        store.owner_keys[patient] = key_id
    return key_id


def seal(
    store: Keystore, patient: Patient | int, table: str, column: str, row_id: int, text: str
) -> bytes:
    """Encrypt one field about a patient (identity or free text) with the patient's data key,
    bound to table/column/row. The one place a patient field is encrypted; the caller writes the
    audit row."""
    return store.cipher(_data_key_id(store, patient)).encrypt(
        text, table=table, column=column, row_id=row_id
    )


def unseal(
    store: Keystore,
    patient: Patient | int,
    table: str,
    column: str,
    row_id: int,
    blob: bytes | None,
) -> str:
    """Decrypt what `seal` wrote; "" for no value. The caller writes the audit row."""
    if blob is None:
        return ""
    return _unseal_with(store, _data_key_id(store, patient), table, column, row_id, blob)


def _unseal_with(
    store: Keystore, data_key_id: int, table: str, column: str, row_id: int, blob: bytes
) -> str:
    # Lists know their rows' data keys already; loading each patient again would cost a query.
    return store.cipher(data_key_id).decrypt_str(blob, table=table, column=column, row_id=row_id)


def _write_fields(store: Keystore, patient: Patient, identity: PatientIdentity) -> None:
    """Set the patient columns an identity gives: identity fields sealed with the patient's data
    key, bound to patients/<column>/<patient id>, and the derived clear columns."""
    for column, value in _clear_values(identity).items():
        encrypted = seal(store, patient, "patients", column, patient.id, value)
        setattr(patient, f"{column}_enc", encrypted)
    patient.identifier_kind = identity.identifier.kind
    patient.identifier_issuer = identity.identifier.issuer or ""
    patient.preferred_language = identity.preferred_language
    patient.is_protected_identity = identity.is_protected_identity
    demographics = Demographics(identity.identifier.birth_year(), identity.identifier.sex())
    patient.demographics_enc = seal(
        store, patient, *DEMOGRAPHICS_FIELD, patient.id, demographics.sealed_text()
    )


#: Where a patient's birth year and sex are sealed (table, column; the row is the patient id).
DEMOGRAPHICS_FIELD = ("patients", "demographics")
#: Every sealed demographics text has this length, so ciphertexts do not tell sexes apart.
_DEMOGRAPHICS_WIDTH = 40


@dataclass(frozen=True)
class Demographics:
    """What evaluation covariates need of a patient: birth year and sex ("female", "male"),
    from the identifier (None when unknown). Not identifying alone, but stored only sealed and
    read only through `read_demographics`."""

    birth_year: int | None
    sex: str | None

    def sealed_text(self) -> str:
        """The JSON that is sealed, padded to one length."""
        text = json.dumps({"birth_year": self.birth_year, "sex": self.sex}, sort_keys=True)
        return text.ljust(_DEMOGRAPHICS_WIDTH)

    @classmethod
    def from_text(cls, text: str) -> Demographics:
        if not text.strip():
            return cls(None, None)
        values = json.loads(text)
        return cls(values.get("birth_year"), values.get("sex"))


def read_demographics(store: Keystore, patient: Patient | int) -> Demographics:
    """A patient's birth year and sex, unsealed, for the coarse covariates of a research record
    (age band, sex). Writes no audit row: the caller records its own purpose (scoring).
    Refuses nothing; an erased patient has none."""
    row = patient if isinstance(patient, Patient) else store.session.get(Patient, patient)
    if row is None or row.erased_at is not None or row.demographics_enc is None:
        return Demographics(None, None)
    return Demographics.from_text(
        unseal(store, row, *DEMOGRAPHICS_FIELD, row.id, row.demographics_enc)
    )


def find_patient_id(store: Keystore, identifier: PersonIdentifier) -> int | None:
    """The id of the patient with this identifier, by blind index; no decryption, no audit
    (nothing about the patient is revealed). Callers that show the patient read it audited."""
    digest = _lookup_digest(store.ring, identifier)
    return store.session.scalar(
        # kind too: the unique (kind, digest) index answers it (digest alone scans the table).
        select(PatientLookup.patient_id).where(
            PatientLookup.kind == "id", PatientLookup.digest == digest
        )
    )


def register_patient(
    store: Keystore,
    actor: Actor,
    identity: PatientIdentity,
    *,
    purpose: str,
    unit_id: int | None = None,
) -> Patient:
    """Register a patient with a fresh data key, encrypted fields and a blind index; audited.

    Refuses a role without patient access (NotPermitted) and an identifier that is already
    registered (DuplicatePatient names the existing patient; never a twin)."""
    _check_actor(actor, creating=True)
    existing = find_patient_id(store, identity.identifier)
    if existing is not None:
        raise DuplicatePatient(existing)
    session = store.session
    key = store.new_key()
    patient = Patient(
        data_key_id=key.id,
        registered_unit_id=unit_id,
        identifier_kind=identity.identifier.kind,
        identifier_issuer=identity.identifier.issuer or "",
    )
    session.add(patient)
    session.flush()
    _write_fields(store, patient, identity)
    session.add(
        PatientLookup(
            patient_id=patient.id, kind="id", digest=_lookup_digest(store.ring, identity.identifier)
        )
    )
    session.flush()
    audit.record(
        session,
        store.ring,
        actor,
        "create",
        "patient",
        patient.id,
        purpose=purpose,
        patient_id=patient.id,
        unit_id=unit_id,
    )
    return patient


def read_patient(
    store: Keystore, actor: Actor, patient: Patient, *, purpose: str, unit_id: int | None = None
) -> PatientIdentity:
    """Decrypt a patient's identity and write the audit row (action read) in the same
    transaction. Refuses roles without patient access and erased records."""
    _check_actor(actor)
    if patient.erased_at is not None:
        raise PatientErased("Uppgifterna är raderade.")
    values = {
        column: unseal(
            store, patient, "patients", column, patient.id, getattr(patient, f"{column}_enc")
        )
        for column in ("identifier", "name", "street", "postcode", "town", "phone")
    }
    audit.record(
        store.session,
        store.ring,
        actor,
        "read",
        "patient",
        patient.id,
        purpose=purpose,
        patient_id=patient.id,
        unit_id=unit_id,
    )
    identifier = PersonIdentifier(
        kind=patient.identifier_kind,  # type: ignore[arg-type]
        value=values.pop("identifier"),
        issuer=patient.identifier_issuer or None,
    )
    return PatientIdentity(
        identifier=identifier,
        preferred_language=patient.preferred_language,
        is_protected_identity=patient.is_protected_identity,
        **values,
    )


def update_patient(
    store: Keystore,
    actor: Actor,
    patient: Patient,
    identity: PatientIdentity,
    *,
    purpose: str,
    unit_id: int | None = None,
) -> None:
    """Replace a patient's identity fields (re-encrypted, fresh nonces); audited as update.

    Refuses a change of identifier to one another patient has."""
    _check_actor(actor)
    if patient.erased_at is not None:
        raise PatientErased("Uppgifterna är raderade.")
    digest = _lookup_digest(store.ring, identity.identifier)
    other = store.session.scalar(
        select(PatientLookup.patient_id).where(
            PatientLookup.kind == "id",
            PatientLookup.digest == digest,
            PatientLookup.patient_id != patient.id,
        )
    )
    if other is not None:
        raise DuplicatePatient(other)
    _write_fields(store, patient, identity)
    store.session.execute(delete(PatientLookup).where(PatientLookup.patient_id == patient.id))
    store.session.add(PatientLookup(patient_id=patient.id, kind="id", digest=digest))
    store.session.flush()
    audit.record(
        store.session,
        store.ring,
        actor,
        "update",
        "patient",
        patient.id,
        purpose=purpose,
        patient_id=patient.id,
        unit_id=unit_id,
    )


def erase_patient(store: Keystore, actor: Actor, patient: Patient, *, reason: str) -> None:
    """Crypto-shred a patient: destroy the data key and the blind index, clear the ciphertext,
    delete the research records of the patient's cases and the form drafts typed about them,
    and record the erasure. Only a coordinator, an admin or the system may erase; callers decide
    whether the record may go (a self-referral that never became a case, or after retention)."""
    if actor.role not in (Role.COORDINATOR.value, Role.ADMIN.value, "system"):
        raise NotPermitted("Bara samordnare och administratörer får radera uppgifter.")
    if patient.erased_at is not None:
        return
    store.destroy(patient.data_key_id)
    for table in (PatientLookup, PatientCorrection, OfferedDetails, FormDraft):
        store.session.execute(delete(table).where(table.patient_id == patient.id))
    erase_subjects(store, patient.id)
    for column in ("identifier", "name", "street", "postcode", "town", "phone", "demographics"):
        setattr(patient, f"{column}_enc", None)
    patient.erased_at = utcnow()
    store.session.flush()
    audit.record(
        store.session,
        store.ring,
        actor,
        "erase",
        "patient",
        patient.id,
        purpose=reason,
        patient_id=patient.id,
    )


__all__ = [
    "CorrectionEntry",
    "Demographics",
    "DuplicatePatient",
    "NothingChanged",
    "Offer",
    "PatientErased",
    "PatientIdentity",
    "accept_offer",
    "correct_patient",
    "correction_history",
    "decline_offer",
    "erase_patient",
    "find_patient_id",
    "has_pending_offer",
    "offer_details",
    "pending_offer",
    "read_demographics",
    "read_patient",
    "register_patient",
    "update_patient",
]


class ListedCase(Protocol):
    """One row of a list of cases, as the list's query reads it: the case, its unit, and the
    patient's sealed name with its data key (the wrapped key may be None when the keystore has
    it already)."""

    @property
    def id(self) -> int: ...
    @property
    def unit_id(self) -> int: ...
    @property
    def patient_id(self) -> int: ...
    @property
    def data_key_id(self) -> int: ...
    @property
    def wrapped_key(self) -> bytes | None: ...
    @property
    def name_enc(self) -> bytes | None: ...


def names_for_list(
    store: Keystore, actor: Actor, rows: Sequence[ListedCase], *, shown_in: str
) -> dict[int, str]:
    """Decrypt the names on one page of a list (case id → name; "–" for an erased patient) and
    record every patient shown: one access-log row each (`record_shown`). The one place list
    names are decrypted; the data keys of the page are unwrapped together.

    Refuses a role without patient access (NotPermitted) and an unknown list (KeyError)."""
    _check_actor(actor)
    purpose = SHOWN_IN[shown_in]
    if not rows:
        return {}
    names = {row.id: name or "–" for row, name in _listed_names(store, rows)}
    _record(store, actor, ((row.id, row.unit_id, row.patient_id) for row in rows), purpose)
    return names


def _listed_names(store: Keystore, rows: Sequence[ListedCase]) -> list[tuple[Any, str]]:
    """Each row with its patient's name decrypted ("" for an erased patient); the rows' data
    keys unwrapped together. The one decryption of list names (`names_for_list` shows them,
    `rows_matching_name` only compares them)."""
    store.adopt((row.data_key_id, row.wrapped_key) for row in rows)
    return [
        (
            row,
            ""
            if row.name_enc is None
            else _unseal_with(
                store, row.data_key_id, "patients", "name", row.patient_id, row.name_enc
            ),
        )
        for row in rows
    ]


def name_key(text: str) -> str:
    """A name as search compares it: case and accents folded ("Åsa Öberg" and "asa oberg" are
    one), every run of spaces, hyphens and other separators one space."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(re.split(r"[\W_]+", plain)).strip()


def rows_matching_name(
    store: Keystore, actor: Actor, rows: Sequence[ListedCase], query: str
) -> list[Any]:
    """The rows of one batch of a list whose patient's name holds every word of `query`
    (case- and accent-insensitive, in any order: "ekholm margit" finds Margit Ekholm). The names
    are decrypted to compare and then dropped: nothing is shown, so nothing is recorded here;
    the caller shows the matches through `names_for_list`, which records each one.

    Refuses a role without patient access (NotPermitted)."""
    _check_actor(actor)
    words = name_key(query).split()
    if not words or not rows:
        return []
    found = []
    for row, name in _listed_names(store, rows):
        key = name_key(name)
        if key and all(word in key for word in words):
            found.append(row)
    return found


def unseal_listed(
    store: Keystore,
    rows: Sequence[ListedCase],
    table: str,
    column: str,
    blob_of: Callable[[Any], bytes | None],
) -> dict[int, str]:
    """Decrypt one more sealed field of each row of a list page (row id → text, "" for none),
    bound to `table`/`column`/row id, with the data keys `names_for_list` unwrapped for the
    page. The caller has recorded the patients shown (`names_for_list`)."""
    return {
        row.id: _unseal_with(store, row.data_key_id, table, column, row.id, blob).strip()
        for row in rows
        if (blob := blob_of(row)) is not None
    }


def record_shown(
    store: Keystore,
    actor: Actor,
    shown: Iterable[tuple[int, int | None, int]],
    *,
    shown_in: str,
) -> None:
    """Record that a list showed these cases' patients without their names (case id, unit id,
    patient id each): one access-log row per patient shown, with its pseudonym, all in one
    INSERT in the caller's transaction. Refuses an unknown list (KeyError)."""
    _record(store, actor, shown, SHOWN_IN[shown_in])


def _record(
    store: Keystore, actor: Actor, shown: Iterable[tuple[int, int | None, int]], purpose: str
) -> None:
    entries = [
        audit.Entry("read", LISTED, case_id, purpose, patient_id=patient_id, unit_id=unit_id)
        for case_id, unit_id, patient_id in shown
    ]
    audit.record_entries(store.session, store.ring, actor, entries)


# --- corrections and offered details -------------------------------------------------------------

#: The identity fields a correction may change (the case's contact channel is the cases layer's,
#: which passes its earlier value as `also_changed` so one history row holds the whole change).
IDENTITY_FIELDS = ("name", "street", "postcode", "town", "phone")
#: What a later referral may offer to the coach: the postal address (whole) and the phone.
OFFERED_FIELDS = ("street", "postcode", "town", "phone")
_ADDRESS = ("street", "postcode", "town")
#: The tables the sealed texts of corrections and offers are bound to.
CORRECTIONS = "patient_corrections"
OFFERS = "offered_details"
REASON_LIMIT = 500


class NothingChanged(Invalid):
    """A correction that would change nothing."""


@dataclass(frozen=True)
class CorrectionEntry:
    """One earlier correction as the history shows it: the values it replaced, decrypted."""

    id: int
    corrected_at: dt.datetime
    corrected_by_id: int | None
    reason: str
    earlier: dict[str, str]


@dataclass(frozen=True)
class Offer:
    """Contact details a later referral gave that differ from the record, decrypted."""

    id: int
    offered_at: dt.datetime
    details: dict[str, str]


def _comparable(field: str, value: str) -> str:
    # "070-111 22 01" and "0701112201" are one phone; "VÄSTERÅS" and "Västerås" one town.
    if field == "phone":
        return "".join(ch for ch in value if ch.isdigit() or ch == "+")
    return " ".join(value.split()).casefold()


def correct_patient(
    store: Keystore,
    actor: Actor,
    patient: Patient,
    changes: Mapping[str, str],
    *,
    reason: str,
    unit_id: int | None = None,
    also_changed: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """Correct a patient's name, address or phone (`changes`: field → new value; fields not
    named keep their value) with a reason: the record is re-sealed through `update_patient`
    (audited as update), and a history row keeps, sealed with the patient's key, the reason and
    every value the correction replaced (with `also_changed`: earlier values the caller changed
    elsewhere in the same correction, e.g. the case's contact channel). Returns the names of the
    changed fields.

    Refuses a role without patient access (NotPermitted), an erased record (PatientErased), a
    missing or too long reason, an empty name, a malformed postcode, an address given only in
    part (Invalid), and a correction that changes nothing (NothingChanged)."""
    _check_actor(actor)
    reason = reason.strip()
    if not reason:
        raise Invalid("Skriv varför uppgifterna rättas.")
    if len(reason) > REASON_LIMIT:
        raise Invalid(f"Skriv högst {REASON_LIMIT} tecken om varför.")
    unknown = set(changes) - set(IDENTITY_FIELDS)
    if unknown:
        raise Invalid("Bara namn, adress och telefon kan rättas här.")
    current = read_patient(store, actor, patient, purpose="rättelse av uppgifter", unit_id=unit_id)
    wanted = {field: getattr(current, field) for field in IDENTITY_FIELDS}
    wanted.update({field: " ".join(str(value).split()) for field, value in changes.items()})
    if wanted["postcode"]:
        try:
            wanted["postcode"] = normalise_postcode(wanted["postcode"])
        except IdentifierError as exc:
            raise Invalid(str(exc)) from None
    if any(wanted[f] for f in _ADDRESS) and not all(wanted[f] for f in _ADDRESS):
        raise Invalid("Fyll i gatuadress, postnummer och ort, eller lämna alla tre tomma.")
    earlier = {
        field: getattr(current, field)
        for field in IDENTITY_FIELDS
        if getattr(current, field) != wanted[field]
    }
    also = dict(also_changed or {})
    if not earlier and not also:
        raise NothingChanged("Inget har ändrats.")
    if earlier:
        corrected = replace(current, **{field: wanted[field] for field in earlier})
        update_patient(
            store, actor, patient, corrected, purpose="rättelse av uppgifter", unit_id=unit_id
        )
    entry = PatientCorrection(patient_id=patient.id, corrected_by_id=actor.user_id, unit_id=unit_id)
    store.session.add(entry)
    store.session.flush()
    entry.reason_enc = seal(store, patient, CORRECTIONS, "reason", entry.id, reason)
    history = json.dumps({**earlier, **also}, ensure_ascii=False, sort_keys=True)
    entry.earlier_enc = seal(store, patient, CORRECTIONS, "earlier", entry.id, history)
    store.session.flush()
    audit.record(
        store.session,
        store.ring,
        actor,
        "create",
        "patient_correction",
        entry.id,
        purpose="rättelse av uppgifter",
        patient_id=patient.id,
        unit_id=unit_id,
    )
    return (*earlier, *also)


def correction_history(store: Keystore, patient: Patient) -> list[CorrectionEntry]:
    """The patient's corrections, newest first, decrypted. Writes no audit row: it is shown on
    the page that has read the patient (audited) in the same request. Refuses nothing; an erased
    patient has no history."""
    if patient.erased_at is not None:
        return []
    rows = store.session.scalars(
        select(PatientCorrection)
        .where(PatientCorrection.patient_id == patient.id)
        .order_by(PatientCorrection.id.desc())
    )
    return [
        CorrectionEntry(
            id=row.id,
            corrected_at=row.corrected_at,
            corrected_by_id=row.corrected_by_id,
            reason=unseal(store, patient, CORRECTIONS, "reason", row.id, row.reason_enc),
            earlier=json.loads(
                unseal(store, patient, CORRECTIONS, "earlier", row.id, row.earlier_enc) or "{}"
            ),
        )
        for row in rows
    ]


def offer_details(
    store: Keystore,
    actor: Actor,
    patient_id: int,
    identity: PatientIdentity,
    *,
    unit_id: int | None = None,
) -> OfferedDetails | None:
    """Keep, sealed, the address and phone a later referral gave for a registered patient when
    they differ from the record's, for the coach to accept or decline (`accept_offer`,
    `decline_offer`); a newer offer joins the one still waiting. The record is not changed and
    the referrer learns nothing (the answer is the same for them either way): the record's
    contact fields are decrypted here only to compare. Audited (create) when an offer is kept.

    Refuses a role that may neither see patients nor self-refer (NotPermitted); an erased
    patient, or details that add nothing new, give None."""
    _check_actor(actor, creating=True)
    session = store.session
    patient = session.get(Patient, patient_id)
    if patient is None or patient.erased_at is not None:
        return None
    stored = {
        f: unseal(store, patient, "patients", f, patient.id, getattr(patient, f"{f}_enc"))
        for f in OFFERED_FIELDS
    }
    given = {field: " ".join(getattr(identity, field).split()) for field in OFFERED_FIELDS}
    offered: dict[str, str] = {}
    if identity.has_postal_address and any(
        _comparable(f, given[f]) != _comparable(f, stored[f]) for f in _ADDRESS
    ):
        offered.update({field: given[field] for field in _ADDRESS})
    if given["phone"] and _comparable("phone", given["phone"]) != _comparable(
        "phone", stored["phone"]
    ):
        offered["phone"] = given["phone"]
    if not offered:
        return None
    offer = session.scalar(
        select(OfferedDetails).where(
            OfferedDetails.patient_id == patient.id, OfferedDetails.status == "pending"
        )
    )
    if offer is None:
        offer = OfferedDetails(patient_id=patient.id, status="pending")
        session.add(offer)
        session.flush()
    else:
        waiting = unseal(store, patient, OFFERS, "details", offer.id, offer.details_enc)
        offered = {**json.loads(waiting or "{}"), **offered}
        offer.offered_at = utcnow()
    text = json.dumps(offered, ensure_ascii=False, sort_keys=True)
    offer.details_enc = seal(store, patient, OFFERS, "details", offer.id, text)
    session.flush()
    _audit_offer(store, actor, offer, "create", "nya kontaktuppgifter i remiss", unit_id)
    return offer


def _audit_offer(
    store: Keystore,
    actor: Actor,
    offer: OfferedDetails,
    action: str,
    purpose: str,
    unit_id: int | None,
) -> None:
    audit.record(
        store.session,
        store.ring,
        actor,
        action,
        "offered_details",
        offer.id,
        purpose=purpose,
        patient_id=offer.patient_id,
        unit_id=unit_id,
    )


def pending_offer(store: Keystore, patient: Patient) -> Offer | None:
    """The details a later referral offered that still wait for a decision, decrypted; None
    when none wait. Writes no audit row: it is shown on a page that has read the patient
    (audited) in the same request."""
    if patient.erased_at is not None:
        return None
    row = store.session.scalar(
        select(OfferedDetails).where(
            OfferedDetails.patient_id == patient.id, OfferedDetails.status == "pending"
        )
    )
    if row is None:
        return None
    text = unseal(store, patient, OFFERS, "details", row.id, row.details_enc)
    return Offer(row.id, row.offered_at, json.loads(text or "{}"))


def has_pending_offer(session: Session, patient_id: int) -> bool:
    """Whether details a later referral offered wait for a decision (reads no patient data)."""
    found = session.scalar(
        select(OfferedDetails.id)
        .where(OfferedDetails.patient_id == patient_id, OfferedDetails.status == "pending")
        .limit(1)
    )
    return found is not None


def _waiting_offer(store: Keystore, patient: Patient, offer_id: int) -> OfferedDetails:
    offer = store.session.get(OfferedDetails, offer_id) if 0 < offer_id < 2**31 else None
    if offer is None or offer.patient_id != patient.id:
        raise NotFound("Uppgifterna finns inte.")
    if offer.status != "pending":
        raise Invalid("De föreslagna uppgifterna är redan hanterade.")
    return offer


def _decide(store: Keystore, actor: Actor, offer: OfferedDetails, status: str) -> None:
    offer.status = status
    offer.decided_by_id = actor.user_id
    offer.decided_at = utcnow()


def accept_offer(
    store: Keystore, actor: Actor, patient: Patient, offer_id: int, *, unit_id: int | None = None
) -> tuple[str, ...]:
    """Take the details a later referral offered into the record: a correction
    (`correct_patient`, history kept) whose reason names the referral's date; the offer is marked
    accepted (audited). Returns the changed fields (none when the record already says the same).

    Refuses an offer of another patient (NotFound), one already decided (Invalid), and what
    `correct_patient` refuses."""
    _check_actor(actor)
    offer = _waiting_offer(store, patient, offer_id)
    details = pending_offer(store, patient)
    assert details is not None and details.id == offer.id
    day = details.offered_at.date().isoformat()
    try:
        changed = correct_patient(
            store,
            actor,
            patient,
            details.details,
            reason=f"Uppgifter från en ny remiss {day}.",
            unit_id=unit_id,
        )
    except NothingChanged:
        changed = ()
    _decide(store, actor, offer, "accepted")
    _audit_offer(store, actor, offer, "update", "föreslagna uppgifter godtagna", unit_id)
    return changed


def decline_offer(
    store: Keystore, actor: Actor, patient: Patient, offer_id: int, *, unit_id: int | None = None
) -> None:
    """Leave the record as it is and mark the offered details declined (audited; they stay
    sealed). Refuses a role without patient access (NotPermitted), an offer of another patient
    (NotFound) and one already decided (Invalid)."""
    _check_actor(actor)
    offer = _waiting_offer(store, patient, offer_id)
    _decide(store, actor, offer, "declined")
    _audit_offer(store, actor, offer, "update", "föreslagna uppgifter avböjda", unit_id)
