"""Imports every capability's models so the metadata is complete (Alembic, tests)."""

from __future__ import annotations

from slussen import audit, keystore
from slussen.accounts import models as accounts_models
from slussen.db import Base
from slussen.directory import models as directory_models
from slussen.patients import models as patients_models

metadata = Base.metadata

__all__ = [
    "accounts_models",
    "audit",
    "directory_models",
    "keystore",
    "metadata",
    "patients_models",
]
