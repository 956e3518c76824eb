"""Console logins keep no address or user name in clear: failed logins are counted in Redis by
keyed hashes, and the table that kept every attempted name and address goes; sessions keep a
keyed hash of the address, which a migration cannot compute (it has no secret key), so the
addresses already stored are blanked.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("console_login_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_console_login_failures_user_name_created_at")
    op.drop_table("console_login_failures")
    op.execute("UPDATE console_sessions SET remote_addr = ''")


def downgrade() -> None:
    op.create_table(
        "console_login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_name", sa.String(length=100), nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_login_failures")),
    )
    with op.batch_alter_table("console_login_failures", schema=None) as batch_op:
        batch_op.create_index(
            "ix_console_login_failures_user_name_created_at",
            ["user_name", "created_at"],
            unique=False,
        )
