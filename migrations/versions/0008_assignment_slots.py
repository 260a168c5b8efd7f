"""assignment slots: entries claim a slot instead of queueing on one lock per study

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "assignment_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("condition_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("tiebreak", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["condition_id"],
            ["conditions.id"],
            name=op.f("fk_assignment_slots_condition_id_conditions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_assignment_slots_participant_id_participants"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_assignment_slots_study_id_studies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment_slots")),
        sa.UniqueConstraint("condition_id", "rank", name=op.f("uq_assignment_slots_condition_id_rank")),
        sa.UniqueConstraint("participant_id", name=op.f("uq_assignment_slots_participant_id")),
    )
    op.create_index("ix_assignment_slots_claim_order", "assignment_slots", ["study_id", "rank", "tiebreak"])
    # Studies with participants already: their slots are made on the next entry; those participants hold none,
    # so they are taken into account by the slots' free check only once they hold one. Give every current
    # filling participant a slot now, in their condition, in the order they arrived.
    op.execute(
        """
        INSERT INTO assignment_slots (study_id, condition_id, rank, tiebreak, participant_id)
        SELECT p.study_id, p.condition_id,
               ROW_NUMBER() OVER (PARTITION BY p.condition_id ORDER BY p.id) - 1, 0, p.id
        FROM participants p
        WHERE p.is_test = false AND p.status IN ('active', 'completed')
        """
    )


def downgrade() -> None:
    op.drop_index("ix_assignment_slots_claim_order", table_name="assignment_slots")
    op.drop_table("assignment_slots")
