"""Patient rules: the only way to write or read a patient's identity.

Every function here encrypts or decrypts through the Keystore and writes the audit row in the
caller's transaction, so the easy way to touch a patient field is the encrypted, audited way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, select

from slussen import audit, vault
from slussen.accounts.roles import PATIENT_DATA_ROLES, Role
from slussen.audit import Actor
from slussen.db import utcnow
from slussen.errors import Conflict, Invalid, NotFound, NotPermitted
from slussen.identifiers import PersonIdentifier, normalise_postcode
from slussen.keystore import Keystore
from slussen.patients.models import Patient, PatientLookup
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
    patient.birth_year = identity.identifier.birth_year()
    patient.sex = identity.identifier.sex()


@dataclass(frozen=True)
class Demographics:
    """What evaluation covariates need of a patient: birth year and sex, from the identifier
    (None when unknown). Not identifying alone, but read only through `read_demographics`."""

    birth_year: int | None
    sex: str | None


def read_demographics(store: Keystore, patient: Patient | int) -> Demographics:
    """A patient's birth year and sex, for the coarse covariates of a research record (age band,
    sex). Writes no audit row: the caller records its own purpose (scoring). Refuses nothing; an
    erased patient has none."""
    row = patient if isinstance(patient, Patient) else store.session.get(Patient, patient)
    if row is None or row.erased_at is not None:
        return Demographics(None, None)
    return Demographics(row.birth_year, row.sex)


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
    delete the research records of the patient's cases, and record the erasure. Only a
    coordinator, an admin or the system may erase; callers decide whether the record may go (a
    self-referral that never became a case, or after retention)."""
    if actor.role not in (Role.COORDINATOR.value, Role.ADMIN.value, "system"):
        raise NotPermitted("Bara samordnare och administratörer får radera uppgifter.")
    if patient.erased_at is not None:
        return
    store.destroy(patient.data_key_id)
    store.session.execute(delete(PatientLookup).where(PatientLookup.patient_id == patient.id))
    erase_subjects(store, patient.id)
    for column in ("identifier", "name", "street", "postcode", "town", "phone"):
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
    "Demographics",
    "DuplicatePatient",
    "PatientErased",
    "PatientIdentity",
    "erase_patient",
    "find_patient_id",
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
    store.adopt((row.data_key_id, row.wrapped_key) for row in rows)
    names = {}
    for row in rows:
        if row.name_enc is None:
            names[row.id] = "–"
            continue
        names[row.id] = _unseal_with(
            store, row.data_key_id, "patients", "name", row.patient_id, row.name_enc
        )
    _record(store, actor, ((row.id, row.unit_id, row.patient_id) for row in rows), purpose)
    return names


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
