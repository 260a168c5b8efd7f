"""admin dashboard: audit log, login throttling, stimulus exclusion and replacement, paused studies

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POOL_WHERE = sa.text("excluded_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("admin_id", sa.Integer(), nullable=True),
        sa.Column("admin_email", sa.String(length=254), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("study_slug", sa.String(length=64), nullable=True),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["admin_id"], ["admin_users.id"], name=op.f("fk_audit_log_admin_id_admin_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_audit_log_study_id_studies"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_study_id_at", ["study_id", "at"], unique=False)

    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("account", sa.String(length=254), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.create_index("ix_login_failures_account_at", ["account", "at"], unique=False)
        batch_op.create_index("ix_login_failures_address_at", ["address", "at"], unique=False)

    with op.batch_alter_table("stimuli", schema=None) as batch_op:
        batch_op.add_column(sa.Column("excluded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("excluded_by", sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column("excluded_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("replaces_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_stimuli_replaces_id_stimuli"), "stimuli", ["replaces_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.drop_constraint(op.f("uq_stimuli_condition_id_image_index"), type_="unique")
        batch_op.create_index(
            "uq_stimuli_condition_id_image_index_pool",
            ["condition_id", "image_index"],
            unique=True,
            sqlite_where=POOL_WHERE,
            postgresql_where=POOL_WHERE,
        )

    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_studies_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_studies_status"), "status IN ('draft', 'active', 'paused', 'closed')")


def downgrade() -> None:
    op.execute("UPDATE studies SET status = 'active' WHERE status = 'paused'")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_studies_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_studies_status"), "status IN ('draft', 'active', 'closed')")

    # Replacements would break the old one-stimulus-per-image rule: drop them (and their trials' references
    # would block that, so such a database cannot go back below 0006 without losing answers; refuse instead).
    conn = op.get_bind()
    replaced = conn.execute(
        sa.text("SELECT count(*) FROM stimuli s JOIN stimuli t ON t.condition_id = s.condition_id "
                "AND t.image_index = s.image_index AND t.id < s.id")
    ).scalar()
    if replaced:
        raise RuntimeError(
            f"{replaced} stimuli replace earlier ones for the same source image; revision 0005 allows only one. "
            "Export the study first and delete the replacements to downgrade."
        )
    with op.batch_alter_table("stimuli", schema=None) as batch_op:
        batch_op.drop_index("uq_stimuli_condition_id_image_index_pool")
        batch_op.create_unique_constraint(op.f("uq_stimuli_condition_id_image_index"), ["condition_id", "image_index"])
        batch_op.drop_constraint(batch_op.f("fk_stimuli_replaces_id_stimuli"), type_="foreignkey")
        batch_op.drop_column("replaces_id")
        batch_op.drop_column("excluded_reason")
        batch_op.drop_column("excluded_by")
        batch_op.drop_column("excluded_at")

    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_login_failures_address_at")
        batch_op.drop_index("ix_login_failures_account_at")
    op.drop_table("login_failures")

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_study_id_at")
    op.drop_table("audit_log")
