"""Assignment slots: the places a study has for real participants, made ahead and claimed one by one.

Every condition has one slot per rank 0..target-1. Entries claim the free slot with the lowest (rank, tiebreak)
(PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so simultaneous entries never wait for each other), which keeps the
conditions within one participant of each other and never above their targets. A slot is free when it has no
participant, or its participant no longer fills it (timed out while active, declined consent, failed the
attention checks): the next entrant takes it over. Slots are made a block of ranks at a time: the first when
the study opens, the next ones by the entry that finds none free.
The slots nobody holds have a partial index of their own, so that finding one does not walk the slots already
held (which made an entry's cost grow with the number of participants in).
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class AssignmentSlot(Base):
    __tablename__ = "assignment_slots"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    condition_id: Mapped[int] = mapped_column(ForeignKey("conditions.id", ondelete="CASCADE"))
    rank: Mapped[int]
    # Random order of the conditions within a rank (the least-filled tie-break).
    tiebreak: Mapped[int]
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id", ondelete="SET NULL"), unique=True)

    __table_args__ = (
        UniqueConstraint("condition_id", "rank"),
        Index(
            "ix_assignment_slots_free",
            "study_id",
            "rank",
            "tiebreak",
            postgresql_where=text("participant_id IS NULL"),
            sqlite_where=text("participant_id IS NULL"),
        ),
    )
