"""The evaluation's tests run on a small content folder: the shipped UCLA-3 and a wellbeing item
(tests/evaluation_support.py), so that the expected numbers do not move with the shipped forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import settings_for_tests
from tests.evaluation_support import content_dir


@pytest.fixture
def app_settings(tmp_path: Path) -> dict[str, Any]:
    return settings_for_tests(tmp_path, content_dir=str(content_dir(tmp_path)))
