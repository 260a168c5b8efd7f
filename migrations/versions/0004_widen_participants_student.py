"""widen participants.student

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.alter_column(
            "student", existing_type=sa.VARCHAR(length=16), type_=sa.String(length=32), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.alter_column(
            "student", existing_type=sa.String(length=32), type_=sa.VARCHAR(length=16), existing_nullable=True
        )
