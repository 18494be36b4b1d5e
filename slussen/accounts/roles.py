"""The user roles and what each may do: the one place permissions are decided."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    STAFF = "staff"
    COACH = "coach"
    COORDINATOR = "coordinator"
    EVALUATOR = "evaluator"
    ORG_REP = "org_rep"
    ADMIN = "admin"


class Permission(StrEnum):
    FLAG_PATIENT = "flag_patient"
    VIEW_OWN_FLAGS = "view_own_flags"
    WORK_CASES = "work_cases"
    COORDINATE_UNIT = "coordinate_unit"
    #: Print the queued letters of the cases one is the coach of (and reprint one's own batches).
    PRINT_OWN_LETTERS = "print_own_letters"
    #: See every case of one's units in the unit's list (coaches too: a case not due this week
    #: must still be found).
    VIEW_UNIT = "view_unit"
    MODERATE_DIRECTORY = "moderate_directory"
    REVIEW_ACCESS_LOG = "review_access_log"
    EVALUATE = "evaluate"
    EDIT_OWN_ORGANISATION = "edit_own_organisation"
    #: Sluss 2 for an association: see the hand-over requests addressed to one's organisations
    #: (only what the patient agreed to share) and answer them.
    ANSWER_HANDOVERS = "answer_handovers"
    ADMINISTER = "administer"


_GRANTS: dict[Role, frozenset[Permission]] = {
    Role.STAFF: frozenset({Permission.FLAG_PATIENT, Permission.VIEW_OWN_FLAGS}),
    Role.COACH: frozenset(
        {
            Permission.FLAG_PATIENT,
            Permission.WORK_CASES,
            Permission.PRINT_OWN_LETTERS,
            Permission.VIEW_UNIT,
        }
    ),
    Role.COORDINATOR: frozenset(
        {
            Permission.FLAG_PATIENT,
            Permission.WORK_CASES,
            Permission.PRINT_OWN_LETTERS,
            Permission.COORDINATE_UNIT,
            Permission.VIEW_UNIT,
            Permission.MODERATE_DIRECTORY,
            Permission.REVIEW_ACCESS_LOG,
        }
    ),
    Role.EVALUATOR: frozenset({Permission.EVALUATE}),
    Role.ORG_REP: frozenset({Permission.EDIT_OWN_ORGANISATION, Permission.ANSWER_HANDOVERS}),
    Role.ADMIN: frozenset({Permission.ADMINISTER}),
}

#: Roles that can see identifiable patient data; they need TOTP in production.
PATIENT_DATA_ROLES = frozenset({Role.STAFF, Role.COACH, Role.COORDINATOR})

ROLE_LABELS = {
    Role.STAFF: ("Personal", "Staff"),
    Role.COACH: ("Hälsocoach", "Health coach"),
    Role.COORDINATOR: ("Samordnare", "Coordinator"),
    Role.EVALUATOR: ("Utvärderare", "Evaluator"),
    Role.ORG_REP: ("Föreningsrepresentant", "Organisation representative"),
    Role.ADMIN: ("Administratör", "Administrator"),
}


def grants(role: str, permission: Permission) -> bool:
    """Whether `role` holds `permission`; an unknown role holds nothing."""
    try:
        return permission in _GRANTS[Role(role)]
    except ValueError:
        return False
