"""Imports every capability's models so the metadata is complete (Alembic, tests)."""

from __future__ import annotations

from slussen.accounts import models as accounts_models
from slussen.db import Base

metadata = Base.metadata

__all__ = ["accounts_models", "metadata"]
