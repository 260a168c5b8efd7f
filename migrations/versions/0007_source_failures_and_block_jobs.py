"""source failures and block jobs

A job now makes a block of source images in every condition (jobs.condition_id becomes optional), and source
images that did not enter the study are kept with their reasons (source_failures).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "source_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("image_index", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('failed', 'surplus')", name=op.f("ck_source_failures_status")),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_source_failures_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_source_failures_study_id_studies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_failures")),
        sa.UniqueConstraint("study_id", "image_index", name=op.f("uq_source_failures_study_id_image_index")),
    )
    with op.batch_alter_table("source_failures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_source_failures_study_id"), ["study_id"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("condition_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE condition_id IS NULL")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("condition_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("source_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_source_failures_study_id"))
    op.drop_table("source_failures")
