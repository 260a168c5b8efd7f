"""the Prolific study id on the study

The id of the study on Prolific (24 hexadecimal characters), set on the dashboard's Prolific set-up panel; the
dashboard reads that study's submissions with the API token. Nullable: unset until an admin sets it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prolific_study_id", sa.String(length=24), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("prolific_study_id")
