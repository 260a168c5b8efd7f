"""test participants and viewing conditions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("participants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_test", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("test_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("device_pixel_ratio", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("viewport_w", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("viewport_h", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("screen_w", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("screen_h", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rendered_sizes", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("touch", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("ua_browser", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("ua_os", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("participants", schema=None) as batch_op:
        for col in (
            "ua_os",
            "ua_browser",
            "touch",
            "rendered_sizes",
            "screen_h",
            "screen_w",
            "viewport_h",
            "viewport_w",
            "device_pixel_ratio",
            "test_kind",
            "is_test",
        ):
            batch_op.drop_column(col)
