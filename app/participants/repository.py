"""Which participants count: the one definition that recruitment counts, exports and the analysis share.

Test participants (`is_test`: admin previews, `lpstudy bots` pilots) are kept apart from real data: they never
count toward a condition's target, never appear in a default export or in the analysis, and can be deleted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, select

from app.models import Participant

TEST_KINDS = ("preview", "bot")


def is_real(participant: Any = Participant) -> ColumnElement[bool]:
    """WHERE clause: a real participant (not a preview or a bot). `participant` may be the ORM class or a Table."""
    column = participant.is_test if hasattr(participant, "is_test") else participant.c.is_test
    return column.is_(False)


def study_participants(study_id: int, *, include_test: bool = False) -> Select[Any]:
    """The study's participants in order of arrival; real ones only unless `include_test`.

    The query to reuse wherever participants are read for results (exports, analysis)."""
    query = select(Participant).where(Participant.study_id == study_id).order_by(Participant.id)
    return query if include_test else query.where(is_real())
