"""research records, and scores sealed: `research_subjects` and `research_scores` hold what the
evaluation reads under keyed pseudonyms; `questionnaire_scores.value` and `is_positive` become
one field sealed with the patient's data key (`score_enc`)

Revision ID: 0014
Revises: 0013
Create Date: 2027-01-20 09:00:00.000000

The upgrade writes a research subject for every case of a patient who is not erased, from what
the evaluation read until now: the case (unit, channel, day opened, closing state, screening
flag), the patient's birth year and sex, the first day (Swedish time) of each milestone event, of
the first action plan and of the first hand-over done, and per score and occasion the last value
answered (the row with the highest id that has one). It then seals every score with the patient's
data key; the scores of an erased patient (whose key is destroyed) are dropped, as their research
records are. The pseudonyms and the seals need the key ring, which
`slussen.migrate.upgrade(engine, ring=...)` hands over in `config.attributes["ring"]` (`slussen
init-db` always does); without it the upgrade works on a database without cases and stops on one
that has any, before changing it.

The milestone events are the workflow's (its [parts.events]): the app's when the migration runs
inside it (`slussen init-db`), else the shipped workflows/sluss.toml.

The downgrade opens every sealed score with the ring (without one it works only while no score is
sealed, and stops otherwise), writes value and is_positive back and drops the research tables:
the clinical tables still hold everything they were made from.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from collections.abc import Iterable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import context, op
from flask import current_app, has_app_context

import slussen.db
from slussen import vault
from slussen.paths import shipped_dir

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# As the code of this revision has them (a migration must not import the app's services, which
# change after it): the pseudonyms' purposes, the sealed score's binding, the age bands.
_CASE, _PATIENT = "research:case", "research:patient"
_SCORE_FIELD = ("questionnaire_scores", "score")
_BAND_LOWS = ((80, "80+"), (65, "65-79"), (45, "45-64"), (30, "30-44"), (18, "18-29"), (0, "0-17"))
_STEP_PARTS = {
    "invitation": "invites",
    "baseline": "registers_baseline",
    "mapping_visit": "records_mapping_visit",
    "follow_up_1": "records_follow_up_1",
    "six_month": "registers_evaluation",
}
_MILESTONES = (
    "invitation",
    "baseline",
    "mapping_visit",
    "action_plan",
    "handover_done",
    "follow_up_1",
    "six_month",
)
_INDEX = "ix_questionnaire_scores_form_id_score_id_occasion_case_id"
_INDEX_COLUMNS = ["form_id", "score_id", "occasion", "case_id", "id", "value", "is_positive"]
#: Cases per round of reading and writing.
_BATCH = 2000

_Time = slussen.db.UtcDateTime
_cases = sa.table(
    "cases",
    sa.column("id", sa.Integer),
    sa.column("unit_id", sa.Integer),
    sa.column("patient_id", sa.Integer),
    sa.column("state", sa.String),
    sa.column("channel", sa.String),
    sa.column("screening_flag", sa.String),
    sa.column("opened_at", _Time()),
    sa.column("closed_at", _Time()),
)
_patients = sa.table(
    "patients",
    sa.column("id", sa.Integer),
    sa.column("data_key_id", sa.Integer),
    sa.column("birth_year", sa.Integer),
    sa.column("sex", sa.String),
    sa.column("erased_at", _Time()),
)
_events = sa.table(
    "case_events",
    sa.column("case_id", sa.Integer),
    sa.column("event", sa.String),
    sa.column("occurred_at", _Time()),
)
_plans = sa.table(
    "action_plans", sa.column("case_id", sa.Integer), sa.column("created_at", _Time())
)
_handovers = sa.table(
    "handovers",
    sa.column("case_id", sa.Integer),
    sa.column("status", sa.String),
    sa.column("meeting_at", _Time()),
    sa.column("created_at", _Time()),
)
_keys = sa.table("data_keys", sa.column("id", sa.Integer), sa.column("wrapped", sa.LargeBinary))
_scores = sa.table(
    "questionnaire_scores",
    sa.column("id", sa.Integer),
    sa.column("case_id", sa.Integer),
    sa.column("form_id", sa.String),
    sa.column("score_id", sa.String),
    sa.column("occasion", sa.String),
    sa.column("value", sa.Float),
    sa.column("is_positive", sa.Boolean),
    sa.column("score_enc", sa.LargeBinary),
)


_subjects_table = sa.table(
    "research_subjects",
    sa.column("pseudonym", sa.String),
    sa.column("patient_pseudonym", sa.String),
    sa.column("unit_id", sa.Integer),
    sa.column("channel", sa.String),
    sa.column("age_band", sa.String),
    sa.column("sex", sa.String),
    sa.column("status", sa.String),
    sa.column("is_flagged", sa.Boolean),
    sa.column("referred_on", sa.Date),
    *(sa.column(f"{step}_on", sa.Date) for step in _MILESTONES),
)
_research_scores_table = sa.table(
    "research_scores",
    sa.column("subject_pseudonym", sa.String),
    sa.column("form_id", sa.String),
    sa.column("score_id", sa.String),
    sa.column("occasion", sa.String),
    sa.column("value", sa.Float),
    sa.column("is_positive", sa.Boolean),
)


def _ring() -> vault.KeyRing | None:
    ring = context.config.attributes.get("ring")
    return ring if isinstance(ring, vault.KeyRing) else None


def _app_setting(name: str) -> Any:
    """A setting or the compiled workflow of the app the migration runs in (None outside one)."""
    if not has_app_context():
        return None
    if name == "workflow":
        content = current_app.extensions.get("slussen.content")
        return content.compiled["workflow"] if content is not None else None
    settings = current_app.extensions.get("slussen.settings")
    return getattr(settings, name, None)


def _milestone_events() -> dict[str, str]:
    """Event name -> the step of the flow it marks, from the workflow's [parts.events]."""
    workflow = _app_setting("workflow")
    if workflow is not None:
        parts: dict[str, str] = workflow.parts.events
    else:
        with (shipped_dir("workflows") / "sluss.toml").open("rb") as fh:
            parts = tomllib.load(fh)["parts"]["events"]
    return {parts[part]: step for step, part in _STEP_PARTS.items()}


def _zone() -> ZoneInfo:
    return ZoneInfo(_app_setting("timezone") or "Europe/Stockholm")


def _age_band(age: int | None) -> str:
    if age is None or age < 0:
        return "unknown"
    return next(band for low, band in _BAND_LOWS if age >= low)


def _create_tables() -> None:
    op.create_table(
        "research_subjects",
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("patient_pseudonym", sa.String(length=64), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("age_band", sa.String(length=8), nullable=False),
        sa.Column("sex", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("is_flagged", sa.Boolean(), nullable=False),
        sa.Column("referred_on", sa.Date(), nullable=False),
        *(sa.Column(f"{step}_on", sa.Date(), nullable=True) for step in _MILESTONES),
        sa.CheckConstraint(
            "age_band IN ('0-17', '18-29', '30-44', '45-64', '65-79', '80+', 'unknown')",
            name=op.f("ck_research_subjects_age_band_known"),
        ),
        sa.CheckConstraint(
            "sex IN ('female', 'male', 'unknown')", name=op.f("ck_research_subjects_sex_known")
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_research_subjects_unit_id_units")
        ),
        sa.PrimaryKeyConstraint("pseudonym", name=op.f("pk_research_subjects")),
        sqlite_with_rowid=False,
    )
    op.create_index(
        op.f("ix_research_subjects_patient_pseudonym"),
        "research_subjects",
        ["patient_pseudonym"],
    )
    op.create_table(
        "research_scores",
        sa.Column("subject_pseudonym", sa.String(length=64), nullable=False),
        sa.Column("form_id", sa.String(length=40), nullable=False),
        sa.Column("score_id", sa.String(length=40), nullable=False),
        sa.Column("occasion", sa.String(length=10), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("is_positive", sa.Boolean(), nullable=True),
        sa.CheckConstraint(
            "occasion IN ('baseline', 'six_month')",
            name=op.f("ck_research_scores_occasion_known"),
        ),
        sa.ForeignKeyConstraint(
            ["subject_pseudonym"],
            ["research_subjects.pseudonym"],
            name=op.f("fk_research_scores_subject_pseudonym_research_subjects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "subject_pseudonym", "form_id", "score_id", "occasion", name=op.f("pk_research_scores")
        ),
        sqlite_with_rowid=False,
    )


def _batches(bind: sa.Connection) -> Iterator[list[Any]]:
    """The cases of patients not erased, with their patient's covariates, `_BATCH` at a time."""
    last = 0
    while True:
        rows = bind.execute(
            sa.select(
                _cases.c.id,
                _cases.c.unit_id,
                _cases.c.patient_id,
                _cases.c.state,
                _cases.c.channel,
                _cases.c.screening_flag,
                _cases.c.opened_at,
                _cases.c.closed_at,
                _patients.c.birth_year,
                _patients.c.sex,
            )
            .join(_patients, _patients.c.id == _cases.c.patient_id)
            .where(_cases.c.id > last, _patients.c.erased_at.is_(None))
            .order_by(_cases.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def _earliest(found: dict[tuple[int, str], dt.date], key: tuple[int, str], day: dt.date) -> None:
    if key not in found or day < found[key]:
        found[key] = day


def _subjects(
    bind: sa.Connection, ring: vault.KeyRing, rows: list[Any], zone: ZoneInfo
) -> list[dict[str, Any]]:
    """The research subjects of one batch of cases."""
    ids = [row.id for row in rows]
    events = _milestone_events()
    days: dict[tuple[int, str], dt.date] = {}
    for case_id, event, at in bind.execute(
        sa.select(_events.c.case_id, _events.c.event, _events.c.occurred_at).where(
            _events.c.case_id.in_(ids), _events.c.event.in_(sorted(events))
        )
    ):
        _earliest(days, (case_id, events[event]), at.astimezone(zone).date())
    for case_id, at in bind.execute(
        sa.select(_plans.c.case_id, _plans.c.created_at).where(_plans.c.case_id.in_(ids))
    ):
        _earliest(days, (case_id, "action_plan"), at.astimezone(zone).date())
    for case_id, meeting_at, created_at in bind.execute(
        sa.select(_handovers.c.case_id, _handovers.c.meeting_at, _handovers.c.created_at).where(
            _handovers.c.case_id.in_(ids), _handovers.c.status == "done"
        )
    ):
        _earliest(
            days, (case_id, "handover_done"), (meeting_at or created_at).astimezone(zone).date()
        )
    subjects = []
    for row in rows:
        referred_on = row.opened_at.astimezone(zone).date()
        age = None if row.birth_year is None else referred_on.year - row.birth_year
        subjects.append(
            {
                "pseudonym": vault.blind_index(ring, _CASE, str(row.id)),
                "patient_pseudonym": vault.blind_index(ring, _PATIENT, str(row.patient_id)),
                "unit_id": row.unit_id,
                "channel": row.channel,
                "age_band": _age_band(age),
                "sex": row.sex or "unknown",
                "status": row.state if row.closed_at is not None else "open",
                "is_flagged": row.screening_flag is not None,
                "referred_on": referred_on,
                **{f"{step}_on": days.get((row.id, step)) for step in _MILESTONES},
            }
        )
    return subjects


def _research_scores(
    bind: sa.Connection, ring: vault.KeyRing, ids: list[int]
) -> list[dict[str, Any]]:
    """Per case, score and occasion of one batch: the last value answered (the highest row id
    with a value; the last row when none has one)."""
    chosen: dict[tuple[int, str, str, str], Any] = {}
    for row in bind.execute(
        sa.select(_scores).where(_scores.c.case_id.in_(ids)).order_by(_scores.c.id)
    ):
        key = (row.case_id, row.form_id, row.score_id, row.occasion)
        if row.value is not None or key not in chosen or chosen[key].value is None:
            chosen[key] = row
    return [
        {
            "subject_pseudonym": vault.blind_index(ring, _CASE, str(case_id)),
            "form_id": form_id,
            "score_id": score_id,
            "occasion": occasion,
            "value": row.value,
            "is_positive": row.is_positive,
        }
        for (case_id, form_id, score_id, occasion), row in chosen.items()
    ]


def _patient_keys(
    bind: sa.Connection, ring: vault.KeyRing, case_ids: Iterable[int]
) -> dict[int, vault.FieldCipher | None]:
    """Case id -> a cipher with its patient's data key (None: the key is destroyed)."""
    ciphers: dict[int, vault.FieldCipher | None] = {}
    by_key: dict[int, vault.FieldCipher | None] = {}
    for case_id, key_id, wrapped in bind.execute(
        sa.select(_cases.c.id, _keys.c.id, _keys.c.wrapped)
        .join(_patients, _patients.c.id == _cases.c.patient_id)
        .join(_keys, _keys.c.id == _patients.c.data_key_id)
        .where(_cases.c.id.in_(sorted(set(case_ids))))
    ):
        if key_id not in by_key:
            by_key[key_id] = (
                None
                if wrapped is None
                else vault.FieldCipher(
                    vault.unwrap_data_key(ring, wrapped, data_key_id=key_id), key_id
                )
            )
        ciphers[case_id] = by_key[key_id]
    return ciphers


def _seal_scores(bind: sa.Connection, ring: vault.KeyRing) -> None:
    """Seal every score's value and flag with its patient's data key, a batch of cases at a
    time; an erased patient's scores get no seal (their key is gone)."""
    last = 0
    while True:
        rows = bind.execute(
            sa.select(_scores.c.id, _scores.c.case_id, _scores.c.value, _scores.c.is_positive)
            .where(_scores.c.id > last)
            .order_by(_scores.c.id)
            .limit(_BATCH * 10)
        ).all()
        if not rows:
            return
        ciphers = _patient_keys(bind, ring, (row.case_id for row in rows))
        sealed = []
        for row in rows:
            cipher = ciphers.get(row.case_id)
            if cipher is None:
                continue
            text = json.dumps({"value": row.value, "is_positive": row.is_positive})
            blob = cipher.encrypt(
                text, table=_SCORE_FIELD[0], column=_SCORE_FIELD[1], row_id=row.id
            )
            sealed.append({"row": row.id, "sealed": blob})
        if sealed:
            bind.execute(
                sa.update(_scores)
                .where(_scores.c.id == sa.bindparam("row"))
                .values(score_enc=sa.bindparam("sealed")),
                sealed,
            )
        last = rows[-1].id


def upgrade() -> None:
    bind = op.get_bind()
    cases = bind.execute(sa.select(sa.func.count()).select_from(_cases)).scalar_one()
    ring = _ring()
    if cases and ring is None:
        raise RuntimeError(
            f"{cases} case(s) need research records and their scores sealed, which needs the "
            "key ring: run `slussen init-db` with the key ring in place (keyring_path). Nothing "
            "was changed."
        )
    _create_tables()
    op.add_column("questionnaire_scores", sa.Column("score_enc", sa.LargeBinary(), nullable=True))
    if ring is not None:
        zone = _zone()
        for rows in _batches(bind):
            bind.execute(sa.insert(_subjects_table), _subjects(bind, ring, rows, zone))
            scores = _research_scores(bind, ring, [row.id for row in rows])
            if scores:
                bind.execute(sa.insert(_research_scores_table), scores)
        _seal_scores(bind, ring)
    op.drop_index(_INDEX, table_name="questionnaire_scores")
    op.drop_column("questionnaire_scores", "is_positive")
    op.drop_column("questionnaire_scores", "value")


def downgrade() -> None:
    bind = op.get_bind()
    sealed = bind.execute(
        sa.select(sa.func.count()).select_from(_scores).where(_scores.c.score_enc.is_not(None))
    ).scalar_one()
    ring = _ring()
    if sealed and ring is None:
        raise RuntimeError(
            f"Cannot unseal {sealed} score(s) without the key ring: downgrade with the ring "
            "(slussen.migrate.downgrade(engine, '0013', ring=...))."
        )
    op.add_column("questionnaire_scores", sa.Column("value", sa.Float(), nullable=True))
    op.add_column("questionnaire_scores", sa.Column("is_positive", sa.Boolean(), nullable=True))
    if sealed:
        assert ring is not None
        last = 0
        while True:
            rows = bind.execute(
                sa.select(_scores.c.id, _scores.c.case_id, _scores.c.score_enc)
                .where(_scores.c.id > last, _scores.c.score_enc.is_not(None))
                .order_by(_scores.c.id)
                .limit(_BATCH * 10)
            ).all()
            if not rows:
                break
            ciphers = _patient_keys(bind, ring, (row.case_id for row in rows))
            opened = []
            for row in rows:
                cipher = ciphers.get(row.case_id)
                if cipher is None:
                    continue  # erased since: the score went with the key
                found = json.loads(
                    cipher.decrypt_str(
                        row.score_enc, table=_SCORE_FIELD[0], column=_SCORE_FIELD[1], row_id=row.id
                    )
                )
                opened.append({"row": row.id, "v": found["value"], "p": found["is_positive"]})
            if opened:
                bind.execute(
                    sa.update(_scores)
                    .where(_scores.c.id == sa.bindparam("row"))
                    .values(value=sa.bindparam("v"), is_positive=sa.bindparam("p")),
                    opened,
                )
            last = rows[-1].id
    op.create_index(_INDEX, "questionnaire_scores", _INDEX_COLUMNS)
    op.drop_column("questionnaire_scores", "score_enc")
    op.drop_table("research_scores")
    op.drop_index(op.f("ix_research_subjects_patient_pseudonym"), table_name="research_subjects")
    op.drop_table("research_subjects")
