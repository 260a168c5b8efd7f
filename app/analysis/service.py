"""What the CLI and the dashboard call: load a study from the database and analyse it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.analysis.core import analyze
from app.analysis.load import StudyData, load_study
from app.studies.service import get_study


def study_data(session: Session, slug: str) -> StudyData:
    """Raises NotFound for an unknown slug."""
    return load_study(session, get_study(session, slug))


def analyze_study(
    session: Session, slug: str, *, include_test: bool = False, mixed: bool | None = None
) -> tuple[StudyData, dict[str, Any]]:
    data = study_data(session, slug)
    return data, analyze(data, include_test=include_test, mixed=mixed)
