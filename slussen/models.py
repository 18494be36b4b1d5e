"""Imports every capability's models so the metadata is complete (Alembic, tests)."""

from __future__ import annotations

from slussen import audit, keystore, letterqueue
from slussen.accounts import models as accounts_models
from slussen.admin import models as admin_models
from slussen.cases import models as cases_models
from slussen.db import Base
from slussen.directory import models as directory_models
from slussen.intake import models as intake_models
from slussen.letters import models as letters_models
from slussen.patients import models as patients_models
from slussen.questionnaires import models as questionnaires_models
from slussen.research import models as research_models
from slussen.visits import models as visits_models

metadata = Base.metadata

__all__ = [
    "accounts_models",
    "admin_models",
    "audit",
    "cases_models",
    "directory_models",
    "intake_models",
    "keystore",
    "letterqueue",
    "letters_models",
    "metadata",
    "patients_models",
    "questionnaires_models",
    "research_models",
    "visits_models",
]
